// CPU emulation of CUDA device code (tests/cuda_emulation/README.md). Force-included into the
// kernel sources of the LRSMC_CUDA_EMULATION build, after tests/cuda_emulation/
// rewrite_launches.py has turned `kernel<<<grid, block, shared, stream>>>(args)` into
// `lrsmc_emu::launch(...)` and `extern __shared__ T name[];` into a pointer to the launch's
// dynamic shared memory.
//
// Model: the blocks of a grid run one after another in a random order; each thread of a block
// is a fiber, run until it reaches a barrier (or a warp shuffle) or returns, and the runnable
// threads are resumed in a fresh random order after each barrier, so a missing __syncthreads
// changes results; a barrier that cannot complete is reported. __shared__ variables are
// function-local statics: one copy, reused block after block, never cleared (the device's
// shared memory starts with whatever the last block left, too).
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

// Device code calls the float and double overloads unqualified, as CUDA's headers allow.
using std::abs;
using std::ceil;
using std::exp;
using std::expm1;
using std::fabs;
using std::floor;
using std::fma;
using std::fmax;
using std::fmin;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::log;
using std::log1p;
using std::pow;
using std::sqrt;
using std::tanh;

// CUDA's integer and floating min/max overloads in the global namespace.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a < b ? b : a; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a < b ? b : a; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a < b ? b : a; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

namespace lrsmc_emu {

struct Block;

/// What a kernel thread knows about itself (threadIdx, blockIdx, blockDim, gridDim).
struct ThreadState {
  dim3 thread_idx{0, 0, 0};
  dim3 block_idx{0, 0, 0};
  dim3 block_dim{0, 0, 0};
  dim3 grid_dim{0, 0, 0};
  int linear = 0;  // linear thread index in the block
  Block* block = nullptr;
};
inline thread_local ThreadState current_thread;

/// Launch geometry as written between <<< and >>>.
struct LaunchConfig {
  dim3 grid, block;
  std::size_t shared = 0;
  cudaStream_t stream = nullptr;
  LaunchConfig(dim3 g, dim3 b, std::size_t s = 0, cudaStream_t st = nullptr)
      : grid(g), block(b), shared(s), stream(st) {}
};

/// Runs (or, on a capturing stream, records) `body` once per thread of every block.
void launch_grid(const LaunchConfig& config, const char* name, const void* function,
                 std::function<void()> body);

void sync_threads();
int sync_threads_or(int predicate);
/// Lane exchange among the threads of `mask` in this thread's warp: writes `bytes` of `value`,
/// waits for the group, reads lane `source_lane`'s bytes into `result`, waits again.
void warp_exchange(unsigned mask, const void* value, void* result, std::size_t bytes,
                   int source_lane);
/// The current block's dynamic shared memory (extern __shared__).
void* dynamic_shared_memory();

template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}

template <typename... Parameters, typename... Arguments>
void launch(const LaunchConfig& config, const char* name, void (*kernel)(Parameters...),
            Arguments&&... arguments) {
  // Kernel arguments are copied at the launch, as the device does.
  std::tuple<std::decay_t<Parameters>...> copied(std::forward<Arguments>(arguments)...);
  launch_grid(config, name, reinterpret_cast<const void*>(kernel),
              [kernel, copied]() { std::apply(kernel, copied); });
}

}  // namespace lrsmc_emu

#define threadIdx (::lrsmc_emu::current_thread.thread_idx)
#define blockIdx (::lrsmc_emu::current_thread.block_idx)
#define blockDim (::lrsmc_emu::current_thread.block_dim)
#define gridDim (::lrsmc_emu::current_thread.grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { ::lrsmc_emu::sync_threads(); }
inline int __syncthreads_or(int predicate) { return ::lrsmc_emu::sync_threads_or(predicate); }

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  static_assert(std::is_trivially_copyable_v<T>, "__shfl_xor_sync: trivially copyable values only");
  const int lane = ::lrsmc_emu::current_thread.linear % warpSize;
  const int segment = lane / width * width;
  const int source = segment + ((lane - segment) ^ lane_mask) % width;
  T result;
  ::lrsmc_emu::warp_exchange(mask, &value, &result, sizeof(T), source);
  return result;
}

/// One grid runs at a time, and its threads are fibers of one host thread that switch only at
/// barriers: a read-modify-write is already atomic.
template <typename T>
T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}

// Correctly rounded double arithmetic that is never fused with its neighbours, as the device's
// intrinsics are: the kernels are compiled with FMA contraction (-ffp-contract=fast, as nvcc's
// -fmad=true), so the operands and the result pass through an empty asm barrier — a __dmul_rn
// product is never fused into the addition that uses it, nor does __dadd_rn absorb a product.
// A kernel that loses one where it matters rounds differently from the CPU engines.
namespace lrsmc_emu {
inline double rounded(double value) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+x"(value));
#elif defined(__aarch64__)
  __asm__("" : "+w"(value));
#else
  volatile double copy = value;
  value = copy;
#endif
  return value;
}
}  // namespace lrsmc_emu
inline double __dadd_rn(double a, double b) {
  return lrsmc_emu::rounded(lrsmc_emu::rounded(a) + lrsmc_emu::rounded(b));
}
inline double __dmul_rn(double a, double b) {
  return lrsmc_emu::rounded(lrsmc_emu::rounded(a) * lrsmc_emu::rounded(b));
}
inline double __ddiv_rn(double a, double b) {
  return lrsmc_emu::rounded(lrsmc_emu::rounded(a) / lrsmc_emu::rounded(b));
}
