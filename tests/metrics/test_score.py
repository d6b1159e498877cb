"""``swiftcuda score`` and ``swiftcuda.metrics.evaluate`` on folders: tables, statistics, bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from swiftcuda.cli import main
from swiftcuda.data import bundled_masks_root
from swiftcuda.io import read_mask, write_mask
from swiftcuda.metrics import ScoreOptions, evaluate, score_sequence


def write_sequence(folder: Path, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(labels):
        write_mask(folder / f"{t:05d}.png", mask)


def two_object_labels(frames: int = 6, shape=(24, 32)) -> np.ndarray:
    labels = np.zeros((frames, *shape), np.uint8)
    for t in range(frames):
        labels[t, 4:12, 2 + t : 10 + t] = 1
        labels[t, 14:20, 18:26] = 2
    return labels


@pytest.fixture
def folders(tmp_path):
    """Ground truth of two sequences and perfect results for them."""
    gt, results = tmp_path / "gt", tmp_path / "results"
    for name in ("alpha", "beta"):
        write_sequence(gt / name, two_object_labels())
        write_sequence(results / name, two_object_labels())
    return gt, results


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_perfect_results_write_the_toolkit_tables(folders, capsys, tmp_path):
    gt, results = folders
    code, out, _ = run_cli(["score", "--gt", str(gt), "--results", str(results), "--workers", "1"], capsys)
    assert code == 0
    assert (results / "global_results-val.csv").read_text() == (
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n1.000,1.000,1.000,0.000,1.000,1.000,0.000\n"
    )
    assert read_csv(results / "per-sequence_results-val.csv") == [
        ["Sequence", "J-Mean", "F-Mean"],
        ["alpha_1", "1.000", "1.000"],
        ["alpha_2", "1.000", "1.000"],
        ["beta_1", "1.000", "1.000"],
        ["beta_2", "1.000", "1.000"],
    ]
    assert "J&F-Mean" in out and "beta_2" in out
    # A second run does not overwrite the tables unless asked.
    code, _, err = run_cli(["score", "--gt", str(gt), "--results", str(results)], capsys)
    assert code == 2 and "--overwrite" in err
    code, _, _ = run_cli(
        ["score", "--gt", str(gt), "--results", str(results), "--overwrite", "--out", str(tmp_path / "t")], capsys
    )
    assert code == 0 and (tmp_path / "t" / "global_results-val.csv").is_file()


def test_known_sequence_statistics(tmp_path, capsys):
    """The bundled 'dog' masks as ground truth; results right for the first half of the scored
    frames and empty after: J = F = 1 then 0, so mean 0.5, recall 0.5 and decay 1."""
    gt, results = tmp_path / "gt", tmp_path / "results"
    shutil.copytree(bundled_masks_root() / "dog", gt / "dog")
    truth = np.stack([read_mask(p) for p in sorted((gt / "dog").glob("*.png"))])
    assert len(truth) == 60 and all(m.any() for m in truth)
    prediction = truth.copy()
    prediction[30:] = 0  # scored frames are 1..58: frames 1..29 right, 30..58 empty
    write_sequence(results / "dog", prediction)
    scores = score_sequence(gt / "dog", results / "dog")
    assert scores.frames[0] == "00001" and scores.frames[-1] == "00058"
    assert np.array_equal(scores.j[0], [1.0] * 29 + [0.0] * 29)
    assert np.array_equal(scores.f[0], [1.0] * 29 + [0.0] * 29)
    code, _, _ = run_cli(["score", "--gt", str(gt), "--results", str(results), "--set", "dogs"], capsys)
    assert code == 0
    assert read_csv(results / "global_results-dogs.csv")[1] == [
        "0.500",
        "0.500",
        "0.500",
        "1.000",
        "0.500",
        "0.500",
        "1.000",
    ]
    assert read_csv(results / "per-sequence_results-dogs.csv")[1] == ["dog_1", "0.500", "0.500"]


def test_parallel_scoring_matches_serial(folders):
    gt, results = folders
    prediction = two_object_labels()
    prediction[2:4, 14:20, 18:22] = 0
    write_sequence(results / "beta", prediction)
    serial = evaluate(gt, results, workers=1)
    parallel = evaluate(gt, results, workers=2)
    assert serial.ok and parallel.ok
    assert [s.name for s in parallel.scores] == ["alpha", "beta"]
    for a, b in zip(serial.scores, parallel.scores):
        assert np.array_equal(a.j, b.j) and np.array_equal(a.f, b.f)
    row = serial.summary().global_row()
    assert 0 < row["J-Mean"] < 1 and row["J&F-Mean"] == pytest.approx((row["J-Mean"] + row["F-Mean"]) / 2)


def test_davis_root_uses_its_annotations_and_sequence_list(tmp_path, capsys):
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    for name in ("alpha", "beta"):
        write_sequence(root / "Annotations" / "480p" / name, two_object_labels())
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("beta\n")
    write_sequence(results / "beta", two_object_labels())
    code, out, _ = run_cli(["score", "--gt", str(root), "--results", str(results)], capsys)
    assert code == 0 and "beta_1" in out and "alpha" not in out


def test_year_2016_scores_one_object(folders, capsys):
    gt, results = folders
    code, _, _ = run_cli(
        ["score", "--gt", str(gt), "--results", str(results), "--year", "2016", "--workers", "1"], capsys
    )
    assert code == 0
    assert [row[0] for row in read_csv(results / "per-sequence_results-val.csv")[1:]] == ["alpha_1", "beta_1"]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_sequence", "beta: no results folder"),
        (
            "missing_frame",
            "beta: frame count mismatch: the results have 5 frames and the ground truth 6 (missing 00003.png)",
        ),
        (
            "extra_frame",
            "beta: frame count mismatch: the results have 7 frames and the ground truth 6 (not in the ground truth: 00006.png)",
        ),
        ("size", "beta: size mismatch: 00001.png is 12x16 in the results but 24x32 in the ground truth"),
        ("unknown_id", "beta: the results hold object id 7 (in 00002.png) that is not in the ground truth"),
        ("unreadable", "beta: "),
    ],
)
def test_bad_results_get_a_message_per_sequence(folders, capsys, damage, message):
    gt, results = folders
    beta = results / "beta"
    if damage == "missing_sequence":
        shutil.rmtree(beta)
    elif damage == "missing_frame":
        (beta / "00003.png").unlink()
    elif damage == "extra_frame":
        write_mask(beta / "00006.png", np.zeros((24, 32), np.uint8))
    elif damage == "size":
        write_mask(beta / "00001.png", np.zeros((12, 16), np.uint8))
    elif damage == "unknown_id":
        labels = read_mask(beta / "00002.png")
        labels[0, 0] = 7
        write_mask(beta / "00002.png", labels)
    elif damage == "unreadable":
        (beta / "00004.png").write_bytes(b"not a png")
    code, out, err = run_cli(["score", "--gt", str(gt), "--results", str(results), "--workers", "1"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert any(line.startswith("swiftcuda: " + message) for line in lines), err
    assert not any(line.startswith("swiftcuda: alpha") for line in lines)
    assert lines[-1].startswith("swiftcuda: error: 1 of 2 sequence(s) could not be scored")
    assert not (results / "global_results-val.csv").exists()


def test_ground_truth_problems(tmp_path, capsys):
    gt, results = tmp_path / "gt", tmp_path / "results"
    write_sequence(gt / "short", two_object_labels(frames=2))
    write_sequence(results / "short", two_object_labels(frames=2))
    empty_first = two_object_labels()
    empty_first[0] = 0
    write_sequence(gt / "late", empty_first)
    write_sequence(results / "late", empty_first)
    evaluation = evaluate(gt, results, workers=1)
    assert {p.sequence: p.message for p in evaluation.problems} == {
        "late": "the first ground-truth frame 00000.png has no object",
        "short": f"the ground truth has 2 frame(s) in {gt / 'short'}: scoring needs at least 3 (the first and the last are not scored)",
    }
    code, _, err = run_cli(["score", "--gt", str(tmp_path / "nowhere"), "--results", str(results)], capsys)
    assert code == 2 and "ground-truth folder not found" in err


def test_void_option(tmp_path):
    gt, results = tmp_path / "gt", tmp_path / "results"
    truth = two_object_labels()
    truth[:, 4:12, 20:24] = 255
    prediction = two_object_labels()
    prediction[:, 4:12, 20:24] = 2
    write_sequence(gt / "seq", truth)
    write_sequence(results / "seq", prediction)
    ignored = evaluate(gt, results, workers=1).scores[0]
    background = evaluate(gt, results, workers=1, options=ScoreOptions(void="background")).scores[0]
    assert np.all(ignored.j == 1.0)
    assert np.all(background.j[1] < 1.0)
