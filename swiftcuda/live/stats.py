"""What a live run reports: frames received, processed and dropped, and capture-to-mask latency.

Latencies go into a histogram of logarithmic bins rather than a list, so an all-day camera run
keeps a fixed amount of memory while its percentiles stay within about 1% of the exact ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Latencies from 10 microseconds to about 28 hours, in bins 1.2% wide.
SMALLEST_SECONDS = 1e-5
BINS_PER_DECADE = 200
DECADES = 10


class LatencyHistogram:
    """Latencies in seconds, with their count, maximum and approximate percentiles."""

    def __init__(self) -> None:
        self._bins = np.zeros(BINS_PER_DECADE * DECADES, dtype=np.int64)
        self.count = 0
        self.max = 0.0
        self.min = math.inf

    def add(self, seconds: float) -> None:
        position = math.log10(max(seconds, SMALLEST_SECONDS) / SMALLEST_SECONDS) * BINS_PER_DECADE
        self._bins[min(int(position), len(self._bins) - 1)] += 1
        self.count += 1
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100): the geometric centre of its bin, within [min, max];
        NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.count))
        index = int(np.searchsorted(np.cumsum(self._bins), rank))
        centre = SMALLEST_SECONDS * 10 ** ((index + 0.5) / BINS_PER_DECADE)
        return min(max(centre, self.min), self.max)

    def describe(self) -> str:
        """E.g. "latency p50 112 ms, p95 180 ms, max 240 ms" (or "no latency yet")."""
        if self.count == 0:
            return "no latency yet"
        return (
            f"latency p50 {self.percentile(50) * 1e3:.0f} ms, p95 {self.percentile(95) * 1e3:.0f} ms, "
            f"max {self.max * 1e3:.0f} ms"
        )


@dataclass(frozen=True)
class LiveReport:
    """The outcome of a live run.

    Attributes:
        received: frames the source delivered.
        processed: frames segmented (their masks were written).
        dropped: frames replaced by a newer one before the engine could take them.
        latency: capture-to-mask latency of the processed frames.
        seconds: wall time from the start of capture to the end of the run.
        end_reason: why the run ended (the source ended or failed, a stop was asked, ...).
    """

    received: int
    processed: int
    dropped: int
    latency: LatencyHistogram
    seconds: float
    end_reason: str

    def describe(self) -> str:
        """One line: counts, rate, latency and why the run ended."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.received} frames received, {self.processed} processed ({rate:.1f} FPS), "
            f"{self.dropped} dropped in {self.seconds:.1f} s; capture-to-mask {self.latency.describe()}; "
            f"{self.end_reason}"
        )
