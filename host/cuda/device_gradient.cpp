// A gradient on the device (method.md §3.6; device_gradient.hpp): the pipeline of kernels, the
// memory plan of a gradient and its split over trials, and the CUDA backend's elbo_gradient.
#include "cuda/device_gradient.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "core/shared_trials.hpp"
#include "cuda/cuda_training.hpp"
#include "cuda/device_encoder.hpp"
#include "cuda/device_model.hpp"
#include "cuda/filter_plan.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "lrsmc/math/weights.hpp"
#include "model/encoder_factors.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cuda {

std::vector<float> to_float(const double* values, std::size_t count) {
  std::vector<float> result(count);
  for (std::size_t i = 0; i < count; ++i) result[i] = static_cast<float>(values[i]);
  return result;
}

std::vector<float> log_factorials(const std::vector<double>& counts) {
  std::vector<float> values(counts.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<float>(std::lgamma(counts[i] + 1.0));
  return values;
}

namespace {

/// Device bytes per cell of the encoder proposal's gradient: the products, records and status,
/// and the factors' adjoints (the products' scratch is per thread: encoder_products_threads;
/// the encoder's own buffers are encoder_device_bytes).
std::int64_t encoder_cell_bytes(int rank) {
  return std::int64_t(rank) * 8 * 2 + std::int64_t(kernels::encoder_product_doubles(rank)) * 8 +
         std::int64_t(kernels::encoder_cell_floats(rank)) * 4 + 1;
}

}  // namespace

std::size_t outcome_doubles(int rows) {
  return outcome_status_values + std::size_t(rows) + (std::size_t(rows) + 1) / 2;
}

void GradientWorkspace::reserve(const math::ModelShape& model, int max_rows, int steps,
                                int particles_per_trial, int chunk_trials, bool encoder) {
  shape = model;
  chunk = chunk_trials;
  rows = max_rows;
  const std::size_t c = std::size_t(chunk_trials), T = std::size_t(steps),
                    K = std::size_t(particles_per_trial), R = std::size_t(model.rank),
                    B = std::size_t(max_rows);
  const math::GradientSlots slots(model.parameters.total, model.rank, model.channels);
  constants.reserve(std::size_t(math::ConstantsLayout(model).size));
  working.reserve(std::size_t(math::ParticleConstantsLayout(model).size));
  scratch.reserve(std::size_t(math::constants_scratch_size(model.rank, model.channels)) +
                  2 * B * R);
  if (model.inputs > 0) currents.reserve(B * T * std::size_t(model.hidden));
  if (math::readout_input_rows(model) > 0)
    readout_offsets.reserve(B * T * std::size_t(model.channels));
  initial_mean.reserve(B * R);
  std::vector<std::uint32_t> ids(B);
  for (std::size_t row = 0; row < B; ++row) ids[row] = std::uint32_t(row);
  trial_ids.upload(ids);
  accumulator_rows.reserve(B * std::size_t(slots.row_size));
  totals.reserve(std::size_t(slots.row_size));
  gradient.reserve(std::size_t(model.parameters.total));
  outcome.reserve(outcome_doubles(max_rows));
  particles.reserve(c * T * K * R);
  log_weights.reserve(c * T * K);
  ancestors.reserve(c * T * K);
  resampled.reserve(c * T);
  carried.reserve(c * K);
  cumulative.reserve(c * K);
  tiles.reserve(c * std::size_t(kernels::filter_tile_values(particles_per_trial, model.rank)));
  for (Buffer<float>* buffer : {&grad_post, &grad_next, &grad_pre}) buffer->reserve(c * K * R);
  records.reserve(c *
                  std::size_t(kernels::backward_record_values(particles_per_trial, model.rank)));
  grad_carried.reserve(c * K);
  grad_log_weight.reserve(c * K);
  if (encoder) {
    const std::size_t cells = B * T;
    encoder_products.reserve(cells * std::size_t(kernels::encoder_product_doubles(model.rank)));
    encoder_records.reserve(cells * std::size_t(kernels::encoder_cell_floats(model.rank)));
    encoder_status.reserve(cells);
    encoder_scratch.reserve(std::size_t(kernels::encoder_products_threads(std::int64_t(cells))) *
                            std::size_t(math::encoder_step_scratch_size(model.rank)));
    grad_encoder_mean.reserve(cells * R);
    grad_encoder_variance.reserve(cells * R);
    encoder_sums.reserve(c * std::size_t(kernels::encoder_sum_doubles(model.rank)));
    encoder_backward_scratch.reserve(c * std::size_t(math::encoder_step_scratch_size(model.rank)));
  }
}

namespace {

/// Forward and backward of the batch's rows [share.first, share.last), chunk by chunk, into
/// their accumulator rows, log-evidence, failed steps and encoder adjoints.
void enqueue_rows(const kernels::DeviceModel& model, const FilterOptions& options,
                  std::uint64_t seed, const DeviceBatch& batch, GradientWorkspace& work,
                  const TrialShare& share) {
  const math::ModelShape& shape = model.shape;
  const int R = shape.rank, T = batch.steps;
  const math::GradientSlots slots(shape.parameters.total, shape.rank, shape.channels);
  const bool readout_offsets = batch.inputs && math::readout_input_rows(shape) > 0;
  const int E = batch.data_steps;  // the encoder proposal's steps per row
  for (int first = share.first; first < share.last; first += work.chunk) {
    const int count = std::min(work.chunk, share.last - first);
    kernels::FilterLaunch launch;
    launch.model = model;
    set_filter_settings(launch, options, T, count, seed);
    const std::size_t cells = std::size_t(first) * T;
    launch.observations = batch.observations + cells * shape.channels;
    launch.log_factorial =
        batch.log_factorial ? batch.log_factorial + cells * shape.channels : nullptr;
    launch.currents = batch.inputs ? work.currents.get() + cells * shape.hidden : nullptr;
    launch.readout_offsets =
        readout_offsets ? work.readout_offsets.get() + cells * shape.channels : nullptr;
    launch.initial_mean = work.initial_mean.get() + std::size_t(first) * R;
    launch.trial_ids = batch.trial_ids + first;
    const std::size_t encoder_cells = std::size_t(first) * E;
    if (batch.encoder_mean != nullptr)
      launch.encoder_cells = work.encoder_records.get() +
                             encoder_cells * std::size_t(kernels::encoder_cell_floats(R));
    launch.store_all = true;
    launch.particles = work.particles.get();
    launch.log_weights = work.log_weights.get();
    launch.ancestors = work.ancestors.get();
    launch.resampled = work.resampled.get();
    launch.carried = work.carried.get();
    launch.cumulative = work.cumulative.get();
    launch.tiles = work.tiles.get();
    launch.log_evidence = work.log_evidence() + first;
    launch.failed_step = work.failed_step() + first;
    kernels::filter_block_per_trial(launch, nullptr);

    kernels::BackwardLaunch backward;
    backward.forward = launch;
    backward.inputs = batch.inputs ? batch.inputs + cells * shape.inputs : nullptr;
    backward.grad_increment = math::increment_adjoint(batch.rows, T);
    backward.grad_post = work.grad_post.get();
    backward.grad_next = work.grad_next.get();
    backward.grad_pre = work.grad_pre.get();
    backward.records = work.records.get();
    backward.grad_carried = work.grad_carried.get();
    backward.grad_log_weight = work.grad_log_weight.get();
    backward.rows = work.accumulator_rows.get() + std::size_t(first) * slots.row_size;
    if (batch.encoder_mean != nullptr) {
      backward.encoder_mean = batch.encoder_mean + encoder_cells * R;
      backward.encoder_variance = batch.encoder_variance + encoder_cells * R;
      backward.encoder_products =
          work.encoder_products.get() +
          encoder_cells * std::size_t(kernels::encoder_product_doubles(R));
      backward.encoder_sums = work.encoder_sums.get();
      backward.encoder_scratch = work.encoder_backward_scratch.get();
      backward.grad_encoder_mean = work.grad_encoder_mean.get() + encoder_cells * R;
      backward.grad_encoder_variance = work.grad_encoder_variance.get() + encoder_cells * R;
    }
    kernels::backward_block_per_trial(backward, nullptr);
  }
}

}  // namespace

void enqueue_gradient(const kernels::DeviceModel& model, const FilterOptions& options,
                      std::uint64_t seed, const DeviceBatch& batch, GradientWorkspace& work,
                      TrialGather* gather) {
  const math::ModelShape& shape = model.shape;
  const int R = shape.rank, T = batch.steps;
  const math::GradientSlots slots(shape.parameters.total, shape.rank, shape.channels);
  kernels::build_constants(model, work.scratch.get(), nullptr);
  const bool readout_offsets = batch.inputs && math::readout_input_rows(shape) > 0;
  kernels::input_terms(model, batch.inputs, batch.rows, T, work.currents.get(),
                       readout_offsets ? work.readout_offsets.get() : nullptr,
                       work.initial_mean.get(), nullptr);
  LRSMC_CUDA_CHECK(
      cudaMemset(work.failed_step(), 0xFF, std::size_t(batch.rows) * sizeof(std::int32_t)));
  const int E = batch.data_steps;  // the encoder proposal's steps per row
  const std::vector<int> bounds = gather == nullptr ? std::vector<int>{0, batch.rows}
                                  : batch.shares.empty()
                                      ? even_shares(batch.rows, gather->world().size())
                                      : batch.shares;
  LRSMC_ASSERT(bounds.back() == batch.rows);
  const TrialShare share = gather != nullptr ? gather->share(bounds) : TrialShare{0, batch.rows};
  detail::on_every_process(gather != nullptr ? &gather->world() : nullptr,
                           [&] { enqueue_rows(model, options, seed, batch, work, share); });
  if (gather != nullptr) {
    const bool encoder = batch.encoder_mean != nullptr;
    const std::int64_t encoder_bytes =
        encoder ? std::int64_t(E) * R * std::int64_t(sizeof(double)) : 0;
    gather->gather(bounds, {{work.accumulator_rows.get(),
                             std::int64_t(slots.row_size) * std::int64_t(sizeof(double))},
                            {work.log_evidence(), std::int64_t(sizeof(double))},
                            {work.failed_step(), std::int64_t(sizeof(std::int32_t))},
                            {work.grad_encoder_mean.get(), encoder_bytes},
                            {work.grad_encoder_variance.get(), encoder_bytes}});
  }
  kernels::sum_over_trials(work.accumulator_rows.get(), batch.rows, slots.row_size,
                           work.totals.get(), nullptr);
  kernels::finish_gradient(model, work.totals.get(), work.accumulator_rows.get(), batch.rows, T,
                           work.currents.get(), batch.inputs, work.gradient.get(),
                           work.scratch.get(), nullptr);
}

namespace {

std::int64_t free_device_memory() {
  std::size_t free_bytes = 0, total_bytes = 0;
  LRSMC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<std::int64_t>(free_bytes);
}

}  // namespace

int plan_chunks(const ModelConfig& config, int trials, int steps, int particles,
                int max_chunk_trials) {
  // Leave 10% of the free memory for the CUDA runtime and other allocations.
  const std::int64_t available = free_device_memory() / 10 * 9;
  int chunk = gradient_chunk_trials(config, trials, steps, particles, available);
  if (max_chunk_trials > 0) chunk = std::min(chunk, max_chunk_trials);
  // Said once per problem shape and chunk size (a fit would otherwise repeat it every step).
  static std::mutex said_mutex;
  static std::set<std::tuple<int, int, int, int>> said;
  bool first_time = false;
  if (chunk < trials && max_chunk_trials <= 0) {
    const std::lock_guard<std::mutex> lock(said_mutex);
    first_time = said.insert({trials, steps, particles, chunk}).second;
  }
  if (first_time)
    std::fprintf(stderr,
                 "lrsmc: cuda: the gradient of %d trials × %d steps × %d particles needs %lld MiB "
                 "but %lld MiB are free; running it in %d chunks of at most %d trials "
                 "(gradients accumulated, same result)\n",
                 trials, steps, particles,
                 static_cast<long long>(
                     gradient_memory_bytes(config, trials, steps, particles, trials) >> 20),
                 static_cast<long long>(available >> 20), (trials + chunk - 1) / chunk, chunk);
  return chunk;
}

Outcome download_outcome(const GradientWorkspace& work, int rows) {
  // The layout is the workspace's (its most rows); the batch uses the first `rows` of each part.
  std::vector<double> values(outcome_doubles(work.rows));
  LRSMC_CUDA_CHECK(cudaMemcpy(values.data(), work.outcome.get(), values.size() * sizeof(double),
                              cudaMemcpyDeviceToHost));
  Outcome outcome;
  outcome.status.assign(values.begin(), values.begin() + outcome_status_values);
  outcome.evidence.assign(values.begin() + outcome_status_values,
                          values.begin() + std::ptrdiff_t(outcome_status_values + rows));
  outcome.failed.resize(std::size_t(rows));
  std::memcpy(outcome.failed.data(), values.data() + outcome_status_values + work.rows,
              std::size_t(rows) * sizeof(std::int32_t));
  return outcome;
}

std::int64_t gradient_memory_bytes(const ModelConfig& config, int trials, int steps, int particles,
                                   int chunk_trials) {
  const math::ModelShape shape = model::model_shape(config, Proposal::optimal);
  const std::int64_t B = trials, c = std::max(1, std::min(chunk_trials, trials)), T = steps,
                     K = particles, R = config.rank, D = config.num_channels, N = config.num_hidden,
                     U = config.num_inputs;
  const std::int64_t row =
      math::GradientSlots(shape.parameters.total, config.rank, config.num_channels).row_size;
  // Per chunk trial: every step's particles (float), log-weights (float64), ancestors (int32)
  // and resampling flag; carried and cumulative weights and the tile sums; the reverse sweep's
  // three K×R float adjoints, its records and two K float64 adjoints.
  const std::int64_t per_chunk_trial =
      T * K * (R * 4 + 8 + 4) + T + K * 16 +
      kernels::filter_tile_values(particles, config.rank) * 8 + K * R * 12 +
      kernels::backward_record_values(particles, config.rank) * 4 + K * 16 +
      (config.encoder ? (kernels::encoder_sum_doubles(config.rank) +
                         math::encoder_step_scratch_size(config.rank)) * 8
                      : 0);
  // Per batch trial: data (observations, log-factorials, inputs, currents, the read-out's input
  // offsets), μ_0, accumulator row, outcome, id and the finishing scratch; with an encoder, its
  // proposal's buffers of every step.
  const std::int64_t per_trial =
      T * D * 8 + T * U * 8 + (U > 0 ? T * N * 4 : 0) +
      (math::readout_input_rows(shape) > 0 ? T * D * 4 : 0) + R * 4 + row * 8 + 8 + 4 + 4 +
      2 * R * 8 + (config.encoder ? T * encoder_cell_bytes(config.rank) : 0);
  // Every parameter, the encoder's included, five times: parameters, moments, gradient,
  // evaluated. A model with an encoder is planned with the encoder proposal's buffers whichever
  // proposal it runs (the plan has no proposal; the larger need is the safe one).
  const std::int64_t model =
      ParameterLayout(config).total_size() * 8 * 5 + math::ConstantsLayout(shape).size * 8 +
      math::ParticleConstantsLayout(shape).size * 4 +
      math::constants_scratch_size(config.rank, config.num_channels) * 8 + row * 8 +
      (config.encoder ? kernels::encoder_products_threads(B * T) *
                                math::encoder_step_scratch_size(config.rank) * 8 +
                            encoder_device_bytes(config, trials, steps)
                      : 0);
  return c * per_chunk_trial + B * per_trial + model + (std::int64_t(64) << 20);
}

int gradient_chunk_trials(const ModelConfig& config, int trials, int steps, int particles,
                          std::int64_t available) {
  int low = 1, high = std::max(1, trials);
  while (low < high) {  // the largest chunk that fits (the need grows with the chunk)
    const int middle = low + (high - low + 1) / 2;
    if (gradient_memory_bytes(config, trials, steps, particles, middle) <= available) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

GradientResult elbo_gradient(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, std::uint64_t seed, int device_index,
                             int max_chunk_trials, TrialGather* gather) {
  const ModelConfig& config = model.config;
  LRSMC_REQUIRE(config.rank <= kernels::max_rank, "cuda backend: rank is out of range; got ",
                config.rank, ", expected at most ", kernels::max_rank);
  LRSMC_CUDA_CHECK(cudaSetDevice(device_index));
  const int trials = batch.num_trials, steps = batch.num_steps, K = options.num_particles;
  const math::ModelShape shape = model::model_shape(config, options.proposal);
  Buffer<double> parameters(model.parameters), inputs;
  // A split batch holds this process's rows' observations (SequenceBatch::shares): they go to
  // their rows on the device, the rows this process runs.
  const std::vector<int> bounds =
      gather != nullptr ? detail::shares_of(batch, &gather->world()) : std::vector<int>{0, trials};
  const TrialShare mine = share_in(bounds, gather != nullptr ? gather->world().rank() : 0);
  const std::size_t row_values = std::size_t(steps) * std::size_t(config.num_channels),
                    first_value = batch.shares.empty() ? 0 : std::size_t(mine.first) * row_values;
  Buffer<float> observations(std::size_t(trials) * row_values), log_factorial;
  const auto upload_rows = [&](Buffer<float>& buffer, const std::vector<float>& values) {
    LRSMC_ASSERT(first_value + values.size() <= std::size_t(trials) * row_values);
    LRSMC_CUDA_CHECK(cudaMemcpy(buffer.get() + first_value, values.data(),
                                values.size() * sizeof(float), cudaMemcpyHostToDevice));
  };
  upload_rows(observations, to_float(batch.observations.data(), batch.observations.size()));
  if (config.observation == Observation::poisson) {
    log_factorial.allocate(std::size_t(trials) * row_values);
    upload_rows(log_factorial, log_factorials(batch.observations));
  }
  if (config.num_inputs > 0) inputs.upload(batch.inputs);
  // The encoder proposal: the encoder's factors of every cell, on the device.
  const bool encoder = options.proposal == Proposal::encoder;
  const int data_steps = steps - options.t_forward;
  // The chunks are planned from the free memory before the encoder takes its part, which the
  // plan counts.
  const int chunk = plan_chunks(config, trials, steps, K, max_chunk_trials);
  std::optional<DeviceEncoder> factors;
  if (encoder) {
    factors.emplace(model, trials, data_steps);
    factors->forward(parameters.get(), observations.get(), steps);
  }
  GradientWorkspace work;
  work.reserve(shape, trials, steps, K, chunk, encoder);
  if (!batch.trial_ids.empty()) work.trial_ids.upload(batch.trial_ids);
  DeviceBatch device_batch;
  device_batch.rows = trials;
  device_batch.steps = steps;
  device_batch.observations = observations.get();
  device_batch.log_factorial = log_factorial.get();
  device_batch.inputs = inputs.get();
  device_batch.trial_ids = work.trial_ids.get();
  device_batch.data_steps = data_steps;
  device_batch.encoder_mean = factors ? factors->mean() : nullptr;
  device_batch.encoder_variance = factors ? factors->variance() : nullptr;
  if (gather != nullptr) device_batch.shares = bounds;
  const kernels::DeviceModel device =
      device_model(shape, parameters.get(), work.constants.get(), work.working.get(), device_index);
  if (encoder) {
    // The encoder proposal's products of every cell, before the filter reads them, with the CPU
    // backend's errors in its order: the constants', then the first cell without a product.
    kernels::build_constants(device, work.scratch.get(), nullptr);
    const double status = kernels::download(work.constants_status(), 1).front();
    if (status != math::constants_ok) throw NumericalError(model::constants_error(int(status)));
    kernels::encoder_products(device, device_batch.encoder_mean, device_batch.encoder_variance,
                              trials * data_steps, data_steps, work.encoder_products.get(),
                              work.encoder_records.get(), work.encoder_status.get(),
                              work.encoder_scratch.get(), nullptr);
    const std::vector<std::uint8_t> failed = work.encoder_status.download();
    for (std::size_t cell = 0; cell < std::size_t(trials) * data_steps; ++cell)
      if (failed[cell] != 0)
        model::throw_product_failure(int(cell / std::size_t(data_steps)),
                                     int(cell % std::size_t(data_steps)));
  }
  enqueue_gradient(device, options, seed, device_batch, work, gather);
  // The constants' status into the outcome, beside the evidence and the failed steps.
  LRSMC_CUDA_CHECK(cudaMemcpy(work.outcome.get() + 2, work.constants_status(), sizeof(double),
                              cudaMemcpyDeviceToDevice));
  const Outcome outcome = download_outcome(work, trials);
  const std::string failure = failure_of(outcome.status[2], outcome.failed, outcome.evidence);
  if (!failure.empty()) throw NumericalError(failure);  // the CPU backend's message
  GradientResult result;
  result.elbo = elbo_per_trial(outcome.evidence, steps, result.elbo_per_trial);
  // Every parameter of the model: the engine's, then the encoder's (zero unless its proposal
  // runs), as the CPU backend gives them.
  result.gradient = work.gradient.download();
  result.gradient.resize(std::size_t(shape.parameters.total));
  result.gradient.resize(model.parameters.size(), 0.0);
  if (encoder)  // the encoder's parameters, from its factors' adjoints
    factors->add_gradient(work.grad_encoder_mean.get(), work.grad_encoder_variance.get(),
                          result.gradient);
  return result;
}

}  // namespace lrsmc::cuda
