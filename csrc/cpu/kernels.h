// The C++ CPU kernels (OpenMP through at::parallel_for, inner loops written to vectorise).
//
// Arguments are checked by the callers in register_cpu.cpp. Half-precision inputs are computed in
// float32 and results rounded once at the end.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"

namespace swiftcuda::cpu {

// Writes [mem_val softmax(mem_key^T q_key / sqrt(Ck)), q_val] into out (B, 2Cv, P); never forms a
// P x N matrix: query tiles x memory tiles with an online softmax.
void memory_read_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                      const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid, const at::Tensor& out);

// The read of the STM family (swiftcuda.ops.reference.memory_read with its options): writes the
// readout (B, Cv, P), then q_val when given, into out, and when usage is given the (B, N) float32
// sum of each entry's weights over the queries into it (0 past n_valid). Top-k reads keep a
// running list of each query's k best logits while streaming over memory tiles and gather the k
// chosen value columns; full-softmax reads run softmax_read. Never forms a P x N matrix.
void memory_read_family_into(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                             const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                             const ReadOptions& options, const at::Tensor& out, const std::optional<at::Tensor>& usage);

// Shared by the CPU reads (memory_read.cpp):
// float32 with a contiguous last dimension, and only the first `entries` entries of the last axis.
at::Tensor float_prefix(const at::Tensor& tensor, int64_t entries);
// Each item's valid length, n_valid[b] clamped to [0, capacity] (capacity without n_valid).
std::vector<int64_t> valid_lengths(const std::optional<at::Tensor>& n_valid, int64_t batch, int64_t capacity);
// The online-softmax read: readout (B, Cv, P) float32 with contiguous rows, of float32 keys
// (B, D, >= max length), values (B, Cv, >= max length) and queries (B, D, P) with contiguous rows,
// over entries [0, lengths[b]), the logits being keys^T queries * scale_log2 in base 2. When
// query_max / query_sum are given, each query's final softmax maximum and sum ((B, P) row-major,
// base 2) are written there too.
void softmax_read(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& queries,
                  const std::vector<int64_t>& lengths, float scale_log2, const at::Tensor& readout, float* query_max,
                  float* query_sum);

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
