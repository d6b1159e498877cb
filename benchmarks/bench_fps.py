"""End-to-end frames per second (CPU and GPU); see ``swiftcuda.bench.fps`` and ``swiftcuda bench``.

python benchmarks/bench_fps.py --device cpu --weights demo --objects 1
python benchmarks/bench_fps.py --device cuda --objects 1,2,3 --markdown benchmarks/RESULTS.md
"""

from swiftcuda.cli.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
