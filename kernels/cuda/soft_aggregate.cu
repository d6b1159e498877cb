// CUDA soft aggregation: one thread per pixel. The background's probability is the product of the
// objects' complements; every class's clamped odds (common.cuh) are normalised to sum to one.
#include <algorithm>

#include "device_utils.cuh"
#include "launch.cuh"
#include "soft_aggregate.cuh"

namespace swiftcuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) soft_aggregate_kernel(SoftAggregateParams p) {
  const T* probs = static_cast<const T*>(p.probs);
  for (int64_t x = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; x < p.pixels;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float background = 1.0f, total = 0.0f;
    for (int64_t o = 0; o < p.objects; ++o) {
      const float prob = device::to_float(probs[o * p.pixels + x]);
      background *= 1.0f - prob;
      total += clamped_odds(prob);
    }
    const float background_odds = clamped_odds(background);
    const float scale = 1.0f / (total + background_odds);
    p.out[x] = background_odds * scale;
    for (int64_t o = 0; o < p.objects; ++o)
      p.out[(o + 1) * p.pixels + x] = clamped_odds(device::to_float(probs[o * p.pixels + x])) * scale;
  }
}

}  // namespace

cudaError_t launch_soft_aggregate(const SoftAggregateParams& p, cudaStream_t stream) {
  if (p.pixels == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((p.pixels + kThreads - 1) / kThreads, 65535));
  switch (p.dtype) {
    case DType::kFloat32:
      launch_kernel(soft_aggregate_kernel<float>, dim3(blocks), dim3(kThreads), 0, stream, p);
      break;
    case DType::kFloat16:
      launch_kernel(soft_aggregate_kernel<__half>, dim3(blocks), dim3(kThreads), 0, stream, p);
      break;
    case DType::kBFloat16:
      launch_kernel(soft_aggregate_kernel<__nv_bfloat16>, dim3(blocks), dim3(kThreads), 0, stream, p);
      break;
  }
  return cudaGetLastError();
}

}  // namespace swiftcuda
