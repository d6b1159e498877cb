// The emulator's kernel launch, called by kernels/cuda/launch.cuh under SWIFTCUDA_EMU.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>

namespace swiftcuda_emu {

// Runs `body` (one thread's kernel call) for every thread of every block of the grid, on the
// calling thread, before returning; an error is what cudaGetLastError() returns next.
void launch_grid(const void* kernel, dim3 grid, dim3 block, size_t shared, const std::function<void()>& body);

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t /*stream*/,
            const Args&... args) {
  launch_grid(reinterpret_cast<const void*>(kernel), grid, block, shared, [&] { kernel(args...); });
}

}  // namespace swiftcuda_emu
