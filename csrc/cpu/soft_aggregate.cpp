// CPU soft aggregation: background = product of the objects' complements, then every class's
// clamped odds (common.cuh) normalised to sum to one, in float32, over chunks of pixels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common.cuh"
#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

constexpr int64_t kChunk = 1024;

// Turns the class rows of out (already holding odds) into probabilities, given their sums.
SC_VECTOR_CLONES
void normalise_rows(float* __restrict out, int64_t rows, int64_t stride, int64_t cols, float* __restrict total) {
  for (int64_t x = 0; x < cols; ++x) total[x] = 1.0f / total[x];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < cols; ++x) out[r * stride + x] *= total[x];
}

template <typename scalar_t>
void aggregate(const scalar_t* probs, int64_t objects, int64_t pixels, float* out) {
  at::parallel_for(0, (pixels + kChunk - 1) / kChunk, 1, [&](int64_t first, int64_t last) {
    std::vector<float> background(kChunk), total(kChunk);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      const int64_t x0 = chunk * kChunk, cols = std::min(kChunk, pixels - x0);
      std::fill_n(background.begin(), cols, 1.0f);
      std::fill_n(total.begin(), cols, 0.0f);
      for (int64_t o = 0; o < objects; ++o) {
        const scalar_t* row = probs + o * pixels + x0;
        float* odds = out + (o + 1) * pixels + x0;
        for (int64_t x = 0; x < cols; ++x) {
          const float prob = static_cast<float>(row[x]);
          background[x] *= 1.0f - prob;
          odds[x] = clamped_odds(prob);
          total[x] += odds[x];
        }
      }
      float* background_odds = out + x0;
      for (int64_t x = 0; x < cols; ++x) {
        background_odds[x] = clamped_odds(background[x]);
        total[x] += background_odds[x];
      }
      normalise_rows(out + x0, objects + 1, pixels, cols, total.data());
    }
  });
}

}  // namespace

at::Tensor soft_aggregate(const at::Tensor& probs_in) {
  const at::Tensor probs = probs_in.contiguous();
  const int64_t objects = probs.size(0), pixels = probs.size(1) * probs.size(2);
  at::Tensor out = at::empty({objects + 1, probs.size(1), probs.size(2)}, probs.options().dtype(at::kFloat));
  if (pixels == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, probs.scalar_type(), "swiftcuda_soft_aggregate_cpu", [&] {
    aggregate<scalar_t>(probs.data_ptr<scalar_t>(), objects, pixels, out.data_ptr<float>());
  });
  return out;
}

}  // namespace swiftcuda::cpu
