"""Scoring one sequence: per-object, per-frame J and F of a result against its ground truth.

The objects are 1..K where K is the largest id in the first ground-truth frame (void excluded),
as in the DAVIS 2017 semi-supervised evaluation; the first and the last frames are not scored.
A sequence whose first ground-truth frame is black and white (0 and 255 only) has one object, 1,
which 255 marks in all its frames; the black and white results of a one-object sequence are read
alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.errors import InputError
from swiftcuda.io.frames import natural_key
from swiftcuda.io.masks import binary_as_object, is_binary_mask, read_mask
from swiftcuda.metrics.boundary import BOUND_TH, boundary_scores
from swiftcuda.metrics.region import jaccard

#: Ground-truth label of pixels that are not scored.
VOID_LABEL = 255
#: The first and the last frame are not scored, so a sequence needs at least this many frames.
MIN_FRAMES = 3
_MAX_LISTED = 4


@dataclass(frozen=True)
class ScoreOptions:
    """How a sequence is scored.

    Attributes:
        void: "ignore": ground-truth pixels labelled 255 count in no measure; "background": they count
            as background. (The toolkit's own loader turns 255 into background before it builds its
            void mask, so its numbers are those of "background"; DAVIS 2017 ground truth has no 255.)
        single_object: merge every nonzero label, of the ground truth and of the results, into one
            object (DAVIS 2016); 255 is then an object label, not void.
        bound_th: boundary tolerance, a fraction of the image diagonal (< 1) or pixels (>= 1).
    """

    void: str = "ignore"
    single_object: bool = False
    bound_th: float = BOUND_TH

    def __post_init__(self) -> None:
        if self.void not in ("ignore", "background"):
            raise ValueError(f"void must be 'ignore' or 'background', got {self.void!r}")


@dataclass
class SequenceScores:
    """Per-frame scores of one sequence.

    Attributes:
        name: the sequence.
        object_ids: the scored objects, 1..K.
        frames: names of the scored frames (all but the first and the last).
        j: (K, T) float64 region similarity per object and frame.
        f: (K, T) float64 boundary accuracy per object and frame.
    """

    name: str
    object_ids: tuple[int, ...]
    frames: tuple[str, ...]
    j: np.ndarray
    f: np.ndarray

    def object_names(self) -> list[str]:
        """The toolkit's row names: ``<sequence>_<object id>``."""
        return [f"{self.name}_{object_id}" for object_id in self.object_ids]


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def count_objects(first_truth: np.ndarray, options: ScoreOptions = ScoreOptions()) -> int:
    """K, the number of objects to score: the largest id of the first ground-truth frame."""
    first_truth = np.asarray(first_truth)
    if options.single_object:
        return int(first_truth.any())
    labels = first_truth[first_truth != VOID_LABEL]
    return int(labels.max()) if labels.size else 0


def score_labels(
    truth: np.ndarray,
    prediction: np.ndarray,
    num_objects: int,
    options: ScoreOptions = ScoreOptions(),
    frame_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object in every given frame (the caller leaves out the first and last).

    Args:
        truth: (T, H, W) ground-truth labels (0 background, 1..K objects, 255 void).
        prediction: (T, H, W) predicted labels of the same frames.
        num_objects: K (see :func:`count_objects`); objects with no prediction score as empty masks.
        options: how void and single-object scoring work.
        frame_names: names of the frames, for messages.

    Returns:
        j, f: (K, T) float64 each.

    Raises:
        InputError: the shapes differ, or the prediction holds an id above K.
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.ndim != 3 or truth.shape != prediction.shape:
        raise InputError(f"results {prediction.shape} and ground truth {truth.shape} differ in shape")
    names = list(frame_names) if frame_names is not None else [f"frame {t}" for t in range(truth.shape[0])]
    void = None
    if options.single_object:
        truth, prediction = truth != 0, prediction != 0
    else:
        is_void = truth == VOID_LABEL
        truth = np.where(is_void, 0, truth)
        if options.void == "ignore" and is_void.any():
            void = is_void
        highest = prediction.reshape(prediction.shape[0], -1).max(axis=1) if prediction.size else []
        bad = [t for t, value in enumerate(highest) if value > num_objects]
        if bad:
            ids = sorted({int(i) for i in np.unique(prediction[bad[0]]) if i > num_objects})
            raise InputError(
                f"the results hold object id {ids[0]} (in {names[bad[0]]}) that is not in the ground truth, "
                f"whose first frame has objects 1..{num_objects}: results must use the ground truth's ids"
            )
    frames = truth.shape[0]
    j = np.zeros((num_objects, frames), dtype=np.float64)
    f = np.zeros((num_objects, frames), dtype=np.float64)
    for index, object_id in enumerate(range(1, num_objects + 1)):
        true_mask, predicted_mask = truth == object_id, prediction == object_id
        j[index] = jaccard(true_mask, predicted_mask, void)
        f[index] = boundary_scores(true_mask, predicted_mask, void, options.bound_th)
    return j, f


def _mask_files(folder: Path) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"]
    return {p.stem: p for p in sorted(files, key=lambda p: natural_key(p.name))}


def score_sequence(
    truth_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    options: ScoreOptions = ScoreOptions(),
    name: str | None = None,
) -> SequenceScores:
    """Score one sequence from its folders of masks (one PNG per frame, named alike).

    Every frame of the ground truth but the first and the last must have a result of the same
    size, and the results may hold no frame the ground truth lacks.

    Raises:
        InputError: a missing folder or frame, a size or frame-count mismatch, an unreadable mask,
            or a result id that is not in the ground truth. The message does not repeat the name.
    """
    truth_dir, results_dir = Path(truth_dir), Path(results_dir)
    name = name or truth_dir.name
    if not truth_dir.is_dir():
        raise InputError(f"no ground-truth folder {truth_dir}")
    truth_files = _mask_files(truth_dir)
    if len(truth_files) < MIN_FRAMES:
        raise InputError(
            f"the ground truth has {len(truth_files)} frame(s) in {truth_dir}: scoring needs at least "
            f"{MIN_FRAMES} (the first and the last are not scored)"
        )
    if not results_dir.is_dir():
        raise InputError(f"no results folder {results_dir}: write one PNG per frame, named like the ground truth")
    result_files = _mask_files(results_dir)
    stems = list(truth_files)
    scored = stems[1:-1]
    missing = [s + ".png" for s in scored if s not in result_files]
    extra = [s + ".png" for s in result_files if s not in truth_files]
    if missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"missing {_listed(missing)}" if missing else "",
                f"not in the ground truth: {_listed(extra)}" if extra else "",
            )
            if part
        )
        raise InputError(
            f"frame count mismatch: the results have {len(result_files)} frames and the ground truth "
            f"{len(truth_files)} ({detail}): write one PNG per ground-truth frame, named alike"
        )
    first = read_mask(truth_files[stems[0]])
    # A black and white ground truth draws one object, as the engine reads its first mask.
    binary = not options.single_object and is_binary_mask(first)
    first = binary_as_object(first) if binary else first
    num_objects = count_objects(first, options)
    if num_objects == 0:
        raise InputError(f"the first ground-truth frame {stems[0]}.png has no object")
    truth = np.empty((len(scored), *first.shape), dtype=np.uint8)
    prediction = np.empty_like(truth)
    for t, stem in enumerate(scored):
        truth[t] = _read_sized(truth_files[stem], first.shape, "ground truth", stems[0])
        if binary:
            truth[t] = np.where(truth[t] == VOID_LABEL, 1, truth[t])
        result = read_mask(result_files[stem])
        result = binary_as_object(result) if num_objects == 1 else result
        if result.shape != first.shape:
            raise InputError(
                f"size mismatch: {stem}.png is {result.shape[0]}x{result.shape[1]} in the results but "
                f"{first.shape[0]}x{first.shape[1]} in the ground truth: write results at the ground truth's size"
            )
        prediction[t] = result
    j, f = score_labels(truth, prediction, num_objects, options, [s + ".png" for s in scored])
    return SequenceScores(name=name, object_ids=tuple(range(1, num_objects + 1)), frames=tuple(scored), j=j, f=f)


def _read_sized(path: Path, shape: tuple[int, int], what: str, first: str) -> np.ndarray:
    mask = read_mask(path)
    if mask.shape != shape:
        raise InputError(
            f"size mismatch: {path.name} is {mask.shape[0]}x{mask.shape[1]} in the {what} but its first frame "
            f"{first}.png is {shape[0]}x{shape[1]}"
        )
    return mask
