// CPU emulation of the CUB primitives lrsmc's kernels use (tests/cuda_emulation/README.md).
// Contracts as CUB documents them, kept strict so that misuse shows:
//  - BlockReduce: the result is defined in thread 0 only; every other thread gets a NaN-filled
//    value (all bytes 0xFF). Inputs go to permuted slots, as BlockScan's.
//  - BlockScan: every thread gets its result and the aggregate. Inputs go into the temporary
//    storage at a permuted slot and results come out of each thread's own slot, and every
//    thread clears the aggregate on entry, so reusing the storage without a __syncthreads
//    between two calls corrupts a result, as it can on the device.
//  - A collective used in a block whose size is not its BLOCK_DIM_X is reported and aborts.
//  - DeviceSegmentedSort::StableSortPairs orders keys as CUB's radix sort does (by their bits,
//    -0.0 equal to +0.0) and keeps equal keys in input order.
// Reduction and scan orders are sequential here, not CUB's trees: results agree with the
// device's to rounding, not bitwise.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "lrsmc_emulation/device.hpp"

namespace lrsmc_emu {
/// Enqueues host work on a stream (or records it into the stream's capture).
cudaError_t enqueue_host_work(cudaStream_t stream, const char* name, std::function<void()> work);
/// cudaSuccess when [pointer, pointer + bytes) lies in one cudaMalloc allocation; otherwise
/// reports the call and the argument, and returns cudaErrorInvalidValue.
cudaError_t check_device_range(const char* call, const char* argument, const void* pointer,
                               std::size_t bytes);

template <typename T>
T poisoned() {
  T value;
  std::memset(static_cast<void*>(&value), 0xFF, sizeof(T));
  return value;
}

inline int checked_linear_thread(int expected, const char* primitive) {
  const ThreadState& self = current_thread;
  const int threads = int(self.block_dim.x * self.block_dim.y * self.block_dim.z);
  if (threads != expected) {
    std::fprintf(stderr,
                 "lrsmc CUDA emulation: %s for %d threads used in a block of %d threads\n",
                 primitive, expected, threads);
    std::abort();
  }
  return self.linear;
}
}  // namespace lrsmc_emu

namespace cub {

struct Sum {
  template <typename T>
  T operator()(const T& a, const T& b) const { return a + b; }
};
struct Max {
  template <typename T>
  T operator()(const T& a, const T& b) const { return a < b ? b : a; }
};
struct Min {
  template <typename T>
  T operator()(const T& a, const T& b) const { return b < a ? b : a; }
};

enum BlockReduceAlgorithm {
  BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY,
  BLOCK_REDUCE_RAKING,
  BLOCK_REDUCE_WARP_REDUCTIONS,
};
enum BlockScanAlgorithm { BLOCK_SCAN_RAKING, BLOCK_SCAN_RAKING_MEMOIZE, BLOCK_SCAN_WARP_SCANS };

template <typename T, int BLOCK_DIM_X,
          BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS, int BLOCK_DIM_Y = 1,
          int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockReduce {
  static constexpr int threads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    alignas(T) unsigned char bytes[sizeof(T) * threads];
  };

  explicit BlockReduce(TempStorage& storage) : storage_(storage) {}

  template <typename Op>
  T Reduce(T input, Op op) {
    return Reduce(input, op, threads);
  }
  template <typename Op>
  T Reduce(T input, Op op, int num_valid) {
    const int self = lrsmc_emu::checked_linear_thread(threads, "cub::BlockReduce");
    // Thread t's input goes to slot threads − 1 − t, as in BlockScan: a thread that goes on
    // into another collective on the same (union) storage without a barrier overwrites a slot
    // some other thread may not have read yet.
    slots()[threads - 1 - self] = input;
    __syncthreads();
    if (self != 0) return lrsmc_emu::poisoned<T>();
    T total = slots()[threads - 1];
    for (int i = 1; i < num_valid && i < threads; ++i) total = op(total, slots()[threads - 1 - i]);
    return total;
  }
  T Sum(T input) { return Reduce(input, cub::Sum{}); }
  T Sum(T input, int num_valid) { return Reduce(input, cub::Sum{}, num_valid); }

 private:
  T* slots() { return reinterpret_cast<T*>(storage_.bytes); }
  TempStorage& storage_;
};

template <typename T, int BLOCK_DIM_X, BlockScanAlgorithm ALGORITHM = BLOCK_SCAN_RAKING,
          int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockScan {
  static constexpr int threads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    alignas(T) unsigned char bytes[sizeof(T) * (threads + 2)];  // slots, aggregate, seed
  };

  explicit BlockScan(TempStorage& storage) : storage_(storage) {}

  // --- inclusive ---
  void InclusiveSum(T input, T& output) {
    T aggregate;
    Inclusive(input, output, cub::Sum{}, aggregate);
  }
  void InclusiveSum(T input, T& output, T& block_aggregate) {
    Inclusive(input, output, cub::Sum{}, block_aggregate);
  }
  template <typename Op>
  void InclusiveScan(T input, T& output, Op op) {
    T aggregate;
    Inclusive(input, output, op, aggregate);
  }
  template <typename Op>
  void InclusiveScan(T input, T& output, Op op, T& block_aggregate) {
    Inclusive(input, output, op, block_aggregate);
  }

  // --- exclusive ---
  void ExclusiveSum(T input, T& output) {
    T aggregate;
    Exclusive(input, output, T{}, true, cub::Sum{}, aggregate);
  }
  void ExclusiveSum(T input, T& output, T& block_aggregate) {
    Exclusive(input, output, T{}, true, cub::Sum{}, block_aggregate);
  }
  /// Without an initial value thread 0's output is undefined (NaN-filled here).
  template <typename Op>
  void ExclusiveScan(T input, T& output, Op op) {
    T aggregate;
    Exclusive(input, output, T{}, false, op, aggregate);
  }
  template <typename Op, typename PrefixCallback,
            typename = std::enable_if_t<std::is_invocable_v<PrefixCallback&, const T&>>>
  void ExclusiveScan(T input, T& output, Op op, PrefixCallback& prefix_callback) {
    // Warp 0 calls the callback with the aggregate; lane 0's return value prefixes the scan.
    const int self = lrsmc_emu::checked_linear_thread(threads, "cub::BlockScan");
    T aggregate;
    Exclusive(input, output, T{}, false, op, aggregate);
    if (self < 32) {
      const T seed = prefix_callback(aggregate);
      if (self == 0) slots()[threads + 1] = seed;
    }
    __syncthreads();
    const T seed = slots()[threads + 1];
    output = self == 0 ? seed : op(seed, output);
  }
  template <typename Op>
  void ExclusiveScan(T input, T& output, T initial_value, Op op) {
    T aggregate;
    Exclusive(input, output, initial_value, true, op, aggregate);
  }
  template <typename Op>
  void ExclusiveScan(T input, T& output, T initial_value, Op op, T& block_aggregate) {
    Exclusive(input, output, initial_value, true, op, block_aggregate);
  }

 private:
  T* slots() { return reinterpret_cast<T*>(storage_.bytes); }

  /// Thread t's input goes to slot threads − 1 − t; its result comes from slot t.
  static int input_slot(int thread) { return threads - 1 - thread; }

  /// Reads the inputs (after the first barrier) in thread order.
  std::vector<T> gather_inputs() {
    std::vector<T> inputs(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) inputs[std::size_t(t)] = slots()[input_slot(t)];
    return inputs;
  }

  /// Every scan begins so: the aggregate cleared, this thread's input at its permuted slot, a
  /// barrier. Returns the thread's index.
  int enter(T input) {
    const int self = lrsmc_emu::checked_linear_thread(threads, "cub::BlockScan");
    slots()[threads] = lrsmc_emu::poisoned<T>();
    slots()[input_slot(self)] = input;
    __syncthreads();
    return self;
  }

  /// And ends so, once thread 0 has written slot i's result and the aggregate: a barrier, then
  /// this thread's result and the aggregate.
  void leave(int self, T& output, T& aggregate) {
    __syncthreads();
    output = slots()[self];
    aggregate = slots()[threads];
  }

  template <typename Op>
  void Inclusive(T input, T& output, Op op, T& aggregate) {
    const int self = enter(input);
    if (self == 0) {
      const std::vector<T> inputs = gather_inputs();
      T running = inputs[0];
      slots()[0] = running;
      for (int i = 1; i < threads; ++i) slots()[i] = running = op(running, inputs[std::size_t(i)]);
      slots()[threads] = running;
    }
    leave(self, output, aggregate);
  }

  template <typename Op>
  void Exclusive(T input, T& output, T initial, bool has_initial, Op op, T& aggregate) {
    const int self = enter(input);
    if (self == 0) {
      // Slot i becomes the combination of inputs 0 … i − 1 (with the initial value).
      const std::vector<T> inputs = gather_inputs();
      T running = has_initial ? initial : lrsmc_emu::poisoned<T>();
      T total = inputs[0];
      for (int i = 0; i < threads; ++i) {
        const T value = inputs[std::size_t(i)];
        if (i > 0) total = op(total, value);
        slots()[i] = running;
        running = (i == 0 && !has_initial) ? value : op(running, value);
      }
      slots()[threads] = total;
    }
    leave(self, output, aggregate);
  }

  TempStorage& storage_;
};

namespace detail {
template <typename Key>
auto radix_order_key(Key key) {
  if constexpr (std::is_floating_point_v<Key>) {
    using Bits = std::conditional_t<sizeof(Key) == 8, std::uint64_t, std::uint32_t>;
    if (key == Key(0)) key = Key(0);  // -0.0 sorts as +0.0
    Bits bits;
    std::memcpy(&bits, &key, sizeof(Key));
    const Bits sign = Bits(1) << (8 * sizeof(Key) - 1);
    return (bits & sign) ? Bits(~bits) : Bits(bits | sign);
  } else if constexpr (std::is_signed_v<Key>) {
    using Bits = std::make_unsigned_t<Key>;
    return Bits(Bits(key) ^ (Bits(1) << (8 * sizeof(Key) - 1)));
  } else {
    return key;
  }
}
}  // namespace detail

struct DeviceSegmentedSort {
  template <typename Key, typename Value, typename Count, typename Segments, typename Begin,
            typename End>
  static cudaError_t StableSortPairs(void* d_temp_storage, std::size_t& temp_storage_bytes,
                                     const Key* keys_in, Key* keys_out, const Value* values_in,
                                     Value* values_out, Count num_items, Segments num_segments,
                                     Begin begin_offsets, End end_offsets,
                                     cudaStream_t stream = nullptr) {
    // CUB's scratch grows with the items; the emulation asks for as many bytes as keys.
    const std::size_t scratch = std::size_t(num_items) * sizeof(Key) + 1;
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = scratch;
      return cudaSuccess;
    }
    const char* call = "cub::DeviceSegmentedSort::StableSortPairs";
    if (temp_storage_bytes < scratch) {
      std::fprintf(stderr, "lrsmc CUDA emulation: %s: %zu bytes of scratch, %zu needed\n", call,
                   temp_storage_bytes, scratch);
      return cudaErrorInvalidValue;
    }
    const std::size_t items = std::size_t(num_items), segments = std::size_t(num_segments);
    for (const auto& [argument, pointer, bytes] :
         {std::tuple<const char*, const void*, std::size_t>{"d_temp_storage", d_temp_storage, scratch},
          {"d_keys_in", keys_in, items * sizeof(Key)},
          {"d_keys_out", keys_out, items * sizeof(Key)},
          {"d_values_in", values_in, items * sizeof(Value)},
          {"d_values_out", values_out, items * sizeof(Value)},
          {"d_begin_offsets", &begin_offsets[0], segments * sizeof(begin_offsets[0])},
          {"d_end_offsets", &end_offsets[0], segments * sizeof(end_offsets[0])}}) {
      if (items == 0 || segments == 0) break;
      const cudaError_t status = lrsmc_emu::check_device_range(call, argument, pointer, bytes);
      if (status != cudaSuccess) return status;
    }
    return lrsmc_emu::enqueue_host_work(
        stream, "cub::DeviceSegmentedSort::StableSortPairs",
        [=]() {
          std::vector<long long> order;
          for (long long s = 0; s < static_cast<long long>(num_segments); ++s) {
            const long long begin = static_cast<long long>(begin_offsets[s]);
            const long long end = static_cast<long long>(end_offsets[s]);
            if (end <= begin) continue;
            order.resize(std::size_t(end - begin));
            std::iota(order.begin(), order.end(), begin);
            std::stable_sort(order.begin(), order.end(), [&](long long a, long long b) {
              return detail::radix_order_key(keys_in[a]) < detail::radix_order_key(keys_in[b]);
            });
            std::vector<Key> keys(order.size());
            std::vector<Value> values(order.size());
            for (std::size_t i = 0; i < order.size(); ++i) {
              keys[i] = keys_in[order[i]];
              values[i] = values_in[order[i]];
            }
            std::copy(keys.begin(), keys.end(), keys_out + begin);
            std::copy(values.begin(), values.end(), values_out + begin);
          }
        });
  }
};

}  // namespace cub
