"""What a new user meets first: every bad input is one line on stderr and exit status 2, and the
rough edges found by trying the command line as a newcomer stay smoothed.

In-process runs see the command's own stderr (``capsys``) and its log records (``caplog``: under
pytest the log lines go there, not to stderr); the few subprocess runs see the real stream.
"""

from __future__ import annotations

import ast
import logging
import pickle
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import swiftcuda
from swiftcuda.cli import build_parser, main
from swiftcuda.errors import FrameReadError, InputError, WeightsError
from swiftcuda.io import read_mask, read_object_mask, write_mask
from swiftcuda.io.frames import FrameSource
from swiftcuda.weights import demo_weights_path, load_model
from tests.cli.test_segment import write_frames
from tests.models import random_swiftnet
from tests.videos import make_video, undecodable_png

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH, FRAMES = 40, 56, 5


@pytest.fixture(scope="module")
def video():
    return make_video(num_frames=FRAMES, height=HEIGHT, width=WIDTH, object_ids=(1, 2), seed=11)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save(random_swiftnet(seed=4).state_dict(), path)
    return path


@pytest.fixture
def inputs(tmp_path, video):
    frames = write_frames(tmp_path / "frames", video.frames)
    mask = tmp_path / "first.png"
    write_mask(mask, video.labels[0].astype(np.uint8))
    return frames, mask


def cli(capsys, *argv) -> tuple[int, list[str]]:
    """Run the command line in this process: (exit status, stderr lines but the progress bar's)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's own exits
        code = stop.code
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    return code, [line for line in lines if line.strip() and not re.match(r"\w+: +\d+%\|", line)]


def assert_one_line(code: int, lines: list[str], *fragments: str, prefix: str = "swiftcuda") -> str:
    """Exit status 2, and exactly one line on stderr, naming the command and holding ``fragments``."""
    assert code == 2, lines
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"{prefix}: error: ") or line.startswith(f"{prefix} "), line
    assert "usage:" not in line and "Traceback" not in line
    for fragment in fragments:
        assert fragment in line, line
    return line


# -- parser errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--capacity", "-5"], "argument --capacity: must be a positive integer, got -5"),
        (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
        (["--mem-every", "0"], "argument --mem-every: must be a positive integer, got 0"),
        (["--internal-size", "3x4x5"], "argument --internal-size: internal size '3x4x5'"),
        (["--internal-size", "8"], "is too small"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_parser_errors_are_one_line(capsys, option, fragment):
    code, lines = cli(capsys, "segment", "frames", "--mask", "m.png", "--out", "o", *option)
    line = assert_one_line(code, lines, fragment, prefix="swiftcuda segment")
    assert line.startswith("swiftcuda segment: error: ") and line.endswith("(see `swiftcuda segment --help`)")


def test_missing_arguments_and_unknown_commands_are_one_line(capsys):
    code, lines = cli(capsys, "segment", "frames")
    assert_one_line(code, lines, "required: --mask, --out", prefix="swiftcuda segment")
    code, lines = cli(capsys)
    assert_one_line(code, lines, "required: COMMAND", prefix="swiftcuda")
    code, lines = cli(capsys, "segmnet")
    assert_one_line(code, lines, "invalid choice: 'segmnet'", prefix="swiftcuda")


def test_every_subcommand_reports_parser_errors_in_one_line(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert {"segment", "eval", "bench", "info", "make-testset", "train", "export", "tune"} <= set(commands)
    for command in commands:
        # Commands with required arguments report those first; either way, one line naming the command.
        code, lines = cli(capsys, command, "--no-such-option")
        assert_one_line(code, lines, prefix=f"swiftcuda {command}")
        assert lines[0].startswith(f"swiftcuda {command}: error: "), "the subcommand is named, not the top level"
        assert "--no-such-option" in lines[0] or "required" in lines[0], lines


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["segment", "--help"])
    assert stop.value.code == 0 and "usage: swiftcuda segment" in capsys.readouterr().out


def test_console_entry_point_prints_one_line(tmp_path):
    """The real process: one line on the real stderr, status 2, for a parser error and a run error."""
    for argv in (
        ["segment", "frames", "--mask", "m.png", "--out", "o", "--capacity", "-5"],
        ["info", "--weights", str(tmp_path / "absent.pth")],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "swiftcuda", *argv], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr


# -- checkpoints ----------------------------------------------------------------------------------


class _Settings:
    pass


def _bad_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say)."""
    folder.mkdir(exist_ok=True)
    text = folder / "notes.pth"
    text.write_text("these are not weights\n")
    empty = folder / "empty.pth"
    empty.write_bytes(b"")
    whole = folder / "list.pth"
    torch.save([torch.ones(2)], whole)
    truncated = folder / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:60])
    objects = folder / "objects.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "settings": _Settings()}, objects)
    plain_pickle = folder / "pickle.pth"
    plain_pickle.write_bytes(pickle.dumps({"x": object}, protocol=4))
    options = folder / "options.pth"
    torch.save({"epoch": 3, "lr": 0.1}, options)
    foreign = folder / "foreign.pth"
    torch.save({"fc.weight": torch.ones(2, 2), "fc.bias": torch.ones(2)}, foreign)
    return {
        "text": (text, "is not a PyTorch checkpoint"),
        "empty": (empty, "is not a PyTorch checkpoint: the file is empty"),
        "truncated": (truncated, "is not a readable PyTorch checkpoint: its archive is damaged or cut short"),
        "objects": (objects, "holds Python objects besides tensors (tests.cli.test_papercuts._Settings)"),
        "plain pickle": (plain_pickle, "is not a PyTorch checkpoint: it is a Python pickle"),
        "a list": (whole, "holds no SwiftNet weights: it holds a list"),
        "not tensors": (options, "holds no SwiftNet weights"),
        "another model": (foreign, "holds no SwiftNet weights: none of its 2 tensors (fc.weight, fc.bias)"),
    }


def test_checkpoint_errors_in_our_words(tmp_path):
    for name, (path, expected) in _bad_checkpoints(tmp_path / "ckpt").items():
        with pytest.raises(WeightsError) as error:
            load_model(path)
        message = str(error.value)
        assert message.startswith(str(path)) and expected in message, (name, message)
        assert "weights_only" not in message and "\n" not in message, (name, message)


def test_checkpoint_errors_on_the_command_line(tmp_path, inputs, capsys):
    frames, mask = inputs
    for name, (path, expected) in _bad_checkpoints(tmp_path / "ckpt").items():
        code, lines = cli(capsys, "segment", frames, "--mask", mask, "--out", tmp_path / "out", "--weights", path)
        assert_one_line(code, lines, expected)
        assert not (tmp_path / "out").exists(), name


def test_api_errors_name_api_arguments_and_the_cli_its_options(tmp_path, inputs, weights, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError) as error:
        load_model(weights, device="cuda")
    assert "device='cpu'" in str(error.value) and "--device" not in str(error.value)
    with pytest.raises(WeightsError) as error:
        load_model(weights, variant="r50")
    assert "pass variant='r18'" in str(error.value) and "--variant" not in str(error.value)
    frames, mask = inputs
    out = tmp_path / "out"
    code, lines = cli(capsys, "segment", frames, "--mask", mask, "--out", out, "--weights", weights, "--device", "cuda")
    assert_one_line(code, lines, "--device cuda was asked but no CUDA GPU is available here: use --device cpu")
    assert "device=" not in lines[0]
    code, lines = cli(capsys, "segment", frames, "--mask", mask, "--out", out, "--weights", weights, "--variant", "r50")
    assert_one_line(code, lines, "--variant r50 was given: pass --variant r18")
    assert "variant=" not in lines[0]
    # The command line's words survive the trip from a Ray worker (errors are pickled).
    again = pickle.loads(pickle.dumps(InputError("api words", cli_message="cli words")))
    assert str(again) == "api words" and again.command_line_message() == "cli words"


# -- sizes ----------------------------------------------------------------------------------------


def test_make_testset_sizes_are_height_by_width(tmp_path, capsys, caplog):
    from swiftcuda.io.frames import read_image

    assert (
        cli(capsys, "make-testset", "--out", tmp_path / "a", "--sequences", "dog", "--frames", "2", "--size", "36x64")[
            0
        ]
        == 0
    )
    assert read_image(tmp_path / "a" / "JPEGImages" / "480p" / "dog" / "00000.jpg").shape == (36, 64, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # A single number is the shorter side, as for --internal-size.
    assert (
        cli(capsys, "make-testset", "--out", tmp_path / "b", "--sequences", "dog", "--frames", "2", "--size", "36")[0]
        == 0
    )
    assert read_image(tmp_path / "b" / "JPEGImages" / "480p" / "dog" / "00000.jpg").shape == (36, 64, 3)
    # Sizes pasted in the old order turn the landscape sequences on their side: done, with one warning.
    caplog.clear()
    assert (
        cli(
            capsys,
            "make-testset",
            "--out",
            tmp_path / "c",
            "--sequences",
            "dog,camel",
            "--frames",
            "2",
            "--size",
            "64x36",
        )[0]
        == 0
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "turns 2 of the 2 sequences on their side" in warnings[0], warnings


def test_an_internal_size_that_turns_the_video_sideways_is_warned_about(caplog):
    from swiftcuda.inference.rescale import video_scale

    for request in ((HEIGHT, WIDTH + 8), 32, "auto", None, (WIDTH, WIDTH)):
        video_scale(request, HEIGHT, WIDTH)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    video_scale((WIDTH, HEIGHT), HEIGHT, WIDTH)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"internal size {WIDTH}x{HEIGHT} turns the {HEIGHT}x{WIDTH} frames on their side: sizes are height x "
        f"width, so {HEIGHT}x{WIDTH} keeps their orientation"
    ]


def test_the_run_summary_prints_height_by_width(tmp_path, inputs, weights, capsys):
    frames, mask = inputs
    assert (
        main(
            [
                "segment",
                str(frames),
                "--mask",
                str(mask),
                "--out",
                str(tmp_path / "out"),
                "--weights",
                str(weights),
                "--internal-size",
                "32",
            ]
        )
        == 0
    )
    assert f"segmented at 32x45 (--internal-size none for {HEIGHT}x{WIDTH})" in capsys.readouterr().out


def test_the_readme_4k_sizes_are_what_auto_runs_at():
    """The README's statements of what ``auto`` runs a 4K video at, with each kind of weights."""
    from swiftcuda.inference.rescale import choose_internal_size
    from swiftcuda.weights import PAPER_INTERNAL_SIZE, read_checkpoint_info

    docs = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    _, demo_size = read_checkpoint_info(demo_weights_path())
    for recommended in (PAPER_INTERNAL_SIZE, demo_size, None, 1440):
        (height, width), _ = choose_internal_size("auto", 2160, 3840, recommended=recommended)
        assert f"{height}x{width}" in docs, (recommended, height, width)
    assert choose_internal_size("auto", 2160, 3840, recommended=PAPER_INTERNAL_SIZE)[0] == (480, 853)
    assert choose_internal_size("auto", 2160, 3840, recommended=None)[0] == (1080, 1920)


# -- masks ----------------------------------------------------------------------------------------


def test_a_black_and_white_mask_is_object_one(tmp_path, caplog):
    shape = np.zeros((HEIGHT, WIDTH), np.uint8)
    shape[10:30, 12:40] = 1
    gray = tmp_path / "gray.png"
    Image.fromarray(shape * 255, "L").save(gray)
    bilevel = tmp_path / "bilevel.png"
    Image.fromarray(shape * 255, "L").convert("1").save(bilevel)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.repeat(shape[..., None] * 255, 3, axis=2), "RGB").save(rgb)
    assert np.array_equal(read_mask(gray), shape * 255), "read_mask keeps the stored values"
    for path in (gray, rgb):
        caplog.clear()
        assert np.array_equal(read_object_mask(path), shape)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "read as one object with id 1" in warnings[0], warnings
    caplog.clear()
    assert np.array_equal(read_object_mask(bilevel), shape) and not caplog.records, "a 1-bit mask is 0 and 1 already"
    labels = shape * 2
    labels[0, 0] = 255  # DAVIS void beside other objects stays as it is
    write_mask(tmp_path / "labels.png", labels)
    assert np.array_equal(read_object_mask(tmp_path / "labels.png"), labels)


def test_segment_eval_and_segment_many_read_a_black_and_white_mask_as_object_one(
    tmp_path, inputs, weights, capsys, caplog, video
):
    from swiftcuda.data.davis import DavisDataset
    from swiftcuda.many.inputs import read_first_mask

    frames, _ = inputs
    binary = tmp_path / "binary.png"
    Image.fromarray((video.labels[0] == 1).astype(np.uint8) * 255, "L").save(binary)
    out = tmp_path / "out"
    assert cli(capsys, "segment", frames, "--mask", binary, "--out", out, "--weights", weights)[0] == 0
    assert np.array_equal(read_mask(out / "00000.png"), (video.labels[0] == 1).astype(np.uint8))
    assert all(set(np.unique(read_mask(p)).tolist()) <= {0, 1} for p in out.iterdir())
    assert sum("read as one object with id 1" in r.getMessage() for r in caplog.records) == 1
    for mask_format in ("labels", "davis"):
        assert read_first_mask(binary, mask_format).max() == 1
    # A DAVIS-layout set whose annotations are black and white: eval's first mask, and the scores.
    root = tmp_path / "davis"
    write_frames(root / "JPEGImages" / "480p" / "clip", video.frames)
    truth = root / "Annotations" / "480p" / "clip"
    truth.mkdir(parents=True)
    for t, labels in enumerate(video.labels):
        Image.fromarray((labels == 1).astype(np.uint8) * 255, "L").save(truth / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("clip\n")
    sequence = DavisDataset(root, "val").sequence("clip")
    assert np.array_equal(sequence.first_mask(), (video.labels[0] == 1).astype(np.uint8))
    from swiftcuda.metrics.sequence import score_sequence

    results = tmp_path / "results"
    results.mkdir()
    for t, labels in enumerate(video.labels):
        write_mask(results / f"{t:05d}.png", (labels == 1).astype(np.uint8))
    scores = score_sequence(truth, results)
    assert scores.object_ids == (1,) and np.allclose(scores.j, 1.0) and np.allclose(scores.f, 1.0)
    for t, labels in enumerate(video.labels):  # another tool's black and white results read alike
        Image.fromarray((labels == 1).astype(np.uint8) * 255, "L").save(results / f"{t:05d}.png")
    assert np.allclose(score_sequence(truth, results).j, 1.0)


# -- frames ---------------------------------------------------------------------------------------


def test_frames_are_checked_before_the_first_step(tmp_path, inputs, capsys):
    frames, mask = inputs
    (frames / "00003.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
    with pytest.raises(FrameReadError, match="00003.jpg"):
        FrameSource(frames)
    # Before the weights are read: a missing checkpoint would otherwise be the error.
    absent = tmp_path / "absent.pth"
    code, lines = cli(capsys, "segment", frames, "--mask", mask, "--out", tmp_path / "out", "--weights", absent)
    assert_one_line(code, lines, "cannot read frame", "00003.jpg")
    cv2.imwrite(str(frames / "00003.jpg"), np.zeros((HEIGHT, WIDTH + 2, 3), np.uint8))
    with pytest.raises(
        InputError, match=f"frame 00003 is {HEIGHT}x{WIDTH + 2} but the first frame is {HEIGHT}x{WIDTH}"
    ):
        FrameSource(frames)
    assert not (tmp_path / "out").exists()


def test_eval_checks_the_frames_of_every_sequence_before_the_first_step(tmp_path, capsys):
    root = tmp_path / "davis"
    for name in ("good", "broken"):
        write_frames(root / "JPEGImages" / "480p" / name, make_video(4, 32, 40, seed=2).frames)
        (root / "Annotations" / "480p" / name).mkdir(parents=True)
        write_mask(root / "Annotations" / "480p" / name / "00000.png", np.ones((32, 40), np.uint8))
    (root / "JPEGImages" / "480p" / "broken" / "00002.jpg").write_bytes(b"")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("good\nbroken\n")
    code, lines = cli(capsys, "eval", "--davis", root, "--out", tmp_path / "out", "--weights", tmp_path / "absent.pth")
    assert code == 2 and len(lines) == 2, lines
    assert lines[0].startswith("swiftcuda: broken: cannot read frame") and "00002.jpg" in lines[0], lines
    assert lines[1] == (
        "swiftcuda: error: 1 of 2 sequence(s) cannot be run (listed above): fix the data set, or choose the "
        "others with --sequences"
    )
    assert not (tmp_path / "out").exists()


def test_a_frame_that_fails_midway_keeps_the_masks_before_it(tmp_path, inputs, weights, capsys, video):
    frames, mask = inputs
    whole = tmp_path / "whole"
    assert cli(capsys, "segment", frames, "--mask", mask, "--out", whole, "--weights", weights, "--no-tune")[0] == 0
    (frames / "00003.jpg").write_bytes(undecodable_png(video.frames[3]))
    FrameSource(frames)  # its header reads: found only when reached
    out, overlay = tmp_path / "out", tmp_path / "overlay.mp4"
    code, lines = cli(
        capsys, "segment", frames, "--mask", mask, "--out", out, "--weights", weights, "--no-tune", "--overlay", overlay
    )
    assert_one_line(
        code,
        lines,
        "cannot read frame",
        "00003.jpg",
        f"the masks of the 3 frames before it are in {out}",
        "--overwrite",
    )
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for path in out.iterdir():
        assert np.array_equal(read_mask(path), read_mask(whole / path.name)), "the kept masks are the run's"
    assert overlay.is_file() and not list(tmp_path.glob(".*partial*"))


def test_segment_frames_delivers_the_masks_before_an_unreadable_frame(tmp_path, inputs, video):
    from swiftcuda.inference import Segmenter
    from swiftcuda.inference.video import open_video, segment_frames

    frames, mask = inputs
    (frames / "00002.jpg").write_bytes(undecodable_png(video.frames[2]))
    source, labels = open_video(frames, mask)
    delivered = []
    with pytest.raises(FrameReadError) as error:
        segment_frames(
            Segmenter(swiftcuda.prepare(random_swiftnet(seed=4), swiftcuda.PrepareOptions(tune=False))),
            source,
            labels,
            lambda f, _: delivered.append(f.name),
        )
    assert error.value.frames_done == 2 and delivered == ["00000", "00001"]


# -- outputs --------------------------------------------------------------------------------------


def test_outputs_are_checked_before_anything_loads(tmp_path, inputs, capsys):
    """With a checkpoint that does not exist, the output's error shows it was checked first."""
    frames, mask = inputs
    absent = tmp_path / "absent.pth"
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    for overwrite in ([], ["--overwrite"]):
        code, lines = cli(capsys, "segment", frames, "--mask", mask, "--out", a_file, "--weights", absent, *overwrite)
        assert_one_line(code, lines, f"output folder {a_file} is a file: choose a folder path")
        code, lines = cli(
            capsys,
            "segment",
            frames,
            "--mask",
            mask,
            "--out",
            tmp_path / "out",
            "--overlay",
            a_folder,
            "--weights",
            absent,
            *overwrite,
        )
        assert_one_line(code, lines, f"overlay {a_folder} is a folder: give a file path")
    assert a_file.read_text() == "keep me" and not (tmp_path / "out").exists()
    davis = tmp_path / "davis"
    write_frames(davis / "JPEGImages" / "480p" / "clip", make_video(3, 32, 32, seed=1).frames)
    (davis / "Annotations" / "480p" / "clip").mkdir(parents=True)
    write_mask(davis / "Annotations" / "480p" / "clip" / "00000.png", np.ones((32, 32), np.uint8))
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("clip\n")
    code, lines = cli(capsys, "eval", "--davis", davis, "--out", a_file, "--overwrite", "--weights", absent)
    assert_one_line(code, lines, "is a file")
    code, lines = cli(capsys, "train", "--data", davis, "--out", a_file, "--steps", "1", "--device", "cpu")
    assert_one_line(code, lines, f"output folder {a_file} is a file")
    code, lines = cli(
        capsys,
        "score",
        "--gt",
        davis / "Annotations" / "480p",
        "--results",
        davis / "Annotations" / "480p",
        "--out",
        a_file,
    )
    assert_one_line(code, lines, f"--out {a_file} is a file")


# -- statements of the README and the help --------------------------------------------------------


def test_bench_accepts_internal_size_auto(capsys):
    from swiftcuda.cli.bench import internal_size_argument

    assert internal_size_argument("auto") == "auto"
    code = main(
        [
            "bench",
            "--size",
            "40x56",
            "--frames",
            "3",
            "--warmup",
            "0",
            "--internal-size",
            "auto",
            "--threads",
            "1",
            "--configs",
            "swiftcuda:fp32:reference:::direct:untuned",
        ]
    )
    assert code == 0
    assert "swiftcuda at internal size auto (40x56)" in capsys.readouterr().out


def test_info_require_cuda_says_it_checks_the_build(capsys, monkeypatch):
    from swiftcuda.cli import info

    help_text = next(a.help for a in _subparser("info")._actions if "--require" in a.option_strings)
    assert "a check of the build, which passes on a machine without a GPU" in help_text
    real = info.collect

    def without_gpu() -> dict:
        found = real()
        found["gpu"] = None
        found["extension"] = {
            **found["extension"],
            "loaded": True,
            "error": None,
            "cuda_kernels": True,
            "cuda_version": "12.8",
            "cuda_archs": ["sm_90"],
            "ptx_archs": [],
        }
        return found

    monkeypatch.setattr(info, "collect", without_gpu)
    code, lines = cli(capsys, "info", "--require", "cuda")
    assert code == 0 and lines == [
        "swiftcuda info: the extension has its CUDA kernels, but no GPU is visible here (--require cuda checks the "
        "build; --require gpu also checks for a GPU)"
    ]
    code, lines = cli(capsys, "info", "--require", "gpu")
    assert code == 1 and lines == [
        "swiftcuda info: no CUDA GPU is visible here (the extension has its CUDA kernels, but nothing to run them on)"
    ]


def _subparser(name: str):
    parser = build_parser()
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]


def test_the_package_docstring_example_imports_what_it_uses():
    example = "\n".join(
        line[4:] for line in swiftcuda.__doc__.split("::", 1)[1].splitlines() if line.startswith("    ")
    )
    tree = ast.parse(example)
    imported = {
        alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assigned = {
        t.id
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.For))
        for t in ast.walk(node.targets[0] if isinstance(node, ast.Assign) else node.target)
        if isinstance(t, ast.Name)
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    given = {"first_frame", "first_labels", "frames"}  # the reader's own data
    assert used - imported - assigned - given == set()
    assert "torch" in imported
