// Device-independent compositions of the in-place kernels.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "checks.h"
#include "common.cuh"

namespace swiftcuda {

// memory_update as allocate + copy + in-place update at n_valid = N: one kernel path for both
// forms, so the functional op inherits every property of the in-place one.
template <typename InPlace>
std::tuple<at::Tensor, at::Tensor> functional_update(const at::Tensor& mem_key, const at::Tensor& mem_val,
                                                     const at::Tensor& new_key, const at::Tensor& new_val, double beta,
                                                     InPlace in_place) {
  const UpdateShape shape = check_memory_update(mem_key, mem_val, new_key, new_val, beta);
  const int64_t total = shape.capacity + novel_pixel_count(shape.pixels, beta);
  at::Tensor keys = at::empty({shape.batch, shape.key_dim, total}, mem_key.options());
  at::Tensor values = at::empty({shape.batch, shape.value_dim, total}, mem_val.options());
  keys.narrow(2, 0, shape.capacity).copy_(mem_key);
  values.narrow(2, 0, shape.capacity).copy_(mem_val);
  at::Tensor lengths = at::full({shape.batch}, shape.capacity, mem_key.options().dtype(at::kLong));
  in_place(keys, values, lengths, new_key, new_val, beta);
  return {keys, values};
}

// memory_read as allocate + the out= form.
template <typename Into>
at::Tensor functional_read(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                           const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid, Into into) {
  const ReadShape shape = check_memory_read(mem_key, mem_val, q_key, q_val, n_valid);
  at::Tensor out = at::empty({shape.batch, 2 * shape.value_dim, shape.pixels}, q_val.options());
  into(mem_key, mem_val, q_key, q_val, n_valid, out);
  return out;
}

// memory_read_family as allocate + the out= form: out (B, Cv or 2Cv, P) and, when asked, usage
// (B, N) float32; without return_usage the second result is an empty float32 tensor.
template <typename Into>
std::tuple<at::Tensor, at::Tensor> functional_read_family(
    const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
    const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
    const std::optional<at::Tensor>& shrinkage, const std::optional<at::Tensor>& selection, std::string_view affinity,
    std::optional<double> scale, std::optional<int64_t> top_k, bool return_usage, Into into) {
  ReadOptions options;
  const ReadShape shape = check_memory_read_family(mem_key, mem_val, q_key, q_val, n_valid, shrinkage, selection,
                                                   affinity, scale, top_k, &options);
  const int64_t channels = q_val.has_value() ? 2 * shape.value_dim : shape.value_dim;
  at::Tensor out = at::empty({shape.batch, channels, shape.pixels}, mem_val.options());
  at::Tensor usage = at::empty({return_usage ? shape.batch : 0, return_usage ? shape.entries : 0},
                               mem_key.options().dtype(at::kFloat));
  into(mem_key, mem_val, q_key, q_val, n_valid, options, out,
       return_usage ? std::optional<at::Tensor>(usage) : std::nullopt);
  return {out, usage};
}

}  // namespace swiftcuda
