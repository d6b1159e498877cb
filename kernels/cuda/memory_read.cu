// CUDA memory read: flash-style tiled online softmax, never forming the P x N matrix.
//
// Grid: x = item x 64-query tile, y = chunk of value channels, z = split of the memory axis.
// A block walks its memory range in tiles of 64 entries; per tile it computes the logits of its
// 64 queries, updates the running max / sum (base 2, common.cuh) and accumulates V P^T.
//  - fp16 / bf16 (key_dim <= 128): tensor cores. 4 warps x 16 query rows; S = Q^T K and O += P V^T
//    with mma.m16n8k16 (fp32 accumulate). The logits stay in registers: their accumulator layout
//    is the A-operand layout of the second product, so P never touches shared memory, and the
//    running max is reduced across the 4 lanes that share a row.
//  - float32 (and anything else): SIMT, 256 threads x (4 entries x 4 queries), reductions through
//    shared memory. float32 keeps float32 products (TF32 would miss the 1e-5 accuracy contract).
// With one split the block normalises and writes `out`; with several (few query tiles for the
// SMs, e.g. one object at 480p: 26 tiles) each writes its partial (max, sum, acc) and a combine
// kernel merges them. Blocks of split 0 also copy q_val into the second half of `out`.
#include <algorithm>
#include <type_traits>

#include "device_utils.cuh"
#include "memory_read.cuh"

namespace swiftcuda {
namespace {

using device::from_float;
using device::to_float;

constexpr int kTile = kQueryTile;  // queries per block and memory entries per step (64)
constexpr int kSimtThreads = 256;
constexpr int kSimtValueChunk = 64;
constexpr int kMmaThreads = 128;
constexpr int kMmaValueChunk = 128;
constexpr int kMmaValueLd = kTile + 8;  // padded rows: conflict-free B-fragment loads
constexpr int kCombineThreads = 256;

bool uses_tensor_cores(const MemoryReadParams& p) { return p.dtype != DType::kFloat32 && p.key_dim <= 128; }

int value_chunk(const MemoryReadParams& p) { return uses_tensor_cores(p) ? kMmaValueChunk : kSimtValueChunk; }

__host__ __device__ int64_t padded_key_dim(int64_t key_dim) { return (key_dim + 15) / 16 * 16; }

// Workspace layout for splits > 1: acc (B, S, Cv, P), then max (B, S, P), then sum (B, S, P).
struct Partials {
  float* acc;
  float* max;
  float* sum;
};

__host__ __device__ Partials partials(const MemoryReadParams& p) {
  const int64_t acc = p.batch * p.splits * p.value_dim * p.pixels;
  const int64_t rows = p.batch * p.splits * p.pixels;
  return {p.workspace, p.workspace + acc, p.workspace + acc + rows};
}

// Rows [cv0, cv0 + chunk) of q_val for queries [q0, q0 + 64) go to out[:, Cv + cv]: a plain copy.
template <typename T>
__device__ void copy_query_values(const MemoryReadParams& p, int64_t b, int64_t q0, int64_t cv0, int chunk) {
  const T* src = static_cast<const T*>(p.q_val) + b * p.q_val_stride[0];
  T* dst = static_cast<T*>(p.out) + b * p.out_stride[0] + p.value_dim * p.out_stride[1];
  for (int i = threadIdx.x; i < chunk * kTile; i += blockDim.x) {
    const int64_t cv = cv0 + i / kTile, q = q0 + i % kTile;
    if (cv < p.value_dim && q < p.pixels) dst[cv * p.out_stride[1] + q] = src[cv * p.q_val_stride[1] + q];
  }
}

// One output element: normalised into out (one split) or stored unnormalised as a partial.
template <typename T>
__device__ __forceinline__ void store_result(const MemoryReadParams& p, int64_t b, int64_t cv, int64_t q, float acc,
                                             float sum) {
  if (cv >= p.value_dim || q >= p.pixels) return;
  if (p.splits == 1) {
    T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
    out[cv * p.out_stride[1] + q] = from_float<T>(acc * softmax_normaliser(sum));
  } else {
    partials(p).acc[((b * p.splits + blockIdx.z) * p.value_dim + cv) * p.pixels + q] = acc;
  }
}

__device__ __forceinline__ void store_statistics(const MemoryReadParams& p, int64_t b, int64_t q, float max,
                                                 float sum) {
  if (p.splits == 1 || blockIdx.y != 0 || q >= p.pixels) return;
  const Partials part = partials(p);
  const int64_t at = (b * p.splits + blockIdx.z) * p.pixels + q;
  part.max[at] = max;
  part.sum[at] = sum;
}

// ---------------------------------------------------------------------------------------------
// SIMT kernel (any dtype, computed in float32).

int64_t simt_shared_bytes(int64_t key_dim) {
  const int64_t floats = 2 * key_dim * kTile + kSimtValueChunk * (kTile + 1) + kTile * kTile + 16 * kTile + 3 * kTile;
  return floats * static_cast<int64_t>(sizeof(float));
}

template <typename T>
__global__ void __launch_bounds__(kSimtThreads) read_simt_kernel(MemoryReadParams p) {
  extern __shared__ float smem[];
  const int64_t key_dim = p.key_dim;
  float* qs = smem;                                // [Ck][64] queries
  float* ks = qs + key_dim * kTile;                // [Ck][64] keys
  float* vs = ks + key_dim * kTile;                // [64 channels][65] values
  float* ps = vs + kSimtValueChunk * (kTile + 1);  // [64 entries][64 queries] weights
  float* red = ps + kTile * kTile;                 // [16][64] partial column max / sum
  float* row_max = red + 16 * kTile;
  float* row_sum = row_max + kTile;
  float* rescale = row_sum + kTile;

  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / query_tiles, q0 = (blockIdx.x % query_tiles) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kSimtValueChunk;
  if (blockIdx.z == 0) copy_query_values<T>(p, b, q0, cv0, kSimtValueChunk);

  const T* mem_key = static_cast<const T*>(p.mem_key) + b * p.mem_key_stride[0];
  const T* mem_val = static_cast<const T*>(p.mem_val) + b * p.mem_val_stride[0];
  const T* q_key = static_cast<const T*>(p.q_key) + b * p.q_key_stride[0];
  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin,
              &end);

  for (int64_t i = tid; i < key_dim * kTile; i += kSimtThreads) {
    const int64_t c = i / kTile, q = q0 + i % kTile;
    qs[i] = q < p.pixels ? to_float(q_key[c * p.q_key_stride[1] + q]) : 0.0f;
  }
  if (tid < kTile) {
    row_max[tid] = -INFINITY;
    row_sum[tid] = 0.0f;
  }
  const float scale = softmax_scale_log2(key_dim);
  float acc[4][4] = {};  // [channel tr + 16 i][query tq + 16 j]

  for (int64_t n0 = begin; n0 < end; n0 += kTile) {
    __syncthreads();  // previous tile fully consumed
    for (int64_t i = tid; i < key_dim * kTile; i += kSimtThreads) {
      const int64_t c = i / kTile, n = n0 + i % kTile;
      ks[i] = n < end ? to_float(mem_key[c * p.mem_key_stride[1] + n]) : 0.0f;
    }
    for (int i = tid; i < kSimtValueChunk * kTile; i += kSimtThreads) {
      const int64_t c = cv0 + i / kTile, n = n0 + i % kTile;
      vs[(i / kTile) * (kTile + 1) + i % kTile] =
          (c < p.value_dim && n < end) ? to_float(mem_val[c * p.mem_val_stride[1] + n]) : 0.0f;
    }
    __syncthreads();

    float s[4][4] = {};  // [entry tr + 16 i][query tq + 16 j]
    for (int64_t c = 0; c < key_dim; ++c) {
      float kv[4], qv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) kv[i] = ks[c * kTile + tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) qv[j] = qs[c * kTile + tq + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(kv[i], qv[j], s[i][j]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float local = -INFINITY;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[i][j] = n0 + tr + 16 * i < end ? s[i][j] * scale : -INFINITY;
        local = fmaxf(local, s[i][j]);
      }
      red[tr * kTile + tq + 16 * j] = local;
    }
    __syncthreads();
    if (tid < kTile) {
      float tile_max = -INFINITY;
      for (int r = 0; r < 16; ++r) tile_max = fmaxf(tile_max, red[r * kTile + tid]);
      const float updated = fmaxf(row_max[tid], tile_max);
      rescale[tid] = online_rescale(row_max[tid], updated);
      row_max[tid] = updated;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int q = tq + 16 * j;
      const float m = row_max[q];
      float local = 0.0f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float w = exp2_approx(s[i][j] - m);
        ps[(tr + 16 * i) * kTile + q] = w;
        local += w;
      }
      red[tr * kTile + q] = local;
    }
    __syncthreads();
    if (tid < kTile) {
      float total = 0.0f;
      for (int r = 0; r < 16; ++r) total += red[r * kTile + tid];
      row_sum[tid] = row_sum[tid] * rescale[tid] + total;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float a = rescale[tq + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i][j] *= a;
    }
    for (int n = 0; n < kTile; ++n) {
      float pv[4], vv[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) pv[j] = ps[n * kTile + tq + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) vv[i] = vs[(tr + 16 * i) * (kTile + 1) + n];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(vv[i], pv[j], acc[i][j]);
    }
  }
  __syncthreads();  // final row_sum visible

#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) store_result<T>(p, b, cv0 + tr + 16 * i, q0 + tq + 16 * j, acc[i][j], row_sum[tq + 16 * j]);
  if (tid < kTile) store_statistics(p, b, q0 + tid, row_max[tid], row_sum[tid]);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel (fp16 / bf16). Shared memory holds raw 16-bit values.

int64_t mma_shared_bytes(int64_t key_dim) {
  const int64_t ld = padded_key_dim(key_dim) + 8;
  return (2 * kTile * ld + kMmaValueChunk * kMmaValueLd) * static_cast<int64_t>(sizeof(uint16_t));
}

template <bool kBFloat16>
__global__ void __launch_bounds__(kMmaThreads) read_mma_kernel(MemoryReadParams p) {
  using T = std::conditional_t<kBFloat16, __nv_bfloat16, __half>;
  extern __shared__ __align__(16) uint16_t hsmem[];
  const int64_t key_dim = p.key_dim;
  const int key_pad = static_cast<int>(padded_key_dim(key_dim));
  const int ld = key_pad + 8;           // padded rows: conflict-free fragment loads
  uint16_t* qs = hsmem;                 // [64 queries][ld]: A operand, channels contiguous
  uint16_t* ks = qs + kTile * ld;       // [64 entries][ld]: B operand, channels contiguous
  uint16_t* vs = ks + kTile * ld;       // [128 channels][72]: B operand, entries contiguous

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / query_tiles, q0 = (blockIdx.x % query_tiles) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kMmaValueChunk;
  if (blockIdx.z == 0) copy_query_values<T>(p, b, q0, cv0, kMmaValueChunk);

  const uint16_t* mem_key = static_cast<const uint16_t*>(p.mem_key) + b * p.mem_key_stride[0];
  const uint16_t* mem_val = static_cast<const uint16_t*>(p.mem_val) + b * p.mem_val_stride[0];
  const uint16_t* q_key = static_cast<const uint16_t*>(p.q_key) + b * p.q_key_stride[0];
  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin,
              &end);

  // Zero padding (channels past Ck, queries past P) adds nothing to the dot products.
  for (int i = tid; i < key_pad * kTile; i += kMmaThreads) {
    const int c = i / kTile, q = i % kTile;
    qs[q * ld + c] = (c < key_dim && q0 + q < p.pixels) ? q_key[c * p.q_key_stride[1] + q0 + q] : uint16_t{0};
  }
  const float scale = softmax_scale_log2(key_dim);
  float o[kMmaValueChunk / 8][4] = {};            // O^T rows (g, g + 8) x channels (8 ct + 2t, +1)
  float row_max[2] = {-INFINITY, -INFINITY};      // rows g and g + 8 of this warp
  float row_sum[2] = {0.0f, 0.0f};                // this lane's share; reduced over the quad at the end

  for (int64_t n0 = begin; n0 < end; n0 += kTile) {
    __syncthreads();
    for (int i = tid; i < key_pad * kTile; i += kMmaThreads) {
      const int c = i / kTile, n = i % kTile;
      ks[n * ld + c] = (c < key_dim && n0 + n < end) ? mem_key[c * p.mem_key_stride[1] + n0 + n] : uint16_t{0};
    }
    // Entries past `end` load as 0: a NaN there times a zero weight would still poison the sum.
    for (int i = tid; i < kMmaValueChunk * kTile; i += kMmaThreads) {
      const int c = i / kTile, n = i % kTile;
      vs[c * kMmaValueLd + n] =
          (cv0 + c < p.value_dim && n0 + n < end) ? mem_val[(cv0 + c) * p.mem_val_stride[1] + n0 + n] : uint16_t{0};
    }
    __syncthreads();

    float s[kTile / 8][4] = {};  // S rows (g, g + 8) x entries (8 nt + 2t, +1)
    for (int kc = 0; kc < key_pad; kc += 16) {
      const uint16_t* q_row = qs + (warp * 16 + g) * ld + kc + 2 * t;
      const uint32_t a[4] = {device::load_pair(q_row), device::load_pair(q_row + 8 * ld), device::load_pair(q_row + 8),
                             device::load_pair(q_row + 8 * ld + 8)};
#pragma unroll
      for (int nt = 0; nt < kTile / 8; ++nt) {
        const uint16_t* k_row = ks + (nt * 8 + g) * ld + kc + 2 * t;
        device::mma_16816<kBFloat16>(s[nt], a, device::load_pair(k_row), device::load_pair(k_row + 8));
      }
    }

    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTile / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t n = n0 + nt * 8 + 2 * t + (e & 1);
        s[nt][e] = n < end ? s[nt][e] * scale : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 2));
      const float updated = fmaxf(row_max[r], tile_max[r]);
      alpha[r] = online_rescale(row_max[r], updated);
      row_max[r] = updated;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < kTile / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2_approx(s[nt][e] - row_max[e >> 1]);
        row_sum[e >> 1] += s[nt][e];
      }
#pragma unroll
    for (int ct = 0; ct < kMmaValueChunk / 8; ++ct) {
      o[ct][0] *= alpha[0];
      o[ct][1] *= alpha[0];
      o[ct][2] *= alpha[1];
      o[ct][3] *= alpha[1];
    }
    // The S accumulators of entry tiles 2kk and 2kk + 1 are exactly the A fragment of k-step kk.
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      const uint32_t a[4] = {device::pack_pair<kBFloat16>(s[2 * kk][0], s[2 * kk][1]),
                             device::pack_pair<kBFloat16>(s[2 * kk][2], s[2 * kk][3]),
                             device::pack_pair<kBFloat16>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             device::pack_pair<kBFloat16>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int ct = 0; ct < kMmaValueChunk / 8; ++ct) {
        const uint16_t* v_row = vs + (ct * 8 + g) * kMmaValueLd + kk * 16 + 2 * t;
        device::mma_16816<kBFloat16>(o[ct], a, device::load_pair(v_row), device::load_pair(v_row + 8));
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 2);
  }
  const int64_t q_first = q0 + warp * 16 + g;
#pragma unroll
  for (int ct = 0; ct < kMmaValueChunk / 8; ++ct)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      store_result<T>(p, b, cv0 + ct * 8 + 2 * t + (e & 1), q_first + 8 * (e >> 1), o[ct][e], row_sum[e >> 1]);
  if (t == 0) {
    store_statistics(p, b, q_first, row_max[0], row_sum[0]);
    store_statistics(p, b, q_first + 8, row_max[1], row_sum[1]);
  }
}

// ---------------------------------------------------------------------------------------------
// Combine: out = sum_z w_z acc_z / sum_z w_z sum_z with w_z = exp2(max_z - max over z).

template <typename T>
__global__ void __launch_bounds__(kCombineThreads) read_combine_kernel(MemoryReadParams p) {
  const Partials part = partials(p);
  const int64_t total = p.batch * p.value_dim * p.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t q = idx % p.pixels, cv = (idx / p.pixels) % p.value_dim, b = idx / (p.pixels * p.value_dim);
    const float* maxima = part.max + b * p.splits * p.pixels + q;
    const float* sums = part.sum + b * p.splits * p.pixels + q;
    const float* accs = part.acc + (b * p.splits * p.value_dim + cv) * p.pixels + q;
    float overall = -INFINITY;
    for (int z = 0; z < p.splits; ++z) overall = fmaxf(overall, maxima[z * p.pixels]);
    float weight_sum = 0.0f, value = 0.0f;
    for (int z = 0; z < p.splits; ++z) {
      const float w = split_weight(maxima[z * p.pixels], overall);
      weight_sum += w * sums[z * p.pixels];
      value += w * accs[z * p.value_dim * p.pixels];
    }
    T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
    out[cv * p.out_stride[1] + q] = from_float<T>(value * softmax_normaliser(weight_sum));
  }
}

template <typename Kernel>
cudaError_t launch_with_shared(Kernel kernel, dim3 grid, int threads, int64_t shared, cudaStream_t stream,
                               const MemoryReadParams& p) {
  if (shared > 48 * 1024) {
    const cudaError_t error =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (error != cudaSuccess) return error;
  }
  kernel<<<grid, threads, shared, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_combine(const MemoryReadParams& p, cudaStream_t stream) {
  const int64_t total = p.batch * p.value_dim * p.pixels;
  const int64_t blocks = std::min<int64_t>((total + kCombineThreads - 1) / kCombineThreads, 65535);
  read_combine_kernel<T><<<static_cast<unsigned>(blocks), kCombineThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

int memory_read_splits(const MemoryReadParams& p, int multiprocessors) {
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t chunks = (p.value_dim + value_chunk(p) - 1) / value_chunk(p);
  return choose_splits(p.batch * query_tiles * chunks, 2 * static_cast<int64_t>(multiprocessors), p.entries,
                       4 * kTile);
}

int64_t memory_read_workspace_floats(const MemoryReadParams& p) {
  return p.splits > 1 ? p.batch * p.splits * (p.value_dim + 2) * p.pixels : 0;
}

cudaError_t launch_memory_read(const MemoryReadParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.pixels == 0 || p.value_dim == 0) return cudaSuccess;
  if (p.key_dim < 1 || p.key_dim > kMaxReadKeyDim || p.splits < 1) return cudaErrorInvalidValue;
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t chunks = (p.value_dim + value_chunk(p) - 1) / value_chunk(p);
  const dim3 grid(static_cast<unsigned>(p.batch * query_tiles), static_cast<unsigned>(chunks),
                  static_cast<unsigned>(p.splits));
  cudaError_t error = cudaSuccess;
  if (uses_tensor_cores(p)) {
    const int64_t shared = mma_shared_bytes(p.key_dim);
    error = p.dtype == DType::kBFloat16
                ? launch_with_shared(read_mma_kernel<true>, grid, kMmaThreads, shared, stream, p)
                : launch_with_shared(read_mma_kernel<false>, grid, kMmaThreads, shared, stream, p);
  } else {
    const int64_t shared = simt_shared_bytes(p.key_dim);
    switch (p.dtype) {
      case DType::kFloat32:
        error = launch_with_shared(read_simt_kernel<float>, grid, kSimtThreads, shared, stream, p);
        break;
      case DType::kFloat16:
        error = launch_with_shared(read_simt_kernel<__half>, grid, kSimtThreads, shared, stream, p);
        break;
      case DType::kBFloat16:
        error = launch_with_shared(read_simt_kernel<__nv_bfloat16>, grid, kSimtThreads, shared, stream, p);
        break;
    }
  }
  if (error != cudaSuccess || p.splits == 1) return error;
  switch (p.dtype) {
    case DType::kFloat32:
      return launch_combine<float>(p, stream);
    case DType::kFloat16:
      return launch_combine<__half>(p, stream);
    case DType::kBFloat16:
      return launch_combine<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace swiftcuda
