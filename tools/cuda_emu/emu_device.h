// Device-side entry points of the emulator runtime (runtime.cpp), used by cuda_emu.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>

namespace swiftcuda_emu {

// Where the running fiber is: its thread's and block's indices, the launch's shape.
struct Position {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
  void* dynamic_shared;
};
const Position& position();

void syncthreads();
void* dynamic_shared();  // this block's extern __shared__ array (exactly the launch's bytes)
[[noreturn]] void trap(const char* why);

enum ShuffleMode : int { kShuffleIndex = 0, kShuffleUp = 1, kShuffleDown = 2, kShuffleXor = 3 };
uint32_t warp_shuffle(uint32_t mask, uint32_t value, int mode, int operand, int width);
uint32_t warp_ballot(uint32_t mask, bool predicate);
void warp_sync(uint32_t mask);

template <typename T>
T shuffle(uint32_t mask, T value, int mode, int operand, int width) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 32- or 64-bit values");
  uint32_t words[sizeof(T) / 4];
  std::memcpy(words, &value, sizeof(T));
  for (uint32_t& word : words) word = warp_shuffle(mask, word, mode, operand, width);  // 64 bits: two shuffles
  std::memcpy(&value, words, sizeof(T));
  return value;
}

}  // namespace swiftcuda_emu
