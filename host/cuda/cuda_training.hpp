// Internal: the CUDA backend's training path (issue 4): ELBO gradients from the forward and
// backward kernels, device-resident training sessions, and the memory planning of both.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/training_session.hpp"

namespace lrsmc::kernels {
struct FilterLaunch;
}  // namespace lrsmc::kernels

namespace lrsmc::cuda {

/// Device bytes of the gradient (forward paths of every step, backward workspace, data) for a
/// batch of `trials` processed in chunks of at most `chunk_trials` trials.
[[nodiscard]] std::int64_t gradient_memory_bytes(const ModelConfig& config, int trials, int steps,
                                                 int particles, int chunk_trials);

/// The least the gradient needs: one trial per chunk (the engine splits larger batches).
[[nodiscard]] inline std::int64_t gradient_memory_estimate(const ModelConfig& config, int trials,
                                                           int steps, int particles) {
  return gradient_memory_bytes(config, trials, steps, particles, 1);
}

/// The most trials per chunk that fit in `available` bytes (at least 1).
[[nodiscard]] int gradient_chunk_trials(const ModelConfig& config, int trials, int steps,
                                        int particles, std::int64_t available);

/// d ELBO / d θ on the device (method.md §3.6), in float with float64 sums; the same
/// GradientResult as the CPU backend. Splits the batch over trials when it does not fit in
/// free device memory (`max_chunk_trials` > 0 caps the chunk, for tests), and says so on
/// stderr. Deterministic: the same call gives bitwise the same numbers, split or not.
[[nodiscard]] GradientResult elbo_gradient(const Model& model, const SequenceBatch& batch,
                                           const FilterOptions& options, std::uint64_t seed,
                                           int device_index, int max_chunk_trials = 0);

/// Throws the CPU backend's NumericalError for the first trial whose forward pass failed
/// (`failed[b]` ≥ 0 is the failing step; `evidence[b]` the log-evidence it reached).
void throw_if_failed(const std::vector<std::int32_t>& failed, const std::vector<double>& evidence);

/// Fills `per_trial` with each trial's log-evidence / `steps` and returns their mean (the ELBO).
double elbo_per_trial(const std::vector<double>& evidence, int steps, std::vector<double>& per_trial);

/// The forward filter's settings from the model, the options and the batch shape (sizes,
/// model kinds, proposal, resampling, seed); pointers and the model's constants are the caller's.
void set_filter_settings(kernels::FilterLaunch& launch, const ModelConfig& config,
                         const FilterOptions& options, int steps, int trials, std::uint64_t seed);

/// Input currents W_u u_t (rows, steps, hidden) and initial means μ_0 = z_init + P_m W_u u_0
/// (rows, rank) of `rows` rows of `steps` inputs each (row-major), in float exactly as the CPU
/// float path computes them; `raw` is the flat parameter vector. Without inputs `currents` is
/// left empty (and `inputs` is not read). Shared by the CUDA filter and training.
void input_terms(const ModelConfig& config, const double* raw, const double* inputs, int rows,
                 int steps, std::vector<float>& currents, std::vector<float>& initial_mean);

/// A device-resident training session (see TrainingSession).
[[nodiscard]] std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup,
                                                              int device_index);

}  // namespace lrsmc::cuda
