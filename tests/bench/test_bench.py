"""The end-to-end benchmark runs every configuration on one video and reports them side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swiftcuda import ops
from swiftcuda.bench.fps import Config, benchmark_video, default_configs, parse_configs
from swiftcuda.cli import main
from swiftcuda.optimize.winograd import winograd_available


def test_benchmark_video_has_the_asked_objects_size_and_length():
    video = benchmark_video(objects=2, num_frames=70, height=48, width=80)
    assert video.frames.shape == (70, 48, 80, 3) and video.labels.shape == (70, 48, 80)
    assert set(video.labels[0].ravel().tolist()) == {0, 1, 2}


def test_configs_parse_and_defaults_start_with_the_baselines():
    assert parse_configs("official,swiftcuda:bf16:cpu:graphs") == [
        Config("official"),
        Config("swiftcuda", "bf16", "cpu", True),
    ]
    import torch

    assert parse_configs("swiftcuda:fp32:cpu:::winograd,swiftcuda:fp32:cpu:::direct:untuned") == [
        Config("swiftcuda", "fp32", "cpu", winograd=True),
        Config("swiftcuda", "fp32", "cpu", winograd=False, tuned=False),
    ]
    rows = default_configs(torch.device("cpu"))
    assert rows[:2] == [Config("official"), Config("swiftcuda", "fp32", "reference", winograd=False, tuned=False)]
    assert Config("swiftcuda", "fp32", "cpu", winograd=False, tuned=False) in rows
    assert Config("swiftcuda", "fp32", "cpu") in rows and Config("swiftcuda", "auto", "cpu") in rows
    # bfloat16 only where it is native: elsewhere a row would take minutes and show a trap
    from swiftcuda.cpu import cpu_info

    assert (Config("swiftcuda", "bf16", "cpu") in rows) == cpu_info().native_bf16
    assert not any(row.backend == "triton" for row in rows)  # interpreted on a CPU: not timed


def test_bench_command_prints_a_table(tmp_path, capsys):
    report = tmp_path / "results.md"
    code = main(
        [
            "bench",
            "--device",
            "cpu",
            "--size",
            "48x64",
            "--frames",
            "6",
            "--warmup",
            "1",
            "--configs",
            "official,swiftcuda:fp32:reference:::direct:untuned,swiftcuda:bf16,swiftcuda:auto"
            + (",swiftcuda:fp32:cpu:::winograd" if winograd_available() else ""),
            "--markdown",
            str(report),
        ]
    )
    assert code == 0
    table = report.read_text()
    assert "| official code (fp32, eager; faster of a run first and last) | 1 |" in table
    assert "| swiftcuda fp32, reference, eager, direct 3x3, untuned | 1 |" in table and "100.00% |" in table
    assert "| swiftcuda bf16, auto, eager, tuned | 1 |" in table
    from swiftcuda.cpu import cpu_info

    auto = "bfloat16" if cpu_info().native_bf16 else "float32"
    assert f"| swiftcuda auto = {auto}, auto, eager, tuned | 1 |" in table
    if winograd_available():
        assert "| swiftcuda fp32, cpu, eager, Winograd 3x3, tuned | 1 |" in table
    assert "torch" in table and "commit" in table
    assert f"CPU: {cpu_info().model}" in table and "native bfloat16: " in table  # the machine, with its ISA
    assert "labels by " in table and "%) |" in table  # the conversion used, and its share of a frame


def test_an_official_read_that_overflows_is_flagged_and_swiftcuda_stays_finite():
    """Large keys overflow the official read's unnormalised exp (NaN); swiftcuda's softmax does not."""
    import torch

    from swiftcuda import Segmenter
    from swiftcuda.bench.fps import format_table, run_official
    from tests.models import random_swiftnet

    model = random_swiftnet(seed=0)
    with torch.no_grad():
        for head in (model.KV_Q_r4, model.KV_M_r4):
            head.Key.weight.mul_(1e3)
    video = benchmark_video(objects=1, num_frames=3, height=48, width=64)
    official = run_official(model, video, torch.device("cpu"), warmup=0)
    assert official.non_finite
    segmenter = Segmenter(model, backend="reference")
    segmenter.step(video.frames[0], mask=video.labels[0])
    for frame in video.frames[1:]:
        assert torch.isfinite(segmenter.step(frame)).all()
    assert "exp overflowed" in format_table([official], {1: official.fps})


def _run_benchmark_script(name: str, report: Path, *options: str) -> str:
    """Run ``benchmarks/<name>`` in a quick smoke run and return the markdown table it wrote."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / name
    subprocess.run(
        [sys.executable, str(script), "--quick", "--markdown", str(report), *options], check=True, capture_output=True
    )
    return report.read_text()


@pytest.mark.parametrize(
    "script, first_row",
    [
        ("bench_memory_read.py", "| memory_read | reference | fp32 | 1 | 32 | 128 | 1620 | 512 |"),
        ("bench_memory_update.py", "| memory_update_ | reference | fp32 | 1 | 32 | 128 | 1620 | 512 |"),
    ],
)
def test_op_benchmarks_run_on_the_cpu(tmp_path, script, first_row):
    """The op benchmarks' quick CPU runs time every compiled backend (timings are not checked):
    the GPU suite runs the same scripts, so a break shows here first."""
    table = _run_benchmark_script(script, tmp_path / "ops.md", "--device", "cpu", "--dtypes", "fp32", "--no-memory")
    assert first_row in table
    for backend in ops.available_backends("cpu"):
        # Interpreted Triton is not timed on the CPU (its times would measure the interpreter).
        assert (f" | {backend} | fp32 |" in table) == (backend != "triton")


def test_conv3x3_benchmark_runs(tmp_path):
    """The CPU convolution benchmark's quick run writes its table (timings are not checked)."""
    table = _run_benchmark_script("bench_conv3x3.py", tmp_path / "conv.md", "--no-memory")
    assert "| conv3x3 | reference | fp32 | 1 | 64 | 64 | 120 | 216 |" in table
    assert ("| conv3x3 | winograd |" in table) == winograd_available()


def test_pointwise_fusion_benchmark_runs_or_says_why_not(tmp_path):
    """A tiny run writes its table (timings are not checked; labels are compared with the plain
    engine's); on a CPU that cannot fuse bfloat16 it stops with one line instead of a oneDNN error."""
    from swiftcuda.optimize.fused_conv import pointwise_fusion_available

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pointwise_fusion.py"
    report = tmp_path / "fusion.md"
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            "--size",
            "64x96",
            "--objects",
            "1,2",
            "--frames",
            "5",
            "--warmup",
            "1",
            "--markdown",
            str(report),
        ],
        capture_output=True,
        text=True,
    )
    if not pointwise_fusion_available(torch.bfloat16):
        assert run.returncode != 0 and not report.exists()
        assert run.stderr.strip().splitlines()[-1].startswith("bench_pointwise_fusion: oneDNN cannot fuse bfloat16")
        return
    assert run.returncode == 0, run.stderr
    table = report.read_text()
    assert "CPU: " in table and "| objects | plain FPS | fused FPS |" in table
    rows = [line for line in table.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and all(line.endswith("% |") for line in rows)


@pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="the C++ CPU backend is not built")
def test_stm_family_benchmark_runs(tmp_path):
    """A quick run of one model writes both reads' rows and how often they agree (timings are not checked)."""
    table = _run_benchmark_script("bench_stm_family.py", tmp_path / "family.md", "--models", "stcn", "--no-memory")
    assert "| stcn | 1 | 2000 | 20 | fp32 | model |" in table
    row = next(line for line in table.splitlines() if line.startswith("| stcn | 1 | 2000 | 20 | fp32 | swiftcuda |"))
    assert float(row.split("|")[-2].strip().rstrip("%")) > 95.0  # the same read, up to near-ties
    assert "CPU: " in table
