// CUDA reversed sub-pixel: launcher interface (no torch headers).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common.cuh"

namespace swiftcuda {

struct RspParams {
  DType dtype;
  int64_t objects, height, width, factor;
  const void* probs;  // (O, H, W) contiguous
  void* own;          // (O, factor^2, H / factor, W / factor) contiguous
  void* others;       // same shape
};

cudaError_t launch_rsp(const RspParams& params, cudaStream_t stream);

}  // namespace swiftcuda
