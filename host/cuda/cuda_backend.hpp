// Factory of the CUDA backend (host/cuda), or its stand-in in builds without CUDA.
#pragma once

#include <memory>

#include "lrsmc/backend.hpp"

namespace lrsmc::cuda {

/// Throws Error when lrsmc was built without CUDA or no device answers.
[[nodiscard]] std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);

}  // namespace lrsmc::cuda
