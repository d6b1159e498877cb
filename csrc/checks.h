// Argument checks shared by the CPU and CUDA implementations of the ops.
//
// The public Python functions check arguments already; these checks guard the raw
// torch.ops.swiftcuda entry points, so a wrong call fails with a clear message instead of
// reading out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace swiftcuda {

struct ReadShape {
  int64_t batch, key_dim, value_dim, entries, pixels;
};

struct UpdateShape {
  int64_t batch, key_dim, value_dim, capacity, pixels, count;
};

// mem_key (B, Ck, N), mem_val (B, Cv, N), q_key (B, Ck, P), q_val (B, Cv, P), optional n_valid (B,).
ReadShape check_memory_read(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                            const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid);

// out (B, 2Cv, P) with q_val's dtype and device.
void check_read_out(const at::Tensor& out, const ReadShape& shape, const at::Tensor& q_val);

// keys (B, Ck, N), values (B, Cv, N), new_key (B, Ck, P), new_val (B, Cv, P), beta in (0, 1].
UpdateShape check_memory_update(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& new_key,
                                const at::Tensor& new_val, double beta);

// n_valid: (batch,) int32 or int64 on `like`'s device.
void check_lengths(const at::Tensor& n_valid, int64_t batch, const at::Tensor& like);

// probs (O, H, W) with H and W multiples of factor >= 1.
void check_rsp(const at::Tensor& probs, int64_t factor);

// object_probs (O, H, W) with O >= 1.
void check_soft_aggregate(const at::Tensor& object_probs);

// `tensor` itself when its last dimension is contiguous (the kernels' only layout requirement),
// else a contiguous copy.
at::Tensor last_dim_contiguous(const at::Tensor& tensor);

}  // namespace swiftcuda
