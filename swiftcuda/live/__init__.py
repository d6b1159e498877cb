"""Live input: segment a camera, a stream or a video file played in real time, with bounded latency.

- :mod:`~swiftcuda.live.capture`: a capture thread that keeps only the newest frame and counts the
  frames it drops.
- :mod:`~swiftcuda.live.runner`: the loop that steps the segmenter on that frame and writes masks,
  an overlay video and a preview window.
- :mod:`~swiftcuda.live.stats`: frame counts and capture-to-mask latency percentiles.
- :mod:`~swiftcuda.live.display`: the preview window, only where a display exists.
"""

from swiftcuda.live.capture import CaptureCounts, LiveCapture, LiveFrame, open_live_source
from swiftcuda.live.display import open_preview
from swiftcuda.live.runner import LiveMask, check_mask_size, run_live, segment_live, warm_up
from swiftcuda.live.stats import LatencyHistogram, LiveReport

__all__ = [
    "CaptureCounts",
    "LatencyHistogram",
    "LiveCapture",
    "LiveFrame",
    "LiveMask",
    "LiveReport",
    "check_mask_size",
    "open_live_source",
    "open_preview",
    "run_live",
    "segment_live",
    "warm_up",
]
