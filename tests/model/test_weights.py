"""Loading checkpoints: the official layout, its wrappers and prefixes, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import swiftcuda
from swiftcuda import SwiftNet, WeightsError, load_model

#: Every tensor name and shape of the official swiftnet_resnet18_old.pth (without "module.").
OFFICIAL_KEYS = Path(__file__).parent / "swiftnet_r18_official_state_dict.json"


def official_like_checkpoint(prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Random tensors with every name and shape of the official checkpoint."""
    shapes = json.loads(OFFICIAL_KEYS.read_text())
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[prefix + name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[prefix + name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[prefix + name] = torch.randn(shape, generator=generator) * 0.05
    return state


def test_model_has_the_official_layout():
    shapes = json.loads(OFFICIAL_KEYS.read_text())
    model_shapes = {name: list(tensor.shape) for name, tensor in SwiftNet("r18").state_dict().items()}
    assert model_shapes == shapes


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_official_checkpoint_loads_strictly(tmp_path, wrapper, prefix):
    state = official_like_checkpoint(prefix)
    path = tmp_path / "swiftnet_resnet18_old.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    model = load_model(path, dtype=torch.float32)
    assert not model.training
    name = "LAE.conv2_m.weight"
    assert torch.equal(model.state_dict()[name], state[prefix + name])


def test_dtype_and_device(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(SwiftNet().state_dict(), path)
    model = load_model(path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    if not torch.cuda.is_available():
        with pytest.raises(swiftcuda.InputError, match="no CUDA GPU"):
            load_model(path, device="cuda")


def test_r50_builds_the_paper_layout(tmp_path):
    model = SwiftNet("r50")
    state = model.state_dict()
    assert state["Encoder.res4.0.conv3.weight"].shape[0] == 1024
    assert state["KV_M_r4.Key.weight"].shape[:2] == (128, 1024)
    assert state["KV_M_r4.Value.weight"].shape[:2] == (512, 1024)
    path = tmp_path / "r50.pth"
    torch.save(state, path)
    assert load_model(path, variant="r50").config.variant == "r50"


def test_other_variant_is_named(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(SwiftNet("r50").state_dict(), path)
    with pytest.raises(WeightsError, match="SwiftNet-R50 checkpoint .* pass variant='r50'"):
        load_model(path)
    path18 = tmp_path / "r18.pth"
    torch.save(SwiftNet("r18").state_dict(), path18)
    with pytest.raises(WeightsError, match="SwiftNet-R18 checkpoint .* pass variant='r18'"):
        load_model(path18, variant="r50")


def test_wrong_shape_missing_and_unexpected_are_named(tmp_path):
    state = SwiftNet().state_dict()
    state["Decoder.pred2.weight"] = torch.zeros(3, 64, 3, 3)
    del state["aspp.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_model(path)
    message = str(error.value)
    assert "missing aspp.conv1.weight" in message
    assert "unexpected extra.weight" in message
    assert "Decoder.pred2.weight (3, 64, 3, 3) (expected (2, 64, 3, 3))" in message


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(WeightsError, match="is not a PyTorch checkpoint"):
        load_model(garbage)
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_model(tmp_path / "absent.pth")
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(WeightsError, match="holds no SwiftNet weights"):
        load_model(not_a_state_dict)


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a checkpoint that pickles arbitrary objects is not executed."""
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": SwiftNet().state_dict(), "config": _Config()}, path)
    with pytest.raises(WeightsError, match="holds Python objects besides tensors") as error:
        load_model(path)
    assert "weights_only" not in str(error.value), "never suggest the unsafe weights_only=False"


class _Config:
    pass
