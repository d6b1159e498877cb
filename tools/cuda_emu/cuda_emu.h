// Force-included (g++ -include cuda_emu.h) before every kernels/cuda/*.cu compiled for the CPU
// emulator: the CUDA language extensions and device built-ins as host C++.
//
// The kernels are compiled with -DSWIFTCUDA_EMU and without __CUDACC__ / __CUDA_ARCH__, so the
// CUDA headers give their host versions (cuda_fp16.h / cuda_bf16.h conversions work on the host)
// and the kernels' own `#if defined(__CUDA_ARCH__)` branches take the host path (common.cuh's
// exp2_approx is then the CPU polynomial, not the hardware exp2f).
//
// What the emulator provides (runtime.cpp): one fiber per CUDA thread; blocks run one after the
// other on the calling thread; inside a block the fibers run until they block at __syncthreads or
// at a warp-collective, in an order chosen by the schedule (forward, reverse, shuffled), so a
// missing barrier reads data that is not written yet. __shared__ variables are function statics
// (blocks never overlap); `extern __shared__` arrays are lowered by the build (tests/cuda_emu/
// harness.py) to a pointer at an exactly-sized allocation per block, poisoned with 0xFF bytes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "emu_ptx.h"

// ---- language extensions ---------------------------------------------------------------------
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __align__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __shared__ static  // one block at a time: a function static is the block's shared copy
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

#include "emu_device.h"

#define threadIdx (::swiftcuda_emu::position().thread_idx)
#define blockIdx (::swiftcuda_emu::position().block_idx)
#define blockDim (::swiftcuda_emu::position().block_dim)
#define gridDim (::swiftcuda_emu::position().grid_dim)
#define warpSize 32

// ---- synchronisation and warp collectives ----------------------------------------------------
inline void __syncthreads() { ::swiftcuda_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { ::swiftcuda_emu::warp_sync(mask); }
inline void __threadfence_block() {}
inline void __threadfence() {}
[[noreturn]] inline void __trap() { ::swiftcuda_emu::trap("__trap()"); }

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return ::swiftcuda_emu::shuffle(mask, var, ::swiftcuda_emu::kShuffleIndex, src_lane, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::swiftcuda_emu::shuffle(mask, var, ::swiftcuda_emu::kShuffleUp, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::swiftcuda_emu::shuffle(mask, var, ::swiftcuda_emu::kShuffleDown, static_cast<int>(delta), width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return ::swiftcuda_emu::shuffle(mask, var, ::swiftcuda_emu::kShuffleXor, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::swiftcuda_emu::warp_ballot(mask, predicate != 0);
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return (__ballot_sync(mask, predicate) & mask) == mask; }

// ---- integer and float intrinsics ------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline int __float_as_int(float x) { return static_cast<int>(__float_as_uint(x)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __exp2f(float x) { return std::exp2(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
template <typename T>
inline T __ldg(const T* at) {
  return *at;
}

// ---- atomics: fibers switch only at barriers and collectives, so a plain read-modify-write is atomic
template <typename T>
inline T __emu_atomic_rmw(T* at, T value, int op) {
  const T old = *at;
  switch (op) {
    case 0: *at = old + value; break;
    case 1: *at = old > value ? old : value; break;
    case 2: *at = old < value ? old : value; break;
    case 3: *at = value; break;
    case 4: *at = old - value; break;
  }
  return old;
}
inline int atomicAdd(int* at, int v) { return __emu_atomic_rmw(at, v, 0); }
inline unsigned atomicAdd(unsigned* at, unsigned v) { return __emu_atomic_rmw(at, v, 0); }
inline unsigned long long atomicAdd(unsigned long long* at, unsigned long long v) { return __emu_atomic_rmw(at, v, 0); }
inline float atomicAdd(float* at, float v) { return __emu_atomic_rmw(at, v, 0); }
inline int atomicSub(int* at, int v) { return __emu_atomic_rmw(at, v, 4); }
inline unsigned atomicSub(unsigned* at, unsigned v) { return __emu_atomic_rmw(at, v, 4); }
inline int atomicMax(int* at, int v) { return __emu_atomic_rmw(at, v, 1); }
inline unsigned atomicMax(unsigned* at, unsigned v) { return __emu_atomic_rmw(at, v, 1); }
inline unsigned long long atomicMax(unsigned long long* at, unsigned long long v) { return __emu_atomic_rmw(at, v, 1); }
inline int atomicMin(int* at, int v) { return __emu_atomic_rmw(at, v, 2); }
inline unsigned atomicMin(unsigned* at, unsigned v) { return __emu_atomic_rmw(at, v, 2); }
inline unsigned long long atomicMin(unsigned long long* at, unsigned long long v) { return __emu_atomic_rmw(at, v, 2); }
inline int atomicExch(int* at, int v) { return __emu_atomic_rmw(at, v, 3); }
inline unsigned atomicExch(unsigned* at, unsigned v) { return __emu_atomic_rmw(at, v, 3); }
inline float atomicExch(float* at, float v) { return __emu_atomic_rmw(at, v, 3); }
inline int atomicCAS(int* at, int compare, int v) {
  const int old = *at;
  if (old == compare) *at = v;
  return old;
}
inline unsigned atomicCAS(unsigned* at, unsigned compare, unsigned v) {
  const unsigned old = *at;
  if (old == compare) *at = v;
  return old;
}
inline unsigned long long atomicCAS(unsigned long long* at, unsigned long long compare, unsigned long long v) {
  const unsigned long long old = *at;
  if (old == compare) *at = v;
  return old;
}

// ---- runtime API the launchers call (cuda_runtime.h's template overload, without that header)
template <typename T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attribute, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attribute, value);
}

#include "emu_launch.h"
