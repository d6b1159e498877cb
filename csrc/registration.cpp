// The swiftcuda op library: schemas (TORCH_LIBRARY), build facts, and the Python module stub.
//
// Kernels are registered per dispatch key in cpu/register_cpu.cpp and cuda/register_cuda.cpp.
// Fake (meta) implementations are registered from Python (swiftcuda/ops/extension.py). The schemas
// of the ops that several backends implement are declared in swiftcuda/ops/schema.py, which the
// Triton backend registers as torch.ops.swiftcuda_triton; tests/ops/test_schema.py holds the ones
// here equal to them.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "common.cuh"
#include "cpu/kernels.h"

#if __has_include(<torch/headeronly/version.h>)
#include <torch/headeronly/version.h>
#endif

#define SC_STRINGIFY_(...) #__VA_ARGS__
#define SC_STRINGIFY(...) SC_STRINGIFY_(__VA_ARGS__)

namespace swiftcuda {
namespace {

// JSON facts about this build, read by swiftcuda.ops.extension and `swiftcuda info`.
std::string build_info() {
  std::string info = "{";
#if defined(SWIFTCUDA_WITH_CUDA)
  info += "\"cuda\": true, \"cuda_version\": \"" SC_STRINGIFY(SWIFTCUDA_CUDA_VERSION) "\", ";
  info += "\"cuda_archs\": [" SC_STRINGIFY(SWIFTCUDA_CUDA_ARCHS) "], ";
  info += "\"ptx_archs\": [" SC_STRINGIFY(SWIFTCUDA_PTX_ARCHS) "], ";
#else
  info += "\"cuda\": false, \"cuda_version\": null, \"cuda_archs\": [], \"ptx_archs\": [], ";
#endif
#if defined(_OPENMP)
  info += "\"openmp\": " + std::to_string(_OPENMP) + ", ";
#else
  info += "\"openmp\": null, ";
#endif
#if defined(TORCH_VERSION_MAJOR)
  info += "\"torch\": \"" + std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
          std::to_string(TORCH_VERSION_PATCH) + "\"";
#else
  info += "\"torch\": null";
#endif
  return info + "}";
}

bool conv3x3_available_op() { return cpu::conv3x3_available(); }

int64_t novel_pixel_count_op(int64_t pixels, double beta) { return novel_pixel_count(pixels, beta); }

std::vector<int64_t> split_range_op(int64_t length, int64_t split, int64_t splits, int64_t tile) {
  int64_t begin = 0, end = 0;
  split_range(length, static_cast<int>(split), static_cast<int>(splits), tile, &begin, &end);
  return {begin, end};
}

int64_t unshuffle_source_op(int64_t channel, int64_t y, int64_t x, int64_t factor, int64_t width) {
  return unshuffle_source(channel, y, x, factor, width);
}

}  // namespace

TORCH_LIBRARY(swiftcuda, m) {
  m.def("memory_read(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor q_val, Tensor? n_valid=None) -> Tensor");
  m.def(
      "memory_read.into(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor q_val, Tensor? n_valid, "
      "Tensor(a!) out) -> ()");
  // The STM family's read (swiftcuda.ops.reference.memory_read): top_k None is the full softmax;
  // the second result is the (B, N) usage with return_usage, else an empty tensor.
  m.def(
      "memory_read_family(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor? q_val=None, Tensor? n_valid=None, "
      "Tensor? shrinkage=None, Tensor? selection=None, str affinity=\"dot\", float? scale=None, int? top_k=None, "
      "bool return_usage=False) -> (Tensor, Tensor)");
  m.def(
      "memory_read_family.into(Tensor mem_key, Tensor mem_val, Tensor q_key, Tensor? q_val, Tensor? n_valid, "
      "Tensor? shrinkage, Tensor? selection, str affinity, float? scale, int? top_k, Tensor(a!) out, "
      "Tensor(b!)? usage) -> ()");
  m.def(
      "memory_update(Tensor mem_key, Tensor mem_val, Tensor new_key, Tensor new_val, float beta) -> (Tensor, Tensor)");
  m.def(
      "memory_update_(Tensor(a!) key_buf, Tensor(b!) val_buf, Tensor(c!) n_valid, Tensor new_key, Tensor new_val, "
      "float beta) -> ()");
  m.def("rsp(Tensor probs, int factor) -> (Tensor, Tensor)");
  m.def("soft_aggregate(Tensor object_probs) -> Tensor");
  m.def("labels(Tensor probs, Tensor ids) -> Tensor");
  m.def("conv3x3(Tensor input, Tensor weight, Tensor? bias=None, bool relu=False) -> Tensor");
  m.def("build_info() -> str", &build_info);
  m.def("conv3x3_available() -> bool", &conv3x3_available_op);
  // Test hooks for the shared __host__ __device__ helpers (kernels/cuda/common.cuh).
  m.def("_ordered_key(Tensor x) -> Tensor");
  m.def("_exp2_approx(Tensor x) -> Tensor");
  m.def("_novel_pixel_count(int pixels, float beta) -> int", &novel_pixel_count_op);
  m.def("_split_range(int length, int split, int splits, int tile) -> int[]", &split_range_op);
  m.def("_unshuffle_source(int channel, int y, int x, int factor, int width) -> int", &unshuffle_source_op);
}

}  // namespace swiftcuda

// `import swiftcuda._C` loads this library, which registers the ops above with the dispatcher;
// the module itself is empty (everything is reached through torch.ops.swiftcuda).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                      "_C",
                                      "swiftcuda's C++/CUDA ops (torch.ops.swiftcuda)",
                                      -1,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr};
  return PyModule_Create(&module);
}
