"""Scoring a whole results folder against a ground-truth folder, sequences in parallel processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from swiftcuda.errors import InputError
from swiftcuda.io.frames import natural_key
from swiftcuda.metrics.report import Summary, summarize
from swiftcuda.metrics.sequence import ScoreOptions, SequenceScores, score_sequence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceProblem:
    """Why one sequence could not be scored."""

    sequence: str
    message: str

    def __str__(self) -> str:
        return f"{self.sequence}: {self.message}"


@dataclass
class Evaluation:
    """What scoring a folder gave: the scores of the sequences that could be scored, in the
    order asked, and a problem for each that could not."""

    scores: list[SequenceScores] = field(default_factory=list)
    problems: list[SequenceProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> Summary:
        return summarize(self.scores)


def list_sequences(truth_root: str | os.PathLike) -> list[str]:
    """The sequences of a ground-truth folder: its subfolders, in natural name order."""
    root = Path(truth_root)
    if not root.is_dir():
        raise InputError(f"ground-truth folder not found: {root}")
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not names:
        raise InputError(f"no sequences in {root}: expected one folder of PNG masks per sequence")
    return sorted(names, key=natural_key)


def _score_one(
    truth_dir: Path, results_dir: Path, options: ScoreOptions, name: str
) -> SequenceScores | SequenceProblem:
    try:
        return score_sequence(truth_dir, results_dir, options, name=name)
    except InputError as error:
        return SequenceProblem(name, str(error))


def _start_worker() -> None:
    # One process per sequence already fills the CPUs; OpenCV's own threads would oversubscribe them.
    cv2.setNumThreads(1)


def default_workers(num_sequences: int) -> int:
    """One process per CPU the process may use, at most one per sequence."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, num_sequences))


def evaluate(
    truth_root: str | os.PathLike,
    results_root: str | os.PathLike,
    sequences: Sequence[str] | None = None,
    *,
    options: ScoreOptions = ScoreOptions(),
    workers: int | None = None,
    progress: bool | None = False,
) -> Evaluation:
    """Score the results of every sequence (the DAVIS 2017 semi-supervised protocol).

    Args:
        truth_root: folder of ground-truth sequences (``truth_root/<sequence>/<frame>.png``).
        results_root: folder of results laid out alike.
        sequences: which sequences to score, in this order (default: every ground-truth sequence).
        options: void handling, single-object scoring, boundary tolerance.
        workers: processes scoring sequences in parallel (default: one per CPU); 1 scores here.
        progress: show a progress bar on stderr (None: when stderr is a terminal).

    Returns:
        The scores of the sequences that could be scored and a problem per one that could not.

    Raises:
        InputError: either root folder is missing.
    """
    truth_root, results_root = Path(truth_root), Path(results_root)
    names = list(sequences) if sequences is not None else list_sequences(truth_root)
    if not truth_root.is_dir():
        raise InputError(f"ground-truth folder not found: {truth_root}")
    if not results_root.is_dir():
        raise InputError(f"results folder not found: {results_root}")
    jobs = [(truth_root / name, results_root / name, options, name) for name in names]
    workers = default_workers(len(jobs)) if workers is None else max(1, workers)
    outcomes: dict[str, SequenceScores | SequenceProblem] = {}
    disable = None if progress is None else not progress
    bar = tqdm(total=len(jobs), desc="scoring", unit="seq", disable=disable, leave=False)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                outcomes[job[-1]] = _score_one(*job)
                bar.update()
        else:
            # "spawn": a forked child of a process whose OpenMP pool (torch, OpenCV) has run can
            # deadlock on that pool's locks.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, mp_context=context) as pool:
                futures = {pool.submit(_score_one, *job): job[-1] for job in jobs}
                for future in as_completed(futures):
                    outcomes[futures[future]] = future.result()
                    bar.update()
    finally:
        bar.close()
    evaluation = Evaluation()
    for name in names:
        outcome = outcomes[name]
        if isinstance(outcome, SequenceProblem):
            evaluation.problems.append(outcome)
        else:
            evaluation.scores.append(outcome)
    logger.info("scored %d sequence(s), %d problem(s)", len(evaluation.scores), len(evaluation.problems))
    return evaluation
