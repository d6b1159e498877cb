"""Developer tools that are not part of the installed package: the roofline model and the
GPU-resource compiler behind ``benchmarks/roofline.py`` and ``benchmarks/gpu_resources.py``, and
the CPU emulator of the CUDA kernels (``cuda_emu/``, C++) that ``tests/cuda_emu`` builds.

Importable from the repository root (``python -m pytest`` and the benchmark scripts put it on
``sys.path``); ``setup.py`` packages ``swiftcuda`` only.
"""
