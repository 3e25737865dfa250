// Internal, host side: the one CUDA error check (LRSMC_CUDA_CHECK) and the one owning device
// buffer used by the CUDA host code (host/cuda/*) and the kernel launchers (kernels/*.cu).
// Not installed; include only from translation units that link the CUDA runtime.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {

/// Throws OutOfMemory for an allocation failure and CudaError otherwise, naming `expression`
/// and the place. The last-error state is cleared first (every failed runtime call sets it), so
/// a later launch check does not report this error again once the caller has handled the throw.
[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* expression,
                                          const char* file, int line) {
  (void)cudaGetLastError();
  if (status == cudaErrorMemoryAllocation) {
    throw OutOfMemory(detail::concat(expression, " failed: out of GPU memory (", file, ":", line,
                                     ")"));
  }
  throw CudaError(detail::concat(expression, " failed at ", file, ":", line, ": ",
                                 cudaGetErrorString(status)));
}

}  // namespace lrsmc::kernels

/// Evaluates a CUDA runtime call and throws (see throw_cuda_error) unless it returned success.
#define LRSMC_CUDA_CHECK(expression)                                                       \
  do {                                                                                     \
    const cudaError_t lrsmc_status = (expression);                                         \
    if (lrsmc_status != cudaSuccess)                                                       \
      ::lrsmc::kernels::throw_cuda_error(lrsmc_status, #expression, __FILE__, __LINE__);   \
  } while (false)

namespace lrsmc::kernels {

/// `count` elements copied from the device into a new host vector (synchronous).
template <typename T>
std::vector<T> download(const T* device, std::size_t count) {
  std::vector<T> host(count);
  if (count > 0)
    LRSMC_CUDA_CHECK(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

/// Owning device allocation of `size()` elements; freed in the destructor (an error there is
/// cleared, not thrown: the memory is gone either way). Movable, not copyable.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) { allocate(count); }
  /// A copy of `host` on the device.
  explicit DeviceBuffer(const std::vector<T>& host) { upload(host); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }

  /// Frees the held memory and allocates exactly `count` elements (contents are lost).
  void allocate(std::size_t count) {
    release();
    if (count > 0)
      LRSMC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)));
    count_ = count;
  }
  /// Makes room for `count` elements; grow-only (contents are lost when it grows).
  void reserve(std::size_t count) {
    if (count > count_) allocate(count);
  }
  /// Copies `host` to the start of the buffer, growing it first if needed.
  void upload(const std::vector<T>& host) {
    reserve(host.size());
    if (!host.empty())
      LRSMC_CUDA_CHECK(
          cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  /// All `size()` elements, copied to the host.
  [[nodiscard]] std::vector<T> download() const { return kernels::download(data_, count_); }
  /// Elements [offset, offset + count) copied into `host` (resized to `count`).
  void download(std::vector<T>& host, std::size_t count, std::size_t offset = 0) const {
    host.resize(count);
    if (count > 0)
      LRSMC_CUDA_CHECK(
          cudaMemcpy(host.data(), data_ + offset, count * sizeof(T), cudaMemcpyDeviceToHost));
  }

  [[nodiscard]] T* get() const { return data_; }
  [[nodiscard]] std::size_t size() const { return count_; }

 private:
  void release() {
    if (data_ != nullptr && cudaFree(data_) != cudaSuccess) (void)cudaGetLastError();
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace lrsmc::kernels
