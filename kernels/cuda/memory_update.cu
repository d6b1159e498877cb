// CUDA memory update: fused similarity, best match, top-k novelty selection and in-place append.
//
// Three kernels on one stream, no host synchronisation:
//  1. fill: best[b, p] = ordered_key(-inf) (what an empty memory gives every pixel).
//  2. best match: grid (item x 64-pixel tile, memory split). A block holds its 64 new keys and
//     their inverse norms in shared memory, walks its memory range in 64-entry tiles (inverse
//     norms computed per tile), keeps each pixel's running maximum cosine in registers and ends
//     with one atomicMax per pixel on the order-preserving integer key (common.cuh). The P x N
//     similarity matrix never exists.
//  3. select + append: one 1024-thread block per item. A 4-pass radix select (8 bits a pass,
//     histogram in shared memory) finds the k-th smallest score key and how many of the keys equal
//     to it to take; a pass in pixel order with block-wide prefix sums then picks the pixels below
//     it plus the first of the tied ones (so ties go to the lower pixel index, exactly the packed
//     (score, pixel) order) and gives each its rank, which is its position: the chosen pixels are
//     appended in ascending order at n_valid without any sort. The columns are copied raw (the
//     buffers' own dtype), writes past the capacity are dropped, and n_valid advances on the device.
#include <algorithm>

#include "device_utils.cuh"
#include "launch.cuh"
#include "memory_update.cuh"

namespace swiftcuda {
namespace {

using device::to_float;

constexpr int kTile = kQueryTile;  // new pixels per block and memory entries per step (64)
constexpr int kMatchThreads = 256;
constexpr int kSelectThreads = 1024;
constexpr int kFillThreads = 256;

struct Workspace {
  uint32_t* best;   // (B, P) order-preserving keys of the best cosine
  int32_t* chosen;  // (B, P) chosen pixel indices, ascending (first `count` used)
};

__host__ __device__ Workspace workspace(const MemoryUpdateParams& p) {
  uint32_t* best = static_cast<uint32_t*>(p.workspace);
  return {best, reinterpret_cast<int32_t*>(best + p.batch * p.pixels)};
}

__device__ __forceinline__ int64_t load_start(const MemoryUpdateParams& p, int64_t b) {
  const int64_t n =
      p.n_valid_int64 ? static_cast<const int64_t*>(p.n_valid)[b] : static_cast<const int32_t*>(p.n_valid)[b];
  return n < 0 ? 0 : n;  // a negative length counts as an empty memory (as on the CPU)
}

__global__ void fill_kernel(uint32_t* best, int64_t size) {
  const uint32_t empty = ordered_key(-INFINITY);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < size;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    best[i] = empty;
}

int64_t match_shared_bytes(int64_t key_dim) {
  return (2 * key_dim * kTile + 2 * kTile + 16 * kTile) * static_cast<int64_t>(sizeof(float));
}

// inverse[col] = 1 / ||tile[:, col]|| for a (channels, 64) tile: 4 lanes per column.
__device__ __forceinline__ void tile_inverse_norms(const float* tile, int64_t channels, float* inverse) {
  const int col = threadIdx.x >> 2, part = threadIdx.x & 3;
  float sum = 0.0f;
  for (int64_t c = part; c < channels; c += 4) sum = fmaf(tile[c * kTile + col], tile[c * kTile + col], sum);
  sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
  sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 2);
  if (part == 0) inverse[col] = inverse_norm(sum);
}

template <typename T>
__global__ void __launch_bounds__(kMatchThreads) best_match_kernel(MemoryUpdateParams p) {
  extern __shared__ float smem[];
  const int64_t key_dim = p.key_dim;
  float* qs = smem;                  // [Ck][64] new keys
  float* ks = qs + key_dim * kTile;  // [Ck][64] memory keys
  float* inverse_new = ks + key_dim * kTile;
  float* inverse_mem = inverse_new + kTile;
  float* red = inverse_mem + kTile;  // [16][64]

  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
  const int64_t tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles, p0 = (blockIdx.x % tiles) * kTile;
  int64_t begin = 0, end = 0;
  split_range(valid_length(load_start(p, b), p.capacity), blockIdx.y, p.splits, kTile, &begin, &end);
  if (begin >= end) return;  // uniform over the block; the best stays -inf's key

  const T* new_key = static_cast<const T*>(p.new_key) + b * p.new_key_stride[0];
  const T* mem_key = static_cast<const T*>(p.key_buf) + b * p.key_buf_stride[0];
  for (int64_t i = tid; i < key_dim * kTile; i += kMatchThreads) {
    const int64_t c = i / kTile, q = p0 + i % kTile;
    qs[i] = q < p.pixels ? to_float(new_key[c * p.new_key_stride[1] + q]) : 0.0f;
  }
  __syncthreads();
  tile_inverse_norms(qs, key_dim, inverse_new);

  float best[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};  // pixels tq + 16 j
  for (int64_t n0 = begin; n0 < end; n0 += kTile) {
    __syncthreads();
    for (int64_t i = tid; i < key_dim * kTile; i += kMatchThreads) {
      const int64_t c = i / kTile, n = n0 + i % kTile;
      ks[i] = n < end ? to_float(mem_key[c * p.key_buf_stride[1] + n]) : 0.0f;
    }
    __syncthreads();
    tile_inverse_norms(ks, key_dim, inverse_mem);
    __syncthreads();
    float s[4][4] = {};  // [entry tr + 16 i][pixel tq + 16 j]
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
    for (int i = 0; i < 4; ++i) {
      if (n0 + tr + 16 * i >= end) continue;
      const float inv_k = inverse_mem[tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) best[j] = nan_max(best[j], s[i][j] * inverse_new[tq + 16 * j] * inv_k);
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) red[tr * kTile + tq + 16 * j] = best[j];
  __syncthreads();
  if (tid < kTile && p0 + tid < p.pixels) {
    float m = -INFINITY;
    for (int r = 0; r < 16; ++r) m = nan_max(m, red[r * kTile + tid]);  // NaN stays NaN (sorted last)
    atomicMax(workspace(p).best + b * p.pixels + p0 + tid, ordered_key(m));
  }
}

// Copies column chosen[i] of src (channels, P) to column start + i of dst, i < fits.
template <typename Raw>
__device__ void append_columns(Raw* dst, int64_t dst_stride, const Raw* src, int64_t src_stride, int64_t channels,
                               const int32_t* chosen, int64_t start, int64_t fits) {
  for (int64_t e = threadIdx.x; e < channels * fits; e += blockDim.x) {
    const int64_t c = e / fits, i = e % fits;  // consecutive threads write consecutive entries
    dst[c * dst_stride + start + i] = src[c * src_stride + chosen[i]];
  }
}

template <typename Raw>
__global__ void __launch_bounds__(kSelectThreads) select_append_kernel(MemoryUpdateParams p) {
  __shared__ int histogram[256];
  __shared__ int warp_totals[32];
  __shared__ uint32_t digit_found;
  __shared__ int rank_left;

  const int tid = threadIdx.x;
  const int64_t b = blockIdx.x;
  const Workspace ws = workspace(p);
  const uint32_t* keys = ws.best + b * p.pixels;
  int32_t* chosen = ws.chosen + b * p.pixels;
  const int64_t start = load_start(p, b);
  const int64_t fits = appended_count(start, p.count, p.capacity);

  // Radix select, most significant digit first: the count-th smallest key (1-based rank).
  uint32_t prefix = 0, mask = 0;
  int rank = static_cast<int>(p.count);
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kSelectThreads) histogram[i] = 0;
    __syncthreads();
    for (int64_t q = tid; q < p.pixels; q += kSelectThreads) {
      const uint32_t key = keys[q];
      if ((key & mask) == prefix) atomicAdd(&histogram[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int below = 0;
      for (int d = 0; d < 256; ++d) {
        if (below + histogram[d] >= rank) {
          digit_found = static_cast<uint32_t>(d);
          rank_left = rank - below;
          break;
        }
        below += histogram[d];
      }
    }
    __syncthreads();
    prefix |= digit_found << shift;
    mask |= 255u << shift;
    rank = rank_left;
    __syncthreads();  // digit_found / rank_left read by all before the next pass rewrites them
  }
  const uint32_t threshold = prefix;
  const int take_equal = rank;  // keys equal to the threshold to take, lowest pixels first

  // Pixel-order pass: each chosen pixel's rank among the chosen is its position in the memory.
  int equal_before = 0, chosen_before = 0;
  for (int64_t base = 0; base < p.pixels; base += kSelectThreads) {
    const int64_t q = base + tid;
    const uint32_t key = q < p.pixels ? keys[q] : 0xFFFFFFFFu;
    const bool equal = q < p.pixels && key == threshold;
    int equal_total = 0, chosen_total = 0;
    const int equal_rank = equal_before + device::block_exclusive_scan(equal, warp_totals, &equal_total);
    const bool take = q < p.pixels && (key < threshold || (equal && equal_rank < take_equal));
    const int position = chosen_before + device::block_exclusive_scan(take, warp_totals, &chosen_total);
    if (take) chosen[position] = static_cast<int32_t>(q);
    equal_before += equal_total;
    chosen_before += chosen_total;
  }
  __syncthreads();  // the chosen list (global memory) is visible to the whole block

  append_columns(static_cast<Raw*>(p.key_buf) + b * p.key_buf_stride[0], p.key_buf_stride[1],
                 static_cast<const Raw*>(p.new_key) + b * p.new_key_stride[0], p.new_key_stride[1], p.key_dim, chosen,
                 start, fits);
  append_columns(static_cast<Raw*>(p.val_buf) + b * p.val_buf_stride[0], p.val_buf_stride[1],
                 static_cast<const Raw*>(p.new_val) + b * p.new_val_stride[0], p.new_val_stride[1], p.value_dim, chosen,
                 start, fits);
  if (tid == 0) {
    if (p.n_valid_int64) {
      static_cast<int64_t*>(p.n_valid)[b] = start + fits;
    } else {
      static_cast<int32_t*>(p.n_valid)[b] = static_cast<int32_t>(start + fits);
    }
  }
}

template <typename Kernel>
cudaError_t launch_match(Kernel kernel, dim3 grid, int64_t shared, cudaStream_t stream, const MemoryUpdateParams& p) {
  if (shared > 48 * 1024) {
    const cudaError_t error =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (error != cudaSuccess) return error;
  }
  launch_kernel(kernel, grid, dim3(kMatchThreads), shared, stream, p);
  return cudaGetLastError();
}

}  // namespace

int memory_update_splits(const MemoryUpdateParams& p, int multiprocessors) {
  const int64_t tiles = (p.pixels + kTile - 1) / kTile;
  return choose_splits(p.batch * tiles, 2 * static_cast<int64_t>(multiprocessors), p.capacity, 4 * kTile);
}

int64_t memory_update_workspace_bytes(const MemoryUpdateParams& p) {
  return p.batch * p.pixels * static_cast<int64_t>(sizeof(uint32_t) + sizeof(int32_t));
}

cudaError_t launch_memory_update(const MemoryUpdateParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.pixels == 0 || p.count < 1) return cudaSuccess;
  if (p.key_dim < 1 || p.key_dim > kMaxUpdateKeyDim || p.count > p.pixels || p.splits < 1 || p.splits > 65535)
    return cudaErrorInvalidValue;
  const int64_t size = p.batch * p.pixels;
  const int64_t fill_blocks = std::min<int64_t>((size + kFillThreads - 1) / kFillThreads, 4096);
  launch_kernel(fill_kernel, dim3(static_cast<unsigned>(fill_blocks)), dim3(kFillThreads), 0, stream, workspace(p).best,
                size);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;

  const int64_t tiles = (p.pixels + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(p.batch * tiles), static_cast<unsigned>(p.splits));
  const int64_t shared = match_shared_bytes(p.key_dim);
  switch (p.dtype) {
    case DType::kFloat32: error = launch_match(best_match_kernel<float>, grid, shared, stream, p); break;
    case DType::kFloat16: error = launch_match(best_match_kernel<__half>, grid, shared, stream, p); break;
    case DType::kBFloat16: error = launch_match(best_match_kernel<__nv_bfloat16>, grid, shared, stream, p); break;
  }
  if (error != cudaSuccess) return error;

  if (p.dtype == DType::kFloat32) {
    launch_kernel(select_append_kernel<uint32_t>, dim3(static_cast<unsigned>(p.batch)), dim3(kSelectThreads), 0, stream,
                  p);
  } else {
    launch_kernel(select_append_kernel<uint16_t>, dim3(static_cast<unsigned>(p.batch)), dim3(kSelectThreads), 0, stream,
                  p);
  }
  return cudaGetLastError();
}

}  // namespace swiftcuda
