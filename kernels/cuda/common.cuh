// Arithmetic shared by the CUDA kernels and the C++ CPU kernels.
//
// Every function here is __host__ __device__ and free of torch and CUDA runtime headers, so the
// CPU kernels in csrc/ include this file too: the CPU tests then exercise the exact arithmetic
// the GPU runs (score packing, online-softmax bookkeeping, split ranges, unshuffle indices,
// capacity clamping), and a bug in it shows up without a GPU.
#pragma once

#include <math.h>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SC_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Forced: the CPU kernels' loops vectorise only when these are inlined into them.
#define SC_HD inline __attribute__((always_inline))
#else
#define SC_HD inline
#endif

namespace swiftcuda {

// Element type of the op tensors; the launchers take raw pointers plus this tag.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

constexpr float kLog2e = 1.4426950408889634f;
// F.normalize's eps: a key's norm is clamped below to this before dividing.
constexpr float kNormEps = 1e-12f;
// Query pixels per tile, on both sides (a CUDA block's queries, a CPU work item's queries).
constexpr int kQueryTile = 64;

SC_HD uint32_t float_to_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

SC_HD float bits_to_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// Maximum and minimum that the CPU compiler turns into one instruction and vectorises (fmaxf and
// fminf are library calls there unless NaN semantics are waived). A NaN operand is not propagated
// consistently; no caller relies on NaN handling.
SC_HD float fast_max(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fmaxf(a, b);
#else
  return a > b ? a : b;
#endif
}

// Maximum that propagates NaN as torch.amax does: NaN if either operand is NaN. The best-match
// scores use it, so a pixel whose similarity is NaN gets NaN's key (sorted last: never the most
// novel) on every backend, where fmaxf would drop the NaN and make the pixel look novel. Two
// compares and a select: it vectorises on the CPU.
SC_HD float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }

SC_HD float fast_min(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return a < b ? a : b;
#endif
}

// ---------------------------------------------------------------------------------------------
// Memory update: novelty scores and their selection.

// Maps a float to an unsigned integer with the same order, so that scores can be compared, max-ed
// (atomicMax) and radix-selected as integers. The order is torch.sort's: -0 equals +0 (both map
// to +0's key) and NaN sorts after everything (all NaNs map to the largest key).
SC_HD uint32_t ordered_key(float x) {
  if (x != x) return 0xFFFFFFFFu;
  x = x + 0.0f;  // -0 + 0 = +0 in round-to-nearest: one key for both zeros
  const uint32_t bits = float_to_bits(x);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Inverse of ordered_key (NaN comes back as a NaN, -0 as +0).
SC_HD float ordered_key_to_float(uint32_t key) {
  return bits_to_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

// A new pixel's selection key: its best-match score in the high half, its index in the low half.
// Keys are distinct, and the k smallest are the k most novel pixels with ties going to the lower
// pixel index, which is the reference's stable sort.
SC_HD uint64_t novelty_key(uint32_t score_key, uint32_t pixel) {
  return (static_cast<uint64_t>(score_key) << 32) | pixel;
}

// How many of `pixels` new pixels an update appends: P - int(P * (1 - beta)), in double precision
// with truncation towards zero exactly as Python computes it (1620 pixels, beta 0.1 -> 162).
SC_HD int64_t novel_pixel_count(int64_t pixels, double beta) {
  return pixels - static_cast<int64_t>(static_cast<double>(pixels) * (1.0 - beta));
}

// Entries [0, valid) of a buffer of `capacity` entries are compared with, whatever n_valid holds.
SC_HD int64_t valid_length(int64_t n_valid, int64_t capacity) {
  return n_valid < 0 ? 0 : (n_valid > capacity ? capacity : n_valid);
}

// How many of `count` chosen pixels fit at `start` in a buffer of `capacity` entries: the ones
// past the capacity are dropped (the highest pixel indices, since they are appended in order).
SC_HD int64_t appended_count(int64_t start, int64_t count, int64_t capacity) {
  const int64_t room = capacity - start;
  return room <= 0 ? 0 : (room < count ? room : count);
}

// 1 / max(||x||, eps) from the sum of squares: cos(a, b) = (a . b) * inv(a) * inv(b).
SC_HD float inverse_norm(float sum_of_squares) { return 1.0f / fast_max(sqrtf(sum_of_squares), kNormEps); }

// ---------------------------------------------------------------------------------------------
// Memory read: online softmax in base 2.

// Logits are scaled by log2(e) / sqrt(Ck) so that softmax weights are exp2(s - max).
SC_HD float softmax_scale_log2(int64_t key_dim) { return kLog2e / sqrtf(static_cast<float>(key_dim)); }

// 2^x. On the GPU the hardware exp2. On the CPU a branch-free polynomial that the compiler
// vectorises (a libm call would not be): round x to the nearest integer n with the 1.5 * 2^23
// trick, 2^(x - n) by its degree-7 Taylor series (relative error below 1e-7 on [-0.5, 0.5]), and
// 2^n by writing the exponent bits. x is clamped to [-127, 127]; 2^-127 comes out as 0, which is
// what softmax weights that small are at float32 precision anyway.
SC_HD float exp2_approx(float x) {
#if defined(__CUDA_ARCH__)
  return exp2f(x);
#else
  x = fast_min(fast_max(x, -127.0f), 127.0f);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float rounded = (x + shifter) - shifter;
  const float f = x - rounded;  // in [-0.5, 0.5]
  float p = 1.5252733804059838e-05f;
  p = p * f + 1.5403530393381606e-04f;
  p = p * f + 1.3333558146428441e-03f;
  p = p * f + 9.6181291076284770e-03f;
  p = p * f + 5.5504108664821576e-02f;
  p = p * f + 2.4022650695910070e-01f;
  p = p * f + 6.9314718055994530e-01f;
  p = p * f + 1.0f;
  const int32_t n = static_cast<int32_t>(rounded);
  // n = -127 gives the exponent field 0, i.e. 2^n = 0; n <= 127 keeps the field below 255.
  const float scale = bits_to_float(static_cast<uint32_t>(n + 127) << 23);
  return p * scale;
#endif
}

// Factor that rescales sums accumulated under the running maximum `old_max` to `new_max`.
// An empty history (old_max = -inf) has nothing to rescale: 0, never exp2(NaN).
SC_HD float online_rescale(float old_max, float new_max) {
  return old_max == -INFINITY ? 0.0f : exp2_approx(old_max - new_max);
}

// Weight of one memory split's partial result (its maximum `split_max`) in the combined softmax
// whose maximum over all splits is `overall_max`. A split with no valid entries weighs 0.
SC_HD float split_weight(float split_max, float overall_max) {
  return split_max == -INFINITY ? 0.0f : exp2_approx(split_max - overall_max);
}

// 1 / sum of the softmax weights; an empty memory (sum 0) reads zeros.
SC_HD float softmax_normaliser(float sum) { return sum > 0.0f ? 1.0f / sum : 0.0f; }

// How many splits of the memory axis to run: enough query-tile x split work items to give every
// worker (CUDA: twice the SMs; CPU: the threads) one, but never splits shorter than
// `min_entries_per_split`. Splitting costs a combine pass over (splits, Cv, P) partial sums.
SC_HD int choose_splits(int64_t work_items, int64_t workers, int64_t entries, int64_t min_entries_per_split) {
  if (work_items <= 0 || entries <= 0) return 1;
  int64_t splits = (workers + work_items - 1) / work_items;
  const int64_t most = (entries + min_entries_per_split - 1) / min_entries_per_split;
  if (splits > most) splits = most;
  if (splits > 64) splits = 64;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

// Entries [*begin, *end) of split `split` of `splits` over a memory of `length` valid entries.
// Splits are whole multiples of `tile` entries so tiles never straddle two splits; trailing splits
// may be empty. Computed on the device from the device-side length: no host sync.
SC_HD void split_range(int64_t length, int split, int splits, int64_t tile, int64_t* begin, int64_t* end) {
  int64_t chunk = (length + splits - 1) / splits;
  chunk = (chunk + tile - 1) / tile * tile;
  int64_t first = static_cast<int64_t>(split) * chunk;
  if (first > length) first = length;
  int64_t last = first + chunk;
  if (last > length) last = length;
  *begin = first;
  *end = last;
}

// ---------------------------------------------------------------------------------------------
// Soft aggregation: odds of probabilities clamped to [1e-7, 1 - 1e-7] as the spec clamps them,
// in float32, where 1 - 1e-7 rounds to 1 - 2^-23 (so the largest odds are 2^23 - 1).

constexpr float kAggregationLow = 1e-7f;
constexpr float kAggregationHigh = 0.99999988079071044921875f;  // float32(1 - 1e-7) = 1 - 2^-23

// p / (1 - p) of p clamped to [kAggregationLow, kAggregationHigh]; 1 - p is exact for p >= 0.5.
SC_HD float clamped_odds(float p) {
  p = fast_min(fast_max(p, kAggregationLow), kAggregationHigh);
  return p / (1.0f - p);
}

// ---------------------------------------------------------------------------------------------
// Reversed sub-pixel (pixel_unshuffle): where output element (channel, y, x) of one object's
// (factor^2, H / factor, W / factor) map comes from in its (H, W) input plane.
SC_HD int64_t unshuffle_source(int64_t channel, int64_t y, int64_t x, int64_t factor, int64_t width) {
  const int64_t row = y * factor + channel / factor;
  const int64_t col = x * factor + channel % factor;
  return row * width + col;
}

}  // namespace swiftcuda
