// CPU memory read: a tiled online softmax, the CPU twin of kernels/cuda/memory_read.cu.
//
// Work items are (item, tile of 64 query pixels, split of the memory axis). Each walks its memory
// range in tiles of kEntryTile entries:
//   S = K_tile^T (Q_tile * log2(e) / sqrt(Ck))     (ATen's CPU matrix product, nt x 64, in cache)
//   running max / sum update, S <- exp2(S - max)     (softmax_tile: vectorised over the queries)
//   acc = acc * rescale + V_tile S                  (ATen's CPU matrix product)
// so no P x N matrix is ever allocated: scratch is O(kEntryTile x 64 + Cv x 64) per thread. When
// there are fewer query tiles than threads the memory axis is split and a combine pass merges the
// partial (max, sum, acc) triples, as the CUDA kernel does across thread blocks. The family's
// full-softmax reads (memory_read_family.cpp) run the same loop, softmax_read, on their augmented
// keys and queries.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "checks.h"
#include "common.cuh"
#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

// Memory entries per tile: the nt x 64 float logits tile (128 KiB) stays in L2.
constexpr int64_t kEntryTile = 512;

// One tile's softmax bookkeeping. scores: rows x cols logits (log2 domain), columns contiguous.
// Afterwards scores hold exp2(score - new max), running_sum the rescaled sums plus this tile's,
// and rescale[p] the factor the accumulator of query p must be multiplied by.
SC_VECTOR_CLONES
void softmax_tile(float* __restrict scores, int64_t rows, int64_t cols, float* __restrict running_max,
                  float* __restrict running_sum, float* __restrict rescale, float* __restrict tile_max) {
  for (int64_t p = 0; p < cols; ++p) tile_max[p] = -INFINITY;
  for (int64_t n = 0; n < rows; ++n) {
    const float* row = scores + n * cols;
    for (int64_t p = 0; p < cols; ++p) tile_max[p] = fast_max(tile_max[p], row[p]);
  }
  for (int64_t p = 0; p < cols; ++p) {
    const float updated = fast_max(running_max[p], tile_max[p]);
    rescale[p] = online_rescale(running_max[p], updated);
    running_max[p] = updated;
    running_sum[p] *= rescale[p];
  }
  for (int64_t n = 0; n < rows; ++n) {
    float* row = scores + n * cols;
    for (int64_t p = 0; p < cols; ++p) {
      const float weight = exp2_approx(row[p] - running_max[p]);
      row[p] = weight;
      running_sum[p] += weight;
    }
  }
}

// acc (rows x cols) *= rescale per column.
SC_VECTOR_CLONES
void rescale_columns(float* __restrict acc, int64_t rows, int64_t cols, const float* __restrict rescale) {
  for (int64_t c = 0; c < rows; ++c) {
    float* row = acc + c * cols;
    for (int64_t p = 0; p < cols; ++p) row[p] *= rescale[p];
  }
}

// dst[c * dst_stride + p] = acc[c * cols + p] * scale[p].
SC_VECTOR_CLONES
void scale_columns_into(float* __restrict dst, int64_t dst_stride, const float* __restrict acc, int64_t rows,
                        int64_t cols, const float* __restrict scale) {
  for (int64_t c = 0; c < rows; ++c) {
    const float* src = acc + c * cols;
    float* out = dst + c * dst_stride;
    for (int64_t p = 0; p < cols; ++p) out[p] = src[p] * scale[p];
  }
}

// dst[p] += src[p] * weight[p].
SC_VECTOR_CLONES
void add_weighted(float* __restrict dst, const float* __restrict src, const float* __restrict weight, int64_t cols) {
  for (int64_t p = 0; p < cols; ++p) dst[p] += src[p] * weight[p];
}

struct ReadPlan {
  int64_t batch, key_dim, value_dim, pixels, query_tiles;
  int splits;
  float scale_log2;
};

// Per-thread scratch buffers, sized once per parallel chunk.
struct Scratch {
  at::Tensor scores;   // kEntryTile x kQueryTile
  at::Tensor queries;  // Ck x kQueryTile, scaled
  at::Tensor acc;      // Cv x kQueryTile
  std::vector<float> running_max, running_sum, rescale, tile_max;

  Scratch(int64_t key_dim, int64_t value_dim)
      : scores(at::empty({kEntryTile * kQueryTile}, at::kFloat)),
        queries(at::empty({key_dim * kQueryTile}, at::kFloat)),
        acc(at::empty({value_dim * kQueryTile}, at::kFloat)),
        running_max(kQueryTile),
        running_sum(kQueryTile),
        rescale(kQueryTile),
        tile_max(kQueryTile) {}
};

// Attention of queries [p0, p0 + cols) of item b over entries [begin, end): leaves the
// unnormalised accumulator in scratch.acc and the softmax max / sum in scratch.
void attend(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& q_key, const ReadPlan& plan, int64_t b,
            int64_t p0, int64_t cols, int64_t begin, int64_t end, Scratch& scratch) {
  at::Tensor queries = scratch.queries.narrow(0, 0, plan.key_dim * cols).view({plan.key_dim, cols});
  queries.copy_(q_key.select(0, b).narrow(1, p0, cols)).mul_(plan.scale_log2);
  at::Tensor acc = scratch.acc.narrow(0, 0, plan.value_dim * cols).view({plan.value_dim, cols});
  acc.zero_();
  std::fill_n(scratch.running_max.begin(), cols, -INFINITY);
  std::fill_n(scratch.running_sum.begin(), cols, 0.0f);
  const at::Tensor keys_b = keys.select(0, b);
  const at::Tensor values_b = values.select(0, b);
  for (int64_t n0 = begin; n0 < end; n0 += kEntryTile) {
    const int64_t rows = std::min(kEntryTile, end - n0);
    at::Tensor scores = scratch.scores.narrow(0, 0, rows * cols).view({rows, cols});
    at::mm_out(scores, keys_b.narrow(1, n0, rows).t(), queries);
    softmax_tile(scores.data_ptr<float>(), rows, cols, scratch.running_max.data(), scratch.running_sum.data(),
                 scratch.rescale.data(), scratch.tile_max.data());
    rescale_columns(acc.data_ptr<float>(), plan.value_dim, cols, scratch.rescale.data());
    acc.addmm_(values_b.narrow(1, n0, rows), scores);
  }
}

}  // namespace

at::Tensor float_prefix(const at::Tensor& tensor, int64_t entries) {
  at::Tensor narrowed = tensor.narrow(2, 0, entries);
  if (narrowed.scalar_type() != at::kFloat) narrowed = narrowed.to(at::kFloat);
  return last_dim_contiguous(narrowed);
}

std::vector<int64_t> valid_lengths(const std::optional<at::Tensor>& n_valid, int64_t batch, int64_t capacity) {
  std::vector<int64_t> lengths(batch, capacity);
  if (n_valid.has_value()) {
    const at::Tensor host = n_valid->to(at::kLong).contiguous();
    const int64_t* data = host.data_ptr<int64_t>();
    for (int64_t b = 0; b < batch; ++b) lengths[b] = valid_length(data[b], capacity);
  }
  return lengths;
}

void softmax_read(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& q_key,
                  const std::vector<int64_t>& lengths, float scale_log2, const at::Tensor& readout, float* query_max,
                  float* query_sum) {
  const int64_t batch = keys.size(0);
  ReadPlan plan{batch, keys.size(1), values.size(1), q_key.size(2), 0, 1, scale_log2};
  plan.query_tiles = (plan.pixels + kQueryTile - 1) / kQueryTile;
  const int64_t longest = batch ? *std::max_element(lengths.begin(), lengths.end()) : 0;

  const int64_t threads = at::get_num_threads();
  plan.splits = choose_splits(batch * plan.query_tiles, threads, longest, 2 * kEntryTile);
  const int64_t splits = plan.splits;
  at::Tensor part_acc, part_max, part_sum;
  if (splits > 1) {
    part_acc = at::empty({batch, splits, plan.value_dim, plan.pixels}, at::kFloat);
    part_max = at::empty({batch, splits, plan.pixels}, at::kFloat);
    part_sum = at::empty({batch, splits, plan.pixels}, at::kFloat);
  }

  at::AutoDispatchBelowADInplaceOrView below_autograd;  // the tile products need no autograd
  const int64_t work = batch * plan.query_tiles * splits;
  at::parallel_for(0, work, 1, [&](int64_t first, int64_t last) {
    Scratch scratch(plan.key_dim, plan.value_dim);
    for (int64_t item = first; item < last; ++item) {
      const int64_t split = item % splits;
      const int64_t tile = (item / splits) % plan.query_tiles;
      const int64_t b = item / (splits * plan.query_tiles);
      const int64_t p0 = tile * kQueryTile;
      const int64_t cols = std::min<int64_t>(kQueryTile, plan.pixels - p0);
      int64_t begin = 0, end = 0;
      split_range(lengths[b], static_cast<int>(split), static_cast<int>(splits), kEntryTile, &begin, &end);
      attend(keys, values, q_key, plan, b, p0, cols, begin, end, scratch);
      const float* acc = scratch.acc.data_ptr<float>();
      if (splits == 1) {
        float* scale = scratch.rescale.data();
        for (int64_t p = 0; p < cols; ++p) scale[p] = softmax_normaliser(scratch.running_sum[p]);
        scale_columns_into(readout.data_ptr<float>() + b * readout.stride(0) + p0, readout.stride(1), acc,
                           plan.value_dim, cols, scale);
        if (query_max != nullptr) {
          std::copy_n(scratch.running_max.data(), cols, query_max + b * plan.pixels + p0);
          std::copy_n(scratch.running_sum.data(), cols, query_sum + b * plan.pixels + p0);
        }
      } else {
        float* dst = part_acc.data_ptr<float>() + (b * splits + split) * plan.value_dim * plan.pixels + p0;
        for (int64_t c = 0; c < plan.value_dim; ++c) std::copy_n(acc + c * cols, cols, dst + c * plan.pixels);
        const int64_t at = (b * splits + split) * plan.pixels + p0;
        std::copy_n(scratch.running_max.data(), cols, part_max.data_ptr<float>() + at);
        std::copy_n(scratch.running_sum.data(), cols, part_sum.data_ptr<float>() + at);
      }
    }
  });

  if (splits > 1) {
    // Combine: out = sum_z w_z acc_z / sum_z w_z sum_z, w_z = exp2(max_z - max over z).
    at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      std::vector<float> weight(splits * plan.pixels), scale(plan.pixels);
      for (int64_t b = first; b < last; ++b) {
        const float* maxima = part_max.data_ptr<float>() + b * splits * plan.pixels;
        const float* sums = part_sum.data_ptr<float>() + b * splits * plan.pixels;
        for (int64_t p = 0; p < plan.pixels; ++p) {
          float overall = -INFINITY;
          for (int64_t z = 0; z < splits; ++z) overall = fast_max(overall, maxima[z * plan.pixels + p]);
          float total = 0.0f;
          for (int64_t z = 0; z < splits; ++z) {
            const float w = split_weight(maxima[z * plan.pixels + p], overall);
            weight[z * plan.pixels + p] = w;
            total += w * sums[z * plan.pixels + p];
          }
          scale[p] = softmax_normaliser(total);
          if (query_max != nullptr) {
            query_max[b * plan.pixels + p] = overall;
            query_sum[b * plan.pixels + p] = total;
          }
        }
        for (int64_t c = 0; c < plan.value_dim; ++c) {
          float* row = readout.data_ptr<float>() + b * readout.stride(0) + c * readout.stride(1);
          std::fill_n(row, plan.pixels, 0.0f);
          for (int64_t z = 0; z < splits; ++z) {
            const float* src = part_acc.data_ptr<float>() + ((b * splits + z) * plan.value_dim + c) * plan.pixels;
            add_weighted(row, src, weight.data() + z * plan.pixels, plan.pixels);
          }
          for (int64_t p = 0; p < plan.pixels; ++p) row[p] *= scale[p];
        }
      }
    });
  }
}

void memory_read_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key_in,
                      const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid, const at::Tensor& out) {
  const int64_t batch = mem_key.size(0), value_dim = mem_val.size(1), pixels = q_key_in.size(2);
  const std::vector<int64_t> lengths = valid_lengths(n_valid, batch, mem_key.size(2));
  const int64_t longest = batch ? *std::max_element(lengths.begin(), lengths.end()) : 0;

  // Entries past every item's valid length are never touched, not even converted.
  const at::Tensor keys = float_prefix(mem_key, longest);
  const at::Tensor values = float_prefix(mem_val, longest);
  const at::Tensor q_key = float_prefix(q_key_in, pixels);

  // The readout goes straight into out when out is float32 with contiguous rows.
  const at::Tensor out_read = out.narrow(1, 0, value_dim);
  const bool direct = out.scalar_type() == at::kFloat && (pixels <= 1 || out.stride(2) == 1);
  const at::Tensor readout = direct ? out_read : at::empty({batch, value_dim, pixels}, at::kFloat);
  softmax_read(keys, values, q_key, lengths, softmax_scale_log2(mem_key.size(1)), readout, nullptr, nullptr);
  if (!direct) out_read.copy_(readout);
  out.narrow(1, value_dim, value_dim).copy_(q_val);
}

}  // namespace swiftcuda::cpu
