"""The per-frame step exported to ONNX, run on ONNX Runtime (CPU), against the torch engine.

One export per module (``swiftcuda export --onnx``, demo weights, traced at 96x128 with a small
capacity); ``segment --runtime onnx`` exports once more into a fresh cache on its first use.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from swiftcuda import PamOptions, PrepareOptions, Segmenter, load_model, prepare
from swiftcuda.cli import main
from swiftcuda.errors import InputError
from swiftcuda.io import read_mask, write_mask
from swiftcuda.weights import DEMO, demo_weights_path
from tests.cli.test_segment import assert_refused, write_frames
from tests.videos import make_video

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install swiftcuda[onnx]")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install swiftcuda[onnx]")
pytestmark = pytest.mark.skipif(not demo_weights_path().is_file(), reason="the demo weights are not in this checkout")

from swiftcuda.onnx import SIDECAR, OnnxSegmenter  # noqa: E402  (after the extra's check)
from swiftcuda.onnx.cache import cache_folder  # noqa: E402

HEIGHT, WIDTH, FRAMES = 96, 128, 20
GRID_PIXELS = (HEIGHT // 16) * (WIDTH // 16)  # 48 memory pixels per frame
#: Three frames: the frame-7 mask that names object 1 again keeps a second frame of it in full
#: (the given frames must leave room for one more), and with an update at every frame
#: (mem_every=1) object 1's memory overflows from frame 11 on, evicting after its given frames.
CAPACITY = 3 * GRID_PIXELS
MEM_EVERY = 1
LATE_FRAME = 7
GRAPHS = ("encode_query", "read_and_decode", "encode_memory", "update_memory")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "step"
    args = ["export", "--onnx", folder, "--size", f"{HEIGHT}x{WIDTH}", "--objects", "2", "--capacity", CAPACITY]
    assert main([str(a) for a in args]) == 0
    return folder


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO, dtype=torch.float32)


@pytest.fixture(scope="module")
def video():
    return make_video(
        num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1, 2, 3), appear={3: LATE_FRAME}, seed=3
    )


def given_masks(video) -> dict[int, np.ndarray]:
    """Frame 0's mask, and at LATE_FRAME a mask introducing object 3 and naming object 1 again."""
    late = video.labels[LATE_FRAME]
    return {0: video.labels[0], LATE_FRAME: np.where(np.isin(late, (1, 3)), late, 0)}


def test_export_writes_checked_standard_graphs_and_a_sidecar(exported):
    sidecar = json.loads((exported / SIDECAR).read_text())
    ops = {}
    for name in GRAPHS:
        graph = onnx.load(str(exported / f"{name}.onnx"))
        onnx.checker.check_model(graph, full_check=True)
        assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}, "only standard ONNX operators"
        ops[name] = {node.op_type for node in graph.graph.node}
        described = sidecar["graphs"][name]
        assert [v["name"] for v in described["inputs"]] == [v.name for v in graph.graph.input]
        assert [v["name"] for v in described["outputs"]] == [v.name for v in graph.graph.output]
    assert {"MatMul", "Softmax"} <= ops["read_and_decode"], "the memory read as MatMul and Softmax"
    assert {"TopK", "ScatterElements", "GatherElements"} <= ops["update_memory"], "the top-beta update"
    frame = sidecar["graphs"]["encode_query"]["inputs"][0]
    assert (
        frame["name"] == "frame"
        and frame["shape"][:2] == [1, 3]
        and all(isinstance(d, str) for d in frame["shape"][2:])
    )
    state = {entry["name"]: entry for entry in sidecar["state"]}
    assert state["long_term_keys"]["shape"] == ["O", 32, "N"] and state["previous_values"]["shape"] == [
        "O",
        128,
        "h",
        "w",
    ]
    assert state["long_term_length"]["dtype"] == "int64" and state["long_term_keys"]["dtype"] == "float32"
    update_inputs = {v["name"] for v in sidecar["graphs"]["update_memory"]["inputs"]}
    assert set(state) <= update_inputs and sidecar["capacity"] == CAPACITY and sidecar["precision"] == "fp32"
    assert sidecar["protocol"], "the sidecar says how to run a step"


def assert_same_steps(reference: Segmenter, exported_runner: OnnxSegmenter, frames, masks) -> list[list[int]]:
    """Step both through ``frames``: probabilities within 1e-4, >= 99.9% of labels, the same
    memory updates. Returns the long-term lengths after each frame."""
    lengths = []
    for index, frame in enumerate(frames):
        expected = reference.step(frame, mask=masks.get(index))
        got = exported_runner.step(frame, mask=masks.get(index))
        assert got.shape == expected.shape and got.dtype == torch.float32
        difference = (got - expected.cpu()).abs().max().item()
        assert difference <= 1e-4, f"frame {index}: probabilities differ by {difference:.2e}"
        agree = (exported_runner.to_labels(got) == reference.to_labels(expected).cpu()).float().mean().item()
        assert agree >= 0.999, f"frame {index}: {agree:.4%} of labels agree"
        assert exported_runner.long_term_lengths == reference.long_term_lengths, f"frame {index}"
        assert exported_runner.last_memorized == reference.last_memorized, f"frame {index}"
        lengths.append(exported_runner.long_term_lengths)
    assert exported_runner.object_ids == reference.object_ids
    return lengths


def test_step_reproduces_the_engine_frame_by_frame(exported, model, video):
    """Official schedule, a late object, a re-given object and capacity eviction."""
    reference = Segmenter(
        prepare(model, PrepareOptions(tune=False)), capacity=CAPACITY, mem_every=MEM_EVERY, internal_size=None
    )
    runner = OnnxSegmenter(exported, capacity=CAPACITY, mem_every=MEM_EVERY, internal_size=None)
    lengths = assert_same_steps(reference, runner, video.frames, given_masks(video))
    novel = 5  # of 48 pixels, beta = 0.1
    assert runner.object_ids == (1, 2, 3) and lengths[LATE_FRAME] == [78, 78, 0], "frame 0 in full, frames 1-6 novel"
    assert lengths[LATE_FRAME + 1] == [78 + GRID_PIXELS, 78 + novel, GRID_PIXELS], "object 1 memorised in full again"
    assert lengths[-1] == [CAPACITY, 83 + 11 * novel, GRID_PIXELS + 11 * novel], "object 1 full and evicting"
    # The memory itself: every valid long-term entry equals the engine's, eviction order included.
    state, store = runner.state, reference.memory
    for obj, length in enumerate(lengths[-1]):
        for name, buffer in (("long_term_keys", store.keys), ("long_term_values", store.values)):
            expected = buffer[obj, :, store.frame_pixels : store.frame_pixels + length].numpy()
            np.testing.assert_allclose(state[name][obj, :, :length], expected, atol=1e-4, rtol=1e-4)
    assert list(state["first_length"]) == [2 * GRID_PIXELS, GRID_PIXELS, GRID_PIXELS], "given frames are kept"


def test_pam_trigger_decided_by_the_runner(exported, model, video):
    pam = PamOptions(max_gap=3)
    reference = Segmenter(prepare(model, PrepareOptions(tune=False)), memory="pam", pam=pam, internal_size=None)
    runner = OnnxSegmenter(exported, memory="pam", pam=pam, internal_size=None)
    lengths = assert_same_steps(reference, runner, video.frames[:8], {0: video.labels[0]})
    assert lengths[-1][0] > GRID_PIXELS, "the trigger fired and the runner updated the memory"


def test_segment_runtime_onnx_exports_once_and_matches_torch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # first use: nothing cached
    # Another size than the export's (dynamic shapes), padded to 80x112.
    small = make_video(num_frames=5, height=75, width=101, object_ids=(1, 3), seed=6)
    frames = write_frames(tmp_path / "frames", small.frames)
    mask = tmp_path / "first.png"
    write_mask(mask, small.labels[0].astype(np.uint8))

    def segment(out, runtime):
        common = [
            "--mask",
            mask,
            "--out",
            tmp_path / out,
            "--no-tune",
            "--precision",
            "fp32",
            "--internal-size",
            "none",
            "--runtime",
            runtime,
        ]
        assert main(["segment", str(frames), *map(str, common)]) == 0
        return capsys.readouterr().err

    segment("torch", "torch")
    assert "exporting the model to ONNX once" in segment("onnx", "onnx")
    assert "exporting" not in segment("again", "onnx"), "the cached export is reused"
    assert (cache_folder(load_model(DEMO, dtype=torch.float32), "fp32") / SIDECAR).is_file()
    for index in range(5):
        expected = read_mask(tmp_path / "torch" / f"{index:05d}.png")
        for out in ("onnx", "again"):
            assert (read_mask(tmp_path / out / f"{index:05d}.png") == expected).mean() >= 0.999


def test_bad_input_is_one_line(tmp_path, exported, capsys, monkeypatch, video):
    out = tmp_path / "out"

    def export(*args) -> int:
        return main(["export", "--onnx", str(out), *map(str, args)])

    assert_refused(capsys, export("--size", "100x128"), "multiples of 16", out)
    assert_refused(capsys, export("--size", "96x128", "--capacity", "50"), "use --capacity 96 or more", out)
    with pytest.raises(SystemExit):
        export("--precision", "bf16")  # argparse: not a choice (ONNX Runtime has no bfloat16 convolutions)
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code = export("--size", "96x128")
    assert code == 2 and "already exists: pass --overwrite" in capsys.readouterr().err and (out / "mine.txt").exists()

    def last_error_line() -> str:
        error = capsys.readouterr().err.strip().splitlines()
        assert not any("Traceback" in line for line in error)
        return error[-1]

    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxscript", None)  # as if the extra were not installed
        assert export("--size", "96x128") == 2
        assert last_error_line() == (
            "swiftcuda: error: exporting to ONNX needs the onnxscript package, which is not installed: "
            "pip install swiftcuda[onnx]"
        )
    frames = write_frames(tmp_path / "frames", video.frames[:2])
    first = tmp_path / "first.png"
    write_mask(first, video.labels[0].astype(np.uint8))
    segment = ["segment", str(frames), "--mask", str(first), "--out", str(tmp_path / "masks"), "--runtime", "onnx"]
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)
        with pytest.raises(
            InputError, match=r"needs the onnxruntime package, which is not installed: pip install swiftcuda\[onnx\]"
        ):
            OnnxSegmenter(exported)
        assert main(segment) == 2 and last_error_line().endswith("pip install swiftcuda[onnx]")
    assert main([*segment, "--precision", "bf16"]) == 2 and "no bfloat16 convolutions" in last_error_line()
    assert not (tmp_path / "masks").exists()

    with pytest.raises(InputError, match="not a swiftcuda ONNX export"):
        OnnxSegmenter(tmp_path)
    runner = OnnxSegmenter(exported, capacity=50, internal_size=None)
    with pytest.raises(InputError, match="the first frame needs a mask"):
        runner.step(video.frames[0])
    with pytest.raises(InputError, match="at least 96"):
        runner.step(video.frames[0], mask=video.labels[0])
