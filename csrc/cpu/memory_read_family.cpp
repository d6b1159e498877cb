// CPU read of the STM family: the l2 affinity, shrinkage, selection, top-k softmax and usage
// (swiftcuda.ops.reference.memory_read with its options).
//
// Every affinity becomes a plain dot product between augmented keys K' (B, D, N) and augmented
// queries Q' (B, D, P):
//   dot:                  K' = mk                    Q' = qk
//   l2:                   K' = [mk; |mk|^2]          Q' = [2 qk; -1]
//   l2 with selection qe: K' = [mk; mk * mk; 1]      Q' = [2 qk qe; -qe; -sum_c qe qk^2]
// with the shrinkage scaling K' entry by entry and scale * log2(e) folded into Q', so the logits
// are K'^T Q' in base 2. Q' is built once per call (it is as small as the queries). Full-softmax
// reads build K' whole and run the online-softmax read of memory_read.cpp. Top-k reads:
//   1. work items (item, tile of 64 queries, split of the memory axis) stream over memory tiles,
//      building each K' tile from the keys in place and computing S = K'_tile^T Q'_tile (ATen's
//      matrix product, in cache); every query keeps a min-heap of its k largest logits, and a
//      vectorised compare with each query's k-th best skips most entries;
//   2. per query, the splits' lists merge into its k best and their softmax;
//   3. per item, the chosen (query, weight) pairs are grouped by entry (a counting sort); an
//      entry's usage is the sum of its weights;
//   4. work items (item, block of value channels) walk the entries in order, transpose 16 value
//      columns at a time into cache and add each chosen one, weighted, to its queries' readouts,
//      so the values are read once, in order, whatever the queries chose.
// Scratch is O(tile) per thread and O(P k + N) per item: no P x N matrix, and no copy of the memory.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "checks.h"
#include "common.cuh"
#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

// Memory entries per logits tile of a top-k work item: 512 x 64 floats (128 KiB) stay in L2.
constexpr int64_t kEntryTile = 512;
// Value columns transposed at a time by the gather (a cache line of float32 per channel).
constexpr int64_t kGatherEntries = 16;
// Value channels per gather work item: its readout block (P x 64 floats) stays in L2.
constexpr int64_t kGatherChannels = 64;

// norms[n] = sum_c keys[c * rows + n]^2.
SC_VECTOR_CLONES
void squared_norms(const float* __restrict keys, int64_t channels, int64_t rows, float* __restrict norms) {
  for (int64_t n = 0; n < rows; ++n) norms[n] = 0.0f;
  for (int64_t c = 0; c < channels; ++c) {
    const float* row = keys + c * rows;
    for (int64_t n = 0; n < rows; ++n) norms[n] += row[n] * row[n];
  }
}

// dst[i] = src[i]^2.
SC_VECTOR_CLONES
void squares(const float* __restrict src, int64_t count, float* __restrict dst) {
  for (int64_t i = 0; i < count; ++i) dst[i] = src[i] * src[i];
}

// row[n] *= factor[n].
SC_VECTOR_CLONES
void scale_row(float* __restrict row, const float* __restrict factor, int64_t count) {
  for (int64_t n = 0; n < count; ++n) row[n] *= factor[n];
}

// Whether every item of a batch holds the same tensor (one item, or an expanded stride-0 batch):
// the augmented queries are then built once.
bool batch_shared(const at::Tensor& tensor) { return tensor.size(0) <= 1 || tensor.stride(0) == 0; }

at::Tensor first_item(const at::Tensor& tensor) { return tensor.narrow(0, 0, std::min<int64_t>(tensor.size(0), 1)); }

// K', read tile by tile from the memory keys and shrinkage in place, whatever their float dtype and
// strides: a top-k read never holds more than one (D x kEntryTile) tile of it per thread.
class KeySource {
 public:
  KeySource(const at::Tensor& mem_key, const ReadOptions& options)
      : keys_(mem_key), shrinkage_(options.shrinkage), l2_(options.l2), selection_(options.selection.has_value()) {}

  int64_t dim() const {
    const int64_t key_dim = keys_.size(1);
    return !l2_ ? key_dim : (selection_ ? 2 * key_dim + 1 : key_dim + 1);
  }

  // K'[:, n0 : n0 + rows] of item b into tile, D rows of `rows` floats.
  void build(int64_t b, int64_t n0, int64_t rows, float* tile) const {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, keys_.scalar_type(), "key_tile",
                                    [&] { build_typed<scalar_t>(b, n0, rows, tile); });
  }

 private:
  template <typename scalar_t>
  void build_typed(int64_t b, int64_t n0, int64_t rows, float* tile) const {
    const int64_t key_dim = keys_.size(1), sc = keys_.stride(1), sn = keys_.stride(2);
    const scalar_t* keys = keys_.data_ptr<scalar_t>() + b * keys_.stride(0) + n0 * sn;
    for (int64_t c = 0; c < key_dim; ++c)
      for (int64_t n = 0; n < rows; ++n) tile[c * rows + n] = static_cast<float>(keys[c * sc + n * sn]);
    if (l2_ && !selection_) {
      squared_norms(tile, key_dim, rows, tile + key_dim * rows);
    } else if (l2_) {
      squares(tile, key_dim * rows, tile + key_dim * rows);
      std::fill_n(tile + 2 * key_dim * rows, rows, 1.0f);
    }
    if (shrinkage_.has_value()) {
      const at::Tensor& ms = *shrinkage_;
      const scalar_t* factor = ms.data_ptr<scalar_t>() + b * ms.stride(0) + n0 * ms.stride(1);
      std::vector<float> row(rows);
      for (int64_t n = 0; n < rows; ++n) row[n] = static_cast<float>(factor[n * ms.stride(1)]);
      for (int64_t d = 0; d < dim(); ++d) scale_row(tile + d * rows, row.data(), rows);
    }
  }

  at::Tensor keys_;
  std::optional<at::Tensor> shrinkage_;
  bool l2_, selection_;
};

// K' (B, D, longest) float32, whole: the full-softmax read takes it this way.
at::Tensor augmented_keys(const at::Tensor& mem_key, const ReadOptions& options, int64_t longest) {
  const KeySource source(mem_key, options);
  const bool shared = batch_shared(mem_key) && (!options.shrinkage.has_value() || batch_shared(*options.shrinkage));
  const int64_t items = shared ? std::min<int64_t>(mem_key.size(0), 1) : mem_key.size(0);
  at::Tensor keys = at::empty({items, source.dim(), longest}, at::kFloat);
  at::parallel_for(0, items, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) source.build(b, 0, longest, keys.data_ptr<float>() + b * keys.stride(0));
  });
  return shared ? keys.expand({mem_key.size(0), -1, -1}) : keys;
}

// Q' (B, D, P) float32 with contiguous rows, times factor (see the top of the file).
at::Tensor augmented_queries(const at::Tensor& q_key, const ReadOptions& options, double factor) {
  const bool shared = batch_shared(q_key) && (!options.selection.has_value() || batch_shared(*options.selection));
  const int64_t pixels = q_key.size(2);
  const at::Tensor qk = float_prefix(shared ? first_item(q_key) : q_key, pixels);
  at::Tensor queries;
  if (!options.l2) {
    queries = qk * factor;
  } else if (!options.selection.has_value()) {
    queries = at::cat({qk * (2.0 * factor), at::full({qk.size(0), 1, pixels}, -factor, qk.options())}, 1);
  } else {
    const at::Tensor qe = float_prefix(shared ? first_item(*options.selection) : *options.selection, pixels);
    const at::Tensor query_term = (qe * qk * qk).sum(1, /*keepdim=*/true);
    queries = at::cat({qk * qe * (2.0 * factor), qe * -factor, query_term * -factor}, 1);
  }
  return shared ? queries.expand({q_key.size(0), -1, -1}) : queries;
}

// A query's k largest logits so far: a binary min-heap on the logit, the k-th largest at the root.
struct TopList {
  float value[kMaxTopK];
  int32_t entry[kMaxTopK];
  int32_t size;
};

// Offers (value, entry) to a list of capacity k. A value that only ties the k-th largest is not
// taken: of equal logits the one met first stays.
void offer(TopList& list, int64_t k, float value, int32_t entry) {
  int64_t i;
  if (list.size < k) {  // sift up from the new leaf
    i = list.size++;
    while (i > 0) {
      const int64_t parent = (i - 1) / 2;
      if (!(list.value[parent] > value)) break;
      list.value[i] = list.value[parent];
      list.entry[i] = list.entry[parent];
      i = parent;
    }
  } else {
    if (!(value > list.value[0])) return;
    i = 0;  // replace the root and sift down
    for (;;) {
      int64_t child = 2 * i + 1;
      if (child >= k) break;
      if (child + 1 < k && list.value[child + 1] < list.value[child]) ++child;
      if (!(list.value[child] < value)) break;
      list.value[i] = list.value[child];
      list.entry[i] = list.entry[child];
      i = child;
    }
  }
  list.value[i] = value;
  list.entry[i] = entry;
}

// The logit a newcomer must beat: -inf until the list is full (NaN and -inf logits never enter).
float entry_threshold(const TopList& list, int64_t k) { return list.size < k ? -INFINITY : list.value[0]; }

// How many queries of a logits row beat their threshold (most rows: none).
SC_VECTOR_CLONES
int32_t count_above(const float* __restrict row, const float* __restrict threshold, int64_t cols) {
  int32_t count = 0;
  for (int64_t p = 0; p < cols; ++p) count += row[p] > threshold[p] ? 1 : 0;
  return count;
}

// Offers a (rows x cols) logits tile of entries [n0, n0 + rows) to the queries' lists.
void select_tile(const float* scores, int64_t rows, int64_t cols, int64_t n0, int64_t k, TopList* lists,
                 float* threshold) {
  for (int64_t n = 0; n < rows; ++n) {
    const float* row = scores + n * cols;
    if (count_above(row, threshold, cols) == 0) continue;
    for (int64_t p = 0; p < cols; ++p) {
      if (row[p] > threshold[p]) {
        offer(lists[p], k, row[p], static_cast<int32_t>(n0 + n));
        threshold[p] = entry_threshold(lists[p], k);
      }
    }
  }
}

// dst[i] += weight * src[i].
SC_VECTOR_CLONES
void add_scaled(float* __restrict dst, const float* __restrict src, float weight, int64_t count) {
  for (int64_t i = 0; i < count; ++i) dst[i] += weight * src[i];
}

// row[p] = exp2(row[p] - max[p]) * inverse_sum[p]: a logits row turned into softmax weights.
SC_VECTOR_CLONES
void weights_row(float* __restrict row, const float* __restrict max, const float* __restrict inverse_sum,
                 int64_t cols) {
  for (int64_t p = 0; p < cols; ++p) row[p] = exp2_approx(row[p] - max[p]) * inverse_sum[p];
}

// Each query's chosen entries and softmax weights: (B, P, k) row-major, `size` of them valid.
struct Chosen {
  int64_t k;
  std::vector<int32_t> entry, size;
  std::vector<float> weight;
};

// Steps 1 and 2: the k best logits of every query and their softmax.
Chosen choose_top_k(const KeySource& keys, const at::Tensor& queries, const std::vector<int64_t>& lengths, int64_t k) {
  const int64_t batch = queries.size(0), dim = keys.dim(), pixels = queries.size(2);
  const int64_t query_tiles = (pixels + kQueryTile - 1) / kQueryTile;
  const int64_t longest = batch ? *std::max_element(lengths.begin(), lengths.end()) : 0;
  const int64_t splits = choose_splits(batch * query_tiles, at::get_num_threads(), longest, 2 * kEntryTile);
  // Each split's lists, (B, splits, P, k) and sizes (B, splits, P).
  std::vector<float> part_value(batch * splits * pixels * k);
  std::vector<int32_t> part_entry(batch * splits * pixels * k), part_size(batch * splits * pixels);

  at::parallel_for(0, batch * query_tiles * splits, 1, [&](int64_t first, int64_t last) {
    at::Tensor scores_buffer = at::empty({kEntryTile * kQueryTile}, at::kFloat);
    at::Tensor queries_buffer = at::empty({dim * kQueryTile}, at::kFloat);
    at::Tensor keys_buffer = at::empty({dim * kEntryTile}, at::kFloat);
    std::vector<TopList> lists(kQueryTile);
    std::vector<float> threshold(kQueryTile);
    for (int64_t item = first; item < last; ++item) {
      const int64_t split = item % splits;
      const int64_t tile = (item / splits) % query_tiles;
      const int64_t b = item / (splits * query_tiles);
      const int64_t p0 = tile * kQueryTile, cols = std::min<int64_t>(kQueryTile, pixels - p0);
      int64_t begin = 0, end = 0;
      split_range(lengths[b], static_cast<int>(split), static_cast<int>(splits), kEntryTile, &begin, &end);
      at::Tensor tile_queries = queries_buffer.narrow(0, 0, dim * cols).view({dim, cols});
      tile_queries.copy_(queries.select(0, b).narrow(1, p0, cols));
      for (int64_t p = 0; p < cols; ++p) lists[p].size = 0;
      std::fill_n(threshold.begin(), cols, -INFINITY);
      for (int64_t n0 = begin; n0 < end; n0 += kEntryTile) {
        const int64_t rows = std::min(kEntryTile, end - n0);
        at::Tensor tile_keys = keys_buffer.narrow(0, 0, dim * rows).view({dim, rows});
        keys.build(b, n0, rows, tile_keys.data_ptr<float>());
        at::Tensor scores = scores_buffer.narrow(0, 0, rows * cols).view({rows, cols});
        at::mm_out(scores, tile_keys.t(), tile_queries);
        select_tile(scores.data_ptr<float>(), rows, cols, n0, k, lists.data(), threshold.data());
      }
      for (int64_t p = 0; p < cols; ++p) {
        const int64_t at = (b * splits + split) * pixels + p0 + p;
        part_size[at] = lists[p].size;
        std::copy_n(lists[p].value, lists[p].size, part_value.data() + at * k);
        std::copy_n(lists[p].entry, lists[p].size, part_entry.data() + at * k);
      }
    }
  });

  Chosen chosen{k, std::vector<int32_t>(batch * pixels * k), std::vector<int32_t>(batch * pixels),
                std::vector<float>(batch * pixels * k)};
  at::parallel_for(0, batch * pixels, 64, [&](int64_t first, int64_t last) {
    std::vector<std::pair<float, int32_t>> candidates;
    for (int64_t query = first; query < last; ++query) {  // query = b * pixels + p
      const int64_t b = query / pixels, p = query % pixels;
      candidates.clear();
      for (int64_t z = 0; z < splits; ++z) {
        const int64_t at = (b * splits + z) * pixels + p;
        for (int32_t j = 0; j < part_size[at]; ++j)
          candidates.emplace_back(part_value[at * k + j], part_entry[at * k + j]);
      }
      const int64_t size = std::min<int64_t>(k, static_cast<int64_t>(candidates.size()));
      // Largest first; of equal logits the lower entry (a deterministic choice among ties).
      std::partial_sort(candidates.begin(), candidates.begin() + size, candidates.end(),
                        [](const auto& x, const auto& y) {
                          return x.first > y.first || (x.first == y.first && x.second < y.second);
                        });
      float total = 0.0f;
      float* weight = chosen.weight.data() + query * k;
      for (int64_t j = 0; j < size; ++j) {
        weight[j] = exp2_approx(candidates[j].first - candidates[0].first);
        total += weight[j];
        chosen.entry[query * k + j] = candidates[j].second;
      }
      const float inverse = softmax_normaliser(total);
      for (int64_t j = 0; j < size; ++j) weight[j] *= inverse;
      chosen.size[query] = static_cast<int32_t>(size);
    }
  });
  return chosen;
}

// One item's chosen (query, weight) pairs grouped by entry: those of entry n are
// [offset[n], offset[n + 1]), in query order.
struct ByEntry {
  std::vector<int64_t> offset;
  std::vector<int32_t> query;
  std::vector<float> weight;
};

// Step 3, for item b: the counting sort, and the usage row (0 past the valid length) when asked.
ByEntry group_by_entry(const Chosen& chosen, int64_t b, int64_t pixels, int64_t length, float* usage,
                       int64_t capacity) {
  const int64_t k = chosen.k;
  ByEntry grouped{std::vector<int64_t>(length + 1, 0), {}, {}};
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t query = b * pixels + p;
    for (int32_t j = 0; j < chosen.size[query]; ++j) ++grouped.offset[chosen.entry[query * k + j] + 1];
  }
  for (int64_t n = 0; n < length; ++n) grouped.offset[n + 1] += grouped.offset[n];
  grouped.query.resize(grouped.offset[length]);
  grouped.weight.resize(grouped.offset[length]);
  std::vector<int64_t> cursor(grouped.offset.begin(), grouped.offset.end() - 1);
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t query = b * pixels + p;
    for (int32_t j = 0; j < chosen.size[query]; ++j) {
      const int64_t at = cursor[chosen.entry[query * k + j]]++;
      grouped.query[at] = static_cast<int32_t>(p);
      grouped.weight[at] = chosen.weight[query * k + j];
    }
  }
  if (usage != nullptr) {
    for (int64_t n = 0; n < length; ++n) {
      float total = 0.0f;
      for (int64_t at = grouped.offset[n]; at < grouped.offset[n + 1]; ++at) total += grouped.weight[at];
      usage[n] = total;
    }
    std::fill(usage + length, usage + capacity, 0.0f);
  }
  return grouped;
}

// Step 4: readout[b, c, p] = sum over p's chosen entries n of weight * values[b, c, n].
template <typename scalar_t>
void gather_values(const at::Tensor& values, const std::vector<ByEntry>& grouped, const std::vector<int64_t>& lengths,
                   const at::Tensor& readout) {
  const int64_t batch = values.size(0), value_dim = values.size(1), pixels = readout.size(2);
  const int64_t blocks = (value_dim + kGatherChannels - 1) / kGatherChannels;
  const scalar_t* data = values.data_ptr<scalar_t>();
  const int64_t vs0 = values.stride(0), vs1 = values.stride(1), vs2 = values.stride(2);
  float* out = readout.data_ptr<float>();
  const int64_t rs0 = readout.stride(0), rs1 = readout.stride(1), rs2 = readout.stride(2);
  at::parallel_for(0, batch * blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> acc, columns(kGatherEntries * kGatherChannels);
    for (int64_t item = first; item < last; ++item) {
      const int64_t b = item / blocks, c0 = (item % blocks) * kGatherChannels;
      const int64_t width = std::min(kGatherChannels, value_dim - c0);
      const ByEntry& by_entry = grouped[b];
      acc.assign(pixels * width, 0.0f);  // acc[p * width + c]
      for (int64_t n0 = 0; n0 < lengths[b]; n0 += kGatherEntries) {
        const int64_t n1 = std::min(n0 + kGatherEntries, lengths[b]);
        if (by_entry.offset[n0] == by_entry.offset[n1]) continue;  // no query chose these entries
        for (int64_t c = 0; c < width; ++c) {
          const scalar_t* src = data + b * vs0 + (c0 + c) * vs1;
          for (int64_t n = n0; n < n1; ++n) columns[(n - n0) * width + c] = static_cast<float>(src[n * vs2]);
        }
        for (int64_t n = n0; n < n1; ++n) {
          for (int64_t at = by_entry.offset[n]; at < by_entry.offset[n + 1]; ++at)
            add_scaled(acc.data() + by_entry.query[at] * width, columns.data() + (n - n0) * width, by_entry.weight[at],
                       width);
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        float* dst = out + b * rs0 + (c0 + c) * rs1;
        for (int64_t p = 0; p < pixels; ++p) dst[p * rs2] = acc[p * width + c];
      }
    }
  });
}

// The usage of a full-softmax read: usage[b, n] = sum_p exp2(S[n, p] - max[p]) / sum[p], the logits
// recomputed tile by tile; each work item (item, entry tile) owns its entries' usage.
void softmax_usage(const at::Tensor& keys, const at::Tensor& queries, const std::vector<int64_t>& lengths,
                   const std::vector<float>& query_max, const std::vector<float>& query_sum, const at::Tensor& usage) {
  const int64_t batch = keys.size(0), dim = keys.size(1), pixels = queries.size(2), capacity = usage.size(1);
  const int64_t longest = batch ? *std::max_element(lengths.begin(), lengths.end()) : 0;
  const int64_t entry_tiles = (longest + kEntryTile - 1) / kEntryTile;
  std::vector<float> inverse_sum(query_sum.size());
  for (size_t i = 0; i < query_sum.size(); ++i) inverse_sum[i] = softmax_normaliser(query_sum[i]);
  usage.zero_();
  float* usage_data = usage.data_ptr<float>();
  at::parallel_for(0, batch * entry_tiles, 1, [&](int64_t first, int64_t last) {
    at::Tensor scores_buffer = at::empty({kEntryTile * kQueryTile}, at::kFloat);
    at::Tensor queries_buffer = at::empty({dim * kQueryTile}, at::kFloat);
    at::Tensor ones = at::ones({kQueryTile}, at::kFloat);
    at::Tensor tile_usage = at::empty({kEntryTile}, at::kFloat);
    for (int64_t item = first; item < last; ++item) {
      const int64_t b = item / entry_tiles, n0 = (item % entry_tiles) * kEntryTile;
      if (n0 >= lengths[b]) continue;
      const int64_t rows = std::min(kEntryTile, lengths[b] - n0);
      at::Tensor total = tile_usage.narrow(0, 0, rows).zero_();
      const at::Tensor tile_keys = keys.select(0, b).narrow(1, n0, rows).t();
      for (int64_t p0 = 0; p0 < pixels; p0 += kQueryTile) {
        const int64_t cols = std::min<int64_t>(kQueryTile, pixels - p0);
        at::Tensor tile_queries = queries_buffer.narrow(0, 0, dim * cols).view({dim, cols});
        tile_queries.copy_(queries.select(0, b).narrow(1, p0, cols));
        at::Tensor scores = scores_buffer.narrow(0, 0, rows * cols).view({rows, cols});
        at::mm_out(scores, tile_keys, tile_queries);
        float* s = scores.data_ptr<float>();
        for (int64_t n = 0; n < rows; ++n)
          weights_row(s + n * cols, query_max.data() + b * pixels + p0, inverse_sum.data() + b * pixels + p0, cols);
        total.addmv_(scores, ones.narrow(0, 0, cols));
      }
      std::copy_n(total.data_ptr<float>(), rows, usage_data + b * capacity + n0);
    }
  });
}

}  // namespace

void memory_read_family_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                             const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                             const ReadOptions& options, const at::Tensor& out,
                             const std::optional<at::Tensor>& usage) {
  const int64_t batch = mem_key.size(0), capacity = mem_key.size(2), value_dim = mem_val.size(1);
  const int64_t pixels = q_key.size(2);
  const std::vector<int64_t> lengths = valid_lengths(n_valid, batch, capacity);
  const int64_t longest = batch ? *std::max_element(lengths.begin(), lengths.end()) : 0;
  at::AutoDispatchBelowADInplaceOrView below_autograd;  // the tile products need no autograd

  // Entries past every item's valid length are never touched, not even converted.
  const at::Tensor queries = augmented_queries(q_key, options, options.scale * kLog2e);

  // The readout goes straight into out when out is float32 with contiguous rows.
  const at::Tensor out_read = out.narrow(1, 0, value_dim);
  const bool direct = out.scalar_type() == at::kFloat && (pixels <= 1 || out.stride(2) == 1);
  const at::Tensor readout = direct ? out_read : at::empty({batch, value_dim, pixels}, at::kFloat);

  // Usage is written row by row: into a contiguous buffer when the caller's is not.
  std::optional<at::Tensor> usage_rows = usage;
  if (usage.has_value() && !usage->is_contiguous()) usage_rows = at::empty({batch, capacity}, at::kFloat);

  if (options.top_k > 0) {
    const Chosen chosen = choose_top_k(KeySource(mem_key, options), queries, lengths, options.top_k);
    std::vector<ByEntry> grouped(batch);
    float* usage_data = usage_rows.has_value() ? usage_rows->data_ptr<float>() : nullptr;
    at::parallel_for(0, batch, 1, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b)
        grouped[b] = group_by_entry(chosen, b, pixels, lengths[b],
                                    usage_data == nullptr ? nullptr : usage_data + b * capacity, capacity);
    });
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mem_val.scalar_type(), "memory_read_family",
                                    [&] { gather_values<scalar_t>(mem_val, grouped, lengths, readout); });
  } else {
    // Dot-product keys are used as they are (a view when float32).
    const at::Tensor keys = options.l2 ? augmented_keys(mem_key, options, longest) : float_prefix(mem_key, longest);
    const at::Tensor values = float_prefix(mem_val, longest);
    if (!usage_rows.has_value()) {
      softmax_read(keys, values, queries, lengths, 1.0f, readout, nullptr, nullptr);
    } else {
      std::vector<float> query_max(batch * pixels), query_sum(batch * pixels);
      softmax_read(keys, values, queries, lengths, 1.0f, readout, query_max.data(), query_sum.data());
      softmax_usage(keys, queries, lengths, query_max, query_sum, *usage_rows);
    }
  }

  if (!direct) out_read.copy_(readout);
  if (usage.has_value() && !usage->is_same(*usage_rows)) usage->copy_(*usage_rows);
  if (q_val.has_value()) out.narrow(1, value_dim, value_dim).copy_(*q_val);
}

}  // namespace swiftcuda::cpu
