// Host side of the CUDA backend: the device memory a backend keeps between forward-filter
// calls (one grow-only arena), the pinned staging buffer of a call's uploads, one batch of
// uploads copied together, and an owning CUDA stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/device_memory.hpp"

namespace lrsmc::cuda {

/// Device memory CudaBackend keeps between forward-filter calls (a cudaMalloc and cudaFree
/// per buffer per call would cost more than the K = 10 filter itself). One allocation,
/// grow-only: a call whose buffers fit in it allocates nothing; a larger call frees it first,
/// then allocates its own size (filter_buffer_bytes, checked against the plan beforehand).
/// Each call carves its buffers from the start, in order, each rounded up to the plan's 512
/// bytes, so the buffer list of filter_plan.cpp fits exactly; a buffer that would not fit
/// (the plan and the buffer list disagreeing) gets its own cudaMalloc, freed when the call
/// ends. Only workspaces up to `kept_bytes` outlive their call: the small calls whose
/// allocation cost matters stay allocation-free, while a large call's memory goes back to the
/// device (a training session running beside validation filters allocates its own).
/// Not thread-safe, like the backend.
class DeviceArena {
 public:
  static constexpr std::size_t kept_bytes = std::size_t(256) << 20;

  DeviceArena() = default;
  ~DeviceArena() { release(); }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  /// Bytes held between calls (counted as available to the next filter call).
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

  /// Frees the held memory (errors are only cleared: the memory is gone either way).
  void release() {
    spill_.clear();
    if (base_ && cudaFree(base_) != cudaSuccess) (void)cudaGetLastError();
    base_ = nullptr;
    capacity_ = 0;
    offset_ = 0;
  }

  /// Starts a call needing `bytes`: grows (free, then allocate) only when it holds less. A
  /// failed allocation leaves the arena empty and throws OutOfMemory (or CudaError).
  void begin_call(std::size_t bytes) {
    spill_.clear();
    offset_ = 0;
    if (bytes <= capacity_) return;
    release();
    void* data = nullptr;
    LRSMC_CUDA_CHECK(cudaMalloc(&data, bytes));
    base_ = static_cast<std::uint8_t*>(data);
    capacity_ = bytes;
  }

  /// Ends a call: frees any spilled buffers, and the arena itself when over kept_bytes.
  void end_call() {
    spill_.clear();
    offset_ = 0;
    if (capacity_ > kept_bytes) release();
  }

  /// `count` uninitialised elements, or nullptr when count is 0 (the kernels test optional
  /// buffers against nullptr).
  template <typename T>
  [[nodiscard]] T* take(std::size_t count) {
    if (count == 0) return nullptr;
    const std::size_t bytes = (count * sizeof(T) + granularity - 1) / granularity * granularity;
    if (bytes <= capacity_ - offset_) {
      T* data = reinterpret_cast<T*>(base_ + offset_);
      offset_ += bytes;
      return data;
    }
    spill_.emplace_back(count * sizeof(T));
    return reinterpret_cast<T*>(spill_.back().get());
  }

  /// Whether [data, data + bytes) lies in the held allocation (not in a spilled buffer).
  [[nodiscard]] bool holds(const void* data, std::size_t bytes) const {
    const auto begin = reinterpret_cast<std::uintptr_t>(base_);
    const auto address = reinterpret_cast<std::uintptr_t>(data);
    return base_ && address >= begin && address - begin <= capacity_ &&
           bytes <= capacity_ - (address - begin);
  }

 private:
  static constexpr std::size_t granularity = 512;  // as filter_plan.cpp rounds every buffer
  std::uint8_t* base_ = nullptr;
  std::size_t capacity_ = 0, offset_ = 0;
  std::vector<kernels::DeviceBuffer<std::uint8_t>> spill_;
};

/// Pinned host memory the forward filter's per-call uploads are staged in (small synchronous
/// cudaMemcpy calls would cost more than the K = 10 filter). Grow-only like the
/// device workspace and released on the same rule (after a call that needed more than
/// DeviceArena::kept_bytes), and in the destructor. Every filter call has synchronised with
/// the device before it returns or throws (do_filter's EndCall), so the copy out of this
/// buffer is complete whenever the next call writes into it or it is freed. Not thread-safe,
/// like the backend.
class PinnedStaging {
 public:
  PinnedStaging() = default;
  ~PinnedStaging() { release(); }
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  /// At least `bytes` of pinned memory, or nullptr when none can be had (the caller then
  /// copies from pageable memory).
  [[nodiscard]] std::uint8_t* reserve(std::size_t bytes) {
    if (bytes <= capacity_) return data_;
    release();
    void* data = nullptr;
    if (cudaHostAlloc(&data, bytes, cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    data_ = static_cast<std::uint8_t*>(data);
    capacity_ = bytes;
    return data_;
  }

  void end_call() {
    if (capacity_ > DeviceArena::kept_bytes) release();
  }

  void release() {
    if (data_ && cudaFreeHost(data_) != cudaSuccess) (void)cudaGetLastError();
    data_ = nullptr;
    capacity_ = 0;
  }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t capacity_ = 0;
};

/// One call's uploads: each add() takes the next device buffer from the arena (in the plan's
/// order, so the uploads are the workspace's first filter_upload_bytes bytes) and writes its
/// values into the pinned staging buffer at the same offset, 512-byte rounded like the arena
/// (so every sub-buffer is at least 256-byte aligned on both sides); flush() then copies each
/// run of buffers that is contiguous on both sides with one cudaMemcpyAsync — one copy for the
/// whole region when the arena holds the plan's buffers. A buffer that finds no room in the
/// staging buffer (no pinned memory, or the plan and the buffer list disagreeing), or whose
/// device buffer spilled out of the arena, is copied at once with a synchronous cudaMemcpy,
/// so a merged copy only ever writes inside the arena's allocation.
class UploadBatch {
 public:
  UploadBatch(DeviceArena& arena, PinnedStaging& staging, std::size_t planned_bytes)
      : arena_(arena),
        host_(staging.reserve(planned_bytes)),
        capacity_(host_ ? planned_bytes : 0) {}

  /// A device buffer of `count` values that `fill(T* values)` writes (nullptr when count is
  /// 0, as DeviceArena::take).
  template <typename T, typename Fill>
  [[nodiscard]] T* add(std::size_t count, const Fill& fill) {
    if (count == 0) return nullptr;
    T* const device = arena_.take<T>(count);
    const std::size_t bytes = count * sizeof(T);
    const std::size_t slot = (bytes + granularity - 1) / granularity * granularity;
    if (slot <= capacity_ - offset_ && arena_.holds(device, slot)) {
      fill(reinterpret_cast<T*>(host_ + offset_));
      std::memset(host_ + offset_ + bytes, 0, slot - bytes);  // the padding is copied too
      pieces_.push_back(Piece{reinterpret_cast<std::uintptr_t>(device), offset_, bytes});
      offset_ += slot;
    } else {
      std::vector<T> values(count);
      fill(values.data());
      LRSMC_CUDA_CHECK(cudaMemcpy(device, values.data(), bytes, cudaMemcpyHostToDevice));
    }
    return device;
  }

  /// A device copy of `host` (nullptr when empty).
  template <typename T>
  [[nodiscard]] T* add(const std::vector<T>& host) {
    return add<T>(host.size(), [&host](T* values) {
      std::memcpy(values, host.data(), host.size() * sizeof(T));
    });
  }

  /// `count` doubles converted to float32 (static_cast, as to_float).
  [[nodiscard]] float* add_as_float(const double* values, std::size_t count) {
    return add<float>(count, [values, count](float* out) {
      for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(values[i]);
    });
  }

  /// Enqueues the staged copies on `stream`; work enqueued after them on the same stream sees
  /// the values.
  void flush(cudaStream_t stream) {
    std::size_t first = 0;
    while (first < pieces_.size()) {
      std::size_t last = first;
      while (last + 1 < pieces_.size() &&
             pieces_[last + 1].device - pieces_[first].device ==
                 pieces_[last + 1].offset - pieces_[first].offset)
        ++last;
      const std::size_t bytes = pieces_[last].offset + pieces_[last].bytes - pieces_[first].offset;
      LRSMC_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<void*>(pieces_[first].device),
                                       host_ + pieces_[first].offset, bytes,
                                       cudaMemcpyHostToDevice, stream));
      first = last + 1;
    }
    pieces_.clear();
  }

 private:
  static constexpr std::size_t granularity = 512;  // as DeviceArena and filter_plan.cpp
  struct Piece {
    std::uintptr_t device;
    std::size_t offset, bytes;
  };
  DeviceArena& arena_;
  std::uint8_t* const host_;
  const std::size_t capacity_;
  std::size_t offset_ = 0;
  std::vector<Piece> pieces_;
};

/// A non-blocking CUDA stream (capturable into a graph), destroyed with its owner.
class Stream {
 public:
  Stream() { LRSMC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (stream_ && cudaStreamDestroy(stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  [[nodiscard]] cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace lrsmc::cuda
