#include "checks.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <string>

namespace swiftcuda {
namespace {

void check_float(const char* name, const at::Tensor& tensor, int64_t dims) {
  TORCH_CHECK(tensor.dim() == dims, "swiftcuda: ", name, " must have ", dims, " dimensions, got shape ",
              tensor.sizes());
  const auto type = tensor.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kHalf || type == at::kBFloat16, "swiftcuda: ", name,
              " must be float32, float16 or bfloat16, got ", type);
}

void check_like(const char* name, const at::Tensor& tensor, const at::Tensor& like) {
  TORCH_CHECK(tensor.scalar_type() == like.scalar_type() && tensor.device() == like.device(), "swiftcuda: ", name,
              " is ", tensor.scalar_type(), " on ", tensor.device(), " but the other inputs are ", like.scalar_type(),
              " on ", like.device());
}

}  // namespace

ReadShape check_memory_read(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                            const at::Tensor& q_val, const std::optional<at::Tensor>& n_valid) {
  check_float("mem_key", mem_key, 3);
  check_float("mem_val", mem_val, 3);
  check_float("q_key", q_key, 3);
  check_float("q_val", q_val, 3);
  check_like("mem_val", mem_val, mem_key);
  check_like("q_key", q_key, mem_key);
  check_like("q_val", q_val, mem_key);
  ReadShape shape{mem_key.size(0), mem_key.size(1), mem_val.size(1), mem_key.size(2), q_key.size(2)};
  TORCH_CHECK(mem_val.size(0) == shape.batch && mem_val.size(2) == shape.entries, "swiftcuda: memory keys ",
              mem_key.sizes(), " and values ", mem_val.sizes(), " must agree in batch and length");
  TORCH_CHECK(q_key.size(0) == shape.batch && q_key.size(1) == shape.key_dim && q_val.size(0) == shape.batch &&
                  q_val.size(1) == shape.value_dim && q_val.size(2) == shape.pixels,
              "swiftcuda: query shapes q_key ", q_key.sizes(), ", q_val ", q_val.sizes(), " do not match memory keys ",
              mem_key.sizes(), " and values ", mem_val.sizes());
  if (n_valid.has_value()) check_lengths(*n_valid, shape.batch, mem_key);
  return shape;
}

void check_read_out(const at::Tensor& out, const ReadShape& shape, const at::Tensor& q_val) {
  check_float("out", out, 3);
  check_like("out", out, q_val);
  TORCH_CHECK(out.size(0) == shape.batch && out.size(1) == 2 * shape.value_dim && out.size(2) == shape.pixels,
              "swiftcuda: out must have shape (", shape.batch, ", ", 2 * shape.value_dim, ", ", shape.pixels, "), got ",
              out.sizes());
}

ReadShape check_memory_read_family(const at::Tensor& mem_key, const at::Tensor& mem_val, const at::Tensor& q_key,
                                   const std::optional<at::Tensor>& q_val, const std::optional<at::Tensor>& n_valid,
                                   const std::optional<at::Tensor>& shrinkage,
                                   const std::optional<at::Tensor>& selection, std::string_view affinity,
                                   std::optional<double> scale, std::optional<int64_t> top_k, ReadOptions* options) {
  check_float("mem_key", mem_key, 3);
  check_float("mem_val", mem_val, 3);
  check_float("q_key", q_key, 3);
  check_like("mem_val", mem_val, mem_key);
  check_like("q_key", q_key, mem_key);
  ReadShape shape{mem_key.size(0), mem_key.size(1), mem_val.size(1), mem_key.size(2), q_key.size(2)};
  TORCH_CHECK(mem_val.size(0) == shape.batch && mem_val.size(2) == shape.entries, "swiftcuda: memory keys ",
              mem_key.sizes(), " and values ", mem_val.sizes(), " must agree in batch and length");
  TORCH_CHECK(q_key.size(0) == shape.batch && q_key.size(1) == shape.key_dim, "swiftcuda: q_key ", q_key.sizes(),
              " does not match memory keys ", mem_key.sizes());
  if (q_val.has_value()) {
    check_float("q_val", *q_val, 3);
    check_like("q_val", *q_val, mem_key);
    TORCH_CHECK(q_val->size(0) == shape.batch && q_val->size(1) == shape.value_dim && q_val->size(2) == shape.pixels,
                "swiftcuda: q_val ", q_val->sizes(), " must be (", shape.batch, ", ", shape.value_dim, ", ",
                shape.pixels, ")");
  }
  if (n_valid.has_value()) check_lengths(*n_valid, shape.batch, mem_key);
  TORCH_CHECK(shape.entries < (int64_t{1} << 31), "swiftcuda: at most 2^31 - 1 memory entries");
  TORCH_CHECK(affinity == "dot" || affinity == "l2", "swiftcuda: affinity must be \"dot\" or \"l2\", got \"",
              std::string(affinity), "\"");
  options->l2 = affinity == "l2";
  TORCH_CHECK(options->l2 || (!shrinkage.has_value() && !selection.has_value()),
              "swiftcuda: shrinkage and selection belong to the l2 affinity");
  if (shrinkage.has_value()) {
    check_float("shrinkage", *shrinkage, 2);
    check_like("shrinkage", *shrinkage, mem_key);
    TORCH_CHECK(shrinkage->size(0) == shape.batch && shrinkage->size(1) == shape.entries,
                "swiftcuda: shrinkage must be (", shape.batch, ", ", shape.entries, "), got ", shrinkage->sizes());
  }
  if (selection.has_value()) {
    check_float("selection", *selection, 3);
    check_like("selection", *selection, mem_key);
    TORCH_CHECK(selection->sizes() == q_key.sizes(), "swiftcuda: selection must have q_key's shape ", q_key.sizes(),
                ", got ", selection->sizes());
  }
  options->shrinkage = shrinkage;
  options->selection = selection;
  options->scale = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(shape.key_dim));
  TORCH_CHECK(std::isfinite(options->scale), "swiftcuda: scale must be finite, got ", options->scale);
  TORCH_CHECK(!top_k.has_value() || (*top_k >= 1 && *top_k <= kMaxTopK), "swiftcuda: top_k must be None or 1 to ",
              kMaxTopK, ", got ", top_k.value_or(0));
  options->top_k = top_k.value_or(0);
  return shape;
}

void check_read_family_out(const at::Tensor& out, const std::optional<at::Tensor>& usage, const ReadShape& shape,
                           bool with_q_val, const at::Tensor& like) {
  check_float("out", out, 3);
  check_like("out", out, like);
  const int64_t channels = with_q_val ? 2 * shape.value_dim : shape.value_dim;
  TORCH_CHECK(out.size(0) == shape.batch && out.size(1) == channels && out.size(2) == shape.pixels,
              "swiftcuda: out must have shape (", shape.batch, ", ", channels, ", ", shape.pixels, "), got ",
              out.sizes());
  if (usage.has_value()) {
    TORCH_CHECK(usage->dim() == 2 && usage->size(0) == shape.batch && usage->size(1) == shape.entries &&
                    usage->scalar_type() == at::kFloat && usage->device() == like.device(),
                "swiftcuda: usage must be a float32 (", shape.batch, ", ", shape.entries, ") tensor on ", like.device(),
                ", got ", usage->scalar_type(), " of shape ", usage->sizes());
  }
}

UpdateShape check_memory_update(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& new_key,
                                const at::Tensor& new_val, double beta) {
  check_float("memory keys", keys, 3);
  check_float("memory values", values, 3);
  check_float("new_key", new_key, 3);
  check_float("new_val", new_val, 3);
  check_like("memory values", values, keys);
  check_like("new_key", new_key, keys);
  check_like("new_val", new_val, keys);
  TORCH_CHECK(beta > 0.0 && beta <= 1.0, "swiftcuda: beta must be in (0, 1], got ", beta);
  UpdateShape shape{keys.size(0), keys.size(1), values.size(1), keys.size(2), new_key.size(2), 0};
  TORCH_CHECK(values.size(0) == shape.batch && values.size(2) == shape.capacity, "swiftcuda: memory keys ",
              keys.sizes(), " and values ", values.sizes(), " must agree in batch and length");
  TORCH_CHECK(new_key.size(0) == shape.batch && new_key.size(1) == shape.key_dim && new_val.size(0) == shape.batch &&
                  new_val.size(1) == shape.value_dim && new_val.size(2) == shape.pixels,
              "swiftcuda: new keys ", new_key.sizes(), " / values ", new_val.sizes(),
              " must match the memory's batch and channels ", keys.sizes(), " / ", values.sizes());
  TORCH_CHECK(shape.pixels < (int64_t{1} << 31), "swiftcuda: at most 2^31 - 1 new pixels per update");
  return shape;
}

void check_lengths(const at::Tensor& n_valid, int64_t batch, const at::Tensor& like) {
  const auto type = n_valid.scalar_type();
  TORCH_CHECK(n_valid.dim() == 1 && n_valid.size(0) == batch && (type == at::kInt || type == at::kLong),
              "swiftcuda: n_valid must be an int32 or int64 tensor of shape (", batch, "), got ", type, " of shape ",
              n_valid.sizes());
  TORCH_CHECK(n_valid.device() == like.device(), "swiftcuda: n_valid is on ", n_valid.device(),
              " but the memory is on ", like.device());
}

void check_rsp(const at::Tensor& probs, int64_t factor) {
  check_float("probs", probs, 3);
  TORCH_CHECK(factor >= 1 && probs.size(1) % factor == 0 && probs.size(2) % factor == 0, "swiftcuda: probs of shape ",
              probs.sizes(), " cannot be unshuffled by ", factor, ": height and width must be multiples of the factor");
}

void check_soft_aggregate(const at::Tensor& object_probs) {
  check_float("object_probs", object_probs, 3);
  TORCH_CHECK(object_probs.size(0) >= 1, "swiftcuda: soft_aggregate needs at least one object");
}

at::Tensor last_dim_contiguous(const at::Tensor& tensor) {
  if (tensor.size(-1) <= 1 || tensor.stride(-1) == 1) return tensor;
  return tensor.contiguous();
}

}  // namespace swiftcuda
