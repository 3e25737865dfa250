// Internal, host side of the launchers: every launch's last error is checked, and with
// LRSMC_DEBUG_SYNC the device is synchronised after it (style.md, "Errors").
#pragma once

#include <cuda_runtime_api.h>

#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {

inline void check_launch(const char* name) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw CudaError(detail::concat(name, ": launch failed (", cudaGetErrorString(status), ")"));
#ifdef LRSMC_DEBUG_SYNC
  const cudaError_t synced = cudaDeviceSynchronize();
  if (synced != cudaSuccess) throw CudaError(detail::concat(name, ": ", cudaGetErrorString(synced)));
#endif
}

}  // namespace lrsmc::kernels
