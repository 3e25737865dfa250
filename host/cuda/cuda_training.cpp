// The CUDA backend's gradients and training (method.md §3.6, §5.1). A gradient runs on the
// device from end to end: the per-call constants and input terms, the forward kernel storing
// every step and the reverse sweep, chunk by chunk over trials when a batch does not fit, the
// sum of the trials' rows and the once-per-call adjoints. A training session keeps the data,
// the parameters and the optimizer state on the device; a step is one upload of the batch's
// rows, the kernels, and one download of its outcome.
#include "cuda/cuda_training.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <tuple>

#include "cuda/device_model.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/weights.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cuda {
namespace {

template <typename T>
using Buffer = kernels::DeviceBuffer<T>;

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

/// Values of a batch's outcome on the device, downloaded in one copy: the optimizer's status
/// (Σ ascent², skip flag, constants' build status), each row's log-evidence, then each row's
/// failed step (int32, packed after the doubles).
constexpr std::size_t outcome_status_values = 3;
std::size_t outcome_doubles(int rows) {
  return outcome_status_values + std::size_t(rows) + (std::size_t(rows) + 1) / 2;
}

/// The device buffers of gradients of up to `rows` rows of `steps` steps, run `chunk` trials at
/// a time.
struct GradientWorkspace {
  int chunk = 0, rows = 0;
  math::ModelShape shape;
  // Model.
  Buffer<double> constants, scratch;
  Buffer<float> working;
  // The batch.
  Buffer<float> currents, initial_mean;
  Buffer<std::uint32_t> trial_ids;
  Buffer<double> accumulator_rows, totals, gradient, outcome;
  // One chunk.
  Buffer<float> particles, grad_post, grad_next, grad_pre, records;
  Buffer<double> log_weights, carried, cumulative, tiles, grad_carried, grad_log_weight;
  Buffer<std::int32_t> ancestors;
  Buffer<std::uint8_t> resampled;

  void reserve(const math::ModelShape& model, int max_rows, int steps, int particles_per_trial,
               int chunk_trials) {
    shape = model;
    chunk = chunk_trials;
    rows = max_rows;
    const std::size_t c = std::size_t(chunk_trials), T = std::size_t(steps),
                      K = std::size_t(particles_per_trial), R = std::size_t(model.rank),
                      B = std::size_t(max_rows);
    const math::GradientSlots slots(model.parameters.total, model.rank, model.channels);
    constants.reserve(std::size_t(math::ConstantsLayout(model).size));
    working.reserve(std::size_t(math::ParticleConstantsLayout(model).size));
    scratch.reserve(std::size_t(math::constants_scratch_size(model.rank, model.channels)) + 2 * B * R);
    if (model.inputs > 0) currents.reserve(B * T * std::size_t(model.hidden));
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
    records.reserve(c * std::size_t(kernels::backward_record_values(particles_per_trial, model.rank)));
    grad_carried.reserve(c * K);
    grad_log_weight.reserve(c * K);
  }

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
  const float* observations = nullptr;   // (rows, steps, channels)
  const float* log_factorial = nullptr;  // or null
  const double* inputs = nullptr;        // (rows, steps, inputs) or null
  const std::uint32_t* trial_ids = nullptr;
};

/// Enqueues on the default stream the gradient at `parameters` (device) of a batch: the
/// constants and input terms, forward and backward chunk by chunk, the trial-ordered sum of the
/// rows and the finishing adjoints into work.gradient.
void enqueue_gradient(const kernels::DeviceModel& model, const FilterOptions& options,
                      std::uint64_t seed, const DeviceBatch& batch, GradientWorkspace& work) {
  const math::ModelShape& shape = model.shape;
  const int R = shape.rank, T = batch.steps;
  const math::GradientSlots slots(shape.parameters.total, shape.rank, shape.channels);
  kernels::build_constants(model, work.scratch.get(), nullptr);
  kernels::input_terms(model, batch.inputs, batch.rows, T, work.currents.get(),
                       work.initial_mean.get(), nullptr);
  LRSMC_CUDA_CHECK(cudaMemset(work.failed_step(), 0xFF, std::size_t(batch.rows) * sizeof(std::int32_t)));
  for (int first = 0; first < batch.rows; first += work.chunk) {
    const int count = std::min(work.chunk, batch.rows - first);
    kernels::FilterLaunch launch;
    launch.model = model;
    set_filter_settings(launch, options, T, count, seed);
    const std::size_t cells = std::size_t(first) * T;
    launch.observations = batch.observations + cells * shape.channels;
    launch.log_factorial = batch.log_factorial ? batch.log_factorial + cells * shape.channels : nullptr;
    launch.currents = batch.inputs ? work.currents.get() + cells * shape.hidden : nullptr;
    launch.initial_mean = work.initial_mean.get() + std::size_t(first) * R;
    launch.trial_ids = batch.trial_ids + first;
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
    kernels::backward_block_per_trial(backward, nullptr);
  }
  kernels::sum_over_trials(work.accumulator_rows.get(), batch.rows, slots.row_size,
                           work.totals.get(), nullptr);
  kernels::finish_gradient(model, work.totals.get(), work.accumulator_rows.get(), batch.rows, T,
                           work.currents.get(), batch.inputs, work.gradient.get(),
                           work.scratch.get(), nullptr);
}

std::int64_t free_device_memory() {
  std::size_t free_bytes = 0, total_bytes = 0;
  LRSMC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<std::int64_t>(free_bytes);
}

/// Chunk size for a batch, with a log line when it splits.
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
                 static_cast<long long>(gradient_memory_bytes(config, trials, steps, particles, trials) >> 20),
                 static_cast<long long>(available >> 20), (trials + chunk - 1) / chunk, chunk);
  return chunk;
}

/// The host's view of a batch's outcome (GradientWorkspace::outcome), one copy.
struct Outcome {
  std::vector<double> status, evidence;
  std::vector<std::int32_t> failed;
};

Outcome download_outcome(const GradientWorkspace& work, int rows) {
  std::vector<double> values(outcome_doubles(rows));
  LRSMC_CUDA_CHECK(cudaMemcpy(values.data(), work.outcome.get(), values.size() * sizeof(double),
                              cudaMemcpyDeviceToHost));
  Outcome outcome;
  outcome.status.assign(values.begin(), values.begin() + outcome_status_values);
  outcome.evidence.assign(values.begin() + outcome_status_values,
                          values.begin() + std::ptrdiff_t(outcome_status_values + rows));
  outcome.failed.resize(std::size_t(rows));
  std::memcpy(outcome.failed.data(), values.data() + outcome_status_values + rows,
              std::size_t(rows) * sizeof(std::int32_t));
  return outcome;
}

}  // namespace

std::int64_t gradient_memory_bytes(const ModelConfig& config, int trials, int steps,
                                   int particles, int chunk_trials) {
  const math::ModelShape shape = model::model_shape(config, Proposal::optimal);
  const std::int64_t B = trials, c = std::max(1, std::min(chunk_trials, trials)), T = steps,
                     K = particles, R = config.rank, D = config.num_channels,
                     N = config.num_hidden, U = config.num_inputs;
  const std::int64_t row =
      math::GradientSlots(shape.parameters.total, config.rank, config.num_channels).row_size;
  // Per chunk trial: every step's particles (float), log-weights (float64), ancestors (int32)
  // and resampling flag; carried and cumulative weights and the tile sums; the reverse sweep's
  // three K×R float adjoints, its records and two K float64 adjoints.
  const std::int64_t per_chunk_trial =
      T * K * (R * 4 + 8 + 4) + T + K * 16 + kernels::filter_tile_values(particles, config.rank) * 8 +
      K * R * 12 + kernels::backward_record_values(particles, config.rank) * 4 + K * 16;
  // Per batch trial: data (observations, log-factorials, inputs, currents), μ_0, accumulator
  // row, outcome, id and the finishing scratch.
  const std::int64_t per_trial = T * D * 8 + T * U * 8 + (U > 0 ? T * N * 4 : 0) + R * 4 +
                                 row * 8 + 8 + 4 + 4 + 2 * R * 8;
  const std::int64_t model = shape.parameters.total * 8 * 5 +  // parameters, moments, gradient, evaluated
                             math::ConstantsLayout(shape).size * 8 +
                             math::ParticleConstantsLayout(shape).size * 4 +
                             math::constants_scratch_size(config.rank, config.num_channels) * 8 + row * 8;
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
                             int max_chunk_trials) {
  const ModelConfig& config = model.config;
  LRSMC_REQUIRE(config.rank <= kernels::max_rank, "cuda backend: rank is out of range; got ",
                config.rank, ", expected at most ", kernels::max_rank);
  LRSMC_CUDA_CHECK(cudaSetDevice(device_index));
  const int trials = batch.num_trials, steps = batch.num_steps, K = options.num_particles;
  const math::ModelShape shape = model::model_shape(config, options.proposal);
  Buffer<double> parameters(model.parameters), inputs;
  Buffer<float> observations(to_float(batch.observations.data(), batch.observations.size())),
      log_factorial;
  if (config.observation == Observation::poisson) log_factorial.upload(log_factorials(batch.observations));
  if (config.num_inputs > 0) inputs.upload(batch.inputs);
  GradientWorkspace work;
  work.reserve(shape, trials, steps, K, plan_chunks(config, trials, steps, K, max_chunk_trials));
  if (!batch.trial_ids.empty()) work.trial_ids.upload(batch.trial_ids);
  DeviceBatch device_batch;
  device_batch.rows = trials;
  device_batch.steps = steps;
  device_batch.observations = observations.get();
  device_batch.log_factorial = log_factorial.get();
  device_batch.inputs = inputs.get();
  device_batch.trial_ids = work.trial_ids.get();
  const kernels::DeviceModel device = device_model(shape, parameters.get(), work.constants.get(),
                                                   work.working.get(), device_index);
  enqueue_gradient(device, options, seed, device_batch, work);
  // The constants' status into the outcome, beside the evidence and the failed steps.
  LRSMC_CUDA_CHECK(cudaMemcpy(work.outcome.get() + 2, work.constants_status(), sizeof(double),
                              cudaMemcpyDeviceToDevice));
  const Outcome outcome = download_outcome(work, trials);
  const std::string failure = failure_of(outcome.status[2], outcome.failed, outcome.evidence);
  if (!failure.empty()) throw NumericalError(failure);  // the CPU backend's message
  GradientResult result;
  result.elbo = elbo_per_trial(outcome.evidence, steps, result.elbo_per_trial);
  result.gradient = work.gradient.download();
  result.gradient.resize(std::size_t(shape.parameters.total));
  return result;
}

namespace {

/// Data on the device for the whole fit; a step uploads its rows' indices and downloads its
/// outcome, and everything between runs on the device.
class CudaTrainingSession final : public TrainingSession {
 public:
  CudaTrainingSession(const TrainingSetup& setup, int device_index)
      : setup_(setup),
        data_(*setup.train),
        shape_(model::model_shape(setup.config, setup.filter.proposal)),
        count_(ParameterLayout(setup.config).total_size()),
        device_index_(device_index) {
    const ModelConfig& config = setup_.config;
    LRSMC_REQUIRE(config.rank <= kernels::max_rank, "cuda backend: rank is out of range; got ",
                  config.rank, ", expected at most ", kernels::max_rank);
    LRSMC_CUDA_CHECK(cudaSetDevice(device_index));
    LRSMC_ASSERT(setup_.max_batch_trials >= 1 && setup_.batch_steps >= 1);
    LRSMC_ASSERT(std::int64_t(setup_.parameters.size()) == count_);
    {
      // The host loop checks every batch in Backend::elbo_gradient (shapes, finite values,
      // Poisson counts); the session never builds one, so check the whole training set once
      // with the same checks and messages. Otherwise a size mismatch would read past the
      // device copy and NaN or non-count data would train silently or fail as "every
      // log-weight is nan".
      SequenceBatch whole;
      whole.num_trials = data_.num_trials;
      whole.num_steps = data_.num_steps;
      whole.num_channels = data_.num_channels;
      whole.num_inputs = data_.num_inputs;
      whole.observations = data_.observations;
      whole.inputs = data_.inputs;
      validate_batch(config, whole, data_.source.empty() ? "training data" : data_.source);
    }
    data_observations_.upload(to_float(data_.observations.data(), data_.observations.size()));
    if (config.observation == Observation::poisson)
      data_log_factorial_.upload(log_factorials(data_.observations));
    if (config.num_inputs > 0) data_inputs_.upload(data_.inputs);
    parameters_.upload(setup_.parameters);
    evaluated_.upload(setup_.parameters);
    first_moment_.upload(setup_.first_moment);
    second_moment_.upload(setup_.second_moment);
    const std::size_t rows = std::size_t(setup_.max_batch_trials), T = std::size_t(setup_.batch_steps);
    rows_.reserve(2 * rows);
    batch_observations_.reserve(rows * T * config.num_channels);
    if (config.observation == Observation::poisson)
      batch_log_factorial_.reserve(rows * T * config.num_channels);
    if (config.num_inputs > 0) batch_inputs_.reserve(rows * T * config.num_inputs);
    work_.reserve(shape_, setup_.max_batch_trials, setup_.batch_steps, setup_.filter.num_particles,
                  plan_chunks(config, setup_.max_batch_trials, setup_.batch_steps,
                              setup_.filter.num_particles, 0));
    model_ = device_model(shape_, parameters_.get(), work_.constants.get(), work_.working.get(),
                          device_index);
  }

  StepOutcome step(const std::vector<int>& trials, const std::vector<int>& starts,
                   std::uint64_t seed, const math::AdamCoefficients& coefficients) override {
    const ModelConfig& config = setup_.config;
    const int rows = int(trials.size()), steps = setup_.batch_steps;
    LRSMC_ASSERT(rows >= 1 && rows <= setup_.max_batch_trials && starts.size() == trials.size());
    LRSMC_CUDA_CHECK(cudaSetDevice(device_index_));
    // The rows' trials and first steps: one upload.
    std::vector<std::int32_t> indices(2 * std::size_t(rows));
    std::copy(trials.begin(), trials.end(), indices.begin());
    std::copy(starts.begin(), starts.end(), indices.begin() + rows);
    rows_.upload(indices);
    kernels::GatherLaunch gather;
    gather.batch = rows;
    gather.length = steps;
    gather.data_steps = data_.num_steps;
    gather.channels = config.num_channels;
    gather.num_inputs = config.num_inputs;
    gather.trials = rows_.get();
    gather.starts = rows_.get() + rows;
    gather.observations = data_observations_.get();
    gather.log_factorial = data_log_factorial_.get();
    gather.inputs = config.num_inputs > 0 ? data_inputs_.get() : nullptr;
    gather.out_observations = batch_observations_.get();
    gather.out_log_factorial = batch_log_factorial_.get();
    gather.out_inputs = batch_inputs_.get();
    kernels::gather_batch(gather, nullptr);
    DeviceBatch batch;
    batch.rows = rows;
    batch.steps = steps;
    batch.observations = batch_observations_.get();
    batch.log_factorial = batch_log_factorial_.get();
    batch.inputs = config.num_inputs > 0 ? batch_inputs_.get() : nullptr;
    batch.trial_ids = work_.trial_ids.get();
    enqueue_gradient(model_, setup_.filter, seed, batch, work_);
    // The NaN guard, the norm and the optimizer step, then the outcome: one download.
    kernels::gradient_norm(work_.gradient.get(), count_, work_.log_evidence(), work_.failed_step(),
                           rows, work_.constants_status(), work_.outcome.get(), nullptr);
    kernels::OptimizerLaunch launch;
    launch.count = count_;
    launch.parameters = parameters_.get();
    launch.first_moment = first_moment_.get();
    launch.second_moment = second_moment_.get();
    launch.evaluated = evaluated_.get();
    launch.ascent = work_.gradient.get();
    launch.status = work_.outcome.get();
    launch.gradient_clip = setup_.gradient_clip;
    launch.coefficients = coefficients;
    kernels::optimizer_step(launch, nullptr);
    const Outcome outcome = download_outcome(work_, rows);
    // The host loop's checks, in its order and words.
    StepOutcome result;
    result.failure = failure_of(outcome.status[2], outcome.failed, outcome.evidence);
    if (!result.failure.empty()) return result;
    std::vector<double> elbo_per_row;
    result.elbo = elbo_per_trial(outcome.evidence, steps, elbo_per_row);
    if (!std::isfinite(result.elbo)) {
      result.failure = detail::concat("the ELBO is ", result.elbo);
    } else if (outcome.status[1] != 0.0) {
      result.failure = "the gradient contains NaN or Inf";
    }
    return result;
  }

  void read_state(std::vector<double>& parameters, std::vector<double>& first_moment,
                  std::vector<double>& second_moment) override {
    parameters_.download(parameters, std::size_t(count_));
    first_moment_.download(first_moment, std::size_t(count_));
    second_moment_.download(second_moment, std::size_t(count_));
  }

  void read_evaluated(std::vector<double>& parameters) override {
    evaluated_.download(parameters, std::size_t(count_));
  }

 private:
  TrainingSetup setup_;
  const Dataset& data_;
  math::ModelShape shape_;
  std::int64_t count_ = 0;
  int device_index_ = 0;
  Buffer<double> parameters_, evaluated_, first_moment_, second_moment_;
  Buffer<float> data_observations_, data_log_factorial_, batch_observations_, batch_log_factorial_;
  Buffer<double> data_inputs_, batch_inputs_;
  Buffer<std::int32_t> rows_;
  GradientWorkspace work_;
  kernels::DeviceModel model_;
};

}  // namespace

std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup, int device_index) {
  LRSMC_ASSERT(setup.train != nullptr);
  return std::make_unique<CudaTrainingSession>(setup, device_index);
}

}  // namespace lrsmc::cuda
