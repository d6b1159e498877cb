// CUDA memory read of the STM family: l2 / dot logits with selection, shrinkage and any scale, the
// top-k softmax or the full softmax, the readout alone or with the query values, and usage.
//
// Every kernel works on 64-query x 64-entry tiles with 256 threads, each thread computing a 4 x 4
// block of logits in float32 (SIMT: any dtype; the products are exact float32 FMAs of the inputs
// converted to float32, as the spec's float64 rounds to them). Per block, the query side lives in
// shared memory for the whole sweep:
//    a[c][q] = qk (dot), 2 qk (l2), 2 qk qe (l2 with a selection qe)
//    b[c][q] = -qe (selection only),  offset[q] = -sum_c qe qk^2 (selection only)
// and per memory tile the keys k[c][n] and shrinkage s[n], so that a logit is
//    (sum_c a k + sum_c b k^2 + offset - [l2, no selection] sum_c k^2) * s * scale * log2(e)
// with the squared keys formed in registers from the key tile (no augmented copy of the memory).
//
// Top-k (top_k > 0), three kernels:
//  1. topk_sweep_kernel (grid: item x query tile, 1, split): each warp owns 8 queries and keeps,
//     per query, its top_k best (logit, entry) pairs across its 32 lanes (2 slots a lane, in
//     registers). A pair is one 64-bit key: the logit's order-preserving bits (common.cuh's
//     ordered_key: NaN above everything, as torch.topk ranks it) then the entry, so one integer
//     comparison ranks pairs and equal keys are the same entry. Per memory tile a query's 64
//     logits are candidates; while one beats the list's minimum (a ballot: one instruction when
//     none does, the common case after the first tiles), the best candidate (a warp max)
//     replaces the minimum (the one slot holding it: keys are distinct; empty slots hold distinct
//     small keys). The lists go to the workspace, one per split.
//  2. topk_select_kernel (a warp per query): merges the splits' lists with the same insertion,
//     takes the softmax over the final top_k (empty slots weigh 0), writes (entry, weight) pairs
//     and adds each weight to its entry's usage (atomicAdd).
//  3. topk_gather_kernel (grid: item x query tile, value chunk): out[c][q] = sum_j w_qj V[c][e_qj],
//     top_k x Cv multiply-adds a query, and the query values after the readout.
// Full softmax (top_k == 0): softmax_sweep_kernel is memory_read.cu's SIMT online softmax with these
// logits, combine_kernel merges splits, and usage_kernel (grid: item x entry tile) recomputes the
// logits of its entries against every query tile with the queries' final (max, sum) and sums the
// weights over the queries (usage needs the final normaliser, known only after the sweep).
#include <algorithm>

#include "device_utils.cuh"
#include "launch.cuh"
#include "memory_read_family.cuh"
#include "simt_softmax.cuh"

namespace swiftcuda {
namespace {

using device::from_float;
using device::to_float;

constexpr int kTile = kQueryTile;  // 64 queries a block, 64 entries a memory tile
static_assert(kTile == device::kSimtSoftmaxTile, "the full-softmax sweep walks memory in softmax tiles");
constexpr int kThreads = 256;
constexpr int kValueChunk = 64;  // value channels a softmax / gather block covers
constexpr int kWarps = kThreads / 32;
constexpr int kWarpQueries = kTile / kWarps;  // queries a warp of the top-k sweep owns
constexpr int kLogitLd = kTile + 1;           // shared row of the query-major logit tile
constexpr uint64_t kDeadSlot = ~uint64_t{0};  // a list slot past top_k: never the minimum

// A (logit, entry) pair as one ordered 64-bit key. Real keys are >= 2^32 x ordered_key(-inf) > 64,
// so the empty-slot keys 0 .. 63 are below all of them.
__device__ __forceinline__ uint64_t pair_key(float logit, int64_t entry) {
  return (static_cast<uint64_t>(ordered_key(logit)) << 32) | static_cast<uint64_t>(entry);
}
__device__ __forceinline__ bool is_pair(uint64_t key) { return key >= (uint64_t{1} << 32) && key != kDeadSlot; }
__device__ __forceinline__ float pair_logit(uint64_t key) {
  return ordered_key_to_float(static_cast<uint32_t>(key >> 32));
}
__device__ __forceinline__ int64_t pair_entry(uint64_t key) { return static_cast<int64_t>(key & 0xFFFFFFFFu); }

__device__ __forceinline__ uint64_t warp_max(uint64_t x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint64_t y = __shfl_xor_sync(0xFFFFFFFFu, x, offset);
    x = y > x ? y : x;
  }
  return x;
}
__device__ __forceinline__ uint64_t warp_min(uint64_t x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const uint64_t y = __shfl_xor_sync(0xFFFFFFFFu, x, offset);
    x = y < x ? y : x;
  }
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_fmax(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, offset));
  return x;
}

// One query's running list: slots lane and lane + 32 of a warp (warp-collective).
struct TopList {
  uint64_t slot[2];
  uint64_t min;  // the list's smallest key, the same in every lane

  __device__ __forceinline__ void reset(int top_k, int lane) {
    slot[0] = lane < top_k ? static_cast<uint64_t>(lane) : kDeadSlot;
    slot[1] = lane + 32 < top_k ? static_cast<uint64_t>(lane + 32) : kDeadSlot;
    min = 0;
  }

  // Merges two candidate keys per lane (0: none) into the list.
  __device__ __forceinline__ void insert(uint64_t c0, uint64_t c1) {
    while (__any_sync(0xFFFFFFFFu, c0 > min || c1 > min)) {
      const uint64_t best = warp_max(c0 > c1 ? c0 : c1);
      // Keys are distinct: exactly one slot holds the minimum and one candidate is the best.
      if (slot[0] == min) {
        slot[0] = best;
      } else if (slot[1] == min) {
        slot[1] = best;
      }
      if (c0 == best) {
        c0 = 0;
      } else if (c1 == best) {
        c1 = 0;
      }
      min = warp_min(slot[0] < slot[1] ? slot[0] : slot[1]);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Shared logit machinery.

// Shared floats of the query side: a [Ck][64], b [Ck][64] (selection only), offset [64].
int64_t query_side_floats(int64_t key_dim, bool selection) { return (selection ? 2 : 1) * key_dim * kTile + kTile; }
// Keys [Ck][64] and shrinkage [64] of one memory tile.
int64_t key_side_floats(int64_t key_dim) { return key_dim * kTile + kTile; }

// The query side of queries [q0, q0 + 64) of item b (zeros past P). Ends with a barrier.
template <typename T, bool kSelection>
__device__ void load_query_side(const MemoryReadFamilyParams& p, int64_t b, int64_t q0, float* a, float* e,
                                float* offset) {
  const int key_dim = static_cast<int>(p.key_dim);
  const T* q_key = static_cast<const T*>(p.q_key) + b * p.q_key_stride[0];
  const T* sel = kSelection ? static_cast<const T*>(p.selection) + b * p.selection_stride[0] : nullptr;
  const float factor = p.l2 ? 2.0f : 1.0f;
  for (int i = threadIdx.x; i < key_dim * kTile; i += blockDim.x) {
    const int c = i / kTile;
    const int64_t q = q0 + i % kTile;
    float qk = 0.0f, qe = 0.0f;
    if (q < p.pixels) {
      qk = to_float(q_key[c * p.q_key_stride[1] + q]);
      if constexpr (kSelection) qe = to_float(sel[c * p.selection_stride[1] + q]);
    }
    if constexpr (kSelection) {
      a[i] = 2.0f * qk * qe;
      e[i] = -qe;
    } else {
      a[i] = factor * qk;
    }
  }
  if (threadIdx.x < kTile) {
    float total = 0.0f;
    const int64_t q = q0 + threadIdx.x;
    if (kSelection && q < p.pixels) {
      for (int c = 0; c < key_dim; ++c) {
        const float qk = to_float(q_key[c * p.q_key_stride[1] + q]);
        total += to_float(sel[c * p.selection_stride[1] + q]) * qk * qk;
      }
    }
    offset[threadIdx.x] = -total;
  }
  __syncthreads();
}

// Keys and shrinkage of entries [n0, n0 + 64) of item b; entries at or past `end` read 0 (they may
// hold anything) and must be masked by the caller. The caller places the barriers.
template <typename T>
__device__ void load_key_tile(const MemoryReadFamilyParams& p, int64_t b, int64_t n0, int64_t end, float* ks,
                              float* shrink) {
  const int key_dim = static_cast<int>(p.key_dim);
  const int col = threadIdx.x % kTile;
  const bool valid = n0 + col < end;
  const T* src = static_cast<const T*>(p.mem_key) + b * p.mem_key_stride[0] + n0 + col;
  for (int c = threadIdx.x / kTile; c < key_dim; c += kThreads / kTile)
    ks[c * kTile + col] = valid ? to_float(src[c * p.mem_key_stride[1]]) : 0.0f;
  if (threadIdx.x < kTile) {
    float s = 1.0f;
    if (p.l2 && p.shrinkage != nullptr)
      s = valid ? to_float(static_cast<const T*>(p.shrinkage)[b * p.shrinkage_stride + n0 + col]) : 0.0f;
    shrink[col] = s;
  }
}

// The base-2 logits of entries tr + 16 i and queries tq + 16 j of the tile (thread tid = 16 tr + tq).
template <bool kSelection>
__device__ __forceinline__ void tile_logits(const MemoryReadFamilyParams& p, const float* a, const float* e,
                                            const float* offset, const float* ks, const float* shrink,
                                            float (&s)[4][4]) {
  const int tq = threadIdx.x & 15, tr = threadIdx.x >> 4;
  const int key_dim = static_cast<int>(p.key_dim);
  float norm2[4] = {};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) s[i][j] = 0.0f;
  for (int c = 0; c < key_dim; ++c) {
    float kv[4], av[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) kv[i] = ks[c * kTile + tr + 16 * i];
#pragma unroll
    for (int j = 0; j < 4; ++j) av[j] = a[c * kTile + tq + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = fmaf(kv[i], av[j], s[i][j]);
    if constexpr (kSelection) {
      float ev[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) ev[j] = e[c * kTile + tq + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float k2 = kv[i] * kv[i];
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(k2, ev[j], s[i][j]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) norm2[i] = fmaf(kv[i], kv[i], norm2[i]);
    }
  }
  const float scale = p.scale * kLog2e;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float entry_term = kSelection ? 0.0f : (p.l2 ? norm2[i] : 0.0f);
    const float factor = shrink[tr + 16 * i] * scale;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float query_term = kSelection ? offset[tq + 16 * j] : 0.0f;
      s[i][j] = (s[i][j] + query_term - entry_term) * factor;
    }
  }
}

// Rows [cv0, cv0 + chunk) of q_val for queries [q0, q0 + 64) go to out[:, Cv + cv].
template <typename T>
__device__ void copy_query_values(const MemoryReadFamilyParams& p, int64_t b, int64_t q0, int64_t cv0, int chunk) {
  if (p.q_val == nullptr) return;
  const T* src = static_cast<const T*>(p.q_val) + b * p.q_val_stride[0];
  T* dst = static_cast<T*>(p.out) + b * p.out_stride[0] + p.value_dim * p.out_stride[1];
  for (int i = threadIdx.x; i < chunk * kTile; i += blockDim.x) {
    const int64_t cv = cv0 + i / kTile, q = q0 + i % kTile;
    if (cv < p.value_dim && q < p.pixels) dst[cv * p.out_stride[1] + q] = src[cv * p.q_val_stride[1] + q];
  }
}

__host__ __device__ int64_t query_tiles(const MemoryReadFamilyParams& p) { return (p.pixels + kTile - 1) / kTile; }
__host__ __device__ int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

// ---------------------------------------------------------------------------------------------
// Workspace layouts (byte offsets are multiples of 8).

// Top-k: lists (B, S, P, top_k) uint64, then the final entries (B, P, top_k) int32 and weights
// (B, P, top_k) float32.
struct TopKWorkspace {
  uint64_t* lists;
  int32_t* entries;
  float* weights;
};

__host__ __device__ TopKWorkspace topk_workspace(const MemoryReadFamilyParams& p) {
  const int64_t lists = p.batch * p.splits * p.pixels * p.top_k;
  const int64_t chosen = p.batch * p.pixels * p.top_k;
  char* base = static_cast<char*>(p.workspace);
  uint64_t* list_ptr = reinterpret_cast<uint64_t*>(base);
  int32_t* entry_ptr = reinterpret_cast<int32_t*>(base + 8 * lists);
  float* weight_ptr = reinterpret_cast<float*>(base + 8 * lists + round_up(4 * chosen, 8));
  return {list_ptr, entry_ptr, weight_ptr};
}

// Full softmax: acc (B, S, Cv, P), then max (B, S, P) and sum (B, S, P), all float32; acc only
// with splits, max / sum with splits or usage.
struct SoftmaxWorkspace {
  float* acc;
  float* max;
  float* sum;
};

__host__ __device__ SoftmaxWorkspace softmax_workspace(const MemoryReadFamilyParams& p) {
  const int64_t acc = p.splits > 1 ? p.batch * p.splits * p.value_dim * p.pixels : 0;
  const int64_t rows = p.batch * p.splits * p.pixels;
  float* base = static_cast<float*>(p.workspace);
  return {base, base + acc, base + acc + rows};
}

// ---------------------------------------------------------------------------------------------
// Top-k: the sweep.

template <typename T, bool kSelection>
__global__ void __launch_bounds__(kThreads) topk_sweep_kernel(MemoryReadFamilyParams p) {
  extern __shared__ float smem[];
  const int key_dim = static_cast<int>(p.key_dim);
  float* a = smem;                                         // [Ck][64]
  float* e = a + key_dim * kTile;                          // [Ck][64] when kSelection
  float* offset = e + (kSelection ? key_dim * kTile : 0);  // [64]
  float* ks = offset + kTile;                              // [Ck][64]
  float* shrink = ks + key_dim * kTile;                    // [64]
  float* logits = shrink + kTile;                          // [64 queries][65]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, tq = tid & 15, tr = tid >> 4;
  const int64_t b = blockIdx.x / query_tiles(p), q0 = (blockIdx.x % query_tiles(p)) * kTile;
  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin, &end);
  load_query_side<T, kSelection>(p, b, q0, a, e, offset);

  TopList lists[kWarpQueries];
#pragma unroll
  for (int i = 0; i < kWarpQueries; ++i) lists[i].reset(p.top_k, lane);

  for (int64_t n0 = begin; n0 < end; n0 += kTile) {
    load_key_tile<T>(p, b, n0, end, ks, shrink);
    __syncthreads();  // the tile landed
    float s[4][4];
    tile_logits<kSelection>(p, a, e, offset, ks, shrink, s);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) logits[(tq + 16 * j) * kLogitLd + tr + 16 * i] = s[i][j];
    __syncthreads();  // the logits are complete; the key tile may be overwritten after the next barrier
    const bool valid0 = n0 + lane < end, valid1 = n0 + lane + 32 < end;
#pragma unroll
    for (int i = 0; i < kWarpQueries; ++i) {
      if (q0 + warp * kWarpQueries + i >= p.pixels) break;  // the last tile's missing queries (warp-uniform)
      const float* row = logits + (warp * kWarpQueries + i) * kLogitLd;
      const uint64_t c0 = valid0 ? pair_key(row[lane], n0 + lane) : 0;
      const uint64_t c1 = valid1 ? pair_key(row[lane + 32], n0 + lane + 32) : 0;
      lists[i].insert(c0, c1);
    }
    __syncthreads();  // every warp is done with the logits and the key tile
  }

  const TopKWorkspace ws = topk_workspace(p);
#pragma unroll
  for (int i = 0; i < kWarpQueries; ++i) {
    const int64_t q = q0 + warp * kWarpQueries + i;
    if (q >= p.pixels) continue;
    uint64_t* list = ws.lists + ((b * p.splits + blockIdx.z) * p.pixels + q) * p.top_k;
    if (lane < p.top_k) list[lane] = lists[i].slot[0];
    if (lane + 32 < p.top_k) list[lane + 32] = lists[i].slot[1];
  }
}

// ---------------------------------------------------------------------------------------------
// Top-k: merge the splits, softmax over the final top_k, usage.

__global__ void __launch_bounds__(kThreads) topk_select_kernel(MemoryReadFamilyParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);  // item x query
  if (row >= p.batch * p.pixels) return;                                               // a whole warp leaves together
  const int64_t b = row / p.pixels, q = row % p.pixels;
  const TopKWorkspace ws = topk_workspace(p);
  TopList list;
  list.reset(p.top_k, lane);
  for (int z = 0; z < p.splits; ++z) {
    const uint64_t* part = ws.lists + ((b * p.splits + z) * p.pixels + q) * p.top_k;
    // Every split wrote its list (one past the valid length an empty one).
    const uint64_t c0 = lane < p.top_k ? part[lane] : 0;
    const uint64_t c1 = lane + 32 < p.top_k ? part[lane + 32] : 0;
    list.insert(is_pair(c0) ? c0 : 0, is_pair(c1) ? c1 : 0);
  }
  // Softmax over the list's pairs (a query with fewer valid entries than top_k has empty slots).
  const bool has0 = is_pair(list.slot[0]), has1 = is_pair(list.slot[1]);
  const float l0 = has0 ? pair_logit(list.slot[0]) : -INFINITY;
  const float l1 = has1 ? pair_logit(list.slot[1]) : -INFINITY;
  const float m = warp_fmax(fmaxf(l0, l1));
  const float w0 = has0 ? exp2_approx(l0 - m) : 0.0f;
  const float w1 = has1 ? exp2_approx(l1 - m) : 0.0f;
  const float inv = softmax_normaliser(warp_sum(w0 + w1));
  int32_t* entries = ws.entries + row * p.top_k;
  float* weights = ws.weights + row * p.top_k;
  const int64_t e0 = has0 ? pair_entry(list.slot[0]) : 0, e1 = has1 ? pair_entry(list.slot[1]) : 0;
  if (lane < p.top_k) {
    entries[lane] = static_cast<int32_t>(e0);
    weights[lane] = w0 * inv;
  }
  if (lane + 32 < p.top_k) {
    entries[lane + 32] = static_cast<int32_t>(e1);
    weights[lane + 32] = w1 * inv;
  }
  if (p.usage != nullptr) {
    if (has0) atomicAdd(p.usage + b * p.entries + e0, w0 * inv);
    if (has1) atomicAdd(p.usage + b * p.entries + e1, w1 * inv);
  }
}

// ---------------------------------------------------------------------------------------------
// Top-k: gather the chosen value columns.

template <typename T>
__global__ void __launch_bounds__(kThreads) topk_gather_kernel(MemoryReadFamilyParams p) {
  __shared__ int32_t entries[kTile][kMaxFamilyTopK + 1];
  __shared__ float weights[kTile][kMaxFamilyTopK + 1];
  const int tid = threadIdx.x, tq = tid % kTile, tc = tid / kTile;
  const int64_t b = blockIdx.x / query_tiles(p), q0 = (blockIdx.x % query_tiles(p)) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kValueChunk;
  const int top_k = p.top_k;
  copy_query_values<T>(p, b, q0, cv0, kValueChunk);
  const TopKWorkspace ws = topk_workspace(p);
  for (int i = tid; i < kTile * top_k; i += kThreads) {
    const int q = i / top_k, j = i % top_k;
    const bool inside = q0 + q < p.pixels;
    entries[q][j] = inside ? ws.entries[(b * p.pixels + q0 + q) * top_k + j] : 0;
    weights[q][j] = inside ? ws.weights[(b * p.pixels + q0 + q) * top_k + j] : 0.0f;
  }
  __syncthreads();
  if (q0 + tq >= p.pixels) return;
  const T* values = static_cast<const T*>(p.mem_val) + b * p.mem_val_stride[0];
  T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
  for (int64_t cv = cv0 + tc; cv < cv0 + kValueChunk && cv < p.value_dim; cv += kThreads / kTile) {
    const T* row = values + cv * p.mem_val_stride[1];
    float acc = 0.0f;
    for (int j = 0; j < top_k; ++j) {
      const float w = weights[tq][j];
      // An empty slot (weight 0) points at entry 0, which may be past the valid length: skipped,
      // so that whatever it holds (even NaN) stays out.
      if (w != 0.0f) acc = fmaf(w, to_float(row[entries[tq][j]]), acc);
    }
    out[cv * p.out_stride[1] + q0 + tq] = from_float<T>(acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Full softmax: the online-softmax sweep (memory_read.cu's SIMT kernel with the family's logits).

// Two blocks an SM at most (its shared memory allows no more at key 64), so up to 128 registers:
// with the default bound ptxas kept 64 and spilled with a selection.
template <typename T, bool kSelection>
__global__ void __launch_bounds__(kThreads, 2) softmax_sweep_kernel(MemoryReadFamilyParams p) {
  extern __shared__ float smem[];
  const int key_dim = static_cast<int>(p.key_dim);
  float* a = smem;
  float* e = a + key_dim * kTile;
  float* offset = e + (kSelection ? key_dim * kTile : 0);
  float* ks = offset + kTile;
  float* shrink = ks + key_dim * kTile;
  float* vs = shrink + kTile;                  // [64 channels][65] values
  float* ps = vs + kValueChunk * (kTile + 1);  // [64 entries][64 queries] weights
  float* red = ps + kTile * kTile;             // [16][64] partial column max / sum
  float* row_max = red + 16 * kTile;
  float* row_sum = row_max + kTile;
  float* rescale = row_sum + kTile;

  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
  const int load_col = tid % kTile, load_row = tid / kTile;
  const int64_t b = blockIdx.x / query_tiles(p), q0 = (blockIdx.x % query_tiles(p)) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kValueChunk;
  if (blockIdx.z == 0) copy_query_values<T>(p, b, q0, cv0, kValueChunk);
  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin, &end);
  const T* mem_val = static_cast<const T*>(p.mem_val) + b * p.mem_val_stride[0];
  load_query_side<T, kSelection>(p, b, q0, a, e, offset);
  if (tid < kTile) {
    row_max[tid] = -INFINITY;
    row_sum[tid] = 0.0f;
  }
  float acc[4][4] = {};  // [channel tr + 16 i][query tq + 16 j]
  const device::SimtSoftmaxShared softmax{vs, ps, red, row_max, row_sum, rescale};

  for (int64_t n0 = begin; n0 < end; n0 += kTile) {
    __syncthreads();  // the previous tile is fully consumed
    load_key_tile<T>(p, b, n0, end, ks, shrink);
    const bool entry_valid = n0 + load_col < end;
    const T* val_src = mem_val + cv0 * p.mem_val_stride[1] + n0 + load_col;
    for (int c = load_row; c < kValueChunk; c += kThreads / kTile)
      vs[c * (kTile + 1) + load_col] =
          (entry_valid && cv0 + c < p.value_dim) ? to_float(val_src[c * p.mem_val_stride[1]]) : 0.0f;
    __syncthreads();

    float s[4][4];
    tile_logits<kSelection>(p, a, e, offset, ks, shrink, s);
    device::simt_softmax_tile(s, end - n0, softmax, acc);
  }
  __syncthreads();  // the final row_sum is visible (an empty range: the initial values)

  const SoftmaxWorkspace ws = softmax_workspace(p);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t cv = cv0 + tr + 16 * i, q = q0 + tq + 16 * j;
      if (cv >= p.value_dim || q >= p.pixels) continue;
      if (p.splits == 1) {
        T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
        out[cv * p.out_stride[1] + q] = from_float<T>(acc[i][j] * softmax_normaliser(row_sum[tq + 16 * j]));
      } else {
        ws.acc[((b * p.splits + blockIdx.z) * p.value_dim + cv) * p.pixels + q] = acc[i][j];
      }
    }
  if ((p.splits > 1 || p.usage != nullptr) && blockIdx.y == 0 && tid < kTile && q0 + tid < p.pixels) {
    const int64_t at = (b * p.splits + blockIdx.z) * p.pixels + q0 + tid;
    ws.max[at] = row_max[tid];
    ws.sum[at] = row_sum[tid];
  }
}

// A query's softmax (max, 1 / sum) over all splits, from the sweep's statistics.
__device__ __forceinline__ void merged_statistics(const MemoryReadFamilyParams& p, int64_t b, int64_t q, float* max,
                                                  float* inverse_sum) {
  const SoftmaxWorkspace ws = softmax_workspace(p);
  const float* maxima = ws.max + b * p.splits * p.pixels + q;
  const float* sums = ws.sum + b * p.splits * p.pixels + q;
  float overall = -INFINITY;
  for (int z = 0; z < p.splits; ++z) overall = fmaxf(overall, maxima[z * p.pixels]);
  float total = 0.0f;
  for (int z = 0; z < p.splits; ++z) total += split_weight(maxima[z * p.pixels], overall) * sums[z * p.pixels];
  *max = overall;
  *inverse_sum = softmax_normaliser(total);
}

// Full softmax: merge the splits' partial sums (every split wrote its part: an empty one its
// zeros with max -inf, which weighs 0).
template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_combine_kernel(MemoryReadFamilyParams p) {
  const SoftmaxWorkspace ws = softmax_workspace(p);
  const int64_t total = p.batch * p.value_dim * p.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t q = idx % p.pixels, cv = (idx / p.pixels) % p.value_dim, b = idx / (p.pixels * p.value_dim);
    float overall = 0.0f, inverse_sum = 0.0f;
    merged_statistics(p, b, q, &overall, &inverse_sum);
    const float* maxima = ws.max + b * p.splits * p.pixels + q;
    const float* accs = ws.acc + (b * p.splits * p.value_dim + cv) * p.pixels + q;
    float value = 0.0f;
    for (int z = 0; z < p.splits; ++z)
      value += split_weight(maxima[z * p.pixels], overall) * accs[z * p.value_dim * p.pixels];
    T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
    out[cv * p.out_stride[1] + q] = from_float<T>(value * inverse_sum);
  }
}

// Full softmax: usage[b][n] = sum_q exp2(logit - max_q) / sum_q for the block's 64 entries.
template <typename T, bool kSelection>
__global__ void __launch_bounds__(kThreads) softmax_usage_kernel(MemoryReadFamilyParams p) {
  extern __shared__ float smem[];
  const int key_dim = static_cast<int>(p.key_dim);
  float* a = smem;
  float* e = a + key_dim * kTile;
  float* offset = e + (kSelection ? key_dim * kTile : 0);
  float* ks = offset + kTile;
  float* shrink = ks + key_dim * kTile;
  float* stats = shrink + kTile;   // [2][64]: the tile's queries' max and 1 / sum
  float* red = stats + 2 * kTile;  // [16][64]: per-thread partial sums over queries

  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
  const int64_t entry_tiles = (p.entries + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / entry_tiles, n0 = (blockIdx.x % entry_tiles) * kTile;
  const int64_t end = device::load_length(p.n_valid, p.n_valid_int64, b, p.entries);
  float total[4] = {};  // entries tr + 16 i, this thread's queries
  if (n0 < end) {
    load_key_tile<T>(p, b, n0, end, ks, shrink);
    for (int64_t q0 = 0; q0 < p.pixels; q0 += kTile) {
      __syncthreads();  // the previous query tile is consumed (and the key tile landed)
      if (tid < kTile) {
        float m = 0.0f, inv = 0.0f;
        if (q0 + tid < p.pixels) merged_statistics(p, b, q0 + tid, &m, &inv);
        stats[tid] = m;
        stats[kTile + tid] = inv;
      }
      load_query_side<T, kSelection>(p, b, q0, a, e, offset);  // ends with a barrier
      float s[4][4];
      tile_logits<kSelection>(p, a, e, offset, ks, shrink, s);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int q = tq + 16 * j;
          if (q0 + q < p.pixels) total[i] += exp2_approx(s[i][j] - stats[q]) * stats[kTile + q];
        }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) red[tq * kTile + tr + 16 * i] = total[i];
  __syncthreads();
  if (tid < kTile && n0 + tid < p.entries) {
    float sum = 0.0f;
    for (int r = 0; r < 16; ++r) sum += red[r * kTile + tid];
    p.usage[b * p.entries + n0 + tid] = n0 + tid < end ? sum : 0.0f;
  }
}

__global__ void __launch_bounds__(kThreads) zero_kernel(float* data, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    data[i] = 0.0f;
}

// ---------------------------------------------------------------------------------------------
// Launchers.

template <typename Kernel>
cudaError_t launch_with_shared(Kernel kernel, dim3 grid, int64_t shared, cudaStream_t stream,
                               const MemoryReadFamilyParams& p) {
  if (shared > 48 * 1024) {
    const cudaError_t error =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
    if (error != cudaSuccess) return error;
  }
  launch_kernel(kernel, grid, dim3(kThreads), shared, stream, p);
  return cudaGetLastError();
}

dim3 strided_grid(int64_t total) {
  return dim3(static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>((total + kThreads - 1) / kThreads, 1), 65535)));
}

int64_t shared_bytes(int64_t floats) { return floats * static_cast<int64_t>(sizeof(float)); }

template <typename T, bool kSelection>
cudaError_t launch_typed(const MemoryReadFamilyParams& p, cudaStream_t stream) {
  const int64_t base = query_side_floats(p.key_dim, kSelection) + key_side_floats(p.key_dim);
  const unsigned blocks = static_cast<unsigned>(p.batch * query_tiles(p));
  const unsigned chunks = static_cast<unsigned>((p.value_dim + kValueChunk - 1) / kValueChunk);
  cudaError_t error = cudaSuccess;
  if (p.top_k > 0) {
    if (p.usage != nullptr) {
      launch_kernel(zero_kernel, strided_grid(p.batch * p.entries), dim3(kThreads), 0, stream, p.usage,
                    p.batch * p.entries);
      if ((error = cudaGetLastError()) != cudaSuccess) return error;
    }
    error = launch_with_shared(topk_sweep_kernel<T, kSelection>, dim3(blocks, 1, static_cast<unsigned>(p.splits)),
                               shared_bytes(base + kTile * kLogitLd), stream, p);
    if (error != cudaSuccess) return error;
    const unsigned rows = static_cast<unsigned>((p.batch * p.pixels + kWarps - 1) / kWarps);
    launch_kernel(topk_select_kernel, dim3(rows), dim3(kThreads), 0, stream, p);
    if ((error = cudaGetLastError()) != cudaSuccess) return error;
    launch_kernel(topk_gather_kernel<T>, dim3(blocks, chunks), dim3(kThreads), 0, stream, p);
    return cudaGetLastError();
  }
  const int64_t sweep = base + kValueChunk * (kTile + 1) + kTile * kTile + 16 * kTile + 3 * kTile;
  error = launch_with_shared(softmax_sweep_kernel<T, kSelection>, dim3(blocks, chunks, static_cast<unsigned>(p.splits)),
                             shared_bytes(sweep), stream, p);
  if (error != cudaSuccess) return error;
  if (p.splits > 1) {
    launch_kernel(softmax_combine_kernel<T>, strided_grid(p.batch * p.value_dim * p.pixels), dim3(kThreads), 0, stream,
                  p);
    if ((error = cudaGetLastError()) != cudaSuccess) return error;
  }
  if (p.usage != nullptr && p.entries > 0) {
    const unsigned entry_blocks = static_cast<unsigned>(p.batch * ((p.entries + kTile - 1) / kTile));
    error = launch_with_shared(softmax_usage_kernel<T, kSelection>, dim3(entry_blocks),
                               shared_bytes(base + 2 * kTile + 16 * kTile), stream, p);
  }
  return error;
}

template <typename T>
cudaError_t launch_dtype(const MemoryReadFamilyParams& p, cudaStream_t stream) {
  return p.l2 && p.selection != nullptr ? launch_typed<T, true>(p, stream) : launch_typed<T, false>(p, stream);
}

}  // namespace

int memory_read_family_splits(const MemoryReadFamilyParams& p, int multiprocessors) {
  const int64_t chunks = p.top_k > 0 ? 1 : (p.value_dim + kValueChunk - 1) / kValueChunk;
  return choose_splits(p.batch * query_tiles(p) * chunks, 2 * static_cast<int64_t>(multiprocessors), p.entries,
                       4 * kTile);
}

int64_t memory_read_family_workspace_bytes(const MemoryReadFamilyParams& p) {
  if (p.top_k > 0) {
    const int64_t chosen = p.batch * p.pixels * p.top_k;
    return 8 * p.batch * p.splits * p.pixels * p.top_k + round_up(4 * chosen, 8) + 4 * chosen;
  }
  if (p.splits == 1 && p.usage == nullptr) return 0;
  const int64_t acc = p.splits > 1 ? p.batch * p.splits * p.value_dim * p.pixels : 0;
  return 4 * (acc + 2 * p.batch * p.splits * p.pixels);
}

cudaError_t launch_memory_read_family(const MemoryReadFamilyParams& p, cudaStream_t stream) {
  if (p.key_dim < 1 || p.key_dim > kMaxFamilyKeyDim || p.splits < 1 || p.top_k < 0 || p.top_k > kMaxFamilyTopK)
    return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (p.pixels == 0 || p.value_dim == 0) {
    if (p.usage != nullptr && p.entries > 0) {  // no query gives any weight
      launch_kernel(zero_kernel, strided_grid(p.batch * p.entries), dim3(kThreads), 0, stream, p.usage,
                    p.batch * p.entries);
      return cudaGetLastError();
    }
    return cudaSuccess;
  }
  switch (p.dtype) {
    case DType::kFloat32: return launch_dtype<float>(p, stream);
    case DType::kFloat16: return launch_dtype<__half>(p, stream);
    case DType::kBFloat16: return launch_dtype<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace swiftcuda
