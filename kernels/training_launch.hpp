// Internal: launchers of the training kernels (the reverse sweep, the sum of the trials' rows,
// the once-per-call adjoints, the optimizer step, the batch gather), callable from host C++.
// Only pointers, sizes, parameter structs and cudaStream_t cross here.
#pragma once

#include <cuda_runtime_api.h>
#include <cstdint>

#include "kernels/launch.hpp"
#include "lrsmc/math/optimizer.hpp"

namespace lrsmc::kernels {

/// Floats of the reverse sweep's per-particle records per trial: dμ, dz (after the proposal's
/// density term), e, f, μ and ξ of every particle (6 × K × R).
[[nodiscard]] constexpr std::int64_t backward_record_values(int num_particles, int rank) {
  return 6 * std::int64_t(num_particles) * rank;
}

/// Doubles per trial of BackwardLaunch::encoder_sums: Σ dμ_q μᵀ, dL_q (R² each), Σ dμ_q (R) and
/// the prior factor's adjoint dL (R²).
[[nodiscard]] constexpr int encoder_sum_doubles(int rank) { return 3 * rank * rank + rank; }

/// Everything the reverse sweep reads and writes; pointers are device memory.
struct BackwardLaunch {
  /// The forward launch that stored every step (store_all, resampled and failed_step set).
  FilterLaunch forward;
  const double* inputs = nullptr;  ///< (trials, steps, inputs), or null
  double grad_increment = 0.0;     ///< d objective / d c_t = 1 / (batch trials · steps)
  // Workspace: (trials, K, R) floats, (trials, K) doubles, (trials, backward_record_values).
  float* grad_post = nullptr;         ///< adjoint of the particles after resampling at step t
  float* grad_next = nullptr;         ///< the same for step t − 1, being filled
  float* grad_pre = nullptr;          ///< adjoint of the particles before resampling
  float* records = nullptr;           ///< per-particle records of a step
  double* grad_carried = nullptr;     ///< adjoint of the carried normalised log-weights
  double* grad_log_weight = nullptr;  ///< adjoint of log W̄_{t−1} + log w_t
  /// (trials, math::GradientSlots::row_size): each trial's accumulator row, cleared by the
  /// launcher (math/gradient_row.hpp).
  double* rows = nullptr;
  // The encoder proposal (forward.encoder_cells set): per cell (trials, data_steps, ·) the
  // encoder's means and variances (rank each) and products (encoder_product_doubles); per trial
  // encoder_sum_doubles (the step's Σ dμ_q μᵀ, dL_q, Σ dμ_q and dL) and
  // math::encoder_step_scratch_size doubles; out, per cell, the adjoints of the means and the
  // variances (rank each).
  const double* encoder_mean = nullptr;
  const double* encoder_variance = nullptr;
  const double* encoder_products = nullptr;
  double* encoder_sums = nullptr;
  double* encoder_scratch = nullptr;
  double* grad_encoder_mean = nullptr;
  double* grad_encoder_variance = nullptr;
};

/// Reverse sweep of method.md §10.2 over the stored paths, one block per trial, recomputing
/// the hidden-unit currents; the CPU engine's arithmetic in its order. Deterministic: every
/// sum runs in a fixed order (particles in index order per accumulator), with no atomics.
void backward_block_per_trial(const BackwardLaunch& launch, cudaStream_t stream);
/// Static shared memory of the reverse sweep's kernel, bytes.
[[nodiscard]] std::size_t backward_static_shared_bytes();

/// total[v] = Σ_trial rows[trial · stride + v], trials in index order (deterministic).
void sum_over_trials(const double* rows, int trials, std::int64_t stride, double* total,
                     cudaStream_t stream);

/// The once-per-call adjoints (math::finish_gradient) of the summed row `totals` into
/// `gradient` (flat, ParameterLayout order), then, with inputs, each trial's adjoint through
/// μ_0's projection, trials in order: `rows` are the trials' accumulator rows, `currents`
/// (trials, steps, hidden) and `inputs` (trials, steps, inputs). `scratch` holds
/// math::constants_scratch_size + 2 · trials · rank doubles.
void finish_gradient(const DeviceModel& model, const double* totals, const double* rows, int trials,
                     int steps, const float* currents, const double* inputs, double* gradient,
                     double* scratch, cudaStream_t stream);

/// One Adam / RAdam step over the flat parameter vector (math::adam_update), unless the status
/// says the step must be skipped. `ascent` is d ELBO / d θ.
struct OptimizerLaunch {
  std::int64_t count = 0;
  double* parameters = nullptr;
  double* first_moment = nullptr;
  double* second_moment = nullptr;
  /// Receives the parameters before a step that is applied (those its gradient was taken at);
  /// a skipped step leaves it as it was.
  double* evaluated = nullptr;
  const double* ascent = nullptr;
  /// [0] Σ ascent² (gradient_norm), [1] 1 when the step must be skipped (read by the step).
  const double* status = nullptr;
  double gradient_clip = 0.0;  ///< global norm; 0 = off
  math::AdamCoefficients coefficients;
};

/// status[0] = Σ ascent² in math::chunk_sum_of_squares's order; status[1] = 1 when an ascent
/// entry or an `elbo_values` entry (count) is not finite, a failed_step entry (count) is ≥ 0,
/// or the constants' build failed (`constants_status` ≠ 0); status[2] = that build status. A
/// finite gradient whose Σ ascent² overflows is stepped, as the host trainer does.
void gradient_norm(const double* ascent, std::int64_t count, const double* elbo_values,
                   const std::int32_t* failed_steps, int failed_count,
                   const double* constants_status, double* status, cudaStream_t stream);
void optimizer_step(const OptimizerLaunch& launch, cudaStream_t stream);

/// Gathers a batch of windows (or whole trials: start 0, length = steps) from device-resident
/// data: out_observations (batch, length, channels) from data (data_trials, data_steps,
/// channels) and, when given, log-factorials and inputs the same way.
struct GatherLaunch {
  int batch = 0, length = 0, data_steps = 0, channels = 0, num_inputs = 0;
  /// `observations` (and log_factorial) hold trials [observed_first, observed_last) only (one
  /// process's share): rows of other trials get no observations. `inputs` hold every trial.
  int observed_first = 0, observed_last = 0x7FFFFFFF;
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
