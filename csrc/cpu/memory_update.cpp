// CPU memory update, the CPU twin of kernels/cuda/memory_update.cu.
//
// 1. Best match without the P x N cosine matrix: work items (item, 64 new pixels, memory split)
//    multiply a memory tile by the unit new keys (ATen's CPU matrix product into an nt x 64 tile
//    that stays in cache) and keep, per pixel, the maximum of row * (1 / ||memory key||).
// 2. Selection: the k smallest packed (score key, pixel) integers by nth_element (O(P), where the
//    reference sorts), which puts ties to the lower pixel index; then the k indices in ascending order.
// 3. Append: the chosen columns are copied, in the buffers' own dtype, at n_valid and n_valid advances
//    (clamped at the capacity: the highest chosen indices are dropped first).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "common.cuh"
#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

constexpr int64_t kEntryTile = 512;

// best[p] = max(best[p], max_n scores[n][p] * row_scale[n]): the fused "scale and row maximum"
// epilogue of the similarity product.
SC_VECTOR_CLONES
void max_scaled_rows(const float* __restrict scores, int64_t rows, int64_t cols, const float* __restrict row_scale,
                     float* __restrict best) {
  for (int64_t n = 0; n < rows; ++n) {
    const float scale = row_scale[n];
    const float* row = scores + n * cols;
    for (int64_t p = 0; p < cols; ++p) best[p] = nan_max(best[p], row[p] * scale);  // NaN: never novel
  }
}

// inverse[n] = 1 / max(||keys[:, n]||, eps) for a (channels, entries) matrix with rows `stride` apart.
SC_VECTOR_CLONES
void inverse_column_norms(const float* __restrict keys, int64_t channels, int64_t entries, int64_t stride,
                          float* __restrict inverse) {
  for (int64_t n = 0; n < entries; ++n) inverse[n] = 0.0f;
  for (int64_t c = 0; c < channels; ++c) {
    const float* row = keys + c * stride;
    for (int64_t n = 0; n < entries; ++n) inverse[n] += row[n] * row[n];
  }
  for (int64_t n = 0; n < entries; ++n) inverse[n] = inverse_norm(inverse[n]);
}

at::Tensor float_rows(const at::Tensor& tensor, int64_t entries) {
  at::Tensor narrowed = tensor.narrow(2, 0, entries);
  if (narrowed.scalar_type() != at::kFloat) narrowed = narrowed.to(at::kFloat);
  return last_dim_contiguous(narrowed);
}

// The `count` pixels with the smallest (score key, pixel) keys, in ascending pixel order.
std::vector<int64_t> select_novel(const float* best, int64_t pixels, int64_t count) {
  std::vector<uint64_t> keys(pixels);
  for (int64_t p = 0; p < pixels; ++p) keys[p] = novelty_key(ordered_key(best[p]), static_cast<uint32_t>(p));
  std::nth_element(keys.begin(), keys.begin() + (count - 1), keys.end());
  std::vector<int64_t> chosen(count);
  for (int64_t i = 0; i < count; ++i) chosen[i] = static_cast<int64_t>(keys[i] & 0xFFFFFFFFu);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace

void memory_update_in_place(const at::Tensor& key_buf, const at::Tensor& val_buf, const at::Tensor& n_valid,
                            const at::Tensor& new_key, const at::Tensor& new_val, double beta) {
  const int64_t batch = key_buf.size(0), key_dim = key_buf.size(1), capacity = key_buf.size(2);
  const int64_t pixels = new_key.size(2);
  const int64_t count = novel_pixel_count(pixels, beta);
  if (batch == 0 || pixels == 0 || count <= 0) return;

  // A negative length counts as an empty memory.
  std::vector<int64_t> starts(batch), lengths(batch);
  {
    const at::Tensor host = n_valid.to(at::kLong).contiguous();
    for (int64_t b = 0; b < batch; ++b) {
      starts[b] = std::max<int64_t>(host.data_ptr<int64_t>()[b], 0);
      lengths[b] = valid_length(starts[b], capacity);
    }
  }
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());

  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const at::Tensor keys = float_rows(key_buf, longest);
  // A float32 copy (never a view: it is normalised in place), (B, Ck, P) contiguous.
  const at::Tensor units = new_key.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  // Unit new keys: the query side of the cosine, normalised once.
  std::vector<float> inverse_memory(batch * longest);
  {
    std::vector<float> inverse_new(pixels);
    for (int64_t b = 0; b < batch; ++b) {
      float* unit = units.data_ptr<float>() + b * key_dim * pixels;
      inverse_column_norms(unit, key_dim, pixels, pixels, inverse_new.data());
      for (int64_t c = 0; c < key_dim; ++c)
        for (int64_t p = 0; p < pixels; ++p) unit[c * pixels + p] *= inverse_new[p];
      inverse_column_norms(keys.data_ptr<float>() + b * keys.stride(0), key_dim, lengths[b], keys.stride(1),
                           inverse_memory.data() + b * longest);
    }
  }

  const int64_t query_tiles = (pixels + kQueryTile - 1) / kQueryTile;
  const int splits = choose_splits(batch * query_tiles, at::get_num_threads(), longest, 2 * kEntryTile);
  std::vector<float> best(static_cast<size_t>(splits) * batch * pixels, -INFINITY);  // (splits, B, P)

  at::parallel_for(0, batch * query_tiles * splits, 1, [&](int64_t first, int64_t last) {
    at::Tensor scratch = at::empty({kEntryTile * kQueryTile}, at::kFloat);
    for (int64_t item = first; item < last; ++item) {
      const int split = static_cast<int>(item % splits);
      const int64_t tile = (item / splits) % query_tiles;
      const int64_t b = item / (splits * query_tiles);
      const int64_t p0 = tile * kQueryTile, cols = std::min<int64_t>(kQueryTile, pixels - p0);
      int64_t begin = 0, end = 0;
      split_range(lengths[b], split, splits, kEntryTile, &begin, &end);
      const at::Tensor unit_tile = units.select(0, b).narrow(1, p0, cols);
      const at::Tensor keys_b = keys.select(0, b);
      float* best_tile = best.data() + (split * batch + b) * pixels + p0;
      for (int64_t n0 = begin; n0 < end; n0 += kEntryTile) {
        const int64_t rows = std::min(kEntryTile, end - n0);
        at::Tensor scores = scratch.narrow(0, 0, rows * cols).view({rows, cols});
        at::mm_out(scores, keys_b.narrow(1, n0, rows).t(), unit_tile);
        max_scaled_rows(scores.data_ptr<float>(), rows, cols, inverse_memory.data() + b * longest + n0, best_tile);
      }
    }
  });
  for (int split = 1; split < splits; ++split)
    for (int64_t i = 0; i < batch * pixels; ++i) best[i] = nan_max(best[i], best[split * batch * pixels + i]);

  for (int64_t b = 0; b < batch; ++b) {
    const int64_t fits = appended_count(starts[b], count, capacity);
    if (fits > 0) {
      std::vector<int64_t> chosen = select_novel(best.data() + b * pixels, pixels, count);
      const at::Tensor index = at::from_blob(chosen.data(), {fits}, at::kLong).clone();
      key_buf.select(0, b).narrow(1, starts[b], fits).copy_(new_key.select(0, b).index_select(1, index));
      val_buf.select(0, b).narrow(1, starts[b], fits).copy_(new_val.select(0, b).index_select(1, index));
    }
    n_valid.select(0, b).fill_(starts[b] + fits);
  }
}

}  // namespace swiftcuda::cpu
