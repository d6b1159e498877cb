// CUDA memory read: flash-style tiled online softmax, never forming the P x N matrix.
//
// Grid: x = item x 64-query tile, y = block of value channels, z = split of the memory axis.
// A block walks its memory range in tiles of entries; per tile it computes the logits of its
// 64 queries, updates the running max / sum (base 2, common.cuh) and accumulates V P^T.
//  - fp16 / bf16 (key_dim <= 128): tensor cores (mma.m16n8k16, fp32 accumulate), cp.async
//    double-buffered tiles and ldmatrix fragments; the logits of a memory tile are computed once
//    for all the block's value channels (all 512 at R50). Details at read_mma_kernel.
//  - float32 (and anything else): SIMT, 256 threads x (4 entries x 4 queries), reductions through
//    shared memory. float32 keeps float32 products (TF32 would miss the 1e-5 accuracy contract).
// With one split the block normalises and writes `out`; with several (few query tiles for the
// SMs, e.g. one object at 480p: 26 tiles) each writes its partial (max, sum, acc) and a combine
// kernel merges them. Blocks of split 0 also copy q_val into the second half of `out`.
// Split ranges come from the device-side valid length (no host sync): a block whose range is
// empty exits at once, and the combine skips its split.
#include <algorithm>
#include <type_traits>

#include "device_utils.cuh"
#include "launch.cuh"
#include "memory_read.cuh"
#include "simt_softmax.cuh"

namespace swiftcuda {
namespace {

using device::from_float;
using device::to_float;

// Queries per block; also the granularity of the memory splits (every kernel's entry tile divides it).
constexpr int kTile = kQueryTile;  // 64
static_assert(kTile == device::kSimtSoftmaxTile, "the SIMT kernel walks memory in softmax tiles");
constexpr int kSimtThreads = 256;
constexpr int kSimtValueChunk = 64;
constexpr int kCombineThreads = 256;

bool uses_tensor_cores(const MemoryReadParams& p) { return p.dtype != DType::kFloat32 && p.key_dim <= 128; }

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

// Zeros for rows [cv0, cv0 + chunk) x queries [q0, q0 + 64) of out: the read of an empty memory.
template <typename T>
__device__ void write_zeros(const MemoryReadParams& p, int64_t b, int64_t q0, int64_t cv0, int chunk) {
  T* out = static_cast<T*>(p.out) + b * p.out_stride[0];
  for (int i = threadIdx.x; i < chunk * kTile; i += blockDim.x) {
    const int64_t cv = cv0 + i / kTile, q = q0 + i % kTile;
    if (cv < p.value_dim && q < p.pixels) out[cv * p.out_stride[1] + q] = from_float<T>(0.0f);
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
  const int key_dim = static_cast<int>(p.key_dim);
  float* qs = smem;                                // [Ck][64] queries
  float* ks = qs + key_dim * kTile;                // [Ck][64] keys
  float* vs = ks + key_dim * kTile;                // [64 channels][65] values
  float* ps = vs + kSimtValueChunk * (kTile + 1);  // [64 entries][64 queries] weights
  float* red = ps + kTile * kTile;                 // [16][64] partial column max / sum
  float* row_max = red + 16 * kTile;
  float* row_sum = row_max + kTile;
  float* rescale = row_sum + kTile;

  const int tid = threadIdx.x, tq = tid & 15, tr = tid >> 4;
  const int load_col = tid % kTile, load_row = tid / kTile;
  constexpr int kSimtLoadRows = kSimtThreads / kTile;
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / query_tiles, q0 = (blockIdx.x % query_tiles) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kSimtValueChunk;
  if (blockIdx.z == 0) copy_query_values<T>(p, b, q0, cv0, kSimtValueChunk);

  const T* mem_key = static_cast<const T*>(p.mem_key) + b * p.mem_key_stride[0];
  const T* mem_val = static_cast<const T*>(p.mem_val) + b * p.mem_val_stride[0];
  const T* q_key = static_cast<const T*>(p.q_key) + b * p.q_key_stride[0];
  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin, &end);
  if (begin >= end) {  // an empty memory reads zeros; the combine skips an empty split
    if (p.splits == 1) write_zeros<T>(p, b, q0, cv0, kSimtValueChunk);
    return;
  }

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
  const device::SimtSoftmaxShared softmax{vs, ps, red, row_max, row_sum, rescale};

  const int tiles = static_cast<int>((end - begin + kTile - 1) / kTile);
  for (int j = 0; j < tiles; ++j) {
    const int64_t n0 = begin + static_cast<int64_t>(j) * kTile;
    __syncthreads();  // previous tile fully consumed
    // Thread tid copies entry n0 + tid % 64 of channels tid / 64 + 4k: one column, no 64-bit divisions.
    const bool entry_valid = n0 + load_col < end;
    const T* key_src = mem_key + n0 + load_col;
    for (int c = load_row; c < key_dim; c += kSimtLoadRows)
      ks[c * kTile + load_col] = entry_valid ? to_float(key_src[c * p.mem_key_stride[1]]) : 0.0f;
    const T* val_src = mem_val + cv0 * p.mem_val_stride[1] + n0 + load_col;
    for (int c = load_row; c < kSimtValueChunk; c += kSimtLoadRows)
      vs[c * (kTile + 1) + load_col] =
          (entry_valid && cv0 + c < p.value_dim) ? to_float(val_src[c * p.mem_val_stride[1]]) : 0.0f;
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
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] *= scale;
    device::simt_softmax_tile(s, end - n0, softmax, acc);
  }
  __syncthreads();  // final row_sum visible

#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      store_result<T>(p, b, cv0 + tr + 16 * i, q0 + tq + 16 * j, acc[i][j], row_sum[tq + 16 * j]);
  if (tid < kTile) store_statistics(p, b, q0 + tid, row_max[tid], row_sum[tid]);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel (fp16 / bf16): S = Q^T K once per memory tile for all the block's value
// channels, O += P V^T with mma.m16n8k16 (fp32 accumulate).
//
// Warps: 4 row warps (16 queries each: the 64-query tile) x kColWarps column warps. Per tile of
// kEntries memory entries:
//  1. column warp c computes the logits of its 16 queries against its kEntries / kColWarps
//     entries of the tile, so no logit is computed twice;
//  2. the warps' row maxima meet in shared memory, every warp of a row applies the same running
//     max, and writes its slice of P = exp2(S - max) to shared memory as 16-bit values;
//  3. column warp c accumulates O += P V^T for value channels [c kWarpChannels, (c + 1) kWarpChannels)
//     of the block's kColWarps x kWarpChannels, with O in registers (kWarpChannels / 2 floats).
// The previous kernel (4 warps, one 128-channel chunk per block) recomputed S and reloaded K for
// every chunk: 4x at R50's 512 value channels, where one wide block now covers them all.
//
// Loads: Q once, then K and V tiles double-buffered: tile j + 1 is copied global -> shared with
// cp.async (16 bytes when the pointers and strides allow it, else 8 or 4; a 2-byte synchronous
// copy for odd strides) while tile j is computed. The shared tiles keep the global channel-major
// layout ([channel][entry or query], rows padded by 16 bytes), so the copies need no transpose;
// the fragments that want channels in pairs (Q and K: the contraction axis of S) come from
// ldmatrix.trans, those of P and V from ldmatrix. With rows 16 bytes longer than a multiple of
// 128 bytes (or 80-byte rows), the 8 rows that one ldmatrix phase reads fall in 8 distinct
// 16-byte bank groups: no bank conflicts, and no scattered 16-bit transposing stores.
//
// Tilings (SwiftNet: R18 Ck 32 / Cv 128, R50 Ck 128 / Cv 512), numbers from ptxas -v (sm_80/90):
//  - narrow (Cv <= 128): 2 column warps x 64 channels, 64-entry tiles, 256 threads;
//  - wide (Cv > 128): 4 column warps x 128 channels, 32-entry tiles (so that two stages of
//    K + V fit beside Q: 124 KB at Ck 128, under the A100's 163 KB), 512 threads.
// The wide tiling reads each memory tile once per 64 queries for all 512 channels: the fewest
// L2 -> SM bytes per FLOP of the layouts whose O fits in registers.

constexpr int kMmaRowWarps = 4;      // x 16 queries = the 64-query tile
constexpr int kQueryLd = kTile + 8;  // shared row of the Q tile (16-bit elements)

template <int kColWarpsT, int kWarpChannelsT, int kEntriesT, int kMinBlocksT>
struct MmaTiling {
  static constexpr int kColWarps = kColWarpsT;          // warps splitting the tile's entries (S) and channels (O)
  static constexpr int kWarpChannels = kWarpChannelsT;  // value channels of one warp's O
  static constexpr int kEntries = kEntriesT;            // memory entries per tile
  static constexpr int kMinBlocks = kMinBlocksT;        // __launch_bounds__: caps the registers
  static constexpr int kThreads = 32 * kMmaRowWarps * kColWarps;
  static constexpr int kChannels = kColWarps * kWarpChannels;  // value channels of one block
  static constexpr int kWarpEntries = kEntries / kColWarps;    // S columns of one warp
  static constexpr int kLd = kEntries + 8;                     // shared row of K, V and P tiles
  static_assert(kWarpEntries % 8 == 0 && (kWarpEntries == 8 || kWarpEntries % 16 == 0), "S n-tiles in pairs");
  static_assert(kEntries % 16 == 0 && kTile % kEntries == 0, "tiles never straddle a split (multiples of 64)");
  static_assert(kWarpChannels % 16 == 0, "V fragments in pairs of n-tiles");
  static_assert(kColWarps <= 4, "one float per column warp in the 16-byte padding of a P row");
};
using NarrowTiling = MmaTiling<2, 64, 64, 2>;
using WideTiling = MmaTiling<4, 128, 32, 1>;

bool wide_values(const MemoryReadParams& p) { return p.value_dim > NarrowTiling::kChannels; }

// Dynamic shared memory (16-bit elements, Ck' = Ck padded to 16): Q [Ck'][kQueryLd], P [64][kLd],
// 2 stages x (K [Ck'][kLd] + V [channels][kLd]). The 16-byte padding of P's rows holds the row
// statistics the column warps exchange (kColWarps <= 4 floats per row): at Ck 128 the narrow
// tiling then needs exactly 99 KB, the most an sm_86 / sm_89 block can have.
template <typename Tiling>
int64_t mma_shared_bytes(int64_t key_dim) {
  const int64_t key_pad = padded_key_dim(key_dim);
  const int64_t halves = key_pad * kQueryLd + kTile * Tiling::kLd + 2 * (key_pad + Tiling::kChannels) * Tiling::kLd;
  return halves * static_cast<int64_t>(sizeof(uint16_t));
}

// Elements per copy for a 16-bit tensor: the widest of 8 / 4 / 2 / 1 dividing its address and
// both strides (a memory buffer of 1620 + 16384 = 18004 entries is only 8-byte aligned per row).
__device__ __forceinline__ int copy_width(const void* base, const int64_t (&stride)[2]) {
  const uint64_t bits = (static_cast<uint64_t>(reinterpret_cast<uintptr_t>(base)) >> 1) |
                        static_cast<uint64_t>(stride[0]) | static_cast<uint64_t>(stride[1]);
  return bits % 8 == 0 ? 8 : bits % 4 == 0 ? 4 : bits % 2 == 0 ? 2 : 1;
}

// Copies rows [0, rows) x columns [col0, col0 + kCols) of a row-major 16-bit tensor (row r at
// src + r * stride) into shared rows of kLd elements, kWidth elements per copy. Rows past
// valid_rows and columns past col_end read as 0: padding channels must add nothing, and entries
// past the valid length may hold anything (a NaN times a zero weight would still be NaN).
template <int kCols, int kLd, int kThreads, int kWidth>
__device__ __forceinline__ void copy_tile_with(uint16_t* dst, const uint16_t* src, int64_t stride, int rows,
                                               int valid_rows, int64_t col0, int64_t col_end) {
  constexpr int kPieces = kCols / kWidth;       // copies per row
  constexpr int kRowStep = kThreads / kPieces;  // rows between a thread's copies
  static_assert(kThreads % kPieces == 0, "a thread keeps its column");
  const int c = (threadIdx.x % kPieces) * kWidth;
  int r = threadIdx.x / kPieces;
  int64_t valid = col_end - (col0 + c);  // the same for every row
  valid = valid < 0 ? 0 : (valid > kWidth ? kWidth : valid);
  const uint16_t* from = src + r * stride + col0 + c;
  uint16_t* to = dst + r * kLd + c;
  // Not unrolled: unrolled, the compiler hoists every copy's address and loads ahead, and the
  // kernel needs ~35 more registers.
#pragma unroll 1
  for (; r < rows; r += kRowStep, from += kRowStep * stride, to += kRowStep * kLd) {
    const int bytes = r < valid_rows ? static_cast<int>(2 * valid) : 0;
    if constexpr (kWidth == 1) {
      *to = bytes > 0 ? *from : uint16_t{0};
    } else {
      ptx::cp_async<2 * kWidth>(to, bytes > 0 ? from : src, bytes);
    }
  }
}

template <int kCols, int kLd, int kThreads>
__device__ __forceinline__ void copy_tile(int width, uint16_t* dst, const uint16_t* src, int64_t stride, int rows,
                                          int valid_rows, int64_t col0, int64_t col_end) {
  switch (width) {
    case 8: copy_tile_with<kCols, kLd, kThreads, 8>(dst, src, stride, rows, valid_rows, col0, col_end); break;
    case 4: copy_tile_with<kCols, kLd, kThreads, 4>(dst, src, stride, rows, valid_rows, col0, col_end); break;
    case 2: copy_tile_with<kCols, kLd, kThreads, 2>(dst, src, stride, rows, valid_rows, col0, col_end); break;
    default: copy_tile_with<kCols, kLd, kThreads, 1>(dst, src, stride, rows, valid_rows, col0, col_end); break;
  }
}

template <bool kBFloat16, typename Tiling>
__global__ void __launch_bounds__(Tiling::kThreads, Tiling::kMinBlocks) read_mma_kernel(MemoryReadParams p) {
  using T = std::conditional_t<kBFloat16, __nv_bfloat16, __half>;
  constexpr int kThreads = Tiling::kThreads, kEntries = Tiling::kEntries, kLd = Tiling::kLd;
  constexpr int kChannels = Tiling::kChannels, kWarpChannels = Tiling::kWarpChannels;
  constexpr int kEntryTiles = Tiling::kWarpEntries / 8;  // S n-tiles of one warp
  extern __shared__ __align__(16) uint16_t hsmem[];
  const int key_dim = static_cast<int>(p.key_dim);
  const int key_pad = static_cast<int>(padded_key_dim(p.key_dim));
  const int stage_size = (key_pad + kChannels) * kLd;
  uint16_t* qs = hsmem;                    // [Ck'][kQueryLd]: the queries, channel-major as in q_key
  uint16_t* ps = qs + key_pad * kQueryLd;  // [64 queries][kLd]: the tile's softmax weights
  uint16_t* stages = ps + kTile * kLd;     // 2 x {K [Ck'][kLd], V [kChannels][kLd]}, channel-major

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int row0 = (warp % kMmaRowWarps) * 16;  // the warp's queries within the tile
  const int col_warp = warp / kMmaRowWarps;
  const int e0 = col_warp * Tiling::kWarpEntries;  // its entries within a memory tile
  const int c0 = col_warp * kWarpChannels;         // its channels within the block's
  // Row statistics (maxima, then sums) of the warp's rows g and g + 8, one float per column warp,
  // in the padding of P's rows.
  float* const stats = reinterpret_cast<float*>(ps + (row0 + g) * kLd + kEntries);
  constexpr int kStatsRow8 = 8 * kLd / 2;  // floats from row g's statistics to row g + 8's
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / query_tiles, q0 = (blockIdx.x % query_tiles) * kTile;
  const int64_t cv0 = static_cast<int64_t>(blockIdx.y) * kChannels;
  if (blockIdx.z == 0) copy_query_values<T>(p, b, q0, cv0, kChannels);

  int64_t begin = 0, end = 0;
  split_range(device::load_length(p.n_valid, p.n_valid_int64, b, p.entries), blockIdx.z, p.splits, kTile, &begin, &end);
  if (begin >= end) {  // an empty memory reads zeros; the combine skips an empty split
    if (p.splits == 1) write_zeros<T>(p, b, q0, cv0, kChannels);
    return;
  }

  const uint16_t* mem_key = static_cast<const uint16_t*>(p.mem_key) + b * p.mem_key_stride[0];
  const uint16_t* mem_val =
      static_cast<const uint16_t*>(p.mem_val) + b * p.mem_val_stride[0] + cv0 * p.mem_val_stride[1];
  const uint16_t* q_key = static_cast<const uint16_t*>(p.q_key) + b * p.q_key_stride[0];
  const int key_width = copy_width(p.mem_key, p.mem_key_stride);
  const int val_width = copy_width(p.mem_val, p.mem_val_stride);
  const int value_rows = static_cast<int>(p.value_dim - cv0 < kChannels ? p.value_dim - cv0 : kChannels);

  copy_tile<kTile, kQueryLd, kThreads>(copy_width(p.q_key, p.q_key_stride), qs, q_key, p.q_key_stride[1], key_pad,
                                       key_dim, q0, p.pixels);
  const auto load_stage = [&](int stage, int64_t n0) {
    uint16_t* ks = stages + stage * stage_size;
    copy_tile<kEntries, kLd, kThreads>(key_width, ks, mem_key, p.mem_key_stride[1], key_pad, key_dim, n0, end);
    copy_tile<kEntries, kLd, kThreads>(val_width, ks + key_pad * kLd, mem_val, p.mem_val_stride[1], kChannels,
                                       value_rows, n0, end);
    ptx::cp_async_commit();
  };
  load_stage(0, begin);

  const float scale = softmax_scale_log2(p.key_dim);
  float o[kWarpChannels / 8][4] = {};         // O^T rows (g, g + 8) x channels (c0 + 8 ct + 2t, +1)
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8 of the warp, the same in every column warp
  float row_sum[2] = {0.0f, 0.0f};            // this lane's entries; reduced over quad and warps at the end
  const int tiles = static_cast<int>((end - begin + kEntries - 1) / kEntries);

  for (int j = 0; j < tiles; ++j) {
    const int64_t n0 = begin + static_cast<int64_t>(j) * kEntries;
    const int left = end - n0 < kEntries ? static_cast<int>(end - n0) : kEntries;  // valid entries of the tile
    ptx::cp_async_wait_all();
    __syncthreads();  // tile j (and Q) landed for every thread; every warp is done with tile j - 1
    if (j + 1 < tiles) load_stage((j + 1) & 1, n0 + kEntries);  // into the buffer of tile j - 1
    const uint16_t* ks = stages + (j & 1) * stage_size;
    const uint16_t* vs = ks + key_pad * kLd;

    // 1. S = Q^T K: the warp's 16 queries x entries [e0, e0 + kWarpEntries) of the tile.
    float s[kEntryTiles][4] = {};
    for (int kc = 0; kc < key_pad; kc += 16) {
      uint32_t a[4];  // matrices (queries +0/+8) x (channels +0/+8), from [channel][query] rows
      ptx::ldmatrix<4, true>(a,
                             qs + (kc + (lane & 7) + ((lane >> 4) << 3)) * kQueryLd + row0 + (((lane >> 3) & 1) << 3));
      const uint16_t* k_rows = ks + (kc + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + e0;
      if constexpr (kEntryTiles == 1) {
        uint32_t bk[2];  // channels +0 / +8 of one n-tile
        ptx::ldmatrix<2, true>(bk, k_rows);
        device::mma_16816<kBFloat16>(s[0], a, bk[0], bk[1]);
      } else {
#pragma unroll
        for (int nt = 0; nt < kEntryTiles; nt += 2) {
          uint32_t bk[4];  // (channels +0 / +8) x (n-tiles nt, nt + 1)
          ptx::ldmatrix<4, true>(bk, k_rows + nt * 8 + ((lane >> 4) << 3));
          device::mma_16816<kBFloat16>(s[nt], a, bk[0], bk[1]);
          device::mma_16816<kBFloat16>(s[nt + 1], a, bk[2], bk[3]);
        }
      }
    }

    // 2. Running max over the whole tile (all column warps), weights P into shared memory.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kEntryTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = e0 + nt * 8 + 2 * t + (e & 1) < left ? s[nt][e] * scale : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 2));
    }
    if (t == 0) {
      stats[col_warp] = tile_max[0];
      stats[kStatsRow8 + col_warp] = tile_max[1];
    }
    __syncthreads();
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float updated = row_max[r];
      for (int w = 0; w < Tiling::kColWarps; ++w) updated = fmaxf(updated, stats[kStatsRow8 * r + w]);
      alpha[r] = online_rescale(row_max[r], updated);
      row_max[r] = updated;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < kEntryTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2_approx(s[nt][e] - row_max[e >> 1]);
        row_sum[e >> 1] += s[nt][e];
      }
      uint16_t* p_row = ps + (row0 + g) * kLd + e0 + nt * 8 + 2 * t;
      *reinterpret_cast<uint32_t*>(p_row) = device::pack_pair<kBFloat16>(s[nt][0], s[nt][1]);
      *reinterpret_cast<uint32_t*>(p_row + 8 * kLd) = device::pack_pair<kBFloat16>(s[nt][2], s[nt][3]);
    }
    __syncthreads();

    // 3. O = alpha O + P V^T over the warp's channels (none past Cv: skipped).
#pragma unroll
    for (int ct = 0; ct < kWarpChannels / 8; ++ct) {
      o[ct][0] *= alpha[0];
      o[ct][1] *= alpha[0];
      o[ct][2] *= alpha[1];
      o[ct][3] *= alpha[1];
    }
    if (c0 < value_rows) {
#pragma unroll
      for (int kk = 0; kk < kEntries / 16; ++kk) {
        uint32_t a[4];  // matrices (queries +0/+8) x (entries +0/+8), from [query][entry] rows
        ptx::ldmatrix<4, false>(
            a, ps + (row0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * kLd + kk * 16 + ((lane >> 4) << 3));
        const uint16_t* v_rows = vs + (c0 + (lane & 7) + ((lane >> 4) << 3)) * kLd + kk * 16 + (((lane >> 3) & 1) << 3);
#pragma unroll
        for (int ct = 0; ct < kWarpChannels / 8; ct += 2) {
          uint32_t bv[4];  // (entries +0 / +8) x (n-tiles ct, ct + 1), from [channel][entry] rows
          ptx::ldmatrix<4, false>(bv, v_rows + ct * 8 * kLd);
          device::mma_16816<kBFloat16>(o[ct], a, bv[0], bv[1]);
          device::mma_16816<kBFloat16>(o[ct + 1], a, bv[2], bv[3]);
        }
      }
    }
  }

  // Row sums: over the quad, then over the column warps (the maxima in P's padding were last read
  // before the last tile's P barrier).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 2);
  }
  if (t == 0) {
    stats[col_warp] = row_sum[0];
    stats[kStatsRow8 + col_warp] = row_sum[1];
  }
  __syncthreads();
  float total[2] = {0.0f, 0.0f};
#pragma unroll
  for (int r = 0; r < 2; ++r)
    for (int w = 0; w < Tiling::kColWarps; ++w) total[r] += stats[kStatsRow8 * r + w];

  const int64_t q_first = q0 + row0 + g;
#pragma unroll
  for (int ct = 0; ct < kWarpChannels / 8; ++ct)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      store_result<T>(p, b, cv0 + c0 + ct * 8 + 2 * t + (e & 1), q_first + 8 * (e >> 1), o[ct][e], total[e >> 1]);
  if (col_warp == 0 && t == 0) {
    store_statistics(p, b, q_first, row_max[0], total[0]);
    store_statistics(p, b, q_first + 8, row_max[1], total[1]);
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
    // Splits past the valid length wrote nothing (their blocks exited): only the non-empty ones,
    // a prefix since split ranges are consecutive, are read.
    const int64_t length = device::load_length(p.n_valid, p.n_valid_int64, b, p.entries);
    int used = 0;
    for (; used < p.splits; ++used) {
      int64_t begin = 0, end = 0;
      split_range(length, used, p.splits, kTile, &begin, &end);
      if (begin >= end) break;
    }
    float overall = -INFINITY;
    for (int z = 0; z < used; ++z) overall = fmaxf(overall, maxima[z * p.pixels]);
    float weight_sum = 0.0f, value = 0.0f;
    for (int z = 0; z < used; ++z) {
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
  launch_kernel(kernel, grid, dim3(threads), shared, stream, p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_combine(const MemoryReadParams& p, cudaStream_t stream) {
  const int64_t total = p.batch * p.value_dim * p.pixels;
  const int64_t blocks = std::min<int64_t>((total + kCombineThreads - 1) / kCombineThreads, 65535);
  launch_kernel(read_combine_kernel<T>, dim3(static_cast<unsigned>(blocks)), dim3(kCombineThreads), 0, stream, p);
  return cudaGetLastError();
}

// Value channels one block covers (grid.y = ceil(Cv / this)).
int block_channels(const MemoryReadParams& p) {
  if (!uses_tensor_cores(p)) return kSimtValueChunk;
  return wide_values(p) ? WideTiling::kChannels : NarrowTiling::kChannels;
}

// x = item x 64-query tile, y = block of `channels` value channels, z = split.
dim3 read_grid(const MemoryReadParams& p, int channels) {
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  return dim3(static_cast<unsigned>(p.batch * query_tiles),
              static_cast<unsigned>((p.value_dim + channels - 1) / channels), static_cast<unsigned>(p.splits));
}

template <bool kBFloat16>
cudaError_t launch_mma(const MemoryReadParams& p, cudaStream_t stream) {
  if (wide_values(p)) {
    const cudaError_t error =
        launch_with_shared(read_mma_kernel<kBFloat16, WideTiling>, read_grid(p, WideTiling::kChannels),
                           WideTiling::kThreads, mma_shared_bytes<WideTiling>(p.key_dim), stream, p);
    if (error != cudaErrorInvalidValue) return error;
    // The wide tiling's shared memory (124 KB at Ck 128) is more than the GPU gives a block
    // (sm_86 / sm_89: 99 KB): clear the error, take the narrow tiling (S once per 128 channels).
    (void)cudaGetLastError();
  }
  return launch_with_shared(read_mma_kernel<kBFloat16, NarrowTiling>, read_grid(p, NarrowTiling::kChannels),
                            NarrowTiling::kThreads, mma_shared_bytes<NarrowTiling>(p.key_dim), stream, p);
}

}  // namespace

// The split count is chosen on the host from the capacity (the valid length lives on the device
// and reading it would sync, which CUDA graphs forbid); splits past the valid length are empty
// and their blocks exit at once.
int memory_read_splits(const MemoryReadParams& p, int multiprocessors) {
  const int64_t query_tiles = (p.pixels + kTile - 1) / kTile;
  const int64_t chunks = (p.value_dim + block_channels(p) - 1) / block_channels(p);
  return choose_splits(p.batch * query_tiles * chunks, 2 * static_cast<int64_t>(multiprocessors), p.entries, 4 * kTile);
}

// Sized for every split non-empty, i.e. for the capacity: the host cannot know the device-side
// valid length without a sync, and a workspace allocated per call (torch's caching allocator)
// must not depend on it. Empty splits leave their part unwritten and the combine never reads it.
int64_t memory_read_workspace_floats(const MemoryReadParams& p) {
  return p.splits > 1 ? p.batch * p.splits * (p.value_dim + 2) * p.pixels : 0;
}

cudaError_t launch_memory_read(const MemoryReadParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.pixels == 0 || p.value_dim == 0) return cudaSuccess;
  if (p.key_dim < 1 || p.key_dim > kMaxReadKeyDim || p.splits < 1) return cudaErrorInvalidValue;
  const dim3 grid = read_grid(p, kSimtValueChunk);
  cudaError_t error = cudaSuccess;
  if (uses_tensor_cores(p)) {
    error = p.dtype == DType::kBFloat16 ? launch_mma<true>(p, stream) : launch_mma<false>(p, stream);
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
    case DType::kFloat32: return launch_combine<float>(p, stream);
    case DType::kFloat16: return launch_combine<__half>(p, stream);
    case DType::kBFloat16: return launch_combine<__nv_bfloat16>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace swiftcuda
