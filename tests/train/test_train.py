"""Training: the loss goes down, and resuming from a checkpoint gives the same next step."""

from __future__ import annotations

import shutil

import pytest
import torch

from swiftcuda.cli import main
from swiftcuda.data import make_testset
from swiftcuda.train import ClipOptions, TrainOptions, export_weights, train
from swiftcuda.weights import load_model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "set"
    make_testset(root, sequences=["dog", "camel"], seed=1, max_frames=6, size=(48, 80))
    return root


def tiny_options(**changes) -> TrainOptions:
    clip = ClipOptions(
        length=3, max_skip=2, crop=(48, 64), max_objects=2, scale_range=(1.0, 1.0), flip=False, colour_jitter=0.0
    )
    defaults = dict(steps=12, batch_size=2, clip=clip, lr=1e-3, warmup=1, save_every=4, seed=3)
    defaults.update(changes)
    return TrainOptions(**defaults)


def test_loss_goes_down(data, tmp_path):
    losses = train([data], tmp_path / "run", tiny_options(), progress=False)
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    # The final weights are a checkpoint the engine loads.
    model = load_model(tmp_path / "run" / "model.pt")
    assert not model.training


def test_loss_goes_down_with_the_matching_loss(data, tmp_path):
    losses = train([data], tmp_path / "run", tiny_options(matching_loss=1.0), progress=False)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_resume_gives_the_same_next_step(data, tmp_path):
    options = tiny_options(steps=5, save_every=4)
    straight = train([data], tmp_path / "straight", options, progress=False)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(tmp_path / "straight" / "step-0000004.pt", resumed_dir / "last.pt")
    resumed = train([data], resumed_dir, options, resume=True, progress=False)
    assert resumed == straight[4:], "step 5 must repeat exactly"
    final = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    again = torch.load(resumed_dir / "model.pt", weights_only=True)
    for name, tensor in final.items():
        assert torch.equal(tensor, again[name]), name


def test_workers_train_the_same_clips(data, tmp_path):
    """Clips drawn ahead in worker processes are the in-process clips, step for step."""
    options = tiny_options(steps=5, save_every=4)
    in_process = train([data], tmp_path / "in_process", options, progress=False)
    with_workers = train([data], tmp_path / "workers", tiny_options(steps=5, save_every=4, workers=2), progress=False)
    assert with_workers == in_process
    # Resuming with workers starts the loader at the checkpoint's step.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(tmp_path / "in_process" / "step-0000004.pt", resumed_dir / "last.pt")
    resumed = train([data], resumed_dir, tiny_options(steps=5, save_every=4, workers=1), resume=True, progress=False)
    assert resumed == in_process[4:]


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--crop",
        "48x64",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert main(args) == 2 and "pass --resume" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "other"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "x"), "--steps", "1"]) == 2
    assert "not in the DAVIS layout" in capsys.readouterr().err


def test_cli_clip_options_are_recorded(data, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--crop",
        "48x64",
        "--device",
        "cpu",
        "--matching-loss",
        "0.5",
        "--scale-range",
        "0.6,0.9",
        "--no-colour-shuffle",
        "--keep",
        "3",
    ]
    assert main(args) == 0
    recorded = json.loads((out / "train.json").read_text())["options"]
    assert recorded["clip"]["scale_range"] == [0.6, 0.9] and recorded["clip"]["colour_shuffle"] is False
    assert recorded["keep"] == 3 and recorded["matching_loss"] == 0.5
    assert main(args[:4] + [str(tmp_path / "neg"), "--matching-loss", "-1"]) == 2
    assert "--matching-loss -1.0 is negative" in capsys.readouterr().err
    assert main(args[:4] + [str(tmp_path / "neg2"), "--workers", "-2"]) == 2
    assert "--workers -2 is negative" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args[:-5] + ["--scale-range", "1.2,0.5"])
    assert "0 < LOW <= HIGH" in capsys.readouterr().err


def test_fine_tune_from_weights(data, tmp_path):
    """Fine-tuning starts from the given weights, the batch-norm statistics frozen: with lr=0 every
    weight and statistic stays exactly as given; with lr>0 the weights move one optimiser step away
    from them (not from the trainer's own seeded initialisation) and the statistics stay."""
    given = load_model_state()
    # Statistics unlike a fresh model's zeros and ones, so that keeping them (not resetting or
    # updating them) shows.
    generator = torch.Generator().manual_seed(1)
    for name, tensor in given.items():
        if name.endswith("running_mean"):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
        elif name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    init = tmp_path / "init.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in given.items()}}, init)

    options = tiny_options(steps=1, lr=0.0, freeze_bn=True)
    assert len(train([data], tmp_path / "still", options, init=init, progress=False)) == 1
    still = torch.load(tmp_path / "still" / "model.pt", weights_only=True)
    assert still.keys() == given.keys()
    for name, tensor in given.items():
        assert torch.equal(still[name], tensor), f"{name} changed with lr=0"

    lr = 1e-3
    options = tiny_options(steps=1, lr=lr, warmup=1, freeze_bn=True)  # the first step at the full lr
    assert len(train([data], tmp_path / "moved", options, init=init, progress=False)) == 1
    moved = torch.load(tmp_path / "moved" / "model.pt", weights_only=True)
    from swiftcuda import SwiftNet

    torch.manual_seed(options.seed)
    parameters = dict(SwiftNet().named_parameters())
    own_start = {name: tensor.detach() for name, tensor in parameters.items()}
    steps = {name: (moved[name] - given[name]).abs().max().item() for name in parameters}
    # AdamW's first step moves each weight by at most about lr (plus the decay, lr x 1e-4 x |w|).
    assert max(steps.values()) <= 1.5 * lr, max(steps.items(), key=lambda item: item[1])
    assert sum(step > 0 for step in steps.values()) > len(steps) // 2, "most weights must move with lr > 0"
    assert max((own_start[name] - given[name]).abs().max().item() for name in parameters) > 100 * lr, (
        "the trainer's own initialisation must be far from the given weights (else this proves nothing)"
    )
    for name, tensor in given.items():
        if "running_" in name or name.endswith("num_batches_tracked"):
            assert torch.equal(moved[name], tensor), f"frozen statistic {name} changed"


def load_model_state():
    from swiftcuda import SwiftNet

    torch.manual_seed(0)
    return SwiftNet().state_dict()


def test_export_half_precision_weights(data, tmp_path):
    train([data], tmp_path / "run", tiny_options(steps=1), progress=False)
    path = export_weights(tmp_path / "run" / "last.pt", tmp_path / "demo.pt")
    state = torch.load(path, weights_only=True)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    assert load_model(path).config.variant == "r18"
