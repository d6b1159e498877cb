// The C++ CPU kernels (OpenMP through at::parallel_for, inner loops written to vectorise).
//
// Arguments are checked by the callers in register_cpu.cpp. Half-precision inputs are computed in
// float32 and results rounded once at the end.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace swiftcuda::cpu {

// Writes [mem_val softmax(mem_key^T q_key / sqrt(Ck)), q_val] into out (B, 2Cv, P); never forms a
// P x N matrix: query tiles x memory tiles with an online softmax.
void memory_read_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                      const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid, const at::Tensor& out);

// Appends the most novel new pixels at n_valid[b] in the buffers and advances n_valid.
void memory_update_in_place(const at::Tensor& key_buf, const at::Tensor& val_buf, const at::Tensor& n_valid,
                            const at::Tensor& new_key, const at::Tensor& new_val, double beta);

// Own maps and clamped union of the others, both pixel-unshuffled by factor.
std::tuple<at::Tensor, at::Tensor> rsp(const at::Tensor& probs, int64_t factor);

// (O + 1, H, W) float32 probabilities, background first (clamped odds, normalised).
at::Tensor soft_aggregate(const at::Tensor& object_probs);

// (H, W) ids[argmax over C] of (C, H, W) probabilities (first maximum on ties, NaN counts as the
// maximum, as torch's max(dim=0)); the output has ids' integer dtype.
at::Tensor labels(const at::Tensor& probs, const at::Tensor& ids);

// 3x3 convolution, stride 1, padding 1, float32 NCHW, through NNPACK's Winograd kernels
// (winograd_conv.cpp); conv3x3_available() is false where torch was built without NNPACK.
bool conv3x3_available();
at::Tensor conv3x3(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool relu);

}  // namespace swiftcuda::cpu
