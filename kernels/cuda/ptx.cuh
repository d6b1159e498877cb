// Every inline PTX statement of the CUDA kernels, and nothing else.
//
// Two paths per wrapper:
//  - nvcc (__CUDA_ARCH__): the asm exactly as the kernels need it;
//  - SWIFTCUDA_EMU (the CPU emulator of tools/cuda_emu, which compiles the kernels as host C++): a call
//    into the emulator, which computes the instruction from the PTX ISA's definition (fragment
//    tables, copy semantics) across the emulated warp.
// Keeping all asm here is what lets the emulator run the kernels unchanged: a kernel that needs a
// new instruction adds its wrapper here, with both paths.
#pragma once

#include <cstdint>

#if defined(SWIFTCUDA_EMU)
#include "emu_ptx.h"  // tools/cuda_emu: emulated warp-collective instructions
#endif

namespace swiftcuda::ptx {

// d += a b for one m16n8k16 tile: 16-bit inputs (fp16, or bf16 when kBFloat16), float32
// accumulation, A row-major, B column-major. Fragment layout (PTX ISA, mma.m16n8k16), with
// g = lane / 4 and t = lane % 4:
//   a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..2t+1], a[2] = A[g][2t+8..2t+9], a[3] = A[g+8][2t+8..2t+9]
//   b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   d[0..1] = D[g][2t..2t+1], d[2..3] = D[g+8][2t..2t+1]
// (each 32-bit register holds two 16-bit values, the lower column / row in the low half).
// Warp-collective: all 32 lanes execute it together.
template <bool kBFloat16>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(SWIFTCUDA_EMU)
  ::swiftcuda_emu::mma_m16n8k16(kBFloat16, d, a, b0, b1);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kBFloat16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#else
  __trap();  // the launchers never select tensor-core kernels below sm_80
#endif
}

// ---- Asynchronous global -> shared copies and matrix loads (sm_80+), used by memory_read.cu ----

// Shared-memory address of a generic pointer into shared memory, as the PTX operands want it.
__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
#else
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(pointer));  // unused off the GPU
#endif
}

// cp.async.{cg,ca}.shared.global [dst], [src], kBytes, src_bytes: copies src_bytes (0..kBytes)
// bytes from global to shared memory and zero-fills the rest of the kBytes, without a register
// round trip; the copy lands after cp_async_commit + cp_async_wait_all (and a barrier for other
// threads). kBytes is 16 (.cg: L2 only), 8 or 4 (.ca); both addresses are kBytes-aligned.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int src_bytes) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(SWIFTCUDA_EMU)
  ::swiftcuda_emu::cp_async(dst, src, static_cast<size_t>(src_bytes));
  unsigned char* fill = static_cast<unsigned char*>(dst);
  for (int i = src_bytes; i < kBytes; ++i) fill[i] = 0;
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(shared_address(dst)), "l"(src), "n"(kBytes),
                 "r"(src_bytes)
                 : "memory");
  }
#else
  __trap();  // the launchers never select cp.async kernels below sm_80
#endif
}

// cp.async.commit_group: closes the group of this thread's cp.async issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if !defined(SWIFTCUDA_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// cp.async.wait_group 0: waits until all of this thread's committed groups have landed.
__device__ __forceinline__ void cp_async_wait_all() {
#if !defined(SWIFTCUDA_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// ldmatrix.sync.aligned.m8n8.x{2,4}[.trans].shared.b16: kCount 8x8 matrices of 16-bit values.
// Lane l gives `row`, the address of row l % 8 of matrix l / 8 (16 contiguous, 16-byte aligned
// bytes; lanes past 8 kCount are ignored but must pass a valid address). Register i of lane l
// (g = l / 4, t = l % 4) receives matrix i's elements [g][2t] (low half) and [g][2t+1], or with
// kTranspose [2t][g] and [2t+1][g]: exactly an mma.m16n8k16 fragment (see mma_m16n8k16 above).
// Warp-collective: all 32 lanes execute it together.
template <int kCount, bool kTranspose>
__device__ __forceinline__ void ldmatrix(uint32_t (&r)[kCount], const uint16_t* row) {
  static_assert(kCount == 2 || kCount == 4, "ldmatrix x2 or x4");
#if defined(SWIFTCUDA_EMU)
  ::swiftcuda_emu::ldmatrix(kCount, kTranspose, r, row);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kCount == 4 && kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
  } else if constexpr (kCount == 4) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
  } else if constexpr (kTranspose) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(row)));
  } else {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(row)));
  }
#else
  __trap();  // the launchers never select ldmatrix kernels below sm_80
#endif
}

}  // namespace swiftcuda::ptx
