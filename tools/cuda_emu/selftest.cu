// Self-test kernels of the emulator (compiled like kernels/cuda/*.cu, into the same library):
// each checks one emulated device feature against what tests/cuda_emu/test_emulator.py computes
// from the CUDA / PTX definitions, and the misuse cases check that the emulator reports errors.
#include <cuda_fp16.h>

#include <cstdint>

#include "launch.cuh"
#include "ptx.cuh"

namespace {

// out[32 * 8] per warp lane: shuffles of every mode and width, a ballot and popc.
__global__ void collectives_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  int* row = out + (blockIdx.x * blockDim.x + threadIdx.x) * 8;
  row[0] = __shfl_xor_sync(0xFFFFFFFFu, lane * 10, 5);
  row[1] = __shfl_sync(0xFFFFFFFFu, lane * 10, 3, 8);
  row[2] = __shfl_up_sync(0xFFFFFFFFu, lane * 10, 2, 16);
  row[3] = __shfl_down_sync(0xFFFFFFFFu, lane * 10, 3);
  row[4] = static_cast<int>(__ballot_sync(0xFFFFFFFFu, lane % 3 == 0));
  row[5] = __popc(static_cast<unsigned>(row[4]));
  // Half the warp on its own mask.
  row[6] = lane < 16 ? __shfl_xor_sync(0x0000FFFFu, lane, 1) : -1;
  __shared__ int total;
  if (threadIdx.x == 0) total = 0;
  __syncthreads();
  atomicAdd(&total, lane);
  __syncthreads();
  row[7] = total;
}

// D = A B for A (16 x 16) row-major and B (16 x 8) row-major, fp16 in, float out, through the
// PTX fragment tables (the same layout the kernels use).
__global__ void mma_kernel(const __half* a, const __half* b, float* d) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  auto pair = [](const __half* m, int ld, int r0, int c0, int r1, int c1) {
    const __half2 h = __halves2half2(m[r0 * ld + c0], m[r1 * ld + c1]);
    return *reinterpret_cast<const uint32_t*>(&h);
  };
  const uint32_t frag[4] = {pair(a, 16, g, 2 * t, g, 2 * t + 1), pair(a, 16, g + 8, 2 * t, g + 8, 2 * t + 1),
                            pair(a, 16, g, 2 * t + 8, g, 2 * t + 9), pair(a, 16, g + 8, 2 * t + 8, g + 8, 2 * t + 9)};
  const uint32_t b0 = pair(b, 8, 2 * t, g, 2 * t + 1, g), b1 = pair(b, 8, 2 * t + 8, g, 2 * t + 9, g);
  float acc[4] = {1.0f, 2.0f, 3.0f, 4.0f};  // C, added
  swiftcuda::ptx::mma_m16n8k16<false>(acc, frag, b0, b1);
  d[g * 8 + 2 * t] = acc[0];
  d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2];
  d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// ldmatrix x4 (plain and transposed) of four 8x8 matrices stored row after row in shared memory.
__global__ void ldmatrix_kernel(const uint16_t* in, uint32_t* out) {
  __shared__ __align__(16) uint16_t tiles[4 * 64];
  for (int i = threadIdx.x; i < 4 * 64; i += 32) tiles[i] = in[i];
  __syncthreads();
  const int lane = threadIdx.x;
  uint32_t plain[4], transposed[4];
  swiftcuda::ptx::ldmatrix<4, false>(plain, tiles + (lane / 8) * 64 + (lane % 8) * 8);
  swiftcuda::ptx::ldmatrix<4, true>(transposed, tiles + (lane / 8) * 64 + (lane % 8) * 8);
  for (int i = 0; i < 4; ++i) {
    out[lane * 8 + i] = plain[i];
    out[lane * 8 + 4 + i] = transposed[i];
  }
}

// Misuse the emulator must report: 0 a lane outside its own mask, 1 a collective waiting on an
// exited lane, 2 lanes in different collectives (deadlock), 3 __trap, 4 a shuffle reading a lane
// outside the mask.
__global__ void misuse_kernel(int which, int* out) {
  const int lane = threadIdx.x & 31;
  if (which == 0) out[lane] = __shfl_xor_sync(1u << ((lane + 1) & 31), lane, 1);
  if (which == 4 && lane == 0) out[lane] = __shfl_xor_sync(0x1u, lane, 1);
  if (which == 1) {
    if (lane == 31) return;
    out[lane] = __shfl_xor_sync(0xFFFFFFFFu, lane, 1);
  }
  if (which == 2) {
    if (lane == 0) {
      out[0] = __shfl_xor_sync(0xFFFFFFFFu, lane, 1);
    } else {
      __syncthreads();
    }
  }
  if (which == 3 && lane == 7) __trap();
}

// Writes the last float of its dynamic shared memory and reads it back.
__global__ void dynamic_shared_kernel(int floats, float* out) {
  extern __shared__ float dynamic[];
  if (threadIdx.x == 0) dynamic[floats - 1] = 42.0f;
  __syncthreads();
  out[threadIdx.x] = dynamic[floats - 1];
}

}  // namespace

extern "C" {

// 64 KiB of dynamic shared memory: more than the 48 KiB a kernel gets without opting in.
int swiftcuda_emu_selftest_shared_limit(int opt_in, float* out) {
  const int floats = 16 * 1024;
  // The attribute lasts for the process, as on a GPU: set it either way (48 KiB is the default).
  const int limit = opt_in != 0 ? floats * static_cast<int>(sizeof(float)) : 48 * 1024;
  const cudaError_t error =
      cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit);
  if (error != cudaSuccess) return static_cast<int>(error);
  swiftcuda::launch_kernel(dynamic_shared_kernel, dim3(1), dim3(32), floats * sizeof(float), nullptr, floats, out);
  return static_cast<int>(cudaGetLastError());
}

int swiftcuda_emu_selftest_collectives(int* out, int threads) {
  swiftcuda::launch_kernel(collectives_kernel, dim3(2), dim3(static_cast<unsigned>(threads)), 0, nullptr, out);
  return static_cast<int>(cudaGetLastError());
}

int swiftcuda_emu_selftest_mma(const void* a, const void* b, float* d) {
  swiftcuda::launch_kernel(mma_kernel, dim3(1), dim3(32), 0, nullptr, static_cast<const __half*>(a),
                           static_cast<const __half*>(b), d);
  return static_cast<int>(cudaGetLastError());
}

int swiftcuda_emu_selftest_ldmatrix(const uint16_t* in, uint32_t* out) {
  swiftcuda::launch_kernel(ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr, in, out);
  return static_cast<int>(cudaGetLastError());
}

int swiftcuda_emu_selftest_misuse(int which, int* out) {
  swiftcuda::launch_kernel(misuse_kernel, dim3(1), dim3(64), 0, nullptr, which, out);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
