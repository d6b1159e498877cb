// Compiler support for the CPU kernels' vectorised loops.
#pragma once

// The hot loops are plain C++ over contiguous float rows. GCC compiles each function marked
// SC_VECTOR_CLONES twice, for AVX2 + FMA (x86-64-v3) and for the baseline, and picks one at load
// time from the CPU's features, so the wheel runs anywhere and still uses 256-bit vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(SWIFTCUDA_NO_CLONES)
#define SC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SC_VECTOR_CLONES
#endif
