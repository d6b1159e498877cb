// One way to launch a kernel, so that the same launcher code runs on a GPU and in the emulator.
//
// Under nvcc this is the <<<grid, block, shared, stream>>> launch; under SWIFTCUDA_EMU (tools/cuda_emu,
// the kernels compiled as host C++) the emulator runs the grid on the CPU, one fiber per thread.
// Either way the caller reads the launch error with cudaGetLastError() afterwards.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#if defined(SWIFTCUDA_EMU)
#include "emu_launch.h"  // tools/cuda_emu
#endif

namespace swiftcuda {

template <typename... Params, typename... Args>
inline void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream,
                          const Args&... args) {
#if defined(SWIFTCUDA_EMU)
  ::swiftcuda_emu::launch(kernel, grid, block, shared, stream, args...);
#else
  // clang-format would split the closing chevrons into "> > >", which nvcc rejects.
  // clang-format off
  kernel<<<grid, block, shared, stream>>>(args...);
  // clang-format on
#endif
}

}  // namespace swiftcuda
