// The CUDA emulator's runtime: grid execution with one fiber per CUDA thread, block barriers,
// warp collectives (shuffle, ballot, mma, ldmatrix), the few runtime API calls the launchers make,
// and a C ABI to choose the schedule and read the last error.
//
// Scheduling: a block's threads are fibers on the calling OS thread. The scheduler makes passes
// over the fibers in the schedule's order (forward, reverse, or a fresh random permutation per pass)
// and resumes each runnable one until it blocks: at __syncthreads (released when every live
// thread of the block has arrived) or at a warp collective (completed by the last lane of its mask
// to arrive, which computes every lane's result from the PTX definition). A pass in which nothing
// could run is a deadlock, reported as a launch failure with each thread's state. Warp-collective
// misuse (a lane outside the mask calling, lanes disagreeing on the mask or the instruction, a
// source lane outside the mask, a lane that has exited) is an error, not undefined behaviour.
//
// Fibers: Boost.Context's fcontext when built with SWIFTCUDA_EMU_BOOST (fast), else POSIX ucontext
// (always there; each switch is a system call). Under AddressSanitizer the switches are annotated.
#include <cuda_runtime_api.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "emu_device.h"
#include "emu_launch.h"
#include "emu_ptx.h"

#if defined(SWIFTCUDA_EMU_BOOST)
#include <boost/context/detail/fcontext.hpp>
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace swiftcuda_emu {

namespace {

#if EMU_ASAN
constexpr size_t kStackBytes = 512 * 1024;
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif
constexpr size_t kMaxDynamicSharedDefault = 48 * 1024;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // sm_90's opt-in limit

enum class State { kRunnable, kAtBarrier, kInCollective, kDone };
enum class Op { kNone, kShuffle, kBallot, kSync, kMma, kLdmatrix };

const char* op_name(Op op) {
  switch (op) {
    case Op::kShuffle: return "shuffle";
    case Op::kBallot: return "ballot";
    case Op::kSync: return "syncwarp";
    case Op::kMma: return "mma.m16n8k16";
    case Op::kLdmatrix: return "ldmatrix";
    default: return "none";
  }
}

struct Fiber {
#if defined(SWIFTCUDA_EMU_BOOST)
  boost::context::detail::fcontext_t context = nullptr;
#else
  ucontext_t context;
#endif
  char* stack = nullptr;
  State state = State::kRunnable;
  uint3 thread_idx{};
  int lane = 0, warp = 0;
  // The collective this lane waits in: its mask, instruction, operands and (once complete) result.
  uint32_t mask = 0;
  Op op = Op::kNone;
  int mode = 0, operand = 0, width = 32;
  bool flag = false;
  uint32_t in[12] = {};
  const void* address = nullptr;
  uint32_t out[4] = {};
};

// One launch being executed on this OS thread.
struct Launch {
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  Position position{};
  int live = 0, at_barrier = 0;
  Fiber* current = nullptr;
  std::string error;
#if defined(SWIFTCUDA_EMU_BOOST)
  boost::context::detail::fcontext_t scheduler = nullptr;
#else
  ucontext_t scheduler;
#endif
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
};

// Per OS thread: the schedule, the last error, the launch in progress.
struct ThreadState {
  int order = 0;  // 0 forward, 1 reverse, 2 shuffled
  uint64_t seed = 0;
  cudaError_t last_error = cudaSuccess;
  std::string message;
  Launch* launch = nullptr;
  std::map<const void*, int> max_dynamic_shared;  // cudaFuncSetAttribute, per kernel
};

ThreadState& state() {
  thread_local ThreadState s;
  return s;
}

void fail(Launch& launch, const char* format, ...) {
  if (!launch.error.empty()) return;  // keep the first
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  const Position& at = launch.position;
  char where[160];
  std::snprintf(where, sizeof where, " [block (%u,%u,%u)", at.block_idx.x, at.block_idx.y, at.block_idx.z);
  launch.error = text;
  launch.error += where;
  if (launch.current != nullptr) {
    const uint3 t = launch.current->thread_idx;
    std::snprintf(where, sizeof where, ", thread (%u,%u,%u)", t.x, t.y, t.z);
    launch.error += where;
  }
  launch.error += "]";
}

// ---- fiber switching ----------------------------------------------------------------------------

void before_switch_to_fiber(Launch& launch, Fiber& fiber) {
#if EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, fiber.stack, kStackBytes);
#endif
  (void)launch;
  (void)fiber;
}

void after_switch_to_scheduler(Launch& launch) {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  (void)launch;
}

void fiber_started(Launch& launch) {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &launch.scheduler_stack_bottom, &launch.scheduler_stack_size);
#endif
  (void)launch;
}

void fiber_resumed() {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

void before_switch_to_scheduler(Launch& launch) {
#if EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, launch.scheduler_stack_bottom, launch.scheduler_stack_size);
#endif
  (void)launch;
}

// Runs one thread's kernel call; returns to the scheduler for good when it ends.
void fiber_main_body(Launch& launch) {
  (*launch.body)();
  Fiber& self = *launch.current;
  self.state = State::kDone;
  --launch.live;
}

#if defined(SWIFTCUDA_EMU_BOOST)
namespace bctx = boost::context::detail;

void fiber_entry(bctx::transfer_t from) {
  Launch& launch = *static_cast<Launch*>(from.data);
  launch.scheduler = from.fctx;
  fiber_started(launch);
  fiber_main_body(launch);
  before_switch_to_scheduler(launch);
  bctx::jump_fcontext(launch.scheduler, nullptr);
  std::abort();  // never resumed
}

void make_fiber(Launch&, Fiber& fiber) {
  fiber.context = bctx::make_fcontext(fiber.stack + kStackBytes, kStackBytes, fiber_entry);
}

void resume(Launch& launch, Fiber& fiber) {
  before_switch_to_fiber(launch, fiber);
  const bctx::transfer_t back = bctx::jump_fcontext(fiber.context, &launch);
  after_switch_to_scheduler(launch);
  fiber.context = back.fctx;
}

void yield(Launch& launch) {
  before_switch_to_scheduler(launch);
  const bctx::transfer_t back = bctx::jump_fcontext(launch.scheduler, nullptr);
  launch.scheduler = back.fctx;
  fiber_resumed();
}
#else
void fiber_entry(unsigned high, unsigned low) {
  Launch& launch = *reinterpret_cast<Launch*>((static_cast<uintptr_t>(high) << 32) | low);
  fiber_started(launch);
  fiber_main_body(launch);
  before_switch_to_scheduler(launch);
  setcontext(&launch.scheduler);
  std::abort();
}

void make_fiber(Launch& launch, Fiber& fiber) {
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = fiber.stack;
  fiber.context.uc_stack.ss_size = kStackBytes;
  fiber.context.uc_link = nullptr;
  const uintptr_t at = reinterpret_cast<uintptr_t>(&launch);
  makecontext(&fiber.context, reinterpret_cast<void (*)()>(fiber_entry), 2, static_cast<unsigned>(at >> 32),
              static_cast<unsigned>(at & 0xFFFFFFFFu));
}

void resume(Launch& launch, Fiber& fiber) {
  before_switch_to_fiber(launch, fiber);
  swapcontext(&launch.scheduler, &fiber.context);
  after_switch_to_scheduler(launch);
}

void yield(Launch& launch) {
  Fiber& self = *launch.current;
  before_switch_to_scheduler(launch);
  swapcontext(&self.context, &launch.scheduler);
  fiber_resumed();
}
#endif

Launch& current_launch() {
  Launch* launch = state().launch;
  if (launch == nullptr) {
    std::fprintf(stderr, "swiftcuda_emu: a device function ran outside a launch\n");
    std::abort();
  }
  return *launch;
}

// Blocks the calling fiber until the scheduler resumes it; an error ends it for good.
void block_here(Launch& launch) { yield(launch); }

[[noreturn]] void stop_thread(Launch& launch) {
  Fiber& self = *launch.current;
  self.state = State::kDone;
  --launch.live;
  before_switch_to_scheduler(launch);
#if defined(SWIFTCUDA_EMU_BOOST)
  bctx::jump_fcontext(launch.scheduler, nullptr);
#else
  setcontext(&launch.scheduler);
#endif
  std::abort();
}

// ---- warp collectives -----------------------------------------------------------------------------

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exponent = (h >> 10) & 31u, mantissa = h & 1023u;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? NAN : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mantissa | 1024u), static_cast<int>(exponent) - 25);
  }
  return sign ? -value : value;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// The 16-bit element `half` (0 low, 1 high) of a 32-bit fragment register, as a float.
float element(uint32_t reg, int half, bool bf16) {
  const uint16_t bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xFFFFu);
  return bf16 ? bf16_to_float(bits) : half_to_float(bits);
}

// mma.m16n8k16 over the 32 lanes of `warp` (fibers[base + lane]); fragment tables of the PTX ISA
// (section "Matrix Fragments for mma.m16n8k16 with floating point type"), g = lane / 4, t = lane % 4:
//   A (16 x 16, row): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..2t+1), a[2] = (g, 2t+8..2t+9),
//                     a[3] = (g+8, 2t+8..2t+9)
//   B (16 x 8, col):  b0 = (2t..2t+1, g), b1 = (2t+8..2t+9, g)
//   C, D (16 x 8):    c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
void complete_mma(Fiber* lanes) {
  const bool bf16 = lanes[0].mode != 0;
  float a[16][16], b[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const Fiber& f = lanes[lane];
    const int g = lane >> 2, t = lane & 3;
    for (int h = 0; h < 2; ++h) {
      a[g][2 * t + h] = element(f.in[0], h, bf16);
      a[g + 8][2 * t + h] = element(f.in[1], h, bf16);
      a[g][2 * t + 8 + h] = element(f.in[2], h, bf16);
      a[g + 8][2 * t + 8 + h] = element(f.in[3], h, bf16);
      b[2 * t + h][g] = element(f.in[4], h, bf16);
      b[2 * t + 8 + h][g] = element(f.in[5], h, bf16);
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    Fiber& f = lanes[lane];
    const int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
      // Products of 16-bit values are exact in float32; the sum is float32 in k order (the
      // hardware's internal order and rounding are unspecified; differences are within float32).
      float sum = bits_float(f.in[6 + e]);
      for (int k = 0; k < 16; ++k) sum += a[row][k] * b[k][col];
      f.out[e] = float_bits(sum);
    }
  }
}

// ldmatrix .m8n8 .b16: matrix i's row r comes from lane 8 i + r's address; without .trans lane l
// receives row l / 4, columns 2 (l % 4) and +1 of each matrix; with .trans the transpose.
void complete_ldmatrix(Fiber* lanes) {
  const int count = lanes[0].mode;
  const bool transpose = lanes[0].operand != 0;
  uint16_t m[4][8][8];
  for (int i = 0; i < count; ++i)
    for (int r = 0; r < 8; ++r) std::memcpy(m[i][r], lanes[8 * i + r].address, 16);
  for (int lane = 0; lane < 32; ++lane) {
    const int row = lane >> 2, col = 2 * (lane & 3);
    for (int i = 0; i < count; ++i) {
      const uint16_t lo = transpose ? m[i][col][row] : m[i][row][col];
      const uint16_t hi = transpose ? m[i][col + 1][row] : m[i][row][col + 1];
      lanes[lane].out[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}

int shuffle_source(int lane, int mode, int operand, int width) {
  const int base = lane & ~(width - 1);
  int source = lane;
  switch (mode) {
    case kShuffleIndex: return base + (operand & (width - 1));
    case kShuffleUp: source = lane - operand; return source < base ? lane : source;
    case kShuffleDown: source = lane + operand; return source >= base + width ? lane : source;
    case kShuffleXor: source = lane ^ operand; return (source < base || source >= base + width) ? lane : source;
  }
  return lane;
}

// Called by the lane that arrives last: every lane of the mask is waiting in the same collective.
void complete(Launch& launch, Fiber* lanes, uint32_t mask, Op op) {
  switch (op) {
    case Op::kShuffle:
      for (int lane = 0; lane < 32; ++lane) {
        if (!((mask >> lane) & 1u)) continue;
        Fiber& f = lanes[lane];
        const int source = shuffle_source(lane, f.mode, f.operand, f.width);
        if (!((mask >> source) & 1u)) {
          fail(launch, "shuffle: lane %d reads lane %d, which is outside the mask 0x%08x (undefined)", lane, source,
               mask);
          return;
        }
        f.out[0] = lanes[source].in[0];
      }
      break;
    case Op::kBallot: {
      uint32_t bits = 0;
      for (int lane = 0; lane < 32; ++lane)
        if (((mask >> lane) & 1u) && lanes[lane].flag) bits |= 1u << lane;
      for (int lane = 0; lane < 32; ++lane)
        if ((mask >> lane) & 1u) lanes[lane].out[0] = bits;
      break;
    }
    case Op::kMma: complete_mma(lanes); break;
    case Op::kLdmatrix: complete_ldmatrix(lanes); break;
    default: break;
  }
  for (int lane = 0; lane < 32; ++lane)
    if ((mask >> lane) & 1u) {
      lanes[lane].state = State::kRunnable;
      lanes[lane].op = Op::kNone;
    }
}

// The calling fiber enters a warp collective (its operands already in self.in / flag / address).
void collective(Op op, uint32_t mask) {
  Launch& launch = current_launch();
  Fiber& self = *launch.current;
  const int threads = static_cast<int>(launch.fibers.size());
  Fiber* lanes = &launch.fibers[static_cast<size_t>(self.warp) * 32];
  if (!((mask >> self.lane) & 1u)) {
    fail(launch, "%s: the calling lane %d is not in its mask 0x%08x", op_name(op), self.lane, mask);
    stop_thread(launch);
  }
  self.state = State::kInCollective;
  self.op = op;
  self.mask = mask;
  bool all_arrived = true;
  for (int lane = 0; lane < 32; ++lane) {
    if (!((mask >> lane) & 1u)) continue;
    if (self.warp * 32 + lane >= threads) {
      fail(launch, "%s: mask 0x%08x names lane %d, which does not exist (block of %d threads)", op_name(op), mask, lane,
           threads);
      stop_thread(launch);
    }
    const Fiber& other = lanes[lane];
    if (other.state == State::kDone) {
      fail(launch, "%s: mask 0x%08x names lane %d, which has exited", op_name(op), mask, lane);
      stop_thread(launch);
    }
    if (other.state != State::kInCollective) {
      all_arrived = false;
      continue;
    }
    if (other.op != op || other.mask != mask) {
      fail(launch, "warp collective mismatch: lane %d is in %s with mask 0x%08x, lane %d in %s with mask 0x%08x",
           self.lane, op_name(op), mask, lane, op_name(other.op), other.mask);
      stop_thread(launch);
    }
  }
  if (all_arrived) {
    complete(launch, lanes, mask, op);
    if (!launch.error.empty()) stop_thread(launch);
  } else {
    block_here(launch);
  }
}

}  // namespace

// ---- device-side API (cuda_emu.h, emu_ptx.h) ---------------------------------------------------

const Position& position() { return current_launch().position; }

void syncthreads() {
  Launch& launch = current_launch();
  Fiber& self = *launch.current;
  self.state = State::kAtBarrier;
  ++launch.at_barrier;
  block_here(launch);
}

void trap(const char* why) {
  Launch& launch = current_launch();
  fail(launch, "%s", why);
  stop_thread(launch);
}

uint32_t warp_shuffle(uint32_t mask, uint32_t value, int mode, int operand, int width) {
  Launch& launch = current_launch();
  Fiber& self = *launch.current;
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) trap("shuffle: width must be a power of 2 up to 32");
  self.in[0] = value;
  self.mode = mode;
  self.operand = operand;
  self.width = width;
  collective(Op::kShuffle, mask);
  return self.out[0];
}

uint32_t warp_ballot(uint32_t mask, bool predicate) {
  Fiber& self = *current_launch().current;
  self.flag = predicate;
  collective(Op::kBallot, mask);
  return self.out[0];
}

void warp_sync(uint32_t mask) { collective(Op::kSync, mask); }

void mma_m16n8k16(bool bf16, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Fiber& self = *current_launch().current;
  for (int i = 0; i < 4; ++i) self.in[i] = a[i];
  self.in[4] = b0;
  self.in[5] = b1;
  for (int i = 0; i < 4; ++i) self.in[6 + i] = float_bits(d[i]);
  self.mode = bf16 ? 1 : 0;
  collective(Op::kMma, 0xFFFFFFFFu);
  for (int i = 0; i < 4; ++i) d[i] = bits_float(self.out[i]);
}

void ldmatrix(int count, bool transpose, uint32_t* out, const void* row_address) {
  Fiber& self = *current_launch().current;
  if (count != 1 && count != 2 && count != 4) trap("ldmatrix: .x1, .x2 or .x4");
  self.mode = count;
  self.operand = transpose ? 1 : 0;
  self.address = row_address;
  if ((reinterpret_cast<uintptr_t>(row_address) & 15u) != 0 && self.lane < 8 * count)
    trap("ldmatrix: a row address is not 16-byte aligned");
  collective(Op::kLdmatrix, 0xFFFFFFFFu);
  for (int i = 0; i < count; ++i) out[i] = self.out[i];
}

// ---- grid execution -----------------------------------------------------------------------------

namespace {

std::string describe_states(const Launch& launch) {
  std::string text;
  int shown = 0;
  for (const Fiber& f : launch.fibers) {
    if (f.state == State::kDone || f.state == State::kRunnable) continue;
    if (shown++ == 8) {
      text += " ...";
      break;
    }
    char item[96];
    std::snprintf(item, sizeof item, " thread %u: %s;", f.thread_idx.x,
                  f.state == State::kAtBarrier ? "__syncthreads" : op_name(f.op));
    text += item;
  }
  return text;
}

// A thread that ends while lanes of its warp wait for it in a collective would hang a GPU.
void check_exit(Launch& launch, const Fiber& exited) {
  const size_t base = static_cast<size_t>(exited.warp) * 32;
  for (size_t i = base; i < base + 32 && i < launch.fibers.size(); ++i) {
    const Fiber& other = launch.fibers[i];
    if (other.state == State::kInCollective && ((other.mask >> exited.lane) & 1u)) {
      fail(launch, "lane %d has exited while lane %d waits for it in %s (mask 0x%08x)", exited.lane, other.lane,
           op_name(other.op), other.mask);
      return;
    }
  }
}

// Runs one block to completion (or to its first error).
void run_block(Launch& launch, std::mt19937_64& random, int order) {
  const int threads = static_cast<int>(launch.fibers.size());
  for (Fiber& f : launch.fibers) {
    f.state = State::kRunnable;
    f.op = Op::kNone;
#if EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);  // frames an abandoned fiber left behind
#endif
    make_fiber(launch, f);
  }
  launch.live = threads;
  launch.at_barrier = 0;
  std::vector<int> sequence(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) sequence[static_cast<size_t>(i)] = order == 1 ? threads - 1 - i : i;
  while (launch.live > 0 && launch.error.empty()) {
    if (order == 2) std::shuffle(sequence.begin(), sequence.end(), random);
    bool progressed = false;
    for (int i : sequence) {
      Fiber& f = launch.fibers[static_cast<size_t>(i)];
      if (f.state != State::kRunnable) continue;
      launch.current = &f;
      launch.position.thread_idx = f.thread_idx;
      resume(launch, f);
      progressed = true;
      if (launch.error.empty() && f.state == State::kDone) check_exit(launch, f);
      launch.current = nullptr;
      if (!launch.error.empty()) return;
    }
    if (launch.live > 0 && launch.at_barrier == launch.live) {
      for (Fiber& f : launch.fibers)
        if (f.state == State::kAtBarrier) f.state = State::kRunnable;
      launch.at_barrier = 0;
      progressed = true;
    }
    if (!progressed) {
      fail(launch, "deadlock: %d threads live, %d at __syncthreads;%s", launch.live, launch.at_barrier,
           describe_states(launch).c_str());
      return;
    }
  }
}

cudaError_t run_grid(const void* kernel, dim3 grid, dim3 block, size_t shared, const std::function<void()>& body,
                     std::string& message) {
  ThreadState& ts = state();
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0) {
    message = "launch with an empty grid or block";
    return cudaErrorInvalidConfiguration;
  }
  if (threads > 1024 || block.z > 64 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7FFFFFFFu) {
    message = "launch beyond the grid or block limits";
    return cudaErrorInvalidConfiguration;
  }
  const auto limit = ts.max_dynamic_shared.find(kernel);
  const size_t allowed =
      limit == ts.max_dynamic_shared.end() ? kMaxDynamicSharedDefault : static_cast<size_t>(limit->second);
  if (shared > allowed) {
    message = "dynamic shared memory of " + std::to_string(shared) + " bytes exceeds the kernel's limit of " +
              std::to_string(allowed) + " (cudaFuncSetAttribute)";
    return cudaErrorInvalidValue;
  }
  if (ts.launch != nullptr) {
    message = "a kernel launched another (dynamic parallelism is not emulated)";
    return cudaErrorNotSupported;
  }

  Launch launch;
  launch.body = &body;
  launch.fibers.resize(threads);
  for (uint64_t i = 0; i < threads; ++i) {
    Fiber& f = launch.fibers[i];
    void* stack =
        mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) {
      for (uint64_t j = 0; j < i; ++j) munmap(launch.fibers[j].stack, kStackBytes);
      message = "out of memory for fiber stacks";
      return cudaErrorMemoryAllocation;
    }
    f.stack = static_cast<char*>(stack);
    const uint64_t linear = i;
    f.thread_idx = {static_cast<unsigned>(linear % block.x), static_cast<unsigned>(linear / block.x % block.y),
                    static_cast<unsigned>(linear / (static_cast<uint64_t>(block.x) * block.y))};
    f.lane = static_cast<int>(linear % 32);
    f.warp = static_cast<int>(linear / 32);
  }
  launch.position.block_dim = block;
  launch.position.grid_dim = grid;

  std::vector<uint64_t> blocks(static_cast<size_t>(grid.x) * grid.y * grid.z);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = i;
  std::mt19937_64 random(ts.seed);
  if (ts.order == 1) std::reverse(blocks.begin(), blocks.end());
  if (ts.order == 2) std::shuffle(blocks.begin(), blocks.end(), random);

  ts.launch = &launch;
  for (uint64_t linear : blocks) {
    launch.position.block_idx = {static_cast<unsigned>(linear % grid.x),
                                 static_cast<unsigned>(linear / grid.x % grid.y),
                                 static_cast<unsigned>(linear / (static_cast<uint64_t>(grid.x) * grid.y))};
    // Exactly `shared` bytes (an overflow is a heap overflow under ASan), poisoned: 0xFF bytes are
    // NaN in every float type, so a read before any write shows up in the results.
    void* dynamic = shared > 0 ? std::malloc(shared) : nullptr;
    if (dynamic != nullptr) std::memset(dynamic, 0xFF, shared);
    launch.position.dynamic_shared = dynamic;
    run_block(launch, random, ts.order);
    std::free(dynamic);
    if (!launch.error.empty()) break;
  }
  ts.launch = nullptr;
  for (Fiber& f : launch.fibers) {
#if EMU_ASAN
    // Frames of the fibers stay poisoned in the shadow memory; memory mapped here later (Python's
    // arenas) would otherwise report them as stack overflows.
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);
#endif
    munmap(f.stack, kStackBytes);
  }
  if (!launch.error.empty()) {
    message = launch.error;
    return cudaErrorLaunchFailure;
  }
  return cudaSuccess;
}

}  // namespace

void launch_grid(const void* kernel, dim3 grid, dim3 block, size_t shared, const std::function<void()>& body) {
  ThreadState& ts = state();
  std::string message;
  cudaError_t error;
  if (ts.launch != nullptr) {  // a kernel launching a kernel: checked before taking the lock
    error = cudaErrorNotSupported;
    message = "a kernel launched another (dynamic parallelism is not emulated)";
  } else {
    // __shared__ variables are function statics, one copy per process: one launch at a time.
    static std::mutex one_launch_at_a_time;
    const std::lock_guard<std::mutex> lock(one_launch_at_a_time);
    error = run_grid(kernel, grid, block, shared, body, message);
  }
  if (error != cudaSuccess && ts.last_error == cudaSuccess) {
    ts.last_error = error;
    ts.message = message;
  }
}

void* dynamic_shared() { return current_launch().position.dynamic_shared; }

}  // namespace swiftcuda_emu

// ---- CUDA runtime API used by the launchers --------------------------------------------------------

extern "C" {

cudaError_t cudaGetLastError(void) {
  auto& ts = swiftcuda_emu::state();
  const cudaError_t error = ts.last_error;
  ts.last_error = cudaSuccess;
  return error;
}

cudaError_t cudaPeekAtLastError(void) { return swiftcuda_emu::state().last_error; }

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "emulated CUDA error";
  }
}

cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
  if (value < 0 || static_cast<size_t>(value) > swiftcuda_emu::kMaxDynamicShared) return cudaErrorInvalidValue;
  swiftcuda_emu::state().max_dynamic_shared[func] = value;
  return cudaSuccess;
}

// Schedule of the next launches on this thread: order 0 forward, 1 reverse, 2 shuffled by `seed`.
void swiftcuda_emu_set_schedule(int order, uint64_t seed) {
  auto& ts = swiftcuda_emu::state();
  ts.order = order;
  ts.seed = seed;
}

// The message of the last failed launch on this thread ("" when none).
const char* swiftcuda_emu_last_message(void) { return swiftcuda_emu::state().message.c_str(); }

void swiftcuda_emu_clear_error(void) {
  auto& ts = swiftcuda_emu::state();
  ts.last_error = cudaSuccess;
  ts.message.clear();
}

int swiftcuda_emu_uses_boost(void) {
#if defined(SWIFTCUDA_EMU_BOOST)
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"
