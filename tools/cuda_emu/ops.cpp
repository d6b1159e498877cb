// C ABI of the emulated CUDA kernels for tests/cuda_emu/harness.py (ctypes), without torch.
//
// Each function fills the launcher's params struct the way csrc/cuda/register_cuda.cpp does
// (the caller passes pointers and element strides of tensors whose last dimension is contiguous),
// sizes the splits with the launcher's own memory_*_splits() for a GPU of `multiprocessors` SMs,
// allocates the workspace exactly (poisoned), and calls the GPU launcher (launch_memory_read, ...),
// which runs the kernels in the emulator. Returns the cudaError_t of the launch.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "memory_read.cuh"
#include "memory_read_family.cuh"
#include "memory_update.cuh"
#include "rsp.cuh"
#include "soft_aggregate.cuh"

namespace {

using swiftcuda::DType;

void copy_strides(int64_t (&to)[2], const int64_t* from) {
  to[0] = from[0];
  to[1] = from[1];
}

// Exactly `bytes` bytes (overflows are caught under AddressSanitizer), poisoned with 0xFF
// (NaN as floats), so that the kernels must write before they read.
void* poisoned_allocation(int64_t bytes) {
  if (bytes <= 0) return nullptr;
  void* at = std::malloc(static_cast<size_t>(bytes));
  if (at != nullptr) std::memset(at, 0xFF, static_cast<size_t>(bytes));
  return at;
}

int finish(cudaError_t launch_error) {
  const cudaError_t last = cudaGetLastError();  // clear whatever is left
  return static_cast<int>(launch_error != cudaSuccess ? launch_error : last);
}

}  // namespace

extern "C" {

// sizes: batch, key_dim, value_dim, entries, pixels. strides: 2 per tensor in the order
// mem_key, mem_val, q_key, q_val, out. *splits_out gets the splits the launcher chose.
int swiftcuda_emu_memory_read(int dtype, const int64_t* sizes, const void* mem_key, const void* mem_val,
                              const void* q_key, const void* q_val, const void* n_valid, int n_valid_int64, void* out,
                              const int64_t* strides, int multiprocessors, int* splits_out) {
  swiftcuda::MemoryReadParams params{};
  params.dtype = static_cast<DType>(dtype);
  params.batch = sizes[0];
  params.key_dim = sizes[1];
  params.value_dim = sizes[2];
  params.entries = sizes[3];
  params.pixels = sizes[4];
  params.mem_key = mem_key;
  copy_strides(params.mem_key_stride, strides + 0);
  params.mem_val = mem_val;
  copy_strides(params.mem_val_stride, strides + 2);
  params.q_key = q_key;
  copy_strides(params.q_key_stride, strides + 4);
  params.q_val = q_val;
  copy_strides(params.q_val_stride, strides + 6);
  params.n_valid = n_valid;
  params.n_valid_int64 = n_valid_int64 != 0;
  params.out = out;
  copy_strides(params.out_stride, strides + 8);
  params.splits = swiftcuda::memory_read_splits(params, multiprocessors);
  *splits_out = params.splits;
  const int64_t floats = swiftcuda::memory_read_workspace_floats(params);
  params.workspace = static_cast<float*>(poisoned_allocation(floats * static_cast<int64_t>(sizeof(float))));
  const cudaError_t error = swiftcuda::launch_memory_read(params, nullptr);
  std::free(params.workspace);
  return finish(error);
}

// The family's read. sizes: batch, key_dim, value_dim, entries, pixels. strides: 2 per tensor in the
// order mem_key, mem_val, q_key, q_val, selection, out, then the shrinkage's batch stride (unused
// tensors: anything). q_val, selection, shrinkage, n_valid and usage may be null. options: l2, top_k.
int swiftcuda_emu_memory_read_family(int dtype, const int64_t* sizes, const void* mem_key, const void* mem_val,
                                     const void* q_key, const void* q_val, const void* selection, const void* shrinkage,
                                     const void* n_valid, int n_valid_int64, void* out, float* usage,
                                     const int64_t* strides, const int* options, float scale, int multiprocessors,
                                     int* splits_out) {
  swiftcuda::MemoryReadFamilyParams params{};
  params.dtype = static_cast<DType>(dtype);
  params.batch = sizes[0];
  params.key_dim = sizes[1];
  params.value_dim = sizes[2];
  params.entries = sizes[3];
  params.pixels = sizes[4];
  params.mem_key = mem_key;
  copy_strides(params.mem_key_stride, strides + 0);
  params.mem_val = mem_val;
  copy_strides(params.mem_val_stride, strides + 2);
  params.q_key = q_key;
  copy_strides(params.q_key_stride, strides + 4);
  params.q_val = q_val;
  copy_strides(params.q_val_stride, strides + 6);
  params.selection = selection;
  copy_strides(params.selection_stride, strides + 8);
  params.out = out;
  copy_strides(params.out_stride, strides + 10);
  params.shrinkage = shrinkage;
  params.shrinkage_stride = strides[12];
  params.n_valid = n_valid;
  params.n_valid_int64 = n_valid_int64 != 0;
  params.usage = usage;
  params.l2 = options[0] != 0;
  params.top_k = options[1];
  params.scale = scale;
  params.splits = swiftcuda::memory_read_family_splits(params, multiprocessors);
  *splits_out = params.splits;
  params.workspace = poisoned_allocation(swiftcuda::memory_read_family_workspace_bytes(params));
  const cudaError_t error = swiftcuda::launch_memory_read_family(params, nullptr);
  std::free(params.workspace);
  return finish(error);
}

// sizes: batch, key_dim, value_dim, capacity, pixels, count. strides: key_buf, val_buf, new_key, new_val.
int swiftcuda_emu_memory_update(int dtype, const int64_t* sizes, void* key_buf, void* val_buf, void* n_valid,
                                int n_valid_int64, const void* new_key, const void* new_val, const int64_t* strides,
                                int multiprocessors, int* splits_out) {
  swiftcuda::MemoryUpdateParams params{};
  params.dtype = static_cast<DType>(dtype);
  params.batch = sizes[0];
  params.key_dim = sizes[1];
  params.value_dim = sizes[2];
  params.capacity = sizes[3];
  params.pixels = sizes[4];
  params.count = sizes[5];
  params.key_buf = key_buf;
  copy_strides(params.key_buf_stride, strides + 0);
  params.val_buf = val_buf;
  copy_strides(params.val_buf_stride, strides + 2);
  params.n_valid = n_valid;
  params.n_valid_int64 = n_valid_int64 != 0;
  params.new_key = new_key;
  copy_strides(params.new_key_stride, strides + 4);
  params.new_val = new_val;
  copy_strides(params.new_val_stride, strides + 6);
  params.splits = swiftcuda::memory_update_splits(params, multiprocessors);
  *splits_out = params.splits;
  params.workspace = poisoned_allocation(swiftcuda::memory_update_workspace_bytes(params));
  const cudaError_t error = swiftcuda::launch_memory_update(params, nullptr);
  std::free(params.workspace);
  return finish(error);
}

int swiftcuda_emu_rsp(int dtype, int64_t objects, int64_t height, int64_t width, int64_t factor, const void* probs,
                      void* own, void* others) {
  const swiftcuda::RspParams params{static_cast<DType>(dtype), objects, height, width, factor, probs, own, others};
  return finish(swiftcuda::launch_rsp(params, nullptr));
}

int swiftcuda_emu_soft_aggregate(int dtype, int64_t objects, int64_t pixels, const void* probs, float* out) {
  const swiftcuda::SoftAggregateParams params{static_cast<DType>(dtype), objects, pixels, probs, out};
  return finish(swiftcuda::launch_soft_aggregate(params, nullptr));
}

}  // extern "C"
