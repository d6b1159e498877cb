// Argument checks shared by the CPU and CUDA implementations of the ops.
//
// The public Python functions check arguments already; these checks guard the raw
// torch.ops.swiftcuda entry points, so a wrong call fails with a clear message instead of
// reading out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>

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

// The options of the STM family's read (swiftcuda.ops.reference.memory_read), as the kernels take
// them: the affinity resolved to a flag, the scale to a number.
struct ReadOptions {
  bool l2 = false;                      // affinity "l2" (else "dot")
  double scale = 1.0;                   // factor of the logits
  std::optional<at::Tensor> shrinkage;  // (B, N) factor of the l2 logits
  std::optional<at::Tensor> selection;  // (B, Ck, P) channel weights of the l2 affinity
  int64_t top_k = 0;                    // 0: softmax over every valid entry; else 1..kMaxTopK
};

// The most entries a top-k read keeps per query.
constexpr int64_t kMaxTopK = 64;

// mem_key (B, Ck, N), mem_val (B, Cv, N), q_key (B, Ck, P), optional q_val (B, Cv, P), n_valid (B,),
// and the op's options: affinity "dot" or "l2", scale (None: 1 / sqrt(Ck)), shrinkage (B, N) and
// selection (B, Ck, P) with the l2 affinity only, top_k (None or 1..64).
ReadShape check_memory_read_family(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                                   const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                                   const std::optional<at::Tensor>& shrinkage,
                                   const std::optional<at::Tensor>& selection, std::string_view affinity,
                                   std::optional<double> scale, std::optional<int64_t> top_k, ReadOptions* options);

// out (B, 2Cv, P) with q_val, (B, Cv, P) without, with the memory's dtype and device; usage (B, N)
// float32 on that device.
void check_read_family_out(const at::Tensor& out, const std::optional<at::Tensor>& usage, const ReadShape& shape,
                           bool with_q_val, const at::Tensor& like);

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
