// The SIMT online-softmax step over one memory tile, shared by the float32 memory read
// (memory_read.cu) and the STM family's full-softmax sweep (memory_read_family.cu).
//
// A block of 256 threads owns 64 queries and walks its memory range 64 entries at a time. Thread
// (tr = tid / 16, tq = tid % 16) holds the logits of entries tr + 16 i and queries tq + 16 j of
// the tile (s[i][j], base 2, already scaled), and the readout of value channels tr + 16 i for
// the same queries (acc[i][j]). Included by .cu files only.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace swiftcuda::device {

constexpr int kSimtSoftmaxTile = 64;

// Shared memory of the step: the tile's values vs [64 channels][65], its weights ps [64 entries]
// [64 queries], the partial reductions red [16][64], and each query's running max, running sum
// and latest rescale factor [64] each.
struct SimtSoftmaxShared {
  const float* vs;
  float* ps;
  float* red;
  float* row_max;
  float* row_sum;
  float* rescale;
};

// Entries at or past `valid` (counted from the tile's first entry) are masked out; each query's
// running max and sum take in the tile; acc is rescaled to the new max and gains V * exp2(s - max).
// The caller synchronises before the next tile overwrites vs (and before reading row_sum after the
// last tile). A query whose entries are all masked so far keeps weight 0 (never exp2(-inf + inf)).
__device__ __forceinline__ void simt_softmax_tile(float (&s)[4][4], int64_t valid, const SimtSoftmaxShared& sh,
                                                  float (&acc)[4][4]) {
  constexpr int kTile = kSimtSoftmaxTile;
  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float local = -INFINITY;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (tr + 16 * i >= valid) s[i][j] = -INFINITY;
      local = fmaxf(local, s[i][j]);
    }
    sh.red[tr * kTile + tq + 16 * j] = local;
  }
  __syncthreads();
  if (tid < kTile) {
    float tile_max = -INFINITY;
    for (int r = 0; r < 16; ++r) tile_max = fmaxf(tile_max, sh.red[r * kTile + tid]);
    const float updated = fmaxf(sh.row_max[tid], tile_max);
    sh.rescale[tid] = online_rescale(sh.row_max[tid], updated);
    sh.row_max[tid] = updated;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int q = tq + 16 * j;
    const float m = sh.row_max[q];
    float local = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float w = s[i][j] == -INFINITY ? 0.0f : exp2_approx(s[i][j] - m);
      sh.ps[(tr + 16 * i) * kTile + q] = w;
      local += w;
    }
    sh.red[tr * kTile + q] = local;
  }
  __syncthreads();
  if (tid < kTile) {
    float total = 0.0f;
    for (int r = 0; r < 16; ++r) total += sh.red[r * kTile + tid];
    sh.row_sum[tid] = sh.row_sum[tid] * sh.rescale[tid] + total;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float f = sh.rescale[tq + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[i][j] *= f;
  }
  for (int n = 0; n < kTile; ++n) {
    float pv[4], vv[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) pv[j] = sh.ps[n * kTile + tq + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; ++i) vv[i] = sh.vs[(tr + 16 * i) * (kTile + 1) + n];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(vv[i], pv[j], acc[i][j]);
  }
}

}  // namespace swiftcuda::device
