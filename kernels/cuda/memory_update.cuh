// CUDA memory update: launcher interface (no torch headers; csrc/cuda/register_cuda.cpp fills the params).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common.cuh"

namespace swiftcuda {

// In-place form on fixed-capacity buffers; strides in elements, last dimensions contiguous.
struct MemoryUpdateParams {
  DType dtype;
  int64_t batch, key_dim, value_dim, capacity, pixels;
  int64_t count;  // novel_pixel_count(pixels, beta) >= 1
  void* key_buf;  // (B, Ck, capacity), written at [n_valid, n_valid + fits)
  int64_t key_buf_stride[2];
  void* val_buf;  // (B, Cv, capacity)
  int64_t val_buf_stride[2];
  void* n_valid;  // (B,) on the device, read and advanced by the kernels
  bool n_valid_int64;
  const void* new_key;  // (B, Ck, P)
  int64_t new_key_stride[2];
  const void* new_val;  // (B, Cv, P)
  int64_t new_val_stride[2];
  int splits;       // memory-axis splits, from memory_update_splits()
  void* workspace;  // memory_update_workspace_bytes() bytes
};

// Largest key dimension the kernels take (tiles of new and memory keys live in shared memory).
constexpr int64_t kMaxUpdateKeyDim = 128;

int memory_update_splits(const MemoryUpdateParams& params, int multiprocessors);

int64_t memory_update_workspace_bytes(const MemoryUpdateParams& params);

// Enqueues best match, selection and append on `stream`: no host synchronisation.
cudaError_t launch_memory_update(const MemoryUpdateParams& params, cudaStream_t stream);

}  // namespace swiftcuda
