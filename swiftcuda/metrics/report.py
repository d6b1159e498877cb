"""Summaries of scored sequences and the toolkit's two CSV tables.

``global_results-<set>.csv`` has one row: J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall,
F-Decay, each the mean over all objects of all sequences (J&F-Mean is the mean of J-Mean and
F-Mean). ``per-sequence_results-<set>.csv`` has a row per object, named ``<sequence>_<object id>``,
with its J-Mean and F-Mean. Numbers have three decimals.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swiftcuda.io.output import check_writable_target, staged_file
from swiftcuda.metrics.sequence import SequenceScores
from swiftcuda.metrics.statistics import Statistics, statistics

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
DECIMALS = 3


@dataclass(frozen=True)
class ObjectResult:
    """The statistics of one object of one sequence."""

    sequence: str
    object_id: int
    j: Statistics
    f: Statistics

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.object_id}"


@dataclass
class Summary:
    """Statistics of every object, in sequence order then object order."""

    objects: list[ObjectResult]

    def global_row(self) -> dict[str, float]:
        """The one row of the global table (means over all objects)."""
        if not self.objects:
            return {column: math.nan for column in GLOBAL_COLUMNS}
        j = np.array([o.j for o in self.objects], dtype=np.float64)
        f = np.array([o.f for o in self.objects], dtype=np.float64)
        j_mean, j_recall, j_decay = j.mean(axis=0)
        f_mean, f_recall, f_decay = f.mean(axis=0)
        values = ((j_mean + f_mean) / 2.0, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
        return dict(zip(GLOBAL_COLUMNS, (float(v) for v in values)))

    def sequence_rows(self) -> list[tuple[str, float, float]]:
        """Rows of the per-sequence table: (``<sequence>_<id>``, J-Mean, F-Mean)."""
        return [(o.name, o.j.mean, o.f.mean) for o in self.objects]

    def sequence_means(self) -> dict[str, tuple[float, float]]:
        """Sequence -> (J-Mean, F-Mean) averaged over its objects."""
        grouped: dict[str, list[ObjectResult]] = {}
        for result in self.objects:
            grouped.setdefault(result.sequence, []).append(result)
        return {
            name: (float(np.mean([o.j.mean for o in group])), float(np.mean([o.f.mean for o in group])))
            for name, group in grouped.items()
        }


def summarize(scores: Iterable[SequenceScores]) -> Summary:
    """Mean, recall and decay of J and F for every object of every sequence."""
    objects = []
    for sequence in scores:
        for index, object_id in enumerate(sequence.object_ids):
            objects.append(
                ObjectResult(sequence.name, object_id, statistics(sequence.j[index]), statistics(sequence.f[index]))
            )
    return Summary(objects)


def format_number(value: float, decimals: int = DECIMALS) -> str:
    """``%.3f``, and an empty cell for NaN (as the toolkit's CSV writer does)."""
    return "" if isinstance(value, float) and math.isnan(value) else f"{value:.{decimals}f}"


def _cells(row: Sequence[object], decimals: int) -> list[str]:
    return [format_number(v, decimals) if isinstance(v, float) else str(v) for v in row]


def write_csv(
    path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence[object]], overwrite: bool = False
) -> Path:
    """Write a table as CSV (floats with three decimals, no index column); all or nothing."""
    path = Path(path)
    with staged_file(path, overwrite=overwrite) as staging:
        with open(staging, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(_cells(row, DECIMALS))
    return path


def csv_paths(folder: str | os.PathLike, set_name: str) -> tuple[Path, Path]:
    """Where the global and the per-sequence tables of ``set_name`` go."""
    folder = Path(folder)
    return folder / f"global_results-{set_name}.csv", folder / f"per-sequence_results-{set_name}.csv"


def write_tables(
    summary: Summary, folder: str | os.PathLike, set_name: str, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``global_results-<set>.csv`` and ``per-sequence_results-<set>.csv`` into ``folder``."""
    global_path, sequence_path = csv_paths(folder, set_name)
    for path in (global_path, sequence_path):
        check_writable_target(path, overwrite, "results table")
    row = summary.global_row()
    write_csv(global_path, GLOBAL_COLUMNS, [[row[c] for c in GLOBAL_COLUMNS]], overwrite)
    write_csv(sequence_path, SEQUENCE_COLUMNS, summary.sequence_rows(), overwrite)
    return global_path, sequence_path


def format_table(columns: Sequence[str], rows: Iterable[Sequence[object]], decimals: int = DECIMALS) -> str:
    """A plain-text table: a header line and one line per row, columns right-aligned."""
    cells = [list(columns)] + [_cells(row, decimals) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells)


def format_report(summary: Summary, set_name: str) -> str:
    """Both tables as text, under titles naming the set."""
    row = summary.global_row()
    return "\n".join(
        [
            f"Global results for {set_name}",
            format_table(GLOBAL_COLUMNS, [[row[c] for c in GLOBAL_COLUMNS]]),
            "",
            f"Per-sequence results for {set_name}",
            format_table(SEQUENCE_COLUMNS, summary.sequence_rows()),
        ]
    )
