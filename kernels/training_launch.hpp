// Internal: launchers of the training kernels (backward sweep, reductions over trials, the
// optimizer step), callable from host C++. Only pointers, sizes and cudaStream_t cross here.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/launch.hpp"

namespace lrsmc::kernels {

/// Threads per block of the backward sweep; the per-thread accumulator slots depend on it.
constexpr int backward_block_size = 256;

/// Where the backward sweep writes in each trial's accumulator row (doubles). The first
/// entries are the flat parameter gradient (ParameterLayout offsets; only the blocks the
/// kernel owns are written), then the R×R and R×D adjoints the host finishes once per call
/// (noise factors, Kalman quantities), in the order of the per-thread slots.
struct GradientOffsets {
  std::int64_t m = -1, n = -1, h = -1, w_u = -1, readout_weight = -1, readout_bias = -1,
               observation_noise = -1;
  /// Start of the slot-reduced extras: dL[0], dL[1], dL_q[0], dL_q[1], Σdμ_q μᵀ[0], [1]
  /// (R×R each, row-major), Σ dμ·z_{t−1} (the decay's adjoint, 1), Σ dμ_0 (R).
  std::int64_t slots_begin = 0;
  std::int64_t gain[2] = {0, 0};      ///< dG (R×D) of the initial step [0] and later steps [1]
  std::int64_t gain_sum[2] = {0, 0};  ///< Σ dμ_q (R)
  std::int64_t stride = 0;            ///< doubles per trial
};

/// Doubles of per-thread slots per trial: 6R² + 1 + R for each of backward_block_size threads.
[[nodiscard]] constexpr std::int64_t backward_slot_count(int rank) {
  return 6 * std::int64_t(rank) * rank + 1 + rank;
}

/// Everything the backward sweep reads and writes; pointers are device memory.
struct BackwardLaunch {
  /// The forward launch that stored every step (store_all, resampled and failed_step set).
  FilterLaunch forward;
  int num_inputs = 0;
  const double* inputs = nullptr;  ///< (trials, steps, num_inputs), or null
  double grad_increment = 0.0;     ///< d objective / d c_t = 1 / (batch trials · steps)
  GradientOffsets offsets;
  // Workspace, (trials, K, R) floats and (trials, K) doubles.
  float* grad_post = nullptr;   ///< adjoint of the particles after resampling at step t
  float* grad_next = nullptr;   ///< the same for step t − 1, being filled
  float* grad_pre = nullptr;    ///< adjoint of the particles before resampling
  float* grad_mean = nullptr;   ///< adjoint of the transition mean μ_t of each particle
  double* grad_carried = nullptr;     ///< adjoint of the carried normalised log-weights
  double* grad_log_weight = nullptr;  ///< adjoint of log W̄_{t−1} + log w_t
  double* thread_slots = nullptr;     ///< (trials, backward_slot_count, backward_block_size)
  double* accumulators = nullptr;     ///< (trials, offsets.stride)
};

/// Reverse sweep of method.md §10.2 over the stored paths, one block per trial, recomputing
/// the hidden-unit currents. Zeroes its workspace and accumulators first. Deterministic: every
/// sum runs in a fixed order (particles in index order per hidden unit or channel, per-thread
/// slots reduced in thread order), with no atomics.
void backward_block_per_trial(const BackwardLaunch& launch, cudaStream_t stream);

/// total[v] = Σ_trial rows[trial·stride + v], trials in index order (deterministic).
void sum_over_trials(const double* rows, int trials, std::int64_t stride, double* total,
                     cudaStream_t stream);

/// One Adam / RAdam step over the flat parameter vector (trainer.cpp's optimizer_step on the
/// device). `ascent` is d ELBO / d θ; the loss gradient is −ascent, scaled by the clip factor.
struct OptimizerLaunch {
  std::int64_t count = 0;
  double* parameters = nullptr;
  double* first_moment = nullptr;
  double* second_moment = nullptr;
  const double* ascent = nullptr;
  /// [0] Σ ascent² (written by gradient_norm), [1] 1 when the step must be skipped (a
  /// non-finite ELBO or gradient); read by the step kernel.
  const double* status = nullptr;
  double learning_rate = 0.0;
  double gradient_clip = 0.0;  ///< global norm; 0 = off
  double bias1 = 1.0, bias2 = 1.0, rectification = 1.0;
  bool rectified = true;       ///< false: RAdam's un-adapted warm-up step
};

/// status[0] = Σ ascent² (one block, fixed order); status[1] = 1 when an ascent entry or any
/// of `elbo_values` (count) is not finite, or a failed_step entry (count) is ≥ 0 (a finite
/// gradient whose Σ ascent² overflows is stepped, as the host trainer does).
void gradient_norm(const double* ascent, std::int64_t count, const double* elbo_values,
                   const std::int32_t* failed_steps, int failed_count, double* status,
                   cudaStream_t stream);
void optimizer_step(const OptimizerLaunch& launch, cudaStream_t stream);

/// Gathers a batch of windows (or whole trials: start 0, length = steps) from device-resident
/// data: out_observations (batch, length, channels) from data (data_trials, data_steps,
/// channels) and, when given, log-factorials and inputs the same way.
struct GatherLaunch {
  int batch = 0, length = 0, data_steps = 0, channels = 0, num_inputs = 0;
  const std::int32_t* trials = nullptr;  ///< (batch) source trial of each row
  const std::int32_t* starts = nullptr;  ///< (batch) first step of each row
  const float* observations = nullptr;
  const float* log_factorial = nullptr;  ///< or null
  const double* inputs = nullptr;        ///< or null
  float* out_observations = nullptr;
  float* out_log_factorial = nullptr;
  double* out_inputs = nullptr;
};
void gather_batch(const GatherLaunch& launch, cudaStream_t stream);

}  // namespace lrsmc::kernels
