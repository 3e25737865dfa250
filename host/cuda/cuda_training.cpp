// Device-resident training sessions of the CUDA backend (method.md §5.1): the data, the
// parameters and the optimizer state stay on the device; a step uploads its rows' indices,
// runs the gradient (device_gradient.hpp), the NaN guard, the norm and the optimizer on the
// device, and downloads its outcome in one copy.
#include "cuda/cuda_training.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/shared_trials.hpp"
#include "cuda/device_gradient.hpp"
#include "cuda/device_model.hpp"
#include "cuda/trial_gather.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cuda {
namespace {

/// The first trial whose observations `data` holds (0 when it holds none).
int first_held(const Dataset& data) {
  return data.whole() || data.held_trials->empty() ? 0 : data.held_trials->front();
}

/// Data on the device for the whole fit; a step uploads its rows' indices and downloads its
/// outcome, and everything between runs on the device.
class CudaTrainingSession final : public TrainingSession {
 public:
  CudaTrainingSession(const TrainingSetup& setup, int device_index, TrialGather* gather)
      : setup_(setup),
        data_(*setup.train),
        shape_(model::model_shape(setup.config, setup.filter.proposal)),
        count_(ParameterLayout(setup.config).total_size()),
        device_index_(device_index),
        gather_(gather) {
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
      // Of a training set split over processes (Dataset::shares) each process checks the
      // trials it holds, and all fail alike.
      SequenceBatch whole;
      whole.num_trials = data_.num_trials;
      whole.num_steps = data_.num_steps;
      whole.num_channels = data_.num_channels;
      whole.num_inputs = data_.num_inputs;
      whole.allow_missing = data_.allow_missing;
      whole.observations = data_.observations;
      whole.inputs = data_.inputs;
      std::optional<TrialShare> observed;
      if (!data_.whole()) {
        const int first = first_held(data_);
        observed = TrialShare{first, first + int(data_.held_trials->size())};
        LRSMC_REQUIRE(!data_.shares.empty() && (observed->count() == 0 ||
                                                data_.held_trials->back() == observed->last - 1),
                      data_.source,
                      ": a training set that holds some trials must hold one process's share of "
                      "them (Dataset::shares)");
      }
      const std::string source = data_.source.empty() ? "training data" : data_.source;
      detail::on_every_process(gather != nullptr ? &gather->world() : nullptr, [&] {
        validate_batch(config, whole, source, observed);
        require_complete(whole, setup_.filter.proposal, source, observed);
      });
    }
    data_observations_.upload(to_float(data_.observations.data(), data_.observations.size()));
    if (config.observation == Observation::poisson)
      data_log_factorial_.upload(log_factorials(data_.observations));
    if (config.num_inputs > 0) data_inputs_.upload(data_.inputs);
    parameters_.upload(setup_.parameters);
    evaluated_.upload(setup_.parameters);
    first_moment_.upload(setup_.first_moment);
    second_moment_.upload(setup_.second_moment);
    const std::size_t rows = std::size_t(setup_.max_batch_trials),
                      T = std::size_t(setup_.batch_steps);
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
    return run_shared(gather_ != nullptr ? &gather_->world() : nullptr,
                      [&] { return step_here(trials, starts, seed, coefficients); });
  }

  /// One step of this process (its share of the rows when shared).
  StepOutcome step_here(const std::vector<int>& trials, const std::vector<int>& starts,
                        std::uint64_t seed, const math::AdamCoefficients& coefficients) {
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
    if (!data_.whole()) {  // this process's share: only its trials' observations are here
      gather.observed_first = first_held(data_);
      gather.observed_last = gather.observed_first + int(data_.held_trials->size());
    }
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
    batch.shares = batch_shares(data_, trials);
    enqueue_gradient(model_, setup_.filter, seed, batch, work_, gather_);
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
  TrialGather* gather_ = nullptr;  // the processes sharing each step's rows, or null
  Buffer<double> parameters_, evaluated_, first_moment_, second_moment_;
  Buffer<float> data_observations_, data_log_factorial_, batch_observations_, batch_log_factorial_;
  Buffer<double> data_inputs_, batch_inputs_;
  Buffer<std::int32_t> rows_;
  GradientWorkspace work_;
  kernels::DeviceModel model_;
};

}  // namespace

std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup, int device_index,
                                                TrialGather* gather) {
  LRSMC_ASSERT(setup.train != nullptr);
  return std::make_unique<CudaTrainingSession>(setup, device_index, gather);
}

}  // namespace lrsmc::cuda
