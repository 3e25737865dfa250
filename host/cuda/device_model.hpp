// Host side of the CUDA backend, shared by the filter and training: where a model's loadings
// live on the device, the filter settings of a call, and what a call's device results say
// (failed constants, failed trials, the ELBO).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/launch.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/math/model_constants.hpp"

namespace lrsmc::cuda {

/// Whether m, n and h fit in a block's shared memory on `device_index` beside the static
/// storage of the forward and backward kernels; when not, the kernels read them from global
/// memory (L2).
[[nodiscard]] bool loadings_fit_in_shared(const math::ModelShape& shape, int device_index);

/// A DeviceModel of `shape` over device buffers (parameters, constants, working copy).
[[nodiscard]] kernels::DeviceModel device_model(const math::ModelShape& shape,
                                                const double* parameters, double* constants,
                                                float* working, int device_index);

/// The forward filter's settings from the options and the batch shape (sizes, proposal,
/// resampling, seed, lanes per particle); pointers are the caller's.
void set_filter_settings(kernels::FilterLaunch& launch, const FilterOptions& options, int steps,
                         int trials, std::uint64_t seed);

/// The CPU backend's words for a call that failed on the device: the constants' build
/// (`constants_status`, a math::ConstantsStatus) or the first trial whose forward pass failed
/// (`failed[b]` ≥ 0 is its step, `evidence[b]` the maximum log-weight it met), named as trial
/// `first_trial` + b of the caller's batch; "" otherwise.
[[nodiscard]] std::string failure_of(double constants_status,
                                     const std::vector<std::int32_t>& failed,
                                     const std::vector<double>& evidence, int first_trial = 0);

/// Fills `per_trial` with each trial's log-evidence / `steps` and returns their mean (the ELBO).
double elbo_per_trial(const std::vector<double>& evidence, int steps,
                      std::vector<double>& per_trial);

/// The ELBO of per-trial values: their mean, summed in trial order.
[[nodiscard]] double elbo_of(const std::vector<double>& per_trial);

}  // namespace lrsmc::cuda
