"""Precision "auto" and the slow-precision warning, with both answers of the CPU simulated."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import pytest
import torch

import swiftcuda
from swiftcuda import precision
from swiftcuda.cpu import CpuInfo, cpu_info, describe
from swiftcuda.model import SwiftNet
from swiftcuda.optimize import mark_prepared

AVX2_EPYC = CpuInfo(
    model="AMD EPYC 7B13 64-Core Processor",
    capability="AVX2",
    avx2=True,
    avx512=False,
    avx512_bf16=False,
    amx=False,
    amx_fp16=False,
    onednn=True,
)
ZEN4 = dataclasses.replace(AVX2_EPYC, model="AMD EPYC 9R14", capability="AVX512", avx512=True, avx512_bf16=True)
SAPPHIRE_RAPIDS = dataclasses.replace(ZEN4, model="Intel(R) Xeon(R) Platinum 8488C", amx=True)
SKYLAKE = dataclasses.replace(AVX2_EPYC, model="Intel(R) Xeon(R) Gold 6148", capability="AVX512", avx512=True)


@pytest.mark.parametrize(
    "cpu, expected",
    [(AVX2_EPYC, torch.float32), (SKYLAKE, torch.float32), (ZEN4, torch.bfloat16), (SAPPHIRE_RAPIDS, torch.bfloat16)],
)
def test_auto_picks_bfloat16_only_where_native(cpu, expected):
    assert precision.resolve_precision("auto", "cpu", cpu=cpu) == expected
    assert precision.auto_dtype(torch.device("cuda"), cpu) == torch.float16


def test_native_bfloat16_needs_onednn():
    assert not dataclasses.replace(ZEN4, onednn=False).native_bf16


def test_explicit_names_and_dtypes():
    assert precision.resolve_precision("fp32", "cpu", cpu=AVX2_EPYC) == torch.float32
    assert precision.resolve_precision(torch.float16, "cuda", cpu=AVX2_EPYC) == torch.float16
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        precision.resolve_precision(torch.float64, "cpu")


def _slow_warnings(calls) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own default: once per warning and place
        for call in calls:
            call()
    return [w for w in caught if issubclass(w.category, precision.SlowPrecisionWarning)]


def test_explicit_bfloat16_without_native_support_runs_with_one_warning():
    ask = lambda: precision.resolve_precision("bf16", "cpu", cpu=AVX2_EPYC)  # noqa: E731
    caught = _slow_warnings([ask, ask, ask])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "AMD EPYC 7B13" in message and "slow" in message and "'auto' or 'fp32'" in message
    assert ask() == torch.bfloat16  # it still runs as asked


def test_no_warning_where_bfloat16_is_native_or_on_a_gpu():
    assert (
        _slow_warnings(
            [
                lambda: precision.resolve_precision("bf16", "cpu", cpu=ZEN4),
                lambda: precision.resolve_precision("bf16", "cuda", cpu=AVX2_EPYC),
                lambda: precision.resolve_precision("fp32", "cpu", cpu=AVX2_EPYC),
                lambda: precision.resolve_precision("auto", "cpu", cpu=AVX2_EPYC),
            ]
        )
        == []
    )


def test_float16_on_a_cpu_warns_unless_amx_fp16():
    assert len(_slow_warnings([lambda: precision.resolve_precision("fp16", "cpu", cpu=SAPPHIRE_RAPIDS)])) == 1
    granite = dataclasses.replace(SAPPHIRE_RAPIDS, amx_fp16=True)
    assert _slow_warnings([lambda: precision.resolve_precision("fp16", "cpu", cpu=granite)]) == []


@pytest.mark.parametrize("cpu, expected", [(AVX2_EPYC, torch.float32), (ZEN4, torch.bfloat16)])
def test_load_model_defaults_to_auto(tmp_path, monkeypatch, cpu, expected):
    monkeypatch.setattr(precision, "cpu_info", lambda: cpu)
    path = tmp_path / "w.pth"
    torch.save(SwiftNet().state_dict(), path)
    assert next(swiftcuda.load_model(path).parameters()).dtype == expected


def test_a_segmenter_on_a_slow_dtype_warns_once(monkeypatch):
    monkeypatch.setattr(precision, "cpu_info", lambda: AVX2_EPYC)
    model = SwiftNet().eval().to(torch.bfloat16)
    make = lambda: swiftcuda.Segmenter(mark_prepared(model))  # noqa: E731
    assert len(_slow_warnings([make, make])) == 1


def test_this_cpu_is_described():
    info = cpu_info()
    # With ONEDNN_MAX_CPU_ISA set (an AVX-512 machine limited to AVX2, say) the limit decides.
    allowed = info.onednn_isa_limit is None or info.onednn_isa_limit.upper() in ("ALL", "DEFAULT")
    if allowed:
        assert info.native_bf16 == (info.onednn and (info.avx512_bf16 or info.amx))
    elif info.onednn_isa_limit.upper() in ("AVX2", "AVX2_VNNI", "AVX512_CORE"):
        assert not info.native_bf16
    line = describe(info, threads=3)
    assert line.startswith(f"CPU: {info.model}, ") and info.isa in line and "3 threads" in line
    assert describe(AVX2_EPYC, threads=2) == (
        "CPU: AMD EPYC 7B13 64-Core Processor, AVX2 (ATen AVX2), native bfloat16: no, 2 threads"
    )
    assert SAPPHIRE_RAPIDS.isa == "AVX-512 + BF16 + AMX"


def test_info_reports_the_cpu_and_what_auto_picks():
    run = subprocess.run(
        [sys.executable, "-m", "swiftcuda", "info", "--json"], capture_output=True, text=True, check=True
    )
    info = json.loads(run.stdout)
    here = cpu_info()
    assert info["cpu"]["model"] == here.model and info["cpu"]["native_bf16"] == here.native_bf16
    assert info["auto_precision"]["cpu"] == ("bfloat16" if here.native_bf16 else "float32")
    text = subprocess.run(
        [sys.executable, "-m", "swiftcuda", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert "native bfloat16: " + ("yes" if here.native_bf16 else "no") in text
    assert "auto picks" in text


def test_a_onednn_isa_limit_below_bf16_means_no_native_bfloat16():
    limited = dataclasses.replace(SAPPHIRE_RAPIDS, onednn_isa_limit="avx2")
    assert not limited.native_bf16 and "oneDNN limited to avx2" in limited.isa
    assert precision.resolve_precision("auto", "cpu", cpu=limited) == torch.float32
    assert dataclasses.replace(SAPPHIRE_RAPIDS, onednn_isa_limit="AVX512_CORE_BF16").native_bf16
    assert dataclasses.replace(SAPPHIRE_RAPIDS, onednn_isa_limit="all").native_bf16
