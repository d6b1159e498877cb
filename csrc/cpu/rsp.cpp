// CPU reversed sub-pixel: per output row position, gather every object's source pixels once, copy
// them to the own maps, and sum the other objects' rows in float32 (clamped to [0, 1]).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common.cuh"
#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

// others_row[x] = clamp(sum of rows[o][x] over o != skip, 0, 1): contiguous, vectorised.
SC_VECTOR_CLONES
void sum_others(const float* __restrict rows, int64_t objects, int64_t skip, int64_t cols, float* __restrict total) {
  for (int64_t x = 0; x < cols; ++x) total[x] = 0.0f;
  for (int64_t o = 0; o < objects; ++o) {
    if (o == skip) continue;
    const float* row = rows + o * cols;
    for (int64_t x = 0; x < cols; ++x) total[x] += row[x];
  }
  for (int64_t x = 0; x < cols; ++x) total[x] = fast_min(fast_max(total[x], 0.0f), 1.0f);
}

template <typename scalar_t>
void rsp_rows(const scalar_t* probs, int64_t objects, int64_t height, int64_t width, int64_t factor, scalar_t* own,
              scalar_t* others) {
  const int64_t small_h = height / factor, small_w = width / factor, channels = factor * factor;
  const int64_t plane = height * width, out_plane = channels * small_h * small_w;
  // One task per output row position (channel, y): every object's source pixels are gathered
  // once into a float buffer, then each object's "others" row is a contiguous sum over it.
  at::parallel_for(0, channels * small_h, 16, [&](int64_t first, int64_t last) {
    std::vector<float> gathered(objects * small_w), total(small_w);
    std::vector<int64_t> source(small_w);
    for (int64_t row = first; row < last; ++row) {
      const int64_t y = row % small_h, channel = row / small_h;
      for (int64_t x = 0; x < small_w; ++x) source[x] = unshuffle_source(channel, y, x, factor, width);
      for (int64_t o = 0; o < objects; ++o) {
        const scalar_t* src = probs + o * plane;
        scalar_t* own_row = own + o * out_plane + row * small_w;
        float* buffer = gathered.data() + o * small_w;
        for (int64_t x = 0; x < small_w; ++x) {
          own_row[x] = src[source[x]];
          buffer[x] = static_cast<float>(src[source[x]]);
        }
      }
      for (int64_t o = 0; o < objects; ++o) {
        sum_others(gathered.data(), objects, o, small_w, total.data());
        scalar_t* others_row = others + o * out_plane + row * small_w;
        for (int64_t x = 0; x < small_w; ++x) others_row[x] = static_cast<scalar_t>(total[x]);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rsp(const at::Tensor& probs_in, int64_t factor) {
  const at::Tensor probs = probs_in.contiguous();
  const int64_t objects = probs.size(0), height = probs.size(1), width = probs.size(2);
  const std::vector<int64_t> shape{objects, factor * factor, height / factor, width / factor};
  at::Tensor own = at::empty(shape, probs.options());
  at::Tensor others = at::empty(shape, probs.options());
  if (own.numel() == 0) return {own, others};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, probs.scalar_type(), "swiftcuda_rsp_cpu", [&] {
    rsp_rows<scalar_t>(probs.data_ptr<scalar_t>(), objects, height, width, factor, own.data_ptr<scalar_t>(),
                       others.data_ptr<scalar_t>());
  });
  return {own, others};
}

}  // namespace swiftcuda::cpu
