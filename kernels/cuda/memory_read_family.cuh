// CUDA memory read of the STM family (XMem, Cutie, STCN, STM): launcher interface (no torch headers).
//
// The read of memory_read.cuh with the family's options: the l2 affinity (with an optional
// per-pixel selection and per-entry shrinkage), any logit scale, the softmax over each query's
// top_k largest logits, the readout alone (no query values), and each entry's usage.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common.cuh"

namespace swiftcuda {

// Strides are in elements; every tensor's last dimension is contiguous. A batch stride may be 0
// (keys, queries, selection or shrinkage shared by the objects).
struct MemoryReadFamilyParams {
  DType dtype;
  int64_t batch, key_dim, value_dim, entries, pixels;
  const void* mem_key;  // (B, Ck, N)
  int64_t mem_key_stride[2];
  const void* mem_val;  // (B, Cv, N)
  int64_t mem_val_stride[2];
  const void* q_key;  // (B, Ck, P)
  int64_t q_key_stride[2];
  const void* q_val;  // (B, Cv, P) copied after the readout, or nullptr for the readout alone
  int64_t q_val_stride[2];
  const void* selection;  // (B, Ck, P) l2 selection, or nullptr
  int64_t selection_stride[2];
  const void* shrinkage;     // (B, N) l2 shrinkage, or nullptr
  int64_t shrinkage_stride;  // batch stride (entries are contiguous)
  const void* n_valid;       // (B,) valid lengths on the device, or nullptr for all N entries
  bool n_valid_int64;
  void* out;  // (B, 2Cv, P) with q_val, (B, Cv, P) without
  int64_t out_stride[2];
  float* usage;     // (B, N) float32, contiguous: each entry's total weight; nullptr when not asked
  bool l2;          // the l2 affinity (else the dot product; selection and shrinkage then unused)
  float scale;      // the logit factor (1 / sqrt(Ck) for the spec's default)
  int top_k;        // 1 .. kMaxFamilyTopK: the top-k softmax; 0: the full softmax
  int splits;       // memory-axis splits, from memory_read_family_splits()
  void* workspace;  // memory_read_family_workspace_bytes() bytes
};

// Largest key dimension and top_k the kernels take.
constexpr int64_t kMaxFamilyKeyDim = 128;
constexpr int kMaxFamilyTopK = 64;

// How many blocks share one query tile's memory axis on a GPU with `multiprocessors` SMs (chosen
// from the capacity, as memory_read_splits() is).
int memory_read_family_splits(const MemoryReadFamilyParams& params, int multiprocessors);

// Bytes of workspace the launch needs: the splits' top-k lists and the final choices (top-k), or
// the partial sums and softmax statistics (full softmax with splits or usage). Sized for the
// capacity: the kernels read only what they wrote.
int64_t memory_read_family_workspace_bytes(const MemoryReadFamilyParams& params);

// Enqueues the read on `stream` (usage, when asked, is overwritten); returns the first launch error.
cudaError_t launch_memory_read_family(const MemoryReadFamilyParams& params, cudaStream_t stream);

}  // namespace swiftcuda
