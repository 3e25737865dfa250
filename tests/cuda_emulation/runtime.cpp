// CPU emulation of the CUDA runtime for the LRSMC_CUDA_EMULATION test build
// (tests/cuda_emulation/README.md). One emulated device:
//  - device memory is host memory, registered so that copies and memsets are checked against
//    the allocation they touch (wrong direction, out of bounds, host pointer for a device one),
//    and filled with 0xFF bytes (NaN) when allocated, as the device gives no zeros either;
//    LRSMC_EMULATED_DEVICE_MEMORY sets its size in bytes (default 4 GiB), and
//    LRSMC_EMULATED_PROCESSORS the multiprocessors it reports (default 132);
//  - work on a stream is queued and runs, in order, on the calling thread when the host
//    synchronises with it (stream, event or device synchronisation, a synchronous copy on the
//    legacy stream, cudaFree), with the legacy default stream ordered against the blocking
//    streams only; a host that reads a result or reuses a buffer too early sees what a GPU
//    would let it see; a stream being captured records work instead and a graph replays it;
//    the calls the device forbids while this thread captures (synchronous copies and memsets,
//    allocation, synchronisation, the legacy default stream) fail and invalidate the capture;
//  - a kernel launch is checked as the device checks it (block size, grid size, dynamic shared
//    memory against the function's limit: 48 KB unless raised with cudaFuncSetAttribute, up to
//    227 KB, both less the static shared memory every kernel reports, LRSMC_EMULATED_STATIC_SHARED
//    bytes), then its blocks run one after another in a random order, each thread of a block
//    a fiber (Boost.Context) resumed in a random order between barriers.
// A kernel thread that throws is reported on stderr and fails the launch with
// cudaErrorLaunchFailure at the next synchronisation; a barrier that cannot complete (some
// threads wait at __syncthreads while others wait at a shuffle) is reported and aborts.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/context/fiber.hpp>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#include <sys/mman.h>
#include <unistd.h>

#include "lrsmc_emulation/device.hpp"

// --- handles ----------------------------------------------------------------------------------
struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};
struct CUstream_st;
struct CUevent_st {
  std::chrono::steady_clock::time_point when{};
  bool recorded = false;
  CUstream_st* stream = nullptr;  // where it was last recorded
};
struct CUstream_st {
  bool non_blocking = false;                    // cudaStreamNonBlocking: no implicit order
  std::vector<std::function<void()>> pending;   // enqueued, not yet run
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id capturing_thread{};
  std::vector<std::function<void()>> captured;
};

namespace lrsmc_emu {
namespace {

constexpr int emulated_threads_per_processor = 2048;
constexpr std::size_t default_shared_limit = 48 * 1024;
constexpr std::size_t optin_shared_limit = 227 * 1024;
constexpr std::size_t allocation_alignment = 256;

std::size_t environment_size(const char* name, std::size_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || value == 0) {
    std::fprintf(stderr, "lrsmc CUDA emulation: %s=%s is not a positive integer; using %zu\n",
                 name, text, fallback);
    return fallback;
  }
  return static_cast<std::size_t>(value);
}

/// Streaming multiprocessors reported (default an H100's 132); fewer shrink the grids sized
/// from it, such as the fp32 peak measurement's, for smoke runs of the benchmarks.
int emulated_processors() {
  static const int processors = int(environment_size("LRSMC_EMULATED_PROCESSORS", 132));
  return processors;
}

std::size_t device_capacity() {
  static const std::size_t capacity =
      environment_size("LRSMC_EMULATED_DEVICE_MEMORY", std::size_t(4) << 30);
  return capacity;
}


// --- errors -----------------------------------------------------------------------------------
thread_local cudaError_t last_error = cudaSuccess;
std::atomic<int> sticky_error{cudaSuccess};  // a failed kernel, reported at synchronisation

cudaError_t fail(cudaError_t error, const char* call, const std::string& why = {}) {
  if (!why.empty()) std::fprintf(stderr, "lrsmc CUDA emulation: %s: %s\n", call, why.c_str());
  last_error = error;
  return error;
}

cudaError_t take_sticky() {
  const int error = sticky_error.load();
  if (error != cudaSuccess) last_error = cudaError_t(error);
  return cudaError_t(error);
}

// --- memory registry --------------------------------------------------------------------------
enum class Space { device, pinned };
struct Allocation {
  std::size_t bytes;
  Space space;
};
std::mutex memory_mutex;
std::map<std::uintptr_t, Allocation> allocations;  // by start address
std::size_t device_bytes_in_use = 0;

/// The allocation holding [pointer, pointer + bytes), or null when `pointer` is in none.
/// `overflow` is set when it starts in one but runs past its end.
const Allocation* find_allocation(const void* pointer, std::size_t bytes, bool& overflow,
                                  std::uintptr_t& start) {
  overflow = false;
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  auto next = allocations.upper_bound(address);
  if (next == allocations.begin()) return nullptr;
  const auto& [base, allocation] = *std::prev(next);
  const std::size_t room = allocation.bytes == 0 ? 1 : allocation.bytes;
  if (address >= base + room) return nullptr;
  start = base;
  overflow = address + bytes > base + allocation.bytes;
  return &allocation;
}

/// Checks that [pointer, pointer + bytes) is where a copy of `kind` expects it.
cudaError_t check_range(const char* call, const char* side, const void* pointer, std::size_t bytes,
                        bool want_device) {
  const std::lock_guard<std::mutex> lock(memory_mutex);
  bool overflow = false;
  std::uintptr_t start = 0;
  const Allocation* allocation = find_allocation(pointer, bytes, overflow, start);
  const bool on_device = allocation != nullptr && allocation->space == Space::device;
  char text[256];
  if (want_device && !on_device) {
    std::snprintf(text, sizeof text, "%s pointer %p is not device memory from cudaMalloc", side,
                  pointer);
    return fail(cudaErrorInvalidValue, call, text);
  }
  if (!want_device && on_device) {
    std::snprintf(text, sizeof text, "%s pointer %p is device memory, expected host memory", side,
                  pointer);
    return fail(cudaErrorInvalidValue, call, text);
  }
  if (allocation != nullptr && overflow) {
    std::snprintf(text, sizeof text,
                  "%s range of %zu bytes at offset %zu runs past its allocation of %zu bytes",
                  side, bytes, std::size_t(reinterpret_cast<std::uintptr_t>(pointer) - start),
                  allocation->bytes);
    return fail(cudaErrorInvalidValue, call, text);
  }
  return cudaSuccess;
}

// --- streams and capture ----------------------------------------------------------------------
CUstream_st legacy_stream_object;
std::mutex stream_mutex;
std::vector<CUstream_st*> live_streams;
thread_local int captures_on_this_thread = 0;  // non-relaxed captures begun by this thread

CUstream_st* resolve(cudaStream_t stream) { return stream ? stream : &legacy_stream_object; }

void invalidate_captures_of_this_thread() {
  const std::lock_guard<std::mutex> lock(stream_mutex);
  for (CUstream_st* s : live_streams)
    if (s->capturing && s->capturing_thread == std::this_thread::get_id()) s->invalidated = true;
}

/// A call the device refuses while this thread captures a stream (it could synchronise).
cudaError_t refuse_if_capturing(const char* call) {
  if (captures_on_this_thread == 0) return cudaSuccess;
  invalidate_captures_of_this_thread();
  return fail(cudaErrorStreamCaptureUnsupported, call,
              "not allowed while this thread captures a stream into a graph");
}

/// Runs the work queued on `s`, in order (stopping at a failed kernel, as the device does).
void flush(CUstream_st* s) {
  std::vector<std::function<void()>> work;
  work.swap(s->pending);
  for (const auto& item : work) {
    if (sticky_error.load() != cudaSuccess) return;
    item();
  }
}

std::vector<CUstream_st*> streams_snapshot() {
  const std::lock_guard<std::mutex> lock(stream_mutex);
  return live_streams;
}

/// What the legacy default stream waits for: the earlier work of every blocking stream.
void flush_blocking_streams() {
  for (CUstream_st* s : streams_snapshot())
    if (!s->non_blocking) flush(s);
}

void flush_all() {
  flush(&legacy_stream_object);
  for (CUstream_st* s : streams_snapshot()) flush(s);
}

/// Queues work on a stream; it runs when the host synchronises with it (or with the device),
/// not before: a host that reads results, or reuses a buffer an asynchronous copy still reads,
/// without synchronising sees what a GPU would let it see. The legacy default stream is
/// ordered with the blocking streams (each waits for the other's earlier work);
/// cudaStreamNonBlocking streams are ordered with nothing. On a capturing stream the work is
/// recorded into the graph instead.
cudaError_t enqueue(cudaStream_t stream, const char* call, std::function<void()> work) {
  CUstream_st* s = resolve(stream);
  if (s->capturing) {
    if (s->invalidated) return fail(cudaErrorStreamCaptureInvalidated, call);
    s->captured.push_back(std::move(work));
    return cudaSuccess;
  }
  if (stream == nullptr && captures_on_this_thread > 0) {
    invalidate_captures_of_this_thread();
    return fail(cudaErrorStreamCaptureImplicit, call,
                "work on the legacy default stream while this thread captures another stream");
  }
  const cudaError_t sticky = take_sticky();
  if (sticky != cudaSuccess) return sticky;
  if (stream == nullptr)
    flush_blocking_streams();
  else if (!s->non_blocking)
    flush(&legacy_stream_object);
  s->pending.push_back(std::move(work));
  return cudaSuccess;
}

/// A synchronous call on the legacy default stream (cudaMemcpy, cudaMemcpy2D): waits for the
/// work it is ordered after, then runs on the host.
cudaError_t synchronise_legacy() {
  flush_blocking_streams();
  flush(&legacy_stream_object);
  return take_sticky();
}

bool is_pageable(const void* pointer) {
  const std::lock_guard<std::mutex> lock(memory_mutex);
  bool overflow = false;
  std::uintptr_t start = 0;
  return find_allocation(pointer, 1, overflow, start) == nullptr;
}

// --- fibers -----------------------------------------------------------------------------------
/// Where a stack lies. AddressSanitizer must be told about every switch between the
/// scheduler's stack and a fiber's (LRSMC_SANITIZE=ON): start before leaving a stack, finish
/// after arriving on one.
struct StackSpan {
  const void* bottom = nullptr;
  std::size_t size = 0;
};

/// Stacks for the kernel threads' fibers, reused from block to block (no system call per
/// block), each with a guard page below it so that an overflow faults instead of corrupting.
class StackPool {
 public:
  static constexpr std::size_t stack_bytes = 256 * 1024;

  boost::context::stack_context allocate() {
    const std::size_t page = page_bytes();
    void* base = nullptr;
    if (!free_.empty()) {
      base = free_.back();
      free_.pop_back();
    } else {
      base = ::mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
      ::mprotect(base, page, PROT_NONE);
    }
    boost::context::stack_context stack;
    stack.size = stack_bytes;
    stack.sp = static_cast<char*>(base) + page + stack_bytes;
    return stack;
  }
  void deallocate(boost::context::stack_context& stack) {
    free_.push_back(static_cast<char*>(stack.sp) - stack_bytes - page_bytes());
  }

 private:
  static std::size_t page_bytes() {
    static const std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
    return page;
  }
  std::vector<void*> free_;
};

/// The allocator boost::context copies into each fiber: a reference to the pool.
struct PooledStack {
  StackPool* pool;
  StackSpan* span;  // where the stack's extent is written, for AddressSanitizer
  boost::context::stack_context allocate() {
    const boost::context::stack_context stack = pool->allocate();
    *span = {static_cast<const char*>(stack.sp) - stack.size, stack.size};
    return stack;
  }
  void deallocate(boost::context::stack_context& stack) { pool->deallocate(stack); }
};

enum class Wait { none, block_barrier, warp_barrier, finished };

#if defined(__SANITIZE_ADDRESS__)
void start_switch(void** fake_stack, const StackSpan& to) {
  __sanitizer_start_switch_fiber(fake_stack, to.bottom, to.size);
}
void finish_switch(void* fake_stack, StackSpan* from) {
  __sanitizer_finish_switch_fiber(fake_stack, from ? &from->bottom : nullptr,
                                  from ? &from->size : nullptr);
}
#else
void start_switch(void**, const StackSpan&) {}
void finish_switch(void*, StackSpan*) {}
#endif

/// One kernel thread: a fiber, its coordinates and what it waits for.
struct KernelThread {
  boost::context::fiber fiber;       // the kernel thread, while it is suspended
  boost::context::fiber scheduler;   // the scheduler, while the kernel thread runs
  ThreadState state;
  Wait wait = Wait::none;
  unsigned mask = 0;                 // warp barrier: the lanes it waits for
  int vote_calls = 0;                // __syncthreads_or calls so far in this block
  StackSpan stack;                   // this fiber's stack
  StackSpan scheduler_stack;         // the stack it switches back to
  void* fake_stack = nullptr;        // AddressSanitizer's state while switched out
};
thread_local KernelThread* running_thread = nullptr;

/// Suspends the running kernel thread until the scheduler releases what it waits for.
void suspend(Wait wait, unsigned mask) {
  KernelThread& self = *running_thread;
  self.wait = wait;
  self.mask = mask;
  start_switch(&self.fake_stack, self.scheduler_stack);
  self.scheduler = std::move(self.scheduler).resume();
  finish_switch(self.fake_stack, &self.scheduler_stack);
}

/// Scheduling order: a fresh random order of the runnable threads at every barrier, so that
/// a missing barrier gives different results from run to run instead of hiding behind one
/// fixed order. LRSMC_EMULATED_SCHEDULE_SEED sets the first seed.
std::uint64_t schedule_state = 0;
std::uint64_t next_random() {
  if (schedule_state == 0)
    schedule_state = environment_size("LRSMC_EMULATED_SCHEDULE_SEED", 0x9E3779B97F4A7C15ull);
  schedule_state ^= schedule_state << 13;
  schedule_state ^= schedule_state >> 7;
  schedule_state ^= schedule_state << 17;
  return schedule_state;
}

}  // namespace

// --- blocks -----------------------------------------------------------------------------------
struct Block {
  explicit Block(int count) : threads(std::size_t(count)), lanes(std::size_t(count)) {}

  std::vector<KernelThread> threads;
  std::map<int, int> votes;  // __syncthreads_or: call number → any predicate true
  struct Lane {
    alignas(16) unsigned char bytes[16];
  };
  std::vector<Lane> lanes;
  std::vector<unsigned char>* shared = nullptr;
};

void sync_threads() { suspend(Wait::block_barrier, 0); }

int sync_threads_or(int predicate) {
  Block& block = *current_thread.block;
  const int call = running_thread->vote_calls++;
  int& vote = block.votes[call];
  if (predicate) vote = 1;
  suspend(Wait::block_barrier, 0);
  return block.votes[call];
}

void warp_exchange(unsigned mask, const void* value, void* result, std::size_t bytes,
                   int source_lane) {
  const ThreadState& self = current_thread;
  Block& block = *self.block;
  const int lane = self.linear % 32, warp = self.linear / 32;
  if (bytes > sizeof(Block::Lane) || !(mask >> lane & 1u) || source_lane < 0 ||
      source_lane > 31 || !(mask >> source_lane & 1u)) {
    std::fprintf(stderr,
                 "lrsmc CUDA emulation: __shfl_xor_sync in block (%u, %u, %u), thread %d: lane %d "
                 "reads lane %d under mask 0x%08x\n",
                 self.block_idx.x, self.block_idx.y, self.block_idx.z, self.linear, lane,
                 source_lane, mask);
    std::abort();
  }
  std::memcpy(block.lanes[std::size_t(self.linear)].bytes, value, bytes);
  suspend(Wait::warp_barrier, mask);
  std::memcpy(result, block.lanes[std::size_t(warp * 32 + source_lane)].bytes, bytes);
  suspend(Wait::warp_barrier, mask);
}

void* dynamic_shared_memory() {
  std::vector<unsigned char>* shared = current_thread.block->shared;
  return shared->empty() ? nullptr : shared->data();
}

namespace {

std::mutex attribute_mutex;
std::map<const void*, std::size_t> dynamic_shared_limits;

/// The static shared memory every emulated kernel reports (its __shared__ variables and CUB
/// storage, which the emulation cannot measure): LRSMC_EMULATED_STATIC_SHARED bytes, 4608 by
/// default, above every particle kernel's on sm_90 (2432 to 4464 bytes, as ptxas reports). As on a device it counts
/// against the 48 KB default and the opt-in limit, so a kernel whose dynamic shared memory fits
/// alone but not beside it must opt in; tests pin this number (kernels' static_shared_bytes).
std::size_t static_shared_bytes() {
  static const std::size_t bytes = environment_size("LRSMC_EMULATED_STATIC_SHARED", 4608);
  return bytes;
}

std::size_t dynamic_shared_limit(const void* function) {
  const std::lock_guard<std::mutex> lock(attribute_mutex);
  const auto found = dynamic_shared_limits.find(function);
  return found == dynamic_shared_limits.end() ? default_shared_limit - static_shared_bytes()
                                              : found->second;
}

[[noreturn]] void report_deadlock(const std::string& name, const Block& block) {
  int at_block = 0, at_warp = 0, finished = 0;
  for (const KernelThread& thread : block.threads) {
    at_block += thread.wait == Wait::block_barrier;
    at_warp += thread.wait == Wait::warp_barrier;
    finished += thread.wait == Wait::finished;
  }
  const dim3 index = block.threads.front().state.block_idx;
  std::fprintf(stderr,
               "lrsmc CUDA emulation: kernel %s, block (%u, %u, %u) cannot go on: %d threads at "
               "__syncthreads, %d at a warp shuffle whose lanes never all arrive, %d finished\n",
               name.c_str(), index.x, index.y, index.z, at_block, at_warp, finished);
  std::abort();
}

/// Runs one block: every thread a fiber, run in random order until each reaches a barrier or
/// returns; a warp shuffle's lanes go on once all of them have arrived, a __syncthreads once
/// every thread that has not returned has arrived.
void run_block(Block& block, const std::string& name, const std::function<void()>& body,
               StackPool& stacks, std::string& failure) {
  const int count = int(block.threads.size());
  for (KernelThread& thread : block.threads) {
    thread.wait = Wait::none;
    thread.fiber = boost::context::fiber(
        std::allocator_arg, PooledStack{&stacks, &thread.stack},
        [&thread, &body, &failure](boost::context::fiber&& scheduler) {
          finish_switch(nullptr, &thread.scheduler_stack);
          thread.scheduler = std::move(scheduler);
          try {
            body();
          } catch (const std::exception& error) {
            if (failure.empty()) failure = error.what();
          } catch (...) {
            if (failure.empty()) failure = "unknown exception";
          }
          thread.wait = Wait::finished;
          start_switch(nullptr, thread.scheduler_stack);  // leaves this stack for good
          return std::move(thread.scheduler);
        });
  }
  std::vector<int> order;
  order.reserve(std::size_t(count));
  for (;;) {
    order.clear();
    for (int t = 0; t < count; ++t)
      if (block.threads[std::size_t(t)].wait == Wait::none) order.push_back(t);
    if (!order.empty()) {
      for (std::size_t i = order.size(); i > 1; --i)
        std::swap(order[i - 1], order[std::size_t(next_random() % i)]);
      for (const int t : order) {
        KernelThread& thread = block.threads[std::size_t(t)];
        current_thread = thread.state;
        running_thread = &thread;
        void* fake_stack = nullptr;
        start_switch(&fake_stack, thread.stack);
        thread.fiber = std::move(thread.fiber).resume();
        finish_switch(fake_stack, nullptr);
      }
      running_thread = nullptr;
      continue;
    }
    // Nothing runnable: release the warp groups whose lanes have all arrived, else the block
    // barrier once every live thread waits there.
    bool released = false;
    for (int t = 0; t < count; ++t) {
      const KernelThread& thread = block.threads[std::size_t(t)];
      if (thread.wait != Wait::warp_barrier) continue;
      const int warp = t / 32;
      bool complete = true;
      for (int lane = 0; lane < 32 && complete; ++lane) {
        if (!(thread.mask >> lane & 1u)) continue;
        const int other = warp * 32 + lane;
        complete = other < count && block.threads[std::size_t(other)].wait == Wait::warp_barrier &&
                   block.threads[std::size_t(other)].mask == thread.mask;
      }
      if (!complete) continue;
      for (int lane = 0; lane < 32; ++lane)
        if (thread.mask >> lane & 1u) block.threads[std::size_t(warp * 32 + lane)].wait = Wait::none;
      released = true;
    }
    if (released) continue;
    int live = 0, at_barrier = 0;
    for (const KernelThread& thread : block.threads) {
      live += thread.wait != Wait::finished;
      at_barrier += thread.wait == Wait::block_barrier;
    }
    if (live == 0) break;
    if (at_barrier != live) report_deadlock(name, block);
    for (KernelThread& thread : block.threads)
      if (thread.wait == Wait::block_barrier) thread.wait = Wait::none;
  }
  for (KernelThread& thread : block.threads) thread.fiber = {};
}

/// Runs every block of the grid, one after another, on the calling thread.
void run_grid(const LaunchConfig& config, const std::string& name,
              const std::function<void()>& body) {
  // Blocks share the function-local statics that emulate __shared__: one grid at a time.
  static std::mutex grid_mutex;
  const std::lock_guard<std::mutex> grid_lock(grid_mutex);
  static StackPool stacks;
  const int threads = int(config.block.x * config.block.y * config.block.z);
  const long long blocks =
      static_cast<long long>(config.grid.x) * config.grid.y * static_cast<long long>(config.grid.z);
  std::vector<unsigned char> shared(config.shared);
  Block block(threads);
  block.shared = &shared;
  std::string failure;
  const ThreadState caller = current_thread;
  // Blocks in a random order (LRSMC_EMULATED_SCHEDULE_SEED): a GPU runs them concurrently in
  // any order, so a kernel must not depend on one block finishing before another starts.
  std::vector<long long> order(static_cast<std::size_t>(blocks));
  for (long long index = 0; index < blocks; ++index) order[std::size_t(index)] = index;
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[std::size_t(next_random() % i)]);
  for (const long long index : order) {
    if (!failure.empty()) break;
    std::fill(shared.begin(), shared.end(), static_cast<unsigned char>(0xFF));
    block.votes.clear();
    for (KernelThread& thread : block.threads) thread.vote_calls = 0;
    const dim3 block_idx(unsigned(index % config.grid.x),
                         unsigned(index / config.grid.x % config.grid.y),
                         unsigned(index / (static_cast<long long>(config.grid.x) * config.grid.y)));
    for (int t = 0; t < threads; ++t) {
      ThreadState& state = block.threads[std::size_t(t)].state;
      state.block_dim = config.block;
      state.grid_dim = config.grid;
      state.linear = t;
      state.block_idx = block_idx;
      state.thread_idx = dim3(unsigned(t) % config.block.x, unsigned(t) / config.block.x % config.block.y,
                              unsigned(t) / (config.block.x * config.block.y));
      state.block = &block;
    }
    run_block(block, name, body, stacks, failure);
  }
  current_thread = caller;
  if (!failure.empty()) {
    std::fprintf(stderr, "lrsmc CUDA emulation: kernel %s threw: %s\n", name.c_str(),
                 failure.c_str());
    sticky_error.store(cudaErrorLaunchFailure);
  }
}

}  // namespace

void launch_grid(const LaunchConfig& config, const char* name, const void* function,
                 std::function<void()> body) {
  const long long threads =
      static_cast<long long>(config.block.x) * config.block.y * config.block.z;
  char why[256];
  if (threads < 1 || threads > 1024 || config.block.z > 64) {
    std::snprintf(why, sizeof why, "%s: block (%u, %u, %u) is not a valid block size", name,
                  config.block.x, config.block.y, config.block.z);
    fail(cudaErrorInvalidConfiguration, "kernel launch", why);
    return;
  }
  if (config.grid.x < 1 || config.grid.y < 1 || config.grid.z < 1 || config.grid.x > 2147483647u ||
      config.grid.y > 65535u || config.grid.z > 65535u) {
    std::snprintf(why, sizeof why, "%s: grid (%u, %u, %u) is not a valid grid size", name,
                  config.grid.x, config.grid.y, config.grid.z);
    fail(cudaErrorInvalidConfiguration, "kernel launch", why);
    return;
  }
  const std::size_t limit = dynamic_shared_limit(function);
  if (config.shared > limit) {
    std::snprintf(why, sizeof why, "%s: %zu bytes of dynamic shared memory over the limit of %zu",
                  name, config.shared, limit);
    fail(cudaErrorInvalidValue, "kernel launch", why);
    return;
  }
  const std::string kernel = name;
  (void)enqueue(config.stream, name,
                [config, kernel, body = std::move(body)]() { run_grid(config, kernel, body); });
}

cudaError_t enqueue_host_work(cudaStream_t stream, const char* name, std::function<void()> work) {
  return enqueue(stream, name, std::move(work));
}

cudaError_t check_device_range(const char* call, const char* argument, const void* pointer,
                               std::size_t bytes) {
  return check_range(call, argument, pointer, bytes, true);
}

cudaError_t function_attributes(cudaFuncAttributes* attributes, const void* function) {
  if (attributes == nullptr || function == nullptr)
    return fail(cudaErrorInvalidValue, "cudaFuncGetAttributes");
  *attributes = cudaFuncAttributes{};
  attributes->maxThreadsPerBlock = 1024;
  attributes->sharedSizeBytes = static_shared_bytes();
  attributes->maxDynamicSharedSizeBytes = int(dynamic_shared_limit(function));
  return cudaSuccess;
}

cudaError_t set_function_attribute(const void* function, cudaFuncAttribute attribute, int value) {
  const std::size_t most = optin_shared_limit - static_shared_bytes();
  if (function == nullptr || attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      std::size_t(value) > most)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute",
                "value " + std::to_string(value) + " out of range (0 to " + std::to_string(most) +
                    " bytes beside " + std::to_string(static_shared_bytes()) + " static)");
  const std::lock_guard<std::mutex> lock(attribute_mutex);
  dynamic_shared_limits[function] = std::size_t(value);
  return cudaSuccess;
}

}  // namespace lrsmc_emu

using lrsmc_emu::fail;

// --- devices ----------------------------------------------------------------------------------
// LRSMC_EMULATED_DEVICES (default 1) devices are reported; they are names for one emulated
// device, so that processes of a shared fit (one device each) can run on one machine.
namespace lrsmc_emu {
namespace {
int emulated_devices() {
  static const int devices = int(environment_size("LRSMC_EMULATED_DEVICES", 1));
  return devices;
}
thread_local int current_device = 0;
}  // namespace
}  // namespace lrsmc_emu
cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount");
  *count = lrsmc_emu::emulated_devices();
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= lrsmc_emu::emulated_devices())
    return fail(cudaErrorInvalidDevice, "cudaSetDevice");
  lrsmc_emu::current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDevice");
  *device = lrsmc_emu::current_device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int device) {
  if (properties == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties");
  if (device < 0 || device >= lrsmc_emu::emulated_devices())
    return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties");
  *properties = cudaDeviceProp{};
  std::snprintf(properties->name, sizeof properties->name, "CPU emulation of a CUDA device");
  properties->totalGlobalMem = lrsmc_emu::device_capacity();
  properties->sharedMemPerBlock = lrsmc_emu::default_shared_limit;
  properties->sharedMemPerBlockOptin = lrsmc_emu::optin_shared_limit;
  properties->multiProcessorCount = lrsmc_emu::emulated_processors();
  properties->maxThreadsPerBlock = 1024;
  properties->maxThreadsPerMultiProcessor = lrsmc_emu::emulated_threads_per_processor;
  properties->warpSize = 32;
  properties->major = 9;
  properties->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (value == nullptr) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute");
  if (device < 0 || device >= lrsmc_emu::emulated_devices())
    return fail(cudaErrorInvalidDevice, "cudaDeviceGetAttribute");
  switch (attribute) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(lrsmc_emu::default_shared_limit); return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = lrsmc_emu::emulated_processors(); return cudaSuccess;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = lrsmc_emu::emulated_threads_per_processor;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(lrsmc_emu::optin_shared_limit); return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute");
}
cudaError_t cudaDeviceSynchronize() {
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing("cudaDeviceSynchronize");
  if (refused != cudaSuccess) return refused;
  lrsmc_emu::flush_all();
  return lrsmc_emu::take_sticky();
}
cudaError_t cudaMemGetInfo(std::size_t* free_bytes, std::size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return fail(cudaErrorInvalidValue, "cudaMemGetInfo");
  const std::lock_guard<std::mutex> lock(lrsmc_emu::memory_mutex);
  *total_bytes = lrsmc_emu::device_capacity();
  *free_bytes = *total_bytes - std::min(*total_bytes, lrsmc_emu::device_bytes_in_use);
  return cudaSuccess;
}

// --- errors -----------------------------------------------------------------------------------
cudaError_t cudaGetLastError() {
  const int sticky = lrsmc_emu::sticky_error.load();
  if (sticky != cudaSuccess) return cudaError_t(sticky);
  const cudaError_t error = lrsmc_emu::last_error;
  lrsmc_emu::last_error = cudaSuccess;
  return error;
}
cudaError_t cudaPeekAtLastError() {
  const int sticky = lrsmc_emu::sticky_error.load();
  return sticky != cudaSuccess ? cudaError_t(sticky) : lrsmc_emu::last_error;
}
const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    default: return cudaGetErrorName(error);
  }
}

// --- memory -----------------------------------------------------------------------------------
namespace {
cudaError_t allocate(void** pointer, std::size_t bytes, lrsmc_emu::Space space, const char* call) {
  if (pointer == nullptr) return fail(cudaErrorInvalidValue, call);
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing(call);
  if (refused != cudaSuccess) return refused;
  *pointer = nullptr;
  if (bytes == 0) return cudaSuccess;
  {
    const std::lock_guard<std::mutex> lock(lrsmc_emu::memory_mutex);
    if (space == lrsmc_emu::Space::device &&
        bytes > lrsmc_emu::device_capacity() - std::min(lrsmc_emu::device_capacity(),
                                                         lrsmc_emu::device_bytes_in_use))
      return fail(cudaErrorMemoryAllocation, call);
  }
  void* memory = ::operator new(bytes, std::align_val_t(lrsmc_emu::allocation_alignment), std::nothrow);
  if (memory == nullptr) return fail(cudaErrorMemoryAllocation, call);
  std::memset(memory, 0xFF, bytes);  // the device's memory is not zeroed either
  const std::lock_guard<std::mutex> lock(lrsmc_emu::memory_mutex);
  lrsmc_emu::allocations[reinterpret_cast<std::uintptr_t>(memory)] = {bytes, space};
  if (space == lrsmc_emu::Space::device) lrsmc_emu::device_bytes_in_use += bytes;
  *pointer = memory;
  return cudaSuccess;
}

cudaError_t release(void* pointer, lrsmc_emu::Space space, const char* call) {
  if (pointer == nullptr) return cudaSuccess;
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing(call);
  if (refused != cudaSuccess) return refused;
  lrsmc_emu::flush_all();  // cudaFree and cudaFreeHost synchronise the device
  {
    const std::lock_guard<std::mutex> lock(lrsmc_emu::memory_mutex);
    const auto found = lrsmc_emu::allocations.find(reinterpret_cast<std::uintptr_t>(pointer));
    if (found == lrsmc_emu::allocations.end() || found->second.space != space)
      return fail(cudaErrorInvalidValue, call, "pointer was not allocated by the matching call");
    if (space == lrsmc_emu::Space::device) lrsmc_emu::device_bytes_in_use -= found->second.bytes;
    lrsmc_emu::allocations.erase(found);
  }
  ::operator delete(pointer, std::align_val_t(lrsmc_emu::allocation_alignment));
  return cudaSuccess;
}

cudaError_t check_copy(const char* call, void* destination, const void* source, std::size_t bytes,
                       cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (destination == nullptr || source == nullptr)
    return fail(cudaErrorInvalidValue, call, "null pointer");
  bool destination_device = false, source_device = false;
  switch (kind) {
    case cudaMemcpyHostToHost: break;
    case cudaMemcpyHostToDevice: destination_device = true; break;
    case cudaMemcpyDeviceToHost: source_device = true; break;
    case cudaMemcpyDeviceToDevice: destination_device = source_device = true; break;
    case cudaMemcpyDefault: return cudaSuccess;
  }
  cudaError_t status = lrsmc_emu::check_range(call, "destination", destination, bytes, destination_device);
  if (status == cudaSuccess)
    status = lrsmc_emu::check_range(call, "source", source, bytes, source_device);
  return status;
}
}  // namespace

cudaError_t cudaMalloc(void** pointer, std::size_t bytes) {
  return allocate(pointer, bytes, lrsmc_emu::Space::device, "cudaMalloc");
}
cudaError_t cudaFree(void* pointer) { return release(pointer, lrsmc_emu::Space::device, "cudaFree"); }
cudaError_t cudaHostAlloc(void** pointer, std::size_t bytes, unsigned int) {
  return allocate(pointer, bytes, lrsmc_emu::Space::pinned, "cudaHostAlloc");
}
cudaError_t cudaMallocHost(void** pointer, std::size_t bytes) {
  return allocate(pointer, bytes, lrsmc_emu::Space::pinned, "cudaMallocHost");
}
cudaError_t cudaFreeHost(void* pointer) {
  return release(pointer, lrsmc_emu::Space::pinned, "cudaFreeHost");
}

cudaError_t cudaMemcpy(void* destination, const void* source, std::size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing("cudaMemcpy");
  if (refused != cudaSuccess) return refused;
  const cudaError_t checked = check_copy("cudaMemcpy", destination, source, bytes, kind);
  if (checked != cudaSuccess) return checked;
  const cudaError_t sticky = lrsmc_emu::synchronise_legacy();
  if (sticky != cudaSuccess) return sticky;
  if (bytes > 0) std::memmove(destination, source, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void* destination, std::size_t destination_pitch, const void* source,
                         std::size_t source_pitch, std::size_t width, std::size_t height,
                         cudaMemcpyKind kind) {
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing("cudaMemcpy2D");
  if (refused != cudaSuccess) return refused;
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > destination_pitch || width > source_pitch)
    return fail(cudaErrorInvalidValue, "cudaMemcpy2D", "width exceeds a pitch");
  // Each side spans (height − 1) pitches and one width.
  cudaError_t status = check_copy("cudaMemcpy2D", destination, source, 0, kind);
  const std::size_t destination_span = (height - 1) * destination_pitch + width;
  const std::size_t source_span = (height - 1) * source_pitch + width;
  const bool destination_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool source_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (status == cudaSuccess && kind != cudaMemcpyDefault)
    status = lrsmc_emu::check_range("cudaMemcpy2D", "destination", destination, destination_span,
                                    destination_device);
  if (status == cudaSuccess && kind != cudaMemcpyDefault)
    status = lrsmc_emu::check_range("cudaMemcpy2D", "source", source, source_span, source_device);
  if (status != cudaSuccess) return status;
  const cudaError_t sticky = lrsmc_emu::synchronise_legacy();
  if (sticky != cudaSuccess) return sticky;
  for (std::size_t row = 0; row < height; ++row)
    std::memmove(static_cast<unsigned char*>(destination) + row * destination_pitch,
                 static_cast<const unsigned char*>(source) + row * source_pitch, width);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* destination, const void* source, std::size_t bytes,
                            cudaMemcpyKind kind, cudaStream_t stream) {
  const cudaError_t checked = check_copy("cudaMemcpyAsync", destination, source, bytes, kind);
  if (checked != cudaSuccess) return checked;
  if (bytes == 0) return cudaSuccess;
  const bool capturing = lrsmc_emu::resolve(stream)->capturing;
  if (!capturing && lrsmc_emu::is_pageable(source)) {
    // From pageable memory the source is staged at the call: the caller may reuse it at once.
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(source), static_cast<const unsigned char*>(source) + bytes);
    return lrsmc_emu::enqueue(stream, "cudaMemcpyAsync",
                              [=] { std::memcpy(destination, staged->data(), bytes); });
  }
  const cudaError_t queued = lrsmc_emu::enqueue(
      stream, "cudaMemcpyAsync", [=] { std::memmove(destination, source, bytes); });
  if (queued != cudaSuccess || capturing || !lrsmc_emu::is_pageable(destination)) return queued;
  // Into pageable memory the call returns once the copy is done.
  lrsmc_emu::flush(lrsmc_emu::resolve(stream));
  return lrsmc_emu::take_sticky();
}
cudaError_t cudaMemset(void* pointer, int value, std::size_t bytes) {
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing("cudaMemset");
  if (refused != cudaSuccess) return refused;
  if (bytes == 0) return cudaSuccess;
  const cudaError_t checked = lrsmc_emu::check_range("cudaMemset", "destination", pointer, bytes, true);
  if (checked != cudaSuccess) return checked;
  // Asynchronous with respect to the host for device memory: queued on the legacy stream.
  return lrsmc_emu::enqueue(nullptr, "cudaMemset", [=] { std::memset(pointer, value, bytes); });
}
cudaError_t cudaMemsetAsync(void* pointer, int value, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  const cudaError_t checked =
      lrsmc_emu::check_range("cudaMemsetAsync", "destination", pointer, bytes, true);
  if (checked != cudaSuccess) return checked;
  return lrsmc_emu::enqueue(stream, "cudaMemsetAsync", [=] { std::memset(pointer, value, bytes); });
}

// --- streams ----------------------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags");
  *stream = new CUstream_st{};
  (*stream)->non_blocking = (flags & cudaStreamNonBlocking) != 0;
  const std::lock_guard<std::mutex> lock(lrsmc_emu::stream_mutex);
  lrsmc_emu::live_streams.push_back(*stream);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy");
  lrsmc_emu::flush(stream);  // its work completes before the stream goes
  {
    const std::lock_guard<std::mutex> lock(lrsmc_emu::stream_mutex);
    auto& streams = lrsmc_emu::live_streams;
    streams.erase(std::remove(streams.begin(), streams.end(), stream), streams.end());
  }
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (lrsmc_emu::resolve(stream)->capturing || lrsmc_emu::captures_on_this_thread > 0) {
    lrsmc_emu::invalidate_captures_of_this_thread();
    lrsmc_emu::resolve(stream)->invalidated = lrsmc_emu::resolve(stream)->capturing;
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamSynchronize",
                "not allowed while a stream is being captured");
  }
  lrsmc_emu::flush(lrsmc_emu::resolve(stream));
  return lrsmc_emu::take_sticky();
}
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (stream == nullptr)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture",
                "the legacy default stream cannot be captured");
  if (stream->capturing) return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture", "already capturing");
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->capturing_thread = std::this_thread::get_id();
  stream->captured.clear();
  if (mode != cudaStreamCaptureModeRelaxed) ++lrsmc_emu::captures_on_this_thread;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (graph == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture");
  *graph = nullptr;
  if (stream == nullptr || !stream->capturing)
    return fail(cudaErrorStreamCaptureUnmatched, "cudaStreamEndCapture", "the stream is not capturing");
  if (stream->capturing_thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureUnmatched, "cudaStreamEndCapture",
                "ended by another thread than the one that began it");
  stream->capturing = false;
  if (stream->mode != cudaStreamCaptureModeRelaxed) --lrsmc_emu::captures_on_this_thread;
  std::vector<std::function<void()>> work;
  work.swap(stream->captured);
  if (stream->invalidated) {
    stream->invalidated = false;
    return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture");
  }
  *graph = new CUgraph_st{std::move(work)};
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (status == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing");
  const CUstream_st* s = lrsmc_emu::resolve(stream);
  *status = !s->capturing ? cudaStreamCaptureStatusNone
            : s->invalidated ? cudaStreamCaptureStatusInvalidated
                             : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

// --- graphs -----------------------------------------------------------------------------------
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* executable, cudaGraph_t graph, unsigned long long) {
  if (executable == nullptr || graph == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate");
  *executable = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t executable, cudaStream_t stream) {
  if (executable == nullptr) return fail(cudaErrorInvalidValue, "cudaGraphLaunch");
  const std::vector<std::function<void()>> work = executable->work;
  return lrsmc_emu::enqueue(stream, "cudaGraphLaunch", [work] {
    for (const auto& item : work) {
      if (lrsmc_emu::sticky_error.load() != cudaSuccess) return;
      item();
    }
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t executable) {
  delete executable;
  return cudaSuccess;
}

// --- events -----------------------------------------------------------------------------------
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (event == nullptr) return fail(cudaErrorInvalidValue, "cudaEventCreate");
  *event = new CUevent_st{};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord");
  event->stream = lrsmc_emu::resolve(stream);
  return lrsmc_emu::enqueue(stream, "cudaEventRecord", [event] {
    event->when = std::chrono::steady_clock::now();
    event->recorded = true;
  });
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize");
  const cudaError_t refused = lrsmc_emu::refuse_if_capturing("cudaEventSynchronize");
  if (refused != cudaSuccess) return refused;
  if (event->stream != nullptr) lrsmc_emu::flush(event->stream);
  return lrsmc_emu::take_sticky();
}
cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end) {
  if (milliseconds == nullptr || start == nullptr || end == nullptr || !start->recorded ||
      !end->recorded)
    return fail(cudaErrorInvalidValue, "cudaEventElapsedTime");
  *milliseconds = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
