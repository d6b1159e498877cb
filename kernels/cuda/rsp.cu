// CUDA reversed sub-pixel: one thread per output position, in output order (coalesced writes).
// Each reads its source pixel in every object's plane (through the cache: neighbouring channels
// read the same lines), writes the own map and the clamped float32 sum of the others.
#include <algorithm>

#include "device_utils.cuh"
#include "launch.cuh"
#include "rsp.cuh"

namespace swiftcuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) rsp_kernel(RspParams p) {
  const T* probs = static_cast<const T*>(p.probs);
  T* own = static_cast<T*>(p.own);
  T* others = static_cast<T*>(p.others);
  const int64_t small_h = p.height / p.factor, small_w = p.width / p.factor, channels = p.factor * p.factor;
  const int64_t plane = p.height * p.width, total = p.objects * plane;  // unshuffling keeps the count
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = idx % small_w, y = (idx / small_w) % small_h, channel = (idx / (small_w * small_h)) % channels;
    const int64_t object = idx / plane;
    const int64_t source = unshuffle_source(channel, y, x, p.factor, p.width);
    own[idx] = probs[object * plane + source];
    float sum = 0.0f;
    for (int64_t other = 0; other < p.objects; ++other)
      if (other != object) sum += device::to_float(probs[other * plane + source]);
    others[idx] = device::from_float<T>(fminf(fmaxf(sum, 0.0f), 1.0f));
  }
}

}  // namespace

cudaError_t launch_rsp(const RspParams& p, cudaStream_t stream) {
  const int64_t total = p.objects * p.height * p.width;
  if (total == 0) return cudaSuccess;
  if (p.factor < 1) return cudaErrorInvalidValue;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  switch (p.dtype) {
    case DType::kFloat32: launch_kernel(rsp_kernel<float>, dim3(blocks), dim3(kThreads), 0, stream, p); break;
    case DType::kFloat16: launch_kernel(rsp_kernel<__half>, dim3(blocks), dim3(kThreads), 0, stream, p); break;
    case DType::kBFloat16: launch_kernel(rsp_kernel<__nv_bfloat16>, dim3(blocks), dim3(kThreads), 0, stream, p); break;
  }
  return cudaGetLastError();
}

}  // namespace swiftcuda
