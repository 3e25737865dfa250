// The CPU engines of the particle filter (method.md §3) and its reverse sweep (§3.6, §10.2):
// loops over trials, steps and particles around the shared particle step of
// include/lrsmc/math/. Scalar = double is the reference, float runs the CUDA kernels' arithmetic.
#pragma once

#include <cstdint>

#include "lrsmc/backend.hpp"

namespace lrsmc::cpu {

/// The forward filter of every trial, `num_threads` trials at a time.
template <typename Scalar>
[[nodiscard]] FilterResult filter_trials(const Model& model, const SequenceBatch& batch,
                                         const FilterOptions& options, std::uint64_t seed,
                                         const FilterRequest& request, int num_threads);

/// The ELBO and its gradient: forward and reverse sweep of every trial, per-trial accumulator
/// rows summed in trial order, then finished once (results do not depend on the thread count).
template <typename Scalar>
[[nodiscard]] GradientResult gradient_of_trials(const Model& model, const SequenceBatch& batch,
                                                const FilterOptions& options,
                                                std::uint64_t seed, int num_threads);

/// Draws from the generative model (method.md §6.1, prior start).
template <typename Scalar>
[[nodiscard]] SampleResult sample_trials(const Model& model, int num_trials, int num_steps,
                                         const std::vector<double>& inputs, std::uint64_t seed);

}  // namespace lrsmc::cpu
