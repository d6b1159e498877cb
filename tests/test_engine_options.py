"""One typed options object for the engine, the builders that turn it into a segmenter, and model
preparation apart from streaming: what each builds, what each refuses, and that a prepared model
runs as it is."""

from __future__ import annotations

import argparse
import pickle

import pytest
import torch

import swiftcuda
from swiftcuda import EngineOptions, InputError, PrepareOptions, Segmenter, build_segmenter, prepare
from swiftcuda.engine import NO_WEIGHTS, build_batched_segmenter, resolve_weights
from swiftcuda.optimize import is_prepared, mark_prepared
from swiftcuda.optimize.conv_tuning import TunedConv2d
from swiftcuda.weights import DEMO, DEMO_NOTICE
from tests.models import random_swiftnet
from tests.videos import make_video


@pytest.fixture(scope="module")
def model():
    return random_swiftnet(seed=5)


@pytest.fixture(scope="module")
def video():
    return make_video(num_frames=5, height=48, width=64, object_ids=(1, 2), seed=7)


def _probs(segmenter, video) -> torch.Tensor:
    probs = [segmenter.step(video.frames[0], mask=video.labels[0])]
    probs += [segmenter.step(frame) for frame in video.frames[1:]]
    return torch.stack(probs)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("variant", "r34", "variant must be one of 'r18', 'r50', not 'r34'"),
        ("precision", "fp8", "precision must be one of 'auto', 'fp32', 'fp16', 'bf16', not 'fp8'"),
        ("memory", "lstm", "memory must be one of 'official', 'pam', not 'lstm'"),
        ("mem_every", 0, "mem_every must be a positive integer, not 0"),
        ("capacity", -5, "capacity must be a positive integer, not -5"),
        ("capacity", 2.5, "capacity must be a positive integer, not 2.5"),
        ("beta", 0.0, "beta must be a fraction in (0, 1], not 0.0"),
        ("beta", 1.5, "beta must be a fraction in (0, 1], not 1.5"),
        ("backend", "fast", "backend must be one of"),
        ("internal_size", 8, "internal size 8 is too small"),
        ("internal_size", "big", "internal size 'big' is not understood"),
        ("cuda_graphs", "yes", "cuda_graphs must be True, False or None, not 'yes'"),
        ("compile", None, "compile must be True or False, not None"),
        ("tune", 1, "tune must be True or False, not 1"),
        ("runtime", "tensorrt", "runtime must be one of 'torch', 'onnx', not 'tensorrt'"),
        ("device", "mps", "device 'mps' is not supported: use 'cpu' or 'cuda'"),
        ("device", "gpu", "unknown device 'gpu'"),
        ("weights", 3, "weights must be a checkpoint path, 'demo' or None, not 3"),
        ("pam", {"max_gap": 3}, "pam must be a PamOptions or None"),
    ],
)
def test_a_bad_field_is_one_error_naming_it(field, value, message):
    with pytest.raises(InputError) as raised:
        EngineOptions(**{field: value})
    assert isinstance(raised.value, ValueError) and str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_options_are_plain_comparable_data(tmp_path):
    options = EngineOptions(weights=tmp_path / "w.pth", device=torch.device("cpu"), internal_size=[96, 128])
    assert options.weights == str(tmp_path / "w.pth") and options.device == "cpu" and options.internal_size == (96, 128)
    assert pickle.loads(pickle.dumps(options)) == options and hash(options) == hash(pickle.loads(pickle.dumps(options)))
    with pytest.raises(AttributeError):
        options.memory = "pam"  # frozen
    assert options.replace(memory="pam").memory == "pam" and options.memory == "official"
    with pytest.raises(InputError, match="mem_every"):
        options.replace(mem_every=-1)
    assert EngineOptions(winograd=False, tune=False, compile=False).prepare_options == PrepareOptions(
        winograd=False, tune=False
    )
    assert EngineOptions().stream_options(torch.device("cuda"))["cuda_graphs"] is True
    assert EngineOptions().stream_options(torch.device("cpu"))["cuda_graphs"] is False
    assert EngineOptions(cuda_graphs=False).stream_options(torch.device("cuda"))["cuda_graphs"] is False


def test_the_package_exports_the_new_api():
    for name in ("EngineOptions", "PrepareOptions", "build_segmenter", "build_batched_segmenter", "prepare"):
        assert name in swiftcuda.__all__ and hasattr(swiftcuda, name)


def test_build_segmenter_is_the_segmenter_the_options_describe(model, video):
    options = EngineOptions(memory="pam", capacity=200, internal_size=None, tune=False, winograd=False)
    built = build_segmenter(options, model)
    assert isinstance(built, Segmenter) and built.memory_mode == "pam" and built.capacity == 200
    assert is_prepared(built.model) and not is_prepared(model), "the caller's model is left alone"
    assert not any(isinstance(m, TunedConv2d) for m in built.model.modules())
    by_hand = Segmenter(
        prepare(model, PrepareOptions(tune=False, winograd=False)), memory="pam", capacity=200, internal_size=None
    )
    assert torch.equal(_probs(built, video), _probs(by_hand, video))


def test_a_segmenter_prepares_a_model_that_is_not_prepared_and_runs_one_that_is(model):
    default = Segmenter(model)
    assert default.model is not model and is_prepared(default.model)
    assert isinstance(default.model.Encoder.bn1, torch.nn.Identity), "batch norms folded"
    assert isinstance(model.Encoder.bn1, torch.nn.BatchNorm2d), "the caller's model is not modified"
    prepared = prepare(model, PrepareOptions(tune=False))
    assert Segmenter(prepared).model is prepared
    assert build_segmenter(EngineOptions(tune=True), prepared).model is prepared, "a prepared model runs as it is"
    plain = mark_prepared(random_swiftnet(seed=6))
    assert Segmenter(plain).model is plain and isinstance(plain.Encoder.bn1, torch.nn.BatchNorm2d)


def test_preparation_refuses_a_prepared_model_and_bad_options(model):
    with pytest.raises(ValueError, match="already prepared"):
        prepare(prepare(model, PrepareOptions(tune=False)))
    with pytest.raises(ValueError, match=r"PrepareOptions\.tune must be True or False"):
        PrepareOptions(tune=None)
    with pytest.raises(ValueError, match=r"PrepareOptions\.winograd must be None, True or False"):
        PrepareOptions(winograd="yes")


def test_a_batched_session_refuses_what_it_cannot_run(model):
    for options, message in (
        (EngineOptions(cuda_graphs=True), "does not capture CUDA graphs"),
        (EngineOptions(compile=True), "compile=True"),
        (EngineOptions(runtime="onnx"), "torch runtime"),
    ):
        with pytest.raises(InputError, match=message):
            build_batched_segmenter(options, 2, model)
    batch = build_batched_segmenter(EngineOptions(tune=False, capacity=99), 2, model)
    assert len(batch) == 2 and all(s.capacity == 99 and s.model is batch.streams[0].model for s in batch.streams)
    assert batch.streams[0]._graphs is None


def test_without_weights_the_demo_weights_are_announced_or_missing(monkeypatch, tmp_path):
    said = []
    assert resolve_weights(EngineOptions(), said.append).weights == DEMO and said == [DEMO_NOTICE]
    assert resolve_weights(EngineOptions(weights="mine.pth"), said.append).weights == "mine.pth" and len(said) == 1
    monkeypatch.setattr("swiftcuda.engine.demo_weights_path", lambda: tmp_path / "absent.pt")
    with pytest.raises(InputError) as raised:
        resolve_weights(EngineOptions(), said.append)
    assert str(raised.value) == NO_WEIGHTS and len(said) == 1


def test_the_command_line_converts_its_arguments_once():
    from swiftcuda.cli._arguments import add_engine_arguments, engine_options

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert engine_options(parser.parse_args([])) == EngineOptions()
    args = parser.parse_args(
        [
            "--weights",
            "w.pth",
            "--variant",
            "r50",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--memory",
            "pam",
            "--mem-every",
            "3",
            "--capacity",
            "50",
            "--internal-size",
            "96x128",
            "--backend",
            "reference",
            "--compile",
            "--direct-convolutions",
            "--no-tune",
        ]
    )
    assert engine_options(args) == EngineOptions(
        weights="w.pth",
        variant="r50",
        device="cpu",
        precision="fp32",
        memory="pam",
        mem_every=3,
        capacity=50,
        internal_size=(96, 128),
        backend="reference",
        compile=True,
        winograd=False,
        tune=False,
    )
