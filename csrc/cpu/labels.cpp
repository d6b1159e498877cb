// CPU labels: (C, H, W) class probabilities -> (H, W) ids[argmax over C], in one pass over the
// pixels. torch's max(dim=0) reduces across the outer dimension on one thread (about 6 ms for two
// objects at 480x854, a few percent of a bfloat16 step); here each thread takes a run of pixels and
// walks the C class rows side by side, which vectorises and splits over the OpenMP threads.
//
// Semantics are those of ids[probs.max(dim=0).indices]: the first maximum wins a tie, and a NaN
// counts as the maximum (the first NaN wins), as torch's max does.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/vectorize.h"

namespace swiftcuda::cpu {
namespace {

constexpr int64_t kChunk = 4096;

// Folds one class row into the running maximum of a run of pixels. Branch-free, so it vectorises:
// take the class when the running maximum is a number and the value is not <= it (greater, or NaN).
SC_VECTOR_CLONES
void fold_row(const float* __restrict row, int64_t cols, int32_t c, float* __restrict best, int32_t* __restrict arg) {
  for (int64_t x = 0; x < cols; ++x) {
    const float value = row[x];
    const bool take = !(value <= best[x]) && best[x] == best[x];
    best[x] = take ? value : best[x];
    arg[x] = take ? c : arg[x];
  }
}

template <typename scalar_t, typename id_t>
void label_pixels(const scalar_t* probs, int64_t classes, int64_t pixels, const id_t* ids, id_t* out) {
  at::parallel_for(0, (pixels + kChunk - 1) / kChunk, 1, [&](int64_t first, int64_t last) {
    std::vector<float> best(kChunk), row(kChunk);
    std::vector<int32_t> arg(kChunk);
    for (int64_t chunk = first; chunk < last; ++chunk) {
      const int64_t x0 = chunk * kChunk, cols = std::min(kChunk, pixels - x0);
      for (int64_t x = 0; x < cols; ++x) best[x] = static_cast<float>(probs[x0 + x]);
      std::fill_n(arg.begin(), cols, 0);
      for (int64_t c = 1; c < classes; ++c) {
        const scalar_t* source = probs + c * pixels + x0;
        const float* values = reinterpret_cast<const float*>(source);
        if constexpr (!std::is_same_v<scalar_t, float>) {  // half, bfloat16, double: widen a run first
          for (int64_t x = 0; x < cols; ++x) row[x] = static_cast<float>(source[x]);
          values = row.data();
        }
        fold_row(values, cols, static_cast<int32_t>(c), best.data(), arg.data());
      }
      for (int64_t x = 0; x < cols; ++x) out[x0 + x] = ids[arg[x]];
    }
  });
}

}  // namespace

at::Tensor labels(const at::Tensor& probs_in, const at::Tensor& ids_in) {
  const at::Tensor probs = probs_in.contiguous();
  const at::Tensor ids = ids_in.contiguous();
  const int64_t classes = probs.size(0), pixels = probs.size(1) * probs.size(2);
  at::Tensor out = at::empty({probs.size(1), probs.size(2)}, ids.options());
  if (pixels == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, probs.scalar_type(), "swiftcuda_labels_cpu", [&] {
    using prob_t = scalar_t;
    AT_DISPATCH_INTEGRAL_TYPES(ids.scalar_type(), "swiftcuda_labels_cpu_ids", [&] {
      label_pixels<prob_t, scalar_t>(probs.data_ptr<prob_t>(), classes, pixels, ids.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace swiftcuda::cpu
