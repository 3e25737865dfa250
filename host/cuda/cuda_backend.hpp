// Factory of the CUDA backend (host/cuda), or its stand-in in builds without CUDA.
#pragma once

#include <cstddef>
#include <memory>

#include "lrsmc/backend.hpp"

namespace lrsmc::cuda {

/// The CUDA devices this process sees (0 without CUDA or a device).
[[nodiscard]] int device_count();

/// Throws Error when lrsmc was built without CUDA or no device answers.
[[nodiscard]] std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);

/// The largest static shared memory (CUB storage, broadcasts) of the forward and backward
/// kernels on the current device, in bytes; the loadings must fit beside it (CUDA builds only).
[[nodiscard]] std::size_t particle_kernels_static_shared_bytes();

}  // namespace lrsmc::cuda
