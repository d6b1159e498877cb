"""@triton.jit kernels, one module per op (installed as swiftcuda.kernels.triton)."""
