// TORCH_LIBRARY_IMPL(swiftcuda, CUDA): argument checks, device guard, current stream, workspace
// from torch's caching allocator (so the ops are CUDA-graph capturable), then the launchers of
// kernels/cuda. Nothing here synchronises with the host.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "checks.h"
#include "common.cuh"
#include "functional.h"
#include "memory_read.cuh"
#include "memory_read_family.cuh"
#include "memory_update.cuh"
#include "rsp.cuh"
#include "soft_aggregate.cuh"

namespace swiftcuda::cuda {
namespace {

void check_launch(cudaError_t error, const char* op) {
  TORCH_CHECK(error == cudaSuccess, "swiftcuda: launching the CUDA kernels of ", op,
              " failed: ", cudaGetErrorString(error));
}

DType dtype_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default: return DType::kFloat32;
  }
}

void check_on_gpu(const at::Tensor& tensor, const char* name) {
  TORCH_CHECK(tensor.is_cuda(), "swiftcuda: ", name, " must be a CUDA tensor, got one on ", tensor.device());
}

// SMs of the current device. (ATen/cuda/CUDAContext.h would give the cached properties but pulls in
// the cuBLAS / cuSPARSE headers, which a minimal toolkit lacks.)
int multiprocessors() {
  int device = 0, count = 0;
  check_launch(cudaGetDevice(&device), "device query");
  check_launch(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "device query");
  return count;
}

void strides_of(const at::Tensor& tensor, int64_t (&strides)[2]) {
  strides[0] = tensor.stride(0);
  strides[1] = tensor.stride(1);
}

void memory_read_into(const at::Tensor& mem_key_in, const at::Tensor& mem_val_in, const at::Tensor& q_key_in,
                      const at::Tensor& q_val_in, const std::optional<at::Tensor>& n_valid, const at::Tensor& out) {
  const ReadShape shape = check_memory_read(mem_key_in, mem_val_in, q_key_in, q_val_in, n_valid);
  check_read_out(out, shape, q_val_in);
  check_on_gpu(mem_key_in, "mem_key");
  TORCH_CHECK(shape.key_dim >= 1 && shape.key_dim <= kMaxReadKeyDim,
              "swiftcuda: the CUDA memory read takes key_dim "
              "from 1 to ",
              kMaxReadKeyDim, ", got ", shape.key_dim, " (use backend='triton' or 'reference')");
  const c10::cuda::CUDAGuard guard(mem_key_in.device());
  const at::Tensor mem_key = last_dim_contiguous(mem_key_in), mem_val = last_dim_contiguous(mem_val_in);
  const at::Tensor q_key = last_dim_contiguous(q_key_in), q_val = last_dim_contiguous(q_val_in);
  const at::Tensor lengths = n_valid.has_value() ? n_valid->contiguous() : at::Tensor();
  // The kernels write rows with a contiguous last dimension; any other out goes through a copy.
  const bool direct = shape.pixels <= 1 || out.stride(2) == 1;
  const at::Tensor target = direct ? out : at::empty(out.sizes(), out.options());

  MemoryReadParams params{};
  params.dtype = dtype_of(mem_key);
  params.batch = shape.batch;
  params.key_dim = shape.key_dim;
  params.value_dim = shape.value_dim;
  params.entries = shape.entries;
  params.pixels = shape.pixels;
  params.mem_key = mem_key.data_ptr();
  strides_of(mem_key, params.mem_key_stride);
  params.mem_val = mem_val.data_ptr();
  strides_of(mem_val, params.mem_val_stride);
  params.q_key = q_key.data_ptr();
  strides_of(q_key, params.q_key_stride);
  params.q_val = q_val.data_ptr();
  strides_of(q_val, params.q_val_stride);
  params.n_valid = lengths.defined() ? lengths.data_ptr() : nullptr;
  params.n_valid_int64 = lengths.defined() && lengths.scalar_type() == at::kLong;
  params.out = target.data_ptr();
  strides_of(target, params.out_stride);
  params.splits = memory_read_splits(params, multiprocessors());
  const int64_t floats = memory_read_workspace_floats(params);
  const at::Tensor workspace = floats > 0 ? at::empty({floats}, mem_key.options().dtype(at::kFloat)) : at::Tensor();
  params.workspace = floats > 0 ? workspace.data_ptr<float>() : nullptr;
  check_launch(launch_memory_read(params, c10::cuda::getCurrentCUDAStream().stream()), "memory_read");
  if (!direct) out.copy_(target);
}

at::Tensor memory_read(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                       const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid) {
  return functional_read(mem_key, mem_val, q_key, q_val, n_valid, memory_read_into);
}

// The family's read on checked arguments (check_memory_read_family's options; out and usage checked).
void memory_read_family_checked(const at::Tensor& mem_key_in, const at::Tensor& mem_val_in, const at::Tensor& q_key_in,
                                const std::optional<at::Tensor>& q_val_in, const std::optional<at::Tensor>& n_valid,
                                const ReadOptions& options, const at::Tensor& out,
                                const std::optional<at::Tensor>& usage) {
  check_on_gpu(mem_key_in, "mem_key");
  const int64_t key_dim = mem_key_in.size(1);
  TORCH_CHECK(key_dim >= 1 && key_dim <= kMaxFamilyKeyDim, "swiftcuda: the CUDA memory read takes key_dim from 1 to ",
              kMaxFamilyKeyDim, ", got ", key_dim, " (use backend='triton' or 'reference')");
  const c10::cuda::CUDAGuard guard(mem_key_in.device());
  const at::Tensor mem_key = last_dim_contiguous(mem_key_in), mem_val = last_dim_contiguous(mem_val_in);
  const at::Tensor q_key = last_dim_contiguous(q_key_in);
  const at::Tensor q_val = q_val_in.has_value() ? last_dim_contiguous(*q_val_in) : at::Tensor();
  const at::Tensor selection = options.selection.has_value() ? last_dim_contiguous(*options.selection) : at::Tensor();
  const at::Tensor shrinkage = options.shrinkage.has_value() ? last_dim_contiguous(*options.shrinkage) : at::Tensor();
  const at::Tensor lengths = n_valid.has_value() ? n_valid->contiguous() : at::Tensor();
  // The kernels write rows with a contiguous last dimension and a contiguous usage; anything else
  // goes through a copy.
  const bool direct = out.size(2) <= 1 || out.stride(2) == 1;
  const at::Tensor target = direct ? out : at::empty(out.sizes(), out.options());
  const bool usage_direct = !usage.has_value() || usage->is_contiguous();
  const at::Tensor usage_target =
      !usage.has_value() ? at::Tensor() : (usage_direct ? *usage : at::empty(usage->sizes(), usage->options()));

  MemoryReadFamilyParams params{};
  params.dtype = dtype_of(mem_key);
  params.batch = mem_key.size(0);
  params.key_dim = key_dim;
  params.value_dim = mem_val.size(1);
  params.entries = mem_key.size(2);
  params.pixels = q_key.size(2);
  params.mem_key = mem_key.data_ptr();
  strides_of(mem_key, params.mem_key_stride);
  params.mem_val = mem_val.data_ptr();
  strides_of(mem_val, params.mem_val_stride);
  params.q_key = q_key.data_ptr();
  strides_of(q_key, params.q_key_stride);
  params.q_val = q_val.defined() ? q_val.data_ptr() : nullptr;
  if (q_val.defined()) strides_of(q_val, params.q_val_stride);
  params.selection = selection.defined() ? selection.data_ptr() : nullptr;
  if (selection.defined()) strides_of(selection, params.selection_stride);
  params.shrinkage = shrinkage.defined() ? shrinkage.data_ptr() : nullptr;
  params.shrinkage_stride = shrinkage.defined() ? shrinkage.stride(0) : 0;
  params.n_valid = lengths.defined() ? lengths.data_ptr() : nullptr;
  params.n_valid_int64 = lengths.defined() && lengths.scalar_type() == at::kLong;
  params.out = target.data_ptr();
  strides_of(target, params.out_stride);
  params.usage = usage_target.defined() ? usage_target.data_ptr<float>() : nullptr;
  params.l2 = options.l2;
  params.scale = static_cast<float>(options.scale);
  params.top_k = static_cast<int>(options.top_k);
  params.splits = memory_read_family_splits(params, multiprocessors());
  const int64_t bytes = memory_read_family_workspace_bytes(params);
  const at::Tensor workspace = bytes > 0 ? at::empty({bytes}, mem_key.options().dtype(at::kByte)) : at::Tensor();
  params.workspace = bytes > 0 ? workspace.data_ptr() : nullptr;
  check_launch(launch_memory_read_family(params, c10::cuda::getCurrentCUDAStream().stream()), "memory_read_family");
  if (!direct) out.copy_(target);
  if (!usage_direct) usage->copy_(usage_target);
}

void memory_read_family_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                             const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                             const std::optional<at::Tensor>& shrinkage, const std::optional<at::Tensor>& selection,
                             c10::string_view affinity, std::optional<double> scale, std::optional<int64_t> top_k,
                             const at::Tensor& out, const std::optional<at::Tensor>& usage) {
  ReadOptions options;
  const ReadShape shape = check_memory_read_family(mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection,
                                                   affinity, scale, top_k, &options);
  check_read_family_out(out, usage, shape, q_val.has_value(), mem_key);
  memory_read_family_checked(mem_key, mem_val, q_key, q_val, n_valid, options, out, usage);
}

std::tuple<at::Tensor, at::Tensor> memory_read_family(const at::Tensor& mem_key, const at::Tensor& mem_val,
                                                      const at::Tensor& q_key, const std::optional<at::Tensor>& q_val,
                                                      const std::optional<at::Tensor>& n_valid,
                                                      const std::optional<at::Tensor>& shrinkage,
                                                      const std::optional<at::Tensor>& selection,
                                                      c10::string_view affinity, std::optional<double> scale,
                                                      std::optional<int64_t> top_k, bool return_usage) {
  return functional_read_family(mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection, affinity, scale, top_k,
                                return_usage, memory_read_family_checked);
}

void memory_update_in_place(const at::Tensor& key_buf, const at::Tensor& val_buf, const at::Tensor& n_valid,
                            const at::Tensor& new_key_in, const at::Tensor& new_val_in, double beta) {
  const UpdateShape shape = check_memory_update(key_buf, val_buf, new_key_in, new_val_in, beta);
  check_lengths(n_valid, shape.batch, key_buf);
  check_on_gpu(key_buf, "key_buf");
  TORCH_CHECK(shape.key_dim >= 1 && shape.key_dim <= kMaxUpdateKeyDim,
              "swiftcuda: the CUDA memory update takes "
              "key_dim from 1 to ",
              kMaxUpdateKeyDim, ", got ", shape.key_dim, " (use backend='triton' or 'reference')");
  TORCH_CHECK((shape.capacity <= 1 || (key_buf.stride(2) == 1 && val_buf.stride(2) == 1)) && n_valid.is_contiguous(),
              "swiftcuda: the memory buffers must have a contiguous last dimension and n_valid must be "
              "contiguous (they are updated in place)");
  const int64_t count = novel_pixel_count(shape.pixels, beta);
  if (shape.batch == 0 || shape.pixels == 0 || count < 1) return;
  const c10::cuda::CUDAGuard guard(key_buf.device());
  const at::Tensor new_key = last_dim_contiguous(new_key_in), new_val = last_dim_contiguous(new_val_in);

  MemoryUpdateParams params{};
  params.dtype = dtype_of(key_buf);
  params.batch = shape.batch;
  params.key_dim = shape.key_dim;
  params.value_dim = shape.value_dim;
  params.capacity = shape.capacity;
  params.pixels = shape.pixels;
  params.count = count;
  params.key_buf = key_buf.data_ptr();
  strides_of(key_buf, params.key_buf_stride);
  params.val_buf = val_buf.data_ptr();
  strides_of(val_buf, params.val_buf_stride);
  params.n_valid = n_valid.data_ptr();
  params.n_valid_int64 = n_valid.scalar_type() == at::kLong;
  params.new_key = new_key.data_ptr();
  strides_of(new_key, params.new_key_stride);
  params.new_val = new_val.data_ptr();
  strides_of(new_val, params.new_val_stride);
  params.splits = memory_update_splits(params, multiprocessors());
  const at::Tensor workspace = at::empty({memory_update_workspace_bytes(params)}, key_buf.options().dtype(at::kByte));
  params.workspace = workspace.data_ptr();
  check_launch(launch_memory_update(params, c10::cuda::getCurrentCUDAStream().stream()), "memory_update");
}

std::tuple<at::Tensor, at::Tensor> memory_update(const at::Tensor& mem_key, const at::Tensor& mem_val,
                                                 const at::Tensor& new_key, const at::Tensor& new_val, double beta) {
  return functional_update(mem_key, mem_val, new_key, new_val, beta, memory_update_in_place);
}

std::tuple<at::Tensor, at::Tensor> rsp(const at::Tensor& probs_in, int64_t factor) {
  check_rsp(probs_in, factor);
  check_on_gpu(probs_in, "probs");
  const c10::cuda::CUDAGuard guard(probs_in.device());
  const at::Tensor probs = probs_in.contiguous();
  const std::vector<int64_t> shape{probs.size(0), factor * factor, probs.size(1) / factor, probs.size(2) / factor};
  at::Tensor own = at::empty(shape, probs.options());
  at::Tensor others = at::empty(shape, probs.options());
  RspParams params{dtype_of(probs), probs.size(0),    probs.size(1),  probs.size(2),
                   factor,          probs.data_ptr(), own.data_ptr(), others.data_ptr()};
  check_launch(launch_rsp(params, c10::cuda::getCurrentCUDAStream().stream()), "rsp");
  return {own, others};
}

at::Tensor soft_aggregate(const at::Tensor& probs_in) {
  check_soft_aggregate(probs_in);
  check_on_gpu(probs_in, "object_probs");
  const c10::cuda::CUDAGuard guard(probs_in.device());
  const at::Tensor probs = probs_in.contiguous();
  at::Tensor out = at::empty({probs.size(0) + 1, probs.size(1), probs.size(2)}, probs.options().dtype(at::kFloat));
  const SoftAggregateParams params{dtype_of(probs), probs.size(0), probs.size(1) * probs.size(2), probs.data_ptr(),
                                   out.data_ptr<float>()};
  check_launch(launch_soft_aggregate(params, c10::cuda::getCurrentCUDAStream().stream()), "soft_aggregate");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(swiftcuda, CUDA, m) {
  m.impl("memory_read", &memory_read);
  m.impl("memory_read.into", &memory_read_into);
  m.impl("memory_read_family", &memory_read_family);
  m.impl("memory_read_family.into", &memory_read_family_into);
  m.impl("memory_update", &memory_update);
  m.impl("memory_update_", &memory_update_in_place);
  m.impl("rsp", &rsp);
  m.impl("soft_aggregate", &soft_aggregate);
}

}  // namespace swiftcuda::cuda
