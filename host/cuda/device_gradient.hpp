// Internal: a gradient on the device for the CUDA backend's elbo_gradient and training
// sessions — the device buffers of batches up to a size, where a batch's data lie, the
// enqueued pipeline (constants, input terms, forward and backward per chunk of trials, the
// trials' sum, the finishing adjoints) and the outcome read back in one copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/trial_gather.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/launch.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/math/model_constants.hpp"

namespace lrsmc::cuda {

template <typename T>
using Buffer = kernels::DeviceBuffer<T>;

/// Values of a batch's outcome on the device, downloaded in one copy: the optimizer's status
/// (Σ ascent², skip flag, constants' build status), each row's log-evidence, then each row's
/// failed step (int32, packed after the doubles).
constexpr std::size_t outcome_status_values = 3;
[[nodiscard]] std::size_t outcome_doubles(int rows);

/// The device buffers of gradients of up to `rows` rows of `steps` steps, run `chunk` trials at
/// a time.
struct GradientWorkspace {
  int chunk = 0, rows = 0;
  math::ModelShape shape;
  // Model.
  Buffer<double> constants, scratch;
  Buffer<float> working;
  // The batch.
  Buffer<float> currents, readout_offsets, initial_mean;
  Buffer<std::uint32_t> trial_ids;
  Buffer<double> accumulator_rows, totals, gradient, outcome;
  // One chunk.
  Buffer<float> particles, grad_post, grad_next, grad_pre, records;
  Buffer<double> log_weights, carried, cumulative, tiles, grad_carried, grad_log_weight;
  Buffer<std::int32_t> ancestors;
  Buffer<std::uint8_t> resampled;
  // The encoder proposal: per cell its products, records, status and scratch, the adjoints of
  // its factors; per chunk trial the reverse sweep's sums and scratch.
  Buffer<double> encoder_products, encoder_scratch, encoder_sums, encoder_backward_scratch,
      grad_encoder_mean, grad_encoder_variance;
  Buffer<float> encoder_records;
  Buffer<std::uint8_t> encoder_status;

  void reserve(const math::ModelShape& model, int max_rows, int steps, int particles_per_trial,
               int chunk_trials, bool encoder = false);

  [[nodiscard]] double* log_evidence() const { return outcome.get() + outcome_status_values; }
  [[nodiscard]] std::int32_t* failed_step() const {
    return reinterpret_cast<std::int32_t*>(outcome.get() + outcome_status_values + rows);
  }
  [[nodiscard]] const double* constants_status() const {
    return constants.get() + math::ConstantsLayout(shape).status;
  }
};

/// Where a batch's data lie on the device.
struct DeviceBatch {
  int rows = 0, steps = 0;
  const float* observations = nullptr;   ///< (rows, steps, channels)
  const float* log_factorial = nullptr;  ///< or null
  const double* inputs = nullptr;        ///< (rows, steps, inputs) or null
  const std::uint32_t* trial_ids = nullptr;
  /// The encoder proposal: the encoder's means and variances (rows, data_steps, rank), or null;
  /// the workspace's encoder_records hold their products (kernels::encoder_products) already.
  int data_steps = 0;
  const double* encoder_mean = nullptr;
  const double* encoder_variance = nullptr;
  /// With several processes, the bounds of each one's share of the rows (SequenceBatch::shares);
  /// empty: the even split.
  std::vector<int> shares;
};

/// Enqueues on the default stream the gradient at `model.parameters` of a batch: the
/// constants and input terms, forward and backward chunk by chunk, the trial-ordered sum of the
/// rows and the finishing adjoints into work.gradient. With `gather` (several processes) this
/// process runs only its share of the rows, and every process gathers every row's results
/// (accumulator row, log-evidence, failed step, the encoder factors' adjoints) before the sum;
/// a failure to enqueue this process's rows is every process's (the callers end every process
/// on the other device faults: run_shared).
void enqueue_gradient(const kernels::DeviceModel& model, const FilterOptions& options,
                      std::uint64_t seed, const DeviceBatch& batch, GradientWorkspace& work,
                      TrialGather* gather = nullptr);

/// Chunk size for a batch in the free device memory (`max_chunk_trials` > 0 caps it), with a
/// log line when it splits.
[[nodiscard]] int plan_chunks(const ModelConfig& config, int trials, int steps, int particles,
                              int max_chunk_trials);

/// The host's view of the outcome of a batch of `rows` rows (GradientWorkspace::outcome, laid
/// out for the workspace's most rows), one copy.
struct Outcome {
  std::vector<double> status, evidence;
  std::vector<std::int32_t> failed;
};
[[nodiscard]] Outcome download_outcome(const GradientWorkspace& work, int rows);

/// Observations as float, and their ln Γ(x + 1), as the kernels read them.
[[nodiscard]] std::vector<float> to_float(const double* values, std::size_t count);
[[nodiscard]] std::vector<float> log_factorials(const std::vector<double>& counts);

}  // namespace lrsmc::cuda
