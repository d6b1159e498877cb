"""DAVIS 2017 semi-supervised evaluation: region similarity J and boundary accuracy F.

The numbers are those of the official davis2017-evaluation toolkit: per object and frame, J is the
Jaccard index and F the boundary F-measure (tolerance 0.008 of the image diagonal); the first and
last frames are not scored; each object's per-frame scores give a mean, a recall (frames above 0.5)
and a decay (first quarter minus last quarter); the global numbers are means over all objects.

Example::

    from swiftcuda import metrics
    evaluation = metrics.evaluate("DAVIS/Annotations/480p", "my_results", workers=4)
    summary = evaluation.summary()
    print(summary.global_row()["J&F-Mean"])
    metrics.write_tables(summary, "my_results", "val")
"""

from swiftcuda.metrics.boundary import BOUND_TH, boundary_map, boundary_scores, disk, f_measure, tolerance_pixels
from swiftcuda.metrics.evaluate import Evaluation, SequenceProblem, default_workers, evaluate, list_sequences
from swiftcuda.metrics.region import jaccard
from swiftcuda.metrics.report import (
    GLOBAL_COLUMNS,
    SEQUENCE_COLUMNS,
    ObjectResult,
    Summary,
    csv_paths,
    format_report,
    format_table,
    summarize,
    write_tables,
)
from swiftcuda.metrics.sequence import (
    VOID_LABEL,
    ScoreOptions,
    SequenceScores,
    count_objects,
    score_labels,
    score_sequence,
)
from swiftcuda.metrics.statistics import Statistics, decay_bins, statistics

__all__ = [
    "BOUND_TH",
    "GLOBAL_COLUMNS",
    "SEQUENCE_COLUMNS",
    "VOID_LABEL",
    "Evaluation",
    "ObjectResult",
    "ScoreOptions",
    "SequenceProblem",
    "SequenceScores",
    "Statistics",
    "Summary",
    "boundary_map",
    "boundary_scores",
    "count_objects",
    "csv_paths",
    "decay_bins",
    "default_workers",
    "disk",
    "evaluate",
    "f_measure",
    "format_report",
    "format_table",
    "jaccard",
    "list_sequences",
    "score_labels",
    "score_sequence",
    "statistics",
    "summarize",
    "tolerance_pixels",
    "write_tables",
]
