// Internal, host side of the kernels' .cu files: the one way they launch a kernel — opt in to
// the dynamic shared memory it needs, launch, check the launch's error and, with
// LRSMC_DEBUG_SYNC, synchronise (outside stream capture) (style.md, "Errors").
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {

/// Throws CudaError naming the kernel when its launch failed; clears the error state first, so
/// that a later check does not report it again as its own.
inline void check_launch(const char* name, cudaStream_t stream) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw CudaError(detail::concat(name, ": launch failed (", cudaGetErrorString(status), ")"));
#ifdef LRSMC_DEBUG_SYNC
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;  // no synchronising a capture
  if (cudaStreamIsCapturing(stream, &capture) == cudaSuccess &&
      capture == cudaStreamCaptureStatusNone) {
    const cudaError_t synced = cudaStreamSynchronize(stream);
    if (synced != cudaSuccess)
      throw CudaError(detail::concat(name, ": ", cudaGetErrorString(synced)));
  }
#else
  (void)stream;
#endif
}

/// Raises a kernel's dynamic shared-memory limit to `dynamic` bytes when dynamic and static
/// storage together pass 48 KB: the default limit on the dynamic part is 48 KB minus the
/// kernel's static storage (CUB temporaries, broadcasts), not 48 KB. Per device.
inline void reserve_shared_memory(const char* name, const void* function, std::size_t dynamic) {
  if (dynamic == 0) return;
  cudaFuncAttributes attributes{};
  cudaError_t status = cudaFuncGetAttributes(&attributes, function);
  if (status == cudaSuccess && dynamic + attributes.sharedSizeBytes > 48 * 1024)
    status =
        cudaFuncSetAttribute(function, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic));
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // or the launch check would report this failure
    throw CudaError(detail::concat(name, ": cannot use ", dynamic, " bytes of shared memory (",
                                   cudaGetErrorString(status), ")"));
  }
}

/// Static shared memory of a kernel, in bytes (0 when the runtime cannot say).
inline std::size_t static_shared_bytes(const void* function) {
  cudaFuncAttributes attributes{};
  if (cudaFuncGetAttributes(&attributes, function) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return attributes.sharedSizeBytes;
}

struct LaunchShape {
  dim3 grid{1, 1, 1};
  dim3 block{1, 1, 1};
  std::size_t shared = 0;  ///< dynamic shared memory, bytes
  /// The caller opted the kernel in already (reserve_shared_memory before a stream capture,
  /// during which the launcher must not query or change function attributes).
  bool opted_in = false;
};

/// Launches `kernel` (called `name` in errors) on `stream`, opted in to its shared memory.
template <typename... Parameters, typename... Arguments>
void launch_kernel(const char* name, void (*kernel)(Parameters...), const LaunchShape& shape,
                   cudaStream_t stream, Arguments&&... arguments) {
  if (!shape.opted_in)
    reserve_shared_memory(name, reinterpret_cast<const void*>(kernel), shape.shared);
  kernel<<<shape.grid, shape.block, shape.shared, stream>>>(std::forward<Arguments>(arguments)...);
  check_launch(name, stream);
}

}  // namespace lrsmc::kernels
