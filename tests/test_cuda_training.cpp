// CUDA gradients and training against the CPU float engine on the same Philox draws
// (support/engine_comparison.hpp): the ELBO gradient for every runnable option combination,
// few particles on lane groups, the ESS threshold's carried weights, ranks without a
// specialised kernel, loadings beyond shared memory, determinism and the trial-split gradient;
// device-resident training step by step against the host trainer with resampling on, the NaN
// guard's last good parameters, and resume. Skips with a message when lrsmc was built without
// CUDA or no GPU answers.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <tuple>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/distributed.hpp"
#include "lrsmc/trainer.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"
#if defined(LRSMC_WITH_CUDA)
#include "cuda/cuda_training.hpp"
#include "cuda/trial_gather.hpp"
#endif

namespace lrsmc {
namespace {

constexpr const char* no_device =
    "no CUDA device (lrsmc built without CUDA, or no GPU answers): CUDA training check skipped";

class CudaGradientTest : public ::testing::TestWithParam<testing::OptionCombination> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

// K = 300 (one particle per thread, two tiles) and K = 10 (16 lanes per particle).
TEST_P(CudaGradientTest, MatchesTheCpu) {
  const auto [nonlinearity, proposal, observation, noise, resampling] = GetParam();
  const ModelConfig config =
      testing::medium_config(nonlinearity, noise, observation.observation, observation.link);
  const Model model = testing::random_model(config, 12);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 20, 4);
  auto gpu = make_backend(BackendKind::cuda);
  for (const int particles : {300, 10}) {
    FilterOptions options;
    options.num_particles = particles;
    options.proposal = proposal;
    options.resampling = resampling;
    testing::expect_same_gradient(
        *gpu, model, batch, options, 21,
        ::testing::PrintToString(GetParam()) + ", K = " + std::to_string(particles));
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptions, CudaGradientTest,
                         ::testing::ValuesIn(testing::runnable_combinations(
                             {Resampling::systematic, Resampling::stratified,
                              Resampling::multinomial})),
                         testing::combination_name);

class CudaGradient : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

// The encoder proposal (the step's sums into its constants' adjoint, the device encoder's
// gradient) and t_forward forecast steps under every proposal, at K = 300 and K = 10.
TEST_F(CudaGradient, EncoderProposalAndForecastStepsMatchTheCpu) {
  auto gpu = make_backend(BackendKind::cuda);
  for (const auto& [label, model, options] : testing::encoder_cases()) {
    const SequenceBatch batch = testing::sampled_batch(model, 4, 12, 4);
    for (const int particles : {300, 10}) {
      FilterOptions run = options;
      run.num_particles = particles;
      testing::expect_same_gradient(*gpu, model, batch, run, 21,
                                    label + ", K = " + std::to_string(particles));
    }
  }
}

// A small run of the encoder proposal's products and reverse sweep (with forecast steps) and of
// a one-to-one read-out's merged jobs, sized for compute-sanitizer (bench/run_gpu.sh): against
// the CPU as the larger tests above.
TEST_F(CudaGradient, SmallEncoderAndReadoutRunsForTheSanitizer) {
  auto gpu = make_backend(BackendKind::cuda);
  const testing::EncoderCase encoder = testing::encoder_cases()[2];  // encoder, t_forward 3
  const std::vector<std::pair<std::string, Model>> readouts = testing::readout_models(12);
  const auto& [label, rates] = readouts[4];
  ASSERT_EQ(label, "rates, gaussian");
  for (const auto& [model, proposal, t_forward] :
       {std::tuple<const Model&, Proposal, int>{encoder.model, Proposal::encoder, 3},
        std::tuple<const Model&, Proposal, int>{rates, Proposal::bootstrap, 0}}) {
    FilterOptions options;
    options.num_particles = 10;
    options.proposal = proposal;
    options.t_forward = t_forward;
    testing::expect_same_gradient(*gpu, model, testing::sampled_batch(model, 2, 8, 4), options, 3,
                                  to_string(proposal));
  }
}

// The read-outs beyond Bᵀz, whose one-to-one terms share the units' accumulators (m, h, W_u) and
// whose input offsets add to W_u or B_v, at K = 300 and K = 10, Gaussian and Poisson.
TEST_F(CudaGradient, EveryReadoutMatchesTheCpu) {
  auto gpu = make_backend(BackendKind::cuda);
  for (const auto& [label, model] : testing::readout_models(12)) {
    const SequenceBatch batch = testing::sampled_batch(model, 4, 12, 4);
    for (const int particles : {300, 10}) {
      FilterOptions options;
      options.num_particles = particles;
      options.proposal = Proposal::bootstrap;
      testing::expect_same_gradient(*gpu, model, batch, options, 21,
                                    label + ", K = " + std::to_string(particles));
    }
  }
}

// Missing observations (NaN, allow_missing): the reverse sweep's channel terms are skipped as
// on the CPU, Gaussian and Poisson.
TEST_F(CudaGradient, MissingObservationsMatchTheCpu) {
  auto gpu = make_backend(BackendKind::cuda);
  for (const Observation observation : {Observation::gaussian, Observation::poisson}) {
    const auto [model, batch] = testing::missing_case(observation);
    FilterOptions options;
    options.num_particles = 100;
    options.proposal = Proposal::bootstrap;
    testing::expect_same_gradient(*gpu, model, batch, options, 5, to_string(observation));
  }
}

TEST_F(CudaGradient, CarriedWeightsUnderAnEssThreshold) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 7);
  const SequenceBatch batch = testing::sampled_batch(model, 6, 25, 3);
  auto gpu = make_backend(BackendKind::cuda);
  for (const double threshold : {0.0, 0.5}) {
    for (const Proposal proposal : {Proposal::bootstrap, Proposal::optimal}) {
      FilterOptions options;
      options.num_particles = 700;  // three tiles
      options.proposal = proposal;
      options.resample_threshold = threshold;
      testing::expect_same_gradient(
          *gpu, model, batch, options, 4,
          to_string(proposal) + ", threshold " + std::to_string(threshold));
    }
  }
}

// Every particle count from 1 to 129 splits a particle over its own number of lanes.
TEST_F(CudaGradient, EveryLaneSplit) {
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                             Observation::gaussian, Link::identity, 1);
  config.rank = 3;
  config.num_hidden = 96;
  config.num_channels = 20;
  const Model model = testing::random_model(config, 14);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 12, 5);
  auto gpu = make_backend(BackendKind::cuda);
  for (const int particles : {1, 5, 9, 17, 33, 65, 129}) {
    for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap}) {
      FilterOptions options;
      options.num_particles = particles;
      options.proposal = proposal;
      testing::expect_same_gradient(
          *gpu, model, batch, options, 8,
          std::to_string(particles) + " particles, " + to_string(proposal));
    }
  }
}

// Ranks 2 and 3 run kernels compiled for their rank; every other rank the generic one. At
// hidden 2400 and rank 12 the loadings pass the device's shared memory and are read from
// global memory.
TEST_F(CudaGradient, RanksWithoutASpecialisedKernelAndLoadingsBeyondSharedMemory) {
  auto gpu = make_backend(BackendKind::cuda);
  for (const auto& [rank, hidden] : {std::pair{1, 40}, std::pair{5, 40}, std::pair{12, 2400}}) {
    ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                               Observation::gaussian, Link::identity, 1);
    config.rank = rank;
    config.num_hidden = hidden;
    config.num_channels = 12;
    const Model model = testing::random_model(config, 20 + std::uint64_t(rank));
    const SequenceBatch batch = testing::sampled_batch(model, 3, hidden > 100 ? 4 : 20, 6);
    for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap}) {
      FilterOptions options;
      options.num_particles = 200;
      options.proposal = proposal;
      testing::expect_same_gradient(*gpu, model, batch, options, 3,
                                    "rank " + std::to_string(rank) + ", hidden " +
                                        std::to_string(hidden) + ", " + to_string(proposal));
    }
  }
}

TEST_F(CudaGradient, RepeatedRunsAreBitwiseIdentical) {
  const ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity, 2);
  const Model model = testing::random_model(config, 3);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 30, 2);
  FilterOptions options;
  options.num_particles = 1000;
  auto gpu = make_backend(BackendKind::cuda);
  testing::expect_identical(config, gpu->elbo_gradient(model, batch, options, 5),
                            gpu->elbo_gradient(model, batch, options, 5), "repeated");
}

#if defined(LRSMC_WITH_CUDA)
TEST_F(CudaGradient, SplittingABatchOverTrialsGivesTheSameBits) {
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity, 1);
  const Model model = testing::random_model(config, 8);
  const SequenceBatch batch = testing::sampled_batch(model, 7, 15, 6);
  FilterOptions options;
  options.num_particles = 64;
  const auto whole = cuda::elbo_gradient(model, batch, options, 9, 0);
  for (const int chunk : {1, 2, 3})
    testing::expect_identical(config, whole,
                              cuda::elbo_gradient(model, batch, options, 9, 0, chunk),
                              "chunks of " + std::to_string(chunk));
}

// Host-only arithmetic, but it lives in the CUDA build.
TEST(GradientMemoryPlan, CoversTheBackwardPassAndSplits) {
  ModelConfig config;  // the EEG setting: R = 3, N = 512, D = 64
  const std::int64_t one = cuda::gradient_memory_bytes(config, 64, 100, 10000, 1);
  const std::int64_t all = cuda::gradient_memory_bytes(config, 64, 100, 10000, 64);
  EXPECT_LT(one, all);
  // Stored paths alone: T·K·(4R + 12) bytes per trial.
  EXPECT_GT(all, std::int64_t(64) * 100 * 10000 * (4 * 3 + 12));
  EXPECT_EQ(cuda::gradient_chunk_trials(config, 64, 100, 10000, all), 64);
  const int chunk = cuda::gradient_chunk_trials(config, 64, 100, 10000, all / 3);
  EXPECT_GE(chunk, 1);
  EXPECT_LT(chunk, 64);
  EXPECT_LE(cuda::gradient_memory_bytes(config, 64, 100, 10000, chunk), all / 3);
}
#endif

// --- training --------------------------------------------------------------------------

struct TrainingCase {
  bool continuous;
  Optimizer optimizer;
  double clip;
};

Dataset training_data(const Model& model, bool continuous) {
  Dataset data;
  data.source = "test";
  data.num_channels = model.config.num_channels;
  data.num_inputs = model.config.num_inputs;
  const SequenceBatch batch = continuous ? testing::sampled_batch(model, 1, 400, 31)
                                         : testing::sampled_batch(model, 12, 20, 31);
  data.num_trials = batch.num_trials;
  data.num_steps = batch.num_steps;
  data.observations = batch.observations;
  data.inputs = batch.inputs;
  data.layout = continuous ? DataLayout::time_channels : DataLayout::trials_time_channels;
  return data;
}

/// Batches of 5 rows: one window batch per epoch, or three of the 12 trials, the last of 2 (a
/// batch smaller than the session's largest).
TrainingOptions training_options(const TrainingCase& which) {
  TrainingOptions options;
  options.epochs = 6;
  options.batch_size = 5;
  options.window = 25;
  options.windows_per_epoch = 5;
  options.learning_rate = 1e-3;
  options.learning_rate_end = 5e-4;
  options.optimizer = which.optimizer;
  options.gradient_clip = which.clip;
  options.filter.num_particles = 64;
  options.filter.proposal = Proposal::optimal;
  options.seed = 17;
  return options;
}

// The device-resident session against the host loop on the CPU float engine, with resampling
// after every step (the default): on the emulated device every step's ELBO and the parameters
// are bitwise the host loop's. On a GPU the runs part at the first near-tie its rounding
// resolves otherwise, so only the first step, from the same parameters, is compared.
TEST(CudaTraining, StepsMatchTheHostTrainer) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                             Observation::gaussian, Link::identity, 1);
  config.num_hidden = 32;
  const Model model = testing::random_model(config, 5);
  for (const TrainingCase which :
       {TrainingCase{false, Optimizer::radam, 0.0}, TrainingCase{true, Optimizer::adam, 0.5},
        TrainingCase{true, Optimizer::radam, 0.05}}) {
    const Dataset data = training_data(model, which.continuous);
    const Dataset none;
    const TrainingOptions options = training_options(which);
    auto cpu = testing::cpu_float_backend();
    auto gpu = make_backend(BackendKind::cuda);
    const TrainingResult reference = Trainer(*cpu, options).fit(model, data, none);
    const TrainingResult result = Trainer(*gpu, options).fit(model, data, none);
    const std::string label = std::string(which.continuous ? "windows" : "trials") + ", " +
                              to_string(which.optimizer) + ", clip " + std::to_string(which.clip);
    ASSERT_TRUE(reference.completed) << label << ": " << reference.stop_reason;
    ASSERT_TRUE(result.completed) << label << ": " << result.stop_reason;
    ASSERT_EQ(result.history.size(), reference.history.size());
    if (!testing::emulated_device) {
      EXPECT_NEAR(
          result.history[0].train_elbo, reference.history[0].train_elbo,
          testing::device_tolerance(config) * (1 + std::fabs(reference.history[0].train_elbo)))
          << label << ": the first step's ELBO";
      continue;
    }
    for (std::size_t step = 0; step < reference.history.size(); ++step) {
      EXPECT_EQ(result.history[step].train_elbo, reference.history[step].train_elbo)
          << label << ", step " << step + 1;
      EXPECT_EQ(result.history[step].learning_rate, reference.history[step].learning_rate);
    }
    EXPECT_EQ(result.model.parameters, reference.model.parameters) << label;
  }
}

// The encoder proposal trains in the host loop on the device's gradients (the encoder runs on
// the device in each gradient call): on the emulated device every step's ELBO and the parameters,
// the encoder's included, are bitwise the CPU float engine's; on a GPU the first step's ELBO
// agrees.
TEST(CudaTraining, EncoderProposalTrainsInTheHostLoop) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                             Observation::poisson, Link::softplus, 1);
  config.num_hidden = 16;
  config.encoder = testing::small_encoder({5, 1}, {4});
  const Model model = testing::random_model(config, 5);
  const Dataset data = training_data(model, false);
  TrainingOptions options = training_options({false, Optimizer::radam, 0.0});
  options.filter.proposal = Proposal::encoder;
  auto cpu = testing::cpu_float_backend();
  auto gpu = make_backend(BackendKind::cuda);
  const TrainingResult reference = Trainer(*cpu, options).fit(model, data, Dataset{});
  const TrainingResult result = Trainer(*gpu, options).fit(model, data, Dataset{});
  ASSERT_TRUE(reference.completed) << reference.stop_reason;
  ASSERT_TRUE(result.completed) << result.stop_reason;
  ASSERT_EQ(result.history.size(), reference.history.size());
  if (!testing::emulated_device) {
    EXPECT_NEAR(
        result.history[0].train_elbo, reference.history[0].train_elbo,
        testing::device_tolerance(config) * (1 + std::fabs(reference.history[0].train_elbo)));
    return;
  }
  for (std::size_t step = 0; step < reference.history.size(); ++step)
    EXPECT_EQ(result.history[step].train_elbo, reference.history[step].train_elbo)
        << "step " << step + 1;
  EXPECT_EQ(result.model.parameters, reference.model.parameters);
  EXPECT_NE(result.model.parameters, model.parameters);
}

// Absurd steps blow the model up: the session stops where the host loop stops, with its words,
// and keeps the same last good parameters (those its last applied step was taken at).
TEST(CudaTraining, NanGuardKeepsTheHostLoopsLastGoodParameters) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 11);
  const Dataset data = training_data(model, false);
  TrainingOptions options = training_options({false, Optimizer::radam, 0.0});
  options.learning_rate = 9.0;
  options.learning_rate_end = 9.0;
  options.epochs = 8;
  auto cpu = testing::cpu_float_backend();
  auto gpu = make_backend(BackendKind::cuda);
  const TrainingResult reference = Trainer(*cpu, options).fit(model, data, Dataset{});
  const TrainingResult result = Trainer(*gpu, options).fit(model, data, Dataset{});
  ASSERT_FALSE(reference.completed) << "the host loop did not fail: the test shows nothing";
  ASSERT_FALSE(result.completed);
  for (const double value : result.model.parameters) EXPECT_TRUE(std::isfinite(value));
  if (!testing::emulated_device) return;  // a GPU may fail a step earlier or later
  EXPECT_EQ(result.stop_reason, reference.stop_reason);
  EXPECT_EQ(result.model.parameters, reference.model.parameters);
}

TEST(CudaTraining, ResumeGivesTheUninterruptedResult) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::diag,
                                                   Observation::poisson, Link::softplus);
  const Model model = testing::random_model(config, 9);
  const Dataset data = training_data(model, false);
  const Dataset none;
  TrainingOptions options = training_options({false, Optimizer::radam, 0.0});
  options.filter.proposal = Proposal::bootstrap;
  options.epochs = 4;
  auto gpu = make_backend(BackendKind::cuda);
  const TrainingResult whole = Trainer(*gpu, options).fit(model, data, none);
  const std::string directory = testing::make_temp_dir("lrsmc_cuda_resume");
  options.checkpoint_path = directory + "/run.checkpoint.npz";
  options.checkpoint_every = 1;
  const TrainingResult first =
      Trainer(*gpu, options).fit(model, data, none, [](const EpochReport& report) {
        return report.epoch < 2;
      });
  ASSERT_FALSE(first.completed);
  const TrainingResult resumed =
      Trainer(*gpu, options).fit(model, data, none, {}, options.checkpoint_path);
  ASSERT_TRUE(resumed.completed) << resumed.stop_reason;
  EXPECT_EQ(resumed.model.parameters, whole.model.parameters)
      << "resuming on the GPU must reproduce the uninterrupted run bit for bit";
  std::filesystem::remove_all(directory);
}

#if defined(LRSMC_WITH_CUDA)
/// A world of one process: the shared paths' collectives with nobody to share with.
class OneProcess final : public Communicator {
 public:
  [[nodiscard]] int rank() const override { return 0; }
  [[nodiscard]] int size() const override { return 1; }
  void all_gather(const std::vector<double>& mine, const std::vector<std::int64_t>& counts,
                  std::vector<double>& gathered) override {
    EXPECT_EQ(counts.size(), 1u);
    gathered = mine;
  }
  [[nodiscard]] std::string broadcast(const std::string& text, int) override { return text; }
  [[nodiscard]] bool any(bool mine) override { return mine; }
  void abort(int code) override {
    ADD_FAILURE() << "aborted with " << code;
    std::terminate();
  }
};

// The CUDA backend of a shared fit runs its share of each batch, gathers every trial's results
// with NCCL and sums them in trial order, so a fit over NCCL is bitwise the plain CUDA fit: here
// with one process (one GPU), whose broadcasts copy nothing, on the device-resident session and
// on the host loop of the encoder proposal. Several processes are checked with mpirun
// (CliTest.MpiCudaFitIsBitwiseTheOneProcessFit).
TEST(CudaTraining, OneProcessOverNcclIsBitwiseThePlainRun) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  std::string why;
  if (!cuda::nccl_usable(&why)) GTEST_SKIP() << why << ": the NCCL check is skipped";
  BackendOptions shared;
  shared.communicator = std::make_shared<OneProcess>();
  const auto expect_the_plain_fit = [&](const Model& model, const TrainingOptions& options) {
    const Dataset data = training_data(model, false), none;
    auto plain = make_backend(BackendKind::cuda);
    auto over_nccl = make_backend(BackendKind::cuda, shared);
    const TrainingResult reference = Trainer(*plain, options).fit(model, data, none);
    const TrainingResult result = Trainer(*over_nccl, options).fit(model, data, none);
    ASSERT_TRUE(result.completed) << result.stop_reason;
    EXPECT_EQ(result.model.parameters, reference.model.parameters);
    EXPECT_NE(result.model.parameters, model.parameters);
  };
  TrainingOptions options = training_options({false, Optimizer::radam, 0.0});
  expect_the_plain_fit(
      testing::random_model(testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                  Observation::gaussian, Link::identity),
                            3),
      options);
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                             Observation::poisson, Link::softplus, 1);
  config.encoder = testing::small_encoder({5, 1}, {4});
  options.filter.proposal = Proposal::encoder;
  options.epochs = 2;
  expect_the_plain_fit(testing::random_model(config, 5), options);
}
#endif

}  // namespace
}  // namespace lrsmc
