// CUDA soft aggregation: launcher interface (no torch headers).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common.cuh"

namespace swiftcuda {

struct SoftAggregateParams {
  DType dtype;
  int64_t objects, pixels;  // pixels = H * W
  const void* probs;        // (O, H, W) contiguous
  float* out;               // (O + 1, H, W) contiguous float32
};

cudaError_t launch_soft_aggregate(const SoftAggregateParams& params, cudaStream_t stream);

}  // namespace swiftcuda
