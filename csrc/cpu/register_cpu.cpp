// TORCH_LIBRARY_IMPL(swiftcuda, CPU): argument checks, then the OpenMP kernels of this folder.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "common.cuh"
#include "cpu/kernels.h"
#include "functional.h"

namespace swiftcuda::cpu {
namespace {

void memory_read_into_op(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                         const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid, const at::Tensor& out) {
  const ReadShape shape = check_memory_read(mem_key, mem_val, q_key, q_val, n_valid);
  check_read_out(out, shape, q_val);
  memory_read_into(mem_key, mem_val, q_key, q_val, n_valid, out);
}

at::Tensor memory_read_op(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                          const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid) {
  return functional_read(mem_key, mem_val, q_key, q_val, n_valid, memory_read_into);
}

void memory_read_family_into_op(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                                const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                                const std::optional<at::Tensor>& shrinkage, const std::optional<at::Tensor>& selection,
                                c10::string_view affinity, std::optional<double> scale, std::optional<int64_t> top_k,
                                const at::Tensor& out, const std::optional<at::Tensor>& usage) {
  ReadOptions options;
  const ReadShape shape = check_memory_read_family(mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection,
                                                   affinity, scale, top_k, &options);
  check_read_family_out(out, usage, shape, q_val.has_value(), mem_key);
  memory_read_family_into(mem_key, mem_val, q_key, q_val, n_valid, options, out, usage);
}

std::tuple<at::Tensor, at::Tensor> memory_read_family_op(
    const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
    const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
    const std::optional<at::Tensor>& shrinkage, const std::optional<at::Tensor>& selection, c10::string_view affinity,
    std::optional<double> scale, std::optional<int64_t> top_k, bool return_usage) {
  return functional_read_family(mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection, affinity, scale, top_k,
                                return_usage, memory_read_family_into);
}

void memory_update_in_place_op(const at::Tensor& key_buf, const at::Tensor& val_buf, const at::Tensor& n_valid,
                               const at::Tensor& new_key, const at::Tensor& new_val, double beta) {
  check_memory_update(key_buf, val_buf, new_key, new_val, beta);
  check_lengths(n_valid, key_buf.size(0), key_buf);
  memory_update_in_place(key_buf, val_buf, n_valid, new_key, new_val, beta);
}

std::tuple<at::Tensor, at::Tensor> memory_update_op(const at::Tensor& mem_key, const at::Tensor& mem_val,
                                                    const at::Tensor& new_key, const at::Tensor& new_val, double beta) {
  return functional_update(mem_key, mem_val, new_key, new_val, beta, memory_update_in_place);
}

std::tuple<at::Tensor, at::Tensor> rsp_op(const at::Tensor& probs, int64_t factor) {
  check_rsp(probs, factor);
  return rsp(probs, factor);
}

at::Tensor soft_aggregate_op(const at::Tensor& object_probs) {
  check_soft_aggregate(object_probs);
  return soft_aggregate(object_probs);
}

at::Tensor labels_op(const at::Tensor& probs, const at::Tensor& ids) {
  TORCH_CHECK(probs.dim() == 3 && probs.size(0) >= 1 && at::isFloatingType(probs.scalar_type()),
              "swiftcuda.labels: probs must be a floating (C, H, W) tensor with C >= 1, got ", probs.scalar_type(),
              " of shape ", probs.sizes());
  TORCH_CHECK(ids.dim() == 1 && ids.size(0) == probs.size(0) && at::isIntegralType(ids.scalar_type(), false) &&
                  ids.device() == probs.device(),
              "swiftcuda.labels: ids must be an integer (", probs.size(0),
              ",) tensor on the probabilities' device, got ", ids.scalar_type(), " of shape ", ids.sizes());
  return labels(probs, ids);
}

at::Tensor conv3x3_op(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      bool relu) {
  TORCH_CHECK(input.dim() == 4 && input.scalar_type() == at::kFloat,
              "swiftcuda.conv3x3: input must be a float32 (B, C, H, W) tensor, got ", input.scalar_type(), " of shape ",
              input.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == input.size(1) && weight.size(2) == 3 && weight.size(3) == 3 &&
                  weight.scalar_type() == at::kFloat,
              "swiftcuda.conv3x3: weight must be float32 (K, ", input.size(1), ", 3, 3), got ", weight.sizes());
  TORCH_CHECK(
      !bias.has_value() || (bias->dim() == 1 && bias->size(0) == weight.size(0) && bias->scalar_type() == at::kFloat),
      "swiftcuda.conv3x3: bias must be float32 (", weight.size(0), "), got ",
      bias.has_value() ? bias->sizes() : at::IntArrayRef{});
  return conv3x3(input, weight, bias, relu);
}

// Test hooks: the shared helpers of common.cuh applied elementwise, so the tests can compare them
// with Python's float and integer semantics directly.
at::Tensor ordered_key_op(const at::Tensor& x) {
  const at::Tensor values = x.to(at::kFloat).contiguous();
  at::Tensor keys = at::empty(values.sizes(), values.options().dtype(at::kLong));
  const float* in = values.data_ptr<float>();
  int64_t* out = keys.data_ptr<int64_t>();
  for (int64_t i = 0; i < values.numel(); ++i) out[i] = static_cast<int64_t>(ordered_key(in[i]));
  return keys;
}

at::Tensor exp2_approx_op(const at::Tensor& x) {
  const at::Tensor values = x.to(at::kFloat).contiguous();
  at::Tensor result = at::empty_like(values);
  const float* in = values.data_ptr<float>();
  float* out = result.data_ptr<float>();
  for (int64_t i = 0; i < values.numel(); ++i) out[i] = exp2_approx(in[i]);
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(swiftcuda, CPU, m) {
  m.impl("memory_read", &memory_read_op);
  m.impl("memory_read.into", &memory_read_into_op);
  m.impl("memory_read_family", &memory_read_family_op);
  m.impl("memory_read_family.into", &memory_read_family_into_op);
  m.impl("memory_update", &memory_update_op);
  m.impl("memory_update_", &memory_update_in_place_op);
  m.impl("rsp", &rsp_op);
  m.impl("soft_aggregate", &soft_aggregate_op);
  m.impl("labels", &labels_op);
  m.impl("conv3x3", &conv3x3_op);
  m.impl("_ordered_key", &ordered_key_op);
  m.impl("_exp2_approx", &exp2_approx_op);
}

}  // namespace swiftcuda::cpu
