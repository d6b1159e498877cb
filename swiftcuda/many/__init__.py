"""Many videos at once: ``swiftcuda segment-many`` spreads them over Ray workers, resumably.

- :mod:`~swiftcuda.many.inputs`: the videos of a DAVIS-layout folder or a manifest;
- :mod:`~swiftcuda.many.summary`: one record per video, and ``summary.jsonl``;
- :mod:`~swiftcuda.many.job`: one video into its output folder, all-or-nothing, with a done marker;
- :mod:`~swiftcuda.many.worker`: the Ray actor that loads the model once and runs jobs (needs Ray);
- :mod:`~swiftcuda.many.driver`: the workers, the dispatch of videos, retries, Ctrl-C (needs Ray).
"""
