// CPU 3x3 convolution (stride 1, padding 1) through NNPACK's Winograd F(6x6, 3x3) kernels, split
// across this library's OpenMP threads.
//
// Why: on a CPU without matrix units a Winograd 3x3 convolution does about a fifth of the
// multiplications of a direct one; NNPACK's single-threaded kernels alone beat oneDNN's direct
// convolution on two threads at SwiftNet's shapes. torch exposes NNPACK only through its own
// pthreadpool, whose workers and OpenMP's spinning workers fight over the same cores; here each
// OpenMP thread runs NNPACK on its own share of the work (threadpool NULL), so there is one pool.
//
// NNPACK lives inside libtorch_cpu when torch was built with it. Its symbols are declared weak, so
// this library still loads where torch has no NNPACK; conv3x3_available() then says no.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nnpack.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>

#include "cpu/kernels.h"

extern "C" {
nnp_status nnp_initialize(void) __attribute__((weak));
nnp_status nnp_convolution_inference(nnp_convolution_algorithm, nnp_convolution_transform_strategy, size_t, size_t,
                                     nnp_size, nnp_padding, nnp_size, nnp_size, const float*, const float*,
                                     const float*, float*, void*, size_t*, nnp_activation, const void*, pthreadpool_t,
                                     nnp_profile*) __attribute__((weak));
}

namespace swiftcuda::cpu {
namespace {

// The C entry point (nnpack.h also declares a C++ overload without the workspace arguments).
using ConvolutionInference = nnp_status (*)(nnp_convolution_algorithm, nnp_convolution_transform_strategy, size_t,
                                            size_t, nnp_size, nnp_padding, nnp_size, nnp_size, const float*,
                                            const float*, const float*, float*, void*, size_t*, nnp_activation,
                                            const void*, pthreadpool_t, nnp_profile*);

bool initialize_nnpack() {
  const ConvolutionInference inference = &nnp_convolution_inference;
  if (nnp_initialize == nullptr || inference == nullptr) return false;
  return nnp_initialize() == nnp_status_success;
}

// Grow-only, 64-byte aligned scratch of the calling thread: NNPACK's workspace. Allocating it per
// call (NNPACK's default) costs more than the convolution at these sizes (fresh pages every time).
class Scratch {
 public:
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      size_ = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, size_);
      TORCH_CHECK(data_ != nullptr, "swiftcuda.conv3x3: out of memory for a ", size_, "-byte workspace");
    }
    return data_;
  }
  ~Scratch() { std::free(data_); }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// One NNPACK call: ``channels`` output channels from a dense (in_channels, input_rows, width) input,
// zero-padded by one column left and right and by pad_top / pad_bottom rows (1 at an image edge, 0
// where a band's neighbouring rows were copied in). The output has input_rows + pad_top +
// pad_bottom - 2 rows; weight and bias point at the first of the ``channels`` filters.
struct Share {
  const float* input;
  int64_t in_channels, input_rows, width, pad_top, pad_bottom;
  const float* weight;
  const float* bias;
  int64_t channels;
  float* output;
};

void convolve(const Share& share, bool relu) {
  const nnp_size input_size{static_cast<size_t>(share.width), static_cast<size_t>(share.input_rows)};
  const nnp_padding padding{static_cast<size_t>(share.pad_top), 1, static_cast<size_t>(share.pad_bottom), 1};
  const nnp_size kernel_size{3, 3};
  const nnp_size no_subsampling{1, 1};
  const nnp_activation activation = relu ? nnp_activation_relu : nnp_activation_identity;
  auto run = [&](void* workspace, size_t* workspace_size) {
    // wt8x8 (Winograd F(6x6, 3x3)): at SwiftNet's shapes faster than NNPACK's own choice.
    return nnp_convolution_inference(nnp_convolution_algorithm_wt8x8, nnp_convolution_transform_strategy_compute,
                                     static_cast<size_t>(share.in_channels), static_cast<size_t>(share.channels),
                                     input_size, padding, kernel_size, no_subsampling, share.input, share.weight,
                                     share.bias, share.output, workspace, workspace_size, activation, nullptr, nullptr,
                                     nullptr);
  };
  size_t workspace_size = 0;
  nnp_status status = run(nullptr, &workspace_size);  // asks for the workspace size only
  if (status == nnp_status_success) {
    thread_local Scratch workspace;
    status = run(workspace.get(workspace_size), &workspace_size);
  }
  TORCH_CHECK(status == nnp_status_success, "swiftcuda.conv3x3: NNPACK failed with status ", static_cast<int>(status));
}

// Output rows [first_row, last_row) of one image, all channels: the rows it needs are copied into a
// dense band, convolved, and the band's output copied into place.
void convolve_rows(const float* image, const float* weight, const float* bias, float* output, int64_t in_channels,
                   int64_t out_channels, int64_t height, int64_t width, int64_t first_row, int64_t last_row,
                   bool relu) {
  const int64_t top = std::max<int64_t>(first_row - 1, 0), bottom = std::min(last_row + 1, height);
  const int64_t input_rows = bottom - top, rows = last_row - first_row;
  thread_local Scratch input_band, output_band;
  auto* band_in = static_cast<float*>(input_band.get(sizeof(float) * in_channels * input_rows * width));
  auto* band_out = static_cast<float*>(output_band.get(sizeof(float) * out_channels * rows * width));
  for (int64_t c = 0; c < in_channels; ++c) {
    std::memcpy(band_in + c * input_rows * width, image + (c * height + top) * width,
                sizeof(float) * input_rows * width);
  }
  convolve({band_in, in_channels, input_rows, width, first_row == 0 ? 1 : 0, last_row == height ? 1 : 0, weight, bias,
            out_channels, band_out},
           relu);
  for (int64_t k = 0; k < out_channels; ++k) {
    std::memcpy(output + (k * height + first_row) * width, band_out + k * rows * width, sizeof(float) * rows * width);
  }
}

}  // namespace

bool conv3x3_available() {
  static std::once_flag once;
  static bool available = false;
  std::call_once(once, [] { available = initialize_nnpack(); });
  return available;
}

at::Tensor conv3x3(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   bool relu) {
  TORCH_CHECK(conv3x3_available(), "swiftcuda.conv3x3: this torch was built without NNPACK");
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const int64_t batch = x.size(0), in_channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t out_channels = w.size(0);
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({out_channels}, x.options());
  at::Tensor out = at::empty({batch, out_channels, height, width}, x.options());

  // Every thread gets whole images when there are enough. Otherwise each image is split between
  // the threads: by rows when the image is large next to the weights (each thread then transforms
  // only its share of the input, at the price of copying its band), else by output channels (each
  // thread transforms the whole input, which is small).
  const int64_t threads = at::get_num_threads();
  // threads / gcd(batch, threads) parts per image: every thread gets the same number of parts.
  const int64_t splits =
      std::max<int64_t>(1, std::min(threads / std::gcd(batch, threads), std::min(height, out_channels)));
  const int64_t plane = height * width;
  const bool by_rows = splits > 1 && plane >= 2 * in_channels * out_channels;
  const float* x_data = x.data_ptr<float>();
  const float* w_data = w.data_ptr<float>();
  const float* b_data = b.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  at::parallel_for(0, batch * splits, 1, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t image = task / splits, part = task % splits;
      const float* image_in = x_data + image * in_channels * plane;
      float* image_out = out_data + image * out_channels * plane;
      if (by_rows) {
        const int64_t first_row = height * part / splits, last_row = height * (part + 1) / splits;
        convolve_rows(image_in, w_data, b_data, image_out, in_channels, out_channels, height, width, first_row,
                      last_row, relu);
      } else {
        const int64_t first_channel = out_channels * part / splits, last_channel = out_channels * (part + 1) / splits;
        convolve({image_in, in_channels, height, width, 1, 1, w_data + first_channel * in_channels * 9,
                  b_data + first_channel, last_channel - first_channel, image_out + first_channel * plane},
                 relu);
      }
    }
  });
  return out;
}

}  // namespace swiftcuda::cpu
