"""Kernel sources, installed as swiftcuda.kernels: Triton kernels (triton/) and CUDA C++ (cuda/)."""
