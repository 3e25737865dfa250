// Internal: the CUDA backend's gradients and training (method.md §3.6, §5.1): the ELBO
// gradient from the forward and backward kernels, device-resident training sessions, and the
// memory planning of both.
#pragma once

#include <cstdint>
#include <memory>

#include "core/training_session.hpp"
#include "lrsmc/backend.hpp"

namespace lrsmc::cuda {

class TrialGather;

/// Device bytes of the gradient (forward paths of every step, backward workspace, data, the
/// model's constants) for a batch of `trials` processed in chunks of at most `chunk_trials`.
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

/// d ELBO / d θ on the device (method.md §3.6): the CPU float engine's arithmetic, float with
/// float64 sums; the same GradientResult as the CPU backend. Splits the batch over trials when
/// it does not fit in free device memory (`max_chunk_trials` > 0 caps the chunk, for tests),
/// and says so on stderr. Deterministic: the same call gives bitwise the same numbers, split or
/// not, and shared by several processes (`gather`: each runs its share of the trials) or not.
[[nodiscard]] GradientResult elbo_gradient(const Model& model, const SequenceBatch& batch,
                                           const FilterOptions& options, std::uint64_t seed,
                                           int device_index, int max_chunk_trials = 0,
                                           TrialGather* gather = nullptr);

/// A device-resident training session (see TrainingSession); with `gather`, each step's
/// gradient is shared by the processes (enqueue_gradient) and every process takes the same
/// optimizer step.
[[nodiscard]] std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup,
                                                              int device_index,
                                                              TrialGather* gather = nullptr);

}  // namespace lrsmc::cuda
