// Emulated PTX instructions, called by kernels/cuda/ptx.cuh under SWIFTCUDA_EMU. Each is a
// warp-collective computed from the PTX ISA's definition across the lanes of the emulated warp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace swiftcuda_emu {

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 d, a, {b0, b1}, d: all 32 lanes.
void mma_m16n8k16(bool bf16, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16: `count` 8x8 matrices of 16-bit values;
// lane l gives the address of row l % 8 of matrix l / 8 (lanes past 8 * count give none).
void ldmatrix(int count, bool transpose, uint32_t* out, const void* row_address);

// cp.async's copy of `bytes` bytes: done at once (the emulator has no asynchrony, so commit and
// wait are no-ops; ptx.cuh zero-fills the rest of the copy size).
inline void cp_async(void* dst, const void* src, size_t bytes) {
  const unsigned char* from = static_cast<const unsigned char*>(src);
  unsigned char* to = static_cast<unsigned char*>(dst);
  for (size_t i = 0; i < bytes; ++i) to[i] = from[i];
}

}  // namespace swiftcuda_emu
