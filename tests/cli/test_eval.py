"""``swiftcuda eval`` end to end on a tiny generated set with a random-init model, and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

import swiftcuda
from swiftcuda.cli import main
from swiftcuda.data import YouTubeVOSDataset, make_testset
from swiftcuda.io import read_mask, write_mask

SIZE = (36, 64)
FRAMES = 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    torch.save(swiftcuda.SwiftNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "davis"
    make_testset(root, sequences=["kite-surf", "blackswan"], max_frames=FRAMES, size=SIZE, seed=0)
    return root


def engine_args(checkpoint):
    return ["--weights", str(checkpoint), "--device", "cpu", "--warmup", "1", "--score-workers", "1"]


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_eval_davis_end_to_end(davis_root, checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["eval", "--davis", str(davis_root), "--out", str(out), *engine_args(checkpoint)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for name in ("kite-surf", "blackswan"):
        written = sorted(p.name for p in (out / name).iterdir())
        assert written == [f"{t:05d}.png" for t in range(FRAMES)]
        first = read_mask(out / name / "00000.png")
        assert np.array_equal(first, read_mask(davis_root / "Annotations" / "480p" / name / "00000.png"))
        assert read_mask(out / name / "00002.png").shape == SIZE
    assert rows(out / "global_results-val.csv")[0] == [
        "J&F-Mean",
        "J-Mean",
        "J-Recall",
        "J-Decay",
        "F-Mean",
        "F-Recall",
        "F-Decay",
    ]
    assert [r[0] for r in rows(out / "per-sequence_results-val.csv")[1:]] == [
        "kite-surf_1",
        "kite-surf_2",
        "kite-surf_3",
        "blackswan_1",
    ]
    timing = rows(out / "timing-val.csv")
    assert timing[0] == ["Sequence", "Frames", "Seconds", "FPS"]
    assert [r[0] for r in timing[1:]] == ["kite-surf", "blackswan", "all"]
    assert timing[-1][1] == str(2 * FRAMES) and float(timing[-1][3]) > 0
    assert "FPS" in captured.out and "overall" in captured.out and "J&F-Mean" in captured.out
    # The results can be scored again on their own, with the same numbers.
    code = main(
        ["score", "--gt", str(davis_root), "--results", str(out), "--out", str(tmp_path / "again"), "--workers", "1"]
    )
    assert code == 0
    assert rows(tmp_path / "again" / "global_results-val.csv") == rows(out / "global_results-val.csv")


def test_eval_davis_2016_is_single_object(davis_root, checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(
        [
            "eval",
            "--davis",
            str(davis_root),
            "--year",
            "2016",
            "--sequences",
            "kite-surf",
            "--out",
            str(out),
            *engine_args(checkpoint),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert [r[0] for r in rows(out / "per-sequence_results-val.csv")[1:]] == ["kite-surf_1"]
    assert set(np.unique(read_mask(out / "kite-surf" / "00000.png")).tolist()) == {0, 1}


def make_youtube(davis_root, root):
    """Two videos: in v1 object 3 appears at frame 2; v2's only object appears at frame 1."""
    split = root / "valid"
    source_images = davis_root / "JPEGImages" / "480p"
    source_masks = davis_root / "Annotations" / "480p"
    for video, source in (("v1", "kite-surf"), ("v2", "blackswan")):
        shutil.copytree(source_images / source, split / "JPEGImages" / video)
        (split / "Annotations" / video).mkdir(parents=True)
    first = read_mask(source_masks / "kite-surf" / "00000.png")
    write_mask(split / "Annotations" / "v1" / "00000.png", np.where(first == 1, 1, 0))
    later = read_mask(source_masks / "kite-surf" / "00002.png")
    write_mask(split / "Annotations" / "v1" / "00002.png", np.where(np.isin(later, (1, 3)), later, 0))
    swan = read_mask(source_masks / "blackswan" / "00001.png")
    write_mask(split / "Annotations" / "v2" / "00001.png", swan)
    meta = {
        "videos": {
            "v1": {
                "objects": {
                    "1": {"category": "person", "frames": ["00000"]},
                    "3": {"category": "kite", "frames": ["00002"]},
                }
            },
            "v2": {"objects": {"1": {"category": "bird", "frames": ["00001"]}}},
        }
    }
    (split / "meta.json").write_text(json.dumps(meta))
    return root


def test_youtube_reader_gives_only_new_objects(davis_root, tmp_path):
    dataset = YouTubeVOSDataset(make_youtube(davis_root, tmp_path / "ytvos"))
    assert dataset.videos == ["v1", "v2"]
    given = dataset.video("v1").new_object_masks()
    assert sorted(given) == [0, 2]
    assert set(np.unique(given[0]).tolist()) == {0, 1}
    assert set(np.unique(given[2]).tolist()) == {0, 3}  # object 1, already known, is cleared
    assert sorted(dataset.video("v2").new_object_masks()) == [1]


def test_eval_youtube_writes_a_submission(davis_root, checkpoint, tmp_path, capsys):
    root = make_youtube(davis_root, tmp_path / "ytvos")
    out = tmp_path / "submission"
    code = main(["eval", "--youtube", str(root), "--out", str(out), *engine_args(checkpoint)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    frames = [f"{t:05d}.png" for t in range(FRAMES)]
    for video in ("v1", "v2"):
        assert sorted(p.name for p in (out / "Annotations" / video).iterdir()) == frames
    v1 = [read_mask(out / "Annotations" / "v1" / f) for f in frames]
    assert all(m.shape == SIZE for m in v1)
    assert not any((m == 3).any() for m in v1[:2])  # object 3 cannot be predicted before it appears
    assert set(np.unique(np.stack(v1)).tolist()) <= {0, 1, 3}
    assert not read_mask(out / "Annotations" / "v2" / "00000.png").any()  # before its first object
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"Annotations/{v}/{f}" for v in ("v1", "v2") for f in frames)
    assert "FPS" in captured.out and "submission.zip" in captured.out


def test_eval_bad_input_gets_a_message_per_sequence(davis_root, checkpoint, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(davis_root, broken)
    (broken / "ImageSets" / "2017" / "val.txt").write_text("kite-surf\nghost\nblackswan\n")
    (broken / "Annotations" / "480p" / "blackswan" / "00000.png").unlink()
    code = main(["eval", "--davis", str(broken), "--out", str(tmp_path / "out"), *engine_args(checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("swiftcuda: ghost: no frames folder")
    assert lines[1].startswith("swiftcuda: blackswan: no annotation of the first frame")
    assert lines[-1].startswith("swiftcuda: error: 2 of 3 sequence(s) cannot be run")
    assert not (tmp_path / "out").exists()

    code = main(
        ["eval", "--davis", str(davis_root), "--set", "test", "--out", str(tmp_path / "out"), *engine_args(checkpoint)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "ImageSets/2017/test.txt not found (sets there: val)" in err

    # Without --weights the demo weights are used; where none ship, that is refused.
    monkeypatch.setattr("swiftcuda.engine.demo_weights_path", lambda: tmp_path / "no-demo-weights.pt")
    code = main(["eval", "--davis", str(davis_root), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "no weights given" in err

    code = main(
        ["eval", "--youtube", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), *engine_args(checkpoint)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "YouTube-VOS folder not found" in err


def test_eval_ray_options_need_workers_and_davis(davis_root, checkpoint, tmp_path, capsys):
    """--workers N segments on Ray (tests/many/test_segment_many.py runs it); its placement options
    without it, or it with YouTube-VOS, are refused before anything runs."""
    out = tmp_path / "out"
    for extra in (["--ray", "auto"], ["--gpus-per-worker", "1"], ["--videos-per-worker", "2"]):
        code = main(["eval", "--davis", str(davis_root), "--out", str(out), *extra, *engine_args(checkpoint)])
        assert code == 2 and f"{extra[0]} places Ray workers: add --workers N" in capsys.readouterr().err
    code = main(
        ["eval", "--youtube", str(tmp_path / "yt"), "--out", str(out), "--workers", "2", *engine_args(checkpoint)]
    )
    assert code == 2 and "--workers (Ray) works with --davis only" in capsys.readouterr().err
    code = main(
        ["eval", "--davis", str(davis_root), "--out", str(out), "--workers", "2", "--method", "copy-first-mask"]
    )
    assert code == 2 and "--workers runs the engine on Ray, not --method copy-first-mask" in capsys.readouterr().err
    assert not out.exists()


def test_eval_copy_first_mask_baseline(davis_root, tmp_path, capsys):
    """The no-tracking baseline needs no weights and writes every frame as the first mask."""
    out = tmp_path / "baseline"
    code = main(
        ["eval", "--davis", str(davis_root), "--out", str(out), "--method", "copy-first-mask", "--score-workers", "1"]
    )
    assert code == 0, capsys.readouterr().err
    first = read_mask(davis_root / "Annotations" / "480p" / "blackswan" / "00000.png")
    for t in range(FRAMES):
        assert np.array_equal(read_mask(out / "blackswan" / f"{t:05d}.png"), first)
    assert (out / "global_results-val.csv").is_file()
