"""Convolution algorithms chosen by measurement: every algorithm against F.conv2d, the on-disk cache
(atomic, corrupt and foreign files), and a tuned model's labels against the untuned model's."""

from __future__ import annotations

import itertools
import json
import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from swiftcuda.inference import Segmenter
from swiftcuda.model import SwiftNet
from swiftcuda.model.init import lively_random_init
from swiftcuda.optimize import PrepareOptions, prepare
from swiftcuda.optimize import conv_tuning as T
from swiftcuda.optimize.winograd import winograd_available


def _conv(in_channels=13, out_channels=9, kernel=3, stride=1, padding=1, dilation=1, bias=True, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)
    return conv.requires_grad_(False)  # as in an inference copy


def _tuner(tmp_path, winograd=None) -> T.ConvTuner:
    return T.ConvTuner(T.TuningCache(tmp_path / "tuning.json"), winograd=winograd)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape",
    [
        dict(),
        dict(stride=2),
        dict(kernel=1, padding=0, bias=False),
        dict(padding=2, dilation=2),
        dict(kernel=7, stride=2, padding=3),
    ],
)
def test_every_algorithm_computes_the_convolution(tmp_path, dtype, shape):
    conv = _conv(**shape).to(dtype)
    tuned = T.TunedConv2d(conv, _tuner(tmp_path))
    x = torch.randn(2, 13, 19, 23).to(dtype)
    expected = F.conv2d(
        x.double(),
        conv.weight.double(),
        None if conv.bias is None else conv.bias.double(),
        conv.stride,
        conv.padding,
        conv.dilation,
    )
    algorithms = ["channels_last", "nchw"] + (
        ["winograd"] if tuned.winograd_eligible and dtype == torch.float32 and winograd_available() else []
    )
    for layout in (torch.contiguous_format, torch.channels_last):
        for algorithm in algorithms:
            got = tuned.run(algorithm, x.contiguous(memory_format=layout), layout)
            assert got.is_contiguous(memory_format=layout)  # returned in the model's layout
            scale = expected.abs().max().item()
            tolerance = (
                1e-5
                if dtype == torch.float32 and algorithm != "winograd"
                else (1e-4 if dtype == torch.float32 else 2e-2)
            )
            assert (got.double() - expected).abs().max().item() <= tolerance * scale, (algorithm, layout)


def test_the_fastest_candidate_is_chosen_and_cached(tmp_path, monkeypatch):
    speeds = {"channels_last": 3.0, "nchw": 1.0, "winograd": 2.0, "as_is": 3.0}
    timed: list[str] = []

    def fake_timing(runs):
        timed.extend(runs)
        return {name: speeds[name] for name in runs}

    monkeypatch.setattr(T, "measure_ms", fake_timing)
    tuned = T.TunedConv2d(_conv(), _tuner(tmp_path), name="layer")
    x = torch.randn(1, 13, 17, 21)
    assert torch.allclose(tuned(x), F.conv2d(x, tuned.weight, tuned.bias, padding=1), rtol=1e-5, atol=1e-5)
    tuned(x)  # the same input again: no new measurement

    data = json.loads((tmp_path / "tuning.json").read_text())
    ((key, entry),) = data["choices"].items()
    assert set(entry["milliseconds"]) == {"fixed", "channels_last", "nchw"} and "13->9 3x3" in key and "threads=" in key
    assert timed.count("nchw") == 2  # once per model layout

    # A new process (a new cache object on the same file) reuses the choice without measuring.
    monkeypatch.setattr(T, "measure_ms", lambda runs: pytest.fail("measured again"))
    again = T.TunedConv2d(_conv(), _tuner(tmp_path))
    again(x)
    # A cached choice is new to this engine: one pass of the fixed rule first, as with a cold cache.
    assert again.tuner.strategy() == "fixed"
    out = again(x)
    (choice,) = again._chosen.values()
    assert again.tuner.strategy() == "channels_last"  # settled (a pass with nothing new); beats the rule
    assert choice.algorithm("channels_last") == "nchw" and out.is_contiguous(memory_format=torch.channels_last)


def test_the_default_layout_wins_near_ties():
    assert T.pick({"channels_last": 1.04, "nchw": 1.0}) == "channels_last"
    assert T.pick({"channels_last": 1.2, "nchw": 1.0, "winograd": 1.1}) == "nchw"
    assert T.pick({"channels_last": 2.0, "nchw": 1.9, "winograd": 1.0}) == "winograd"
    assert T.pick({"channels_last": 1.04, "nchw": 1.0}, default="nchw") == "nchw"


def test_the_model_strategy_is_the_one_whose_layers_sum_lowest(tmp_path, monkeypatch):
    """Each layer's best differs by strategy; the model runs the fixed rule while measuring, then the
    strategy with the lowest sum, every layer returning its layout (no op between them sees mixed
    layouts)."""
    speeds = {  # (layer's in_channels) -> per strategy, per candidate
        13: {
            "fixed": {"as_is": 10.0},
            "channels_last": {"channels_last": 1.0, "nchw": 5.0},
            "nchw": {"channels_last": 2.0, "nchw": 3.0},
        },
        9: {
            "fixed": {"as_is": 10.0},
            "channels_last": {"channels_last": 9.0, "nchw": 8.0},
            "nchw": {"channels_last": 9.0, "nchw": 2.0},
        },
    }
    measuring: list[int] = []
    original_choose = T.ConvTuner.choose

    def choose(self, conv, x):
        measuring[:] = [conv.weight.shape[1]]
        return original_choose(self, conv, x)

    layouts = iter(["fixed", "channels_last", "nchw"] * 2)
    monkeypatch.setattr(T.ConvTuner, "choose", choose)

    def fake_measure(runs):
        layout = next(layouts)  # measured per strategy: the fixed rule first
        return {name: speeds[measuring[0]][layout][name] for name in runs}

    monkeypatch.setattr(T, "measure_ms", fake_measure)
    tuner = T.ConvTuner(T.TuningCache(tmp_path / "tuning.json"), winograd=False)
    first, second = T.TunedConv2d(_conv(13, 9), tuner, "a"), T.TunedConv2d(_conv(9, 5, seed=1), tuner, "b")
    x = torch.randn(1, 13, 11, 12).contiguous(memory_format=torch.channels_last)
    second(first(x))
    assert tuner.strategy() == "fixed"  # still measuring
    assert tuner.totals() == {"fixed": 20.0, "channels_last": 1.0 + 8.0, "nchw": 2.0 + 2.0}
    out = second(first(x))  # a whole pass without measuring: settled
    assert tuner.strategy() == "nchw" and out.is_contiguous()
    assert [c.algorithm("nchw") for _, _, c in tuner.seen][:2] == ["channels_last", "nchw"]


def test_layers_of_the_same_shape_each_count_in_the_totals(tmp_path, monkeypatch):
    """Three layers of one shape share a measurement (one cache key) but each runs in a step, so the
    strategy totals count it three times: summing distinct keys once each undercounted a ResNet
    stage's repeated 3x3 convolutions and could pick the wrong strategy."""
    per_strategy = {"fixed": 4.0, "channels_last": 3.0, "nchw": 7.0}
    layouts = iter(["fixed", "channels_last", "nchw"])

    def fake_measure(runs):  # measured per strategy, the fixed rule first; every candidate alike
        milliseconds = per_strategy[next(layouts)]
        return {name: milliseconds for name in runs}

    monkeypatch.setattr(T, "measure_ms", fake_measure)
    tuner = T.ConvTuner(T.TuningCache(tmp_path / "tuning.json"), winograd=False)
    layers = [T.TunedConv2d(_conv(9, 9, seed=seed), tuner, f"layer{seed}") for seed in range(3)]
    x = torch.randn(1, 9, 11, 12).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        y = x
        for layer in layers:
            y = layer(y)
    assert len(tuner.cache.choices) == 1  # measured once
    assert tuner.totals() == {name: 3 * ms for name, ms in per_strategy.items()}
    assert tuner.settled() and tuner.strategy() == "channels_last"


def test_a_warm_cache_runs_the_same_algorithms_as_a_cold_one(tmp_path, monkeypatch):
    """A video's masks must not depend on what the cache held: with a cold cache the first passes run
    the fixed rule while measuring, so a warm one must not switch earlier (it did, from its first
    layer, and live and offline runs of one video then differed in a few pixels under AVX2)."""
    per_strategy = {"fixed": 4.0, "channels_last": 3.0, "nchw": 7.0}
    layouts = itertools.cycle(["fixed", "channels_last", "nchw"])  # measured per strategy, fixed first
    monkeypatch.setattr(T, "measure_ms", lambda runs: {name: per_strategy[next(layouts)] for name in runs})
    ran: list[tuple[str, str]] = []
    run = T.TunedConv2d.run

    def logged_run(self, algorithm, x, output_format):
        ran.append((self.name, algorithm))
        return run(self, algorithm, x, output_format)

    monkeypatch.setattr(T.TunedConv2d, "run", logged_run)
    x = torch.randn(1, 13, 11, 12)

    def three_passes() -> list[tuple[str, str]]:
        tuner = _tuner(tmp_path, winograd=False)
        first, second = T.TunedConv2d(_conv(13, 9), tuner, "a"), T.TunedConv2d(_conv(9, 5, seed=1), tuner, "b")
        ran.clear()
        for _ in range(3):
            second(first(x))
        assert tuner.strategy() == "channels_last"
        return list(ran)

    cold = three_passes()
    monkeypatch.setattr(T, "measure_ms", lambda runs: pytest.fail("measured again"))
    warm = three_passes()
    assert warm == cold
    assert cold[:2] == [("a", "as_is"), ("b", "as_is")] and cold[-1][1] != "as_is"


def test_measurement_runs_every_candidate_in_turns(monkeypatch):
    calls: list[str] = []
    ms = T.measure_ms({name: (lambda name=name: calls.append(name)) for name in ("a", "b")})
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls[:2] == ["a", "b"] and calls.count("a") == calls.count("b") >= 1 + T.MIN_ROUNDS


def test_winograd_false_keeps_to_direct_convolutions(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "measure_ms", lambda runs: {name: 0.1 if name == "winograd" else 1.0 for name in runs})
    x = torch.randn(1, 13, 17, 21)
    allowed = T.TunedConv2d(_conv(), _tuner(tmp_path))
    allowed(x)
    direct = T.TunedConv2d(_conv(), T.ConvTuner(T.TuningCache(tmp_path / "tuning.json"), winograd=False))
    direct(x)
    assert {c.algorithm(direct.tuner.strategy()) for c in direct._chosen.values()} <= {"as_is", "channels_last", "nchw"}
    if winograd_available():
        assert {c.algorithm(allowed.tuner.strategy()) for c in allowed._chosen.values()} == {"winograd"}


def test_the_cache_is_written_atomically(tmp_path, monkeypatch):
    cache = T.TuningCache(tmp_path / "tuning.json")
    cache.put("first", T.Choice({"channels_last": {"nchw": 1.0}, "nchw": {"nchw": 1.0}}))
    before = (tmp_path / "tuning.json").read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(T.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.save()
    cache.put("second", T.Choice({"channels_last": {"channels_last": 1.0}, "nchw": {"nchw": 1.0}}))  # logged, kept
    assert "second" in cache.choices and not cache.persist
    assert (tmp_path / "tuning.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuning.json"]  # no temporary left behind


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{ not json", "unreadable"),
        ('["a list"]', "unreadable"),
        ({"choices": {"k": {"nope": 1}}}, "unreadable"),
        ({"cpu": "Some Other CPU", "choices": {}}, "made for"),
        # an ISA no machine reports (AVX2-onednn-AVX2 is this one's when oneDNN is limited to AVX2)
        ({"isa": "SSE2-onednn-SSE41", "choices": {}}, "made for"),
        ({"format": 0, "choices": {}}, "made for"),
    ],
)
def test_a_corrupt_or_foreign_cache_is_ignored_and_rebuilt(tmp_path, caplog, content, reason):
    identity = T.TuningCache(tmp_path / "unused.json").identity
    text = content if isinstance(content, str) else json.dumps({**identity, **content})
    path = tmp_path / "tuning.json"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="swiftcuda.optimize.conv_tuning"):
        cache = T.TuningCache(path)
    assert cache.choices == {}
    assert any(reason in record.getMessage() and str(path) in record.getMessage() for record in caplog.records)
    cache.put("k", T.Choice({"channels_last": {"nchw": 1.0}, "nchw": {"nchw": 1.0}}))
    assert json.loads(path.read_text())["choices"]["k"]["milliseconds"]["nchw"] == {"nchw": 1.0}


def test_default_cache_path_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = T.default_cache_path("AMD EPYC 7B13 64-Core Processor", "2.14.1+cu130", "AVX2")
    assert path == tmp_path / "swiftcuda" / "conv-tuning-AMD-EPYC-7B13-64-Core-Processor-AVX2-torch2.14.1-cu130.json"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "-onednn-AVX2-torch" in T.default_cache_path().name  # a limited oneDNN tunes apart


def _labels(segmenter: Segmenter, frames, mask) -> list[np.ndarray]:
    out = []
    with torch.inference_mode():
        probs = segmenter.step(frames[0], mask=mask)
        for frame in frames[1:]:
            probs = segmenter.step(frame)
            out.append(segmenter.to_labels(probs).numpy())
    return out


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (75, 133, 3), dtype=np.uint8) for _ in range(3)]
    mask = np.zeros((75, 133), np.uint8)
    mask[10:40, 20:70], mask[45:70, 80:125] = 1, 2
    return frames, mask


@pytest.mark.parametrize("forced", ["channels_last", "nchw", "winograd", None])
def test_a_tuned_model_gives_the_untuned_labels(tmp_path, monkeypatch, video, forced):
    """Whatever the measurement picks (forced here, or really measured), the labels are those of
    the untuned engine on at least 99.9% of pixels: the algorithms round differently (oneDNN's NCHW
    and NHWC kernels too), which flips near-ties of these random weights and nothing else."""
    if forced == "winograd" and not winograd_available():
        pytest.skip("the extension's Winograd convolution is not available here")
    if forced is not None:
        monkeypatch.setattr(T, "measure_ms", lambda runs: {name: 0.5 if name == forced else 1.0 for name in runs})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = lively_random_init(SwiftNet(), seed=1).eval()
    frames, mask = video
    untuned = _labels(Segmenter(prepare(model, PrepareOptions(tune=False, winograd=False))), frames, mask)
    winograd = None if forced in ("winograd", None) else False
    tuned_segmenter = Segmenter(prepare(model, PrepareOptions(tune=True, winograd=winograd)))
    tuned = _labels(tuned_segmenter, frames, mask)
    tuner = tuned_segmenter.model.Encoder.conv1.tuner
    chosen = {c.algorithm(tuner.strategy()) for _, _, c in tuner.seen}
    if forced is not None:
        assert forced in chosen
    same = np.mean([np.mean(a == b) for a, b in zip(tuned, untuned)])
    assert same >= 0.999, same
    assert (tmp_path / "swiftcuda").is_dir() and any((tmp_path / "swiftcuda").iterdir())


def test_tune_false_and_gpu_models_keep_plain_convolutions():
    model = lively_random_init(SwiftNet(), seed=1).eval()
    untuned = Segmenter(prepare(model, PrepareOptions(tune=False))).model
    assert not any(isinstance(m, T.TunedConv2d) for m in untuned.modules())
    tuned = Segmenter(model).model
    assert sum(isinstance(m, T.TunedConv2d) for m in tuned.modules()) > 20
    assert os.environ["XDG_CACHE_HOME"]  # the tests never touch the user's cache (tests/conftest.py)


def test_tune_command_measures_then_reads_the_cache(tmp_path, monkeypatch, capsys):
    from swiftcuda.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["tune", "--size", "40x56", "--objects", "2", "--precision", "fp32"]) == 0
    first = capsys.readouterr().out
    assert "### Convolution algorithms, SwiftNet-R18, float32, 40x56, 2 object(s)" in first
    assert "CPU: " in first and "native bfloat16: " in first
    assert "| Encoder.conv1 | conv 3->64 7x7 s2" in first and "| measured now |" in first
    assert "with the fixed rule (the untuned engine)" in first and "model strategy: " in first
    cache_files = list((tmp_path / "swiftcuda").glob("conv-tuning-*.json"))
    assert len(cache_files) == 1
    recorded = json.loads(cache_files[0].read_text())["choices"]

    assert main(["tune", "--size", "40x56", "--objects", "2", "--precision", "fp32"]) == 0
    second = capsys.readouterr().out
    assert "| measured now |" not in second and "| cache |" in second and "(0 measured now" in second

    assert main(["tune", "--size", "40x56", "--objects", "2", "--precision", "fp32", "--fresh"]) == 0
    assert "| cache |" not in capsys.readouterr().out
    # merged into the file: new measurements may choose other layouts upstream, so keys are added
    assert set(json.loads(cache_files[0].read_text())["choices"]) >= set(recorded)


def test_tune_command_says_which_convolutions_are_fused_and_untuned(tmp_path, monkeypatch, capsys):
    from swiftcuda.cli import main
    from swiftcuda.optimize.fused_conv import pointwise_fusion_available

    if not pointwise_fusion_available(torch.bfloat16):
        pytest.skip("oneDNN cannot fuse bfloat16 convolutions on this CPU")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["tune", "--size", "40x56", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    # The trunk's blocks are fused (the stem with them); the key and value heads stay tuned.
    assert "| Encoder.conv1 |" not in out and "| KV_Q_r4.Key |" in out
    fused = int(out.split("more convolutions run with their ReLU and residual add fused")[0].split()[-1])
    assert fused > 20
    assert main(["tune", "--size", "40x56", "--precision", "fp32"]) == 0
    assert "fused into one oneDNN call" not in capsys.readouterr().out


def test_tune_command_refuses_a_tiny_frame(capsys):
    from swiftcuda.cli import main

    assert main(["tune", "--size", "8x8"]) == 2
    assert "too small" in capsys.readouterr().err


def test_training_keeps_the_plain_convolution(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "measure_ms", lambda runs: pytest.fail("tuned while training"))
    conv = nn.Conv2d(4, 3, 3, padding=1)  # trainable weights, grad mode on
    tuned = T.TunedConv2d(conv, _tuner(tmp_path))
    x = torch.randn(1, 4, 6, 7)
    out = tuned(x)
    out.sum().backward()
    assert conv.weight.grad is not None


def test_an_unwritable_cache_folder_only_loses_persistence(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    cache = T.TuningCache(blocker / "tuning.json")
    with caplog.at_level(logging.WARNING, logger="swiftcuda.optimize.conv_tuning"):
        cache.put("k", T.Choice({"fixed": {"as_is": 1.0}, "channels_last": {"nchw": 1.0}, "nchw": {"nchw": 1.0}}))
        cache.put("j", T.Choice({"fixed": {"as_is": 1.0}, "channels_last": {"nchw": 1.0}, "nchw": {"nchw": 1.0}}))
    assert set(cache.choices) == {"k", "j"} and not cache.persist
    assert sum("cannot write the convolution tuning cache" in r.getMessage() for r in caplog.records) == 1
