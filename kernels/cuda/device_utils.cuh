// Device-only helpers shared by the CUDA kernels: element conversion, valid lengths, tensor-core
// mma (sm_80+), block-wide scans. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common.cuh"
#include "ptx.cuh"

namespace swiftcuda::device {

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// The valid length of item b: n_valid[b] clamped to [0, capacity], or the capacity without n_valid.
__device__ __forceinline__ int64_t load_length(const void* n_valid, bool is_int64, int64_t b, int64_t capacity) {
  if (n_valid == nullptr) return capacity;
  const int64_t n = is_int64 ? static_cast<const int64_t*>(n_valid)[b] : static_cast<const int32_t*>(n_valid)[b];
  return valid_length(n, capacity);
}

// Two floats as the packed 16-bit pair an mma operand register holds (lower column in the low half).
template <bool kBFloat16>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  if constexpr (kBFloat16) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&pair);
  } else {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&pair);
  }
}

__device__ __forceinline__ uint32_t load_pair(const uint16_t* at) { return *reinterpret_cast<const uint32_t*>(at); }

// d += a b for one m16n8k16 tile (fp16 or bf16 inputs, float32 accumulation); the fragment
// layout and the instruction are in ptx.cuh.
template <bool kBFloat16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ptx::mma_m16n8k16<kBFloat16>(d, a, b0, b1);
}

// Exclusive prefix sum of one 0/1 flag per thread over the whole block (blockDim.x a multiple of
// 32, at most 1024); *total gets the block's sum. Every thread of the block must call it.
__device__ __forceinline__ int block_exclusive_scan(bool flag, int* warp_totals, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const unsigned ballot = __ballot_sync(0xFFFFFFFFu, flag);
  const int within = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0) warp_totals[warp] = __popc(ballot);
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < warps; ++w) {
    const int count = warp_totals[w];
    before += w < warp ? count : 0;
    sum += count;
  }
  __syncthreads();  // warp_totals is reused by the next call
  *total = sum;
  return before + within;
}

}  // namespace swiftcuda::device
