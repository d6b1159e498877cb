// CUDA memory read: launcher interface (no torch headers; csrc/cuda/register_cuda.cpp fills the params).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common.cuh"

namespace swiftcuda {

// Strides are in elements; every tensor's last dimension is contiguous. A batch stride may be 0
// (a query expanded over the objects).
struct MemoryReadParams {
  DType dtype;
  int64_t batch, key_dim, value_dim, entries, pixels;
  const void* mem_key;  // (B, Ck, N)
  int64_t mem_key_stride[2];
  const void* mem_val;  // (B, Cv, N)
  int64_t mem_val_stride[2];
  const void* q_key;  // (B, Ck, P)
  int64_t q_key_stride[2];
  const void* q_val;  // (B, Cv, P)
  int64_t q_val_stride[2];
  const void* n_valid;  // (B,) valid lengths on the device, or nullptr for all N entries
  bool n_valid_int64;
  void* out;  // (B, 2Cv, P)
  int64_t out_stride[2];
  int splits;        // memory-axis splits, from memory_read_splits()
  float* workspace;  // memory_read_workspace_floats() floats when splits > 1
};

// Largest key dimension the kernels take (the query and key tiles live in shared memory).
constexpr int64_t kMaxReadKeyDim = 128;

// How many blocks share one query tile's memory axis on a GPU with `multiprocessors` SMs. Chosen
// from the capacity (`entries`): the valid lengths live on the device and reading them would
// sync the host (CUDA graphs forbid it). Splits past an item's valid length exit at once.
int memory_read_splits(const MemoryReadParams& params, int multiprocessors);

// Floats of workspace the launch needs (0 when splits == 1): partials for every split, i.e. for
// the capacity, for the same reason; the combine reads only the non-empty splits' parts.
int64_t memory_read_workspace_floats(const MemoryReadParams& params);

// Enqueues the read on `stream`; returns the first launch error.
cudaError_t launch_memory_read(const MemoryReadParams& params, cudaStream_t stream);

}  // namespace swiftcuda
