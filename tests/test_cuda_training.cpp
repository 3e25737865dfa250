// CUDA training against the CPU backend on the same Philox draws (issue 4): ELBO gradients
// for every option combination (relative error below 1e-3 per parameter block against the CPU
// float and float64 paths), few particles (lane groups), the ESS threshold's carried weights,
// bitwise determinism, the trial-split gradient, and device-resident training steps,
// checkpoints and resume against the CPU trainer. Skips with a message when lrsmc was built
// without CUDA or no GPU answers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <tuple>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/trainer.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"
#if defined(LRSMC_WITH_CUDA)
#include "cuda/cuda_training.hpp"
#endif

namespace lrsmc {
namespace {

constexpr const char* no_device =
    "no CUDA device (lrsmc built without CUDA, or no GPU answers): CUDA training check skipped";

using testing::ObservationCase;

/// Compares two gradients block by block: ‖got − expected‖ / ‖expected‖ < tolerance, and on
/// failure names the block, its norm, and the worst element with both values, so that a run on
/// a GPU says which adjoint is wrong.
void expect_blocks_close(const ModelConfig& config, const std::vector<double>& expected,
                         const std::vector<double>& got, double tolerance,
                         const std::string& label) {
  ASSERT_EQ(expected.size(), got.size()) << label;
  const ParameterLayout layout(config);
  for (const ParameterBlock& block : layout.blocks()) {
    double difference = 0, reference = 0, worst = -1;
    std::int64_t worst_index = 0;
    for (std::int64_t i = block.offset; i < block.offset + block.size; ++i) {
      const double delta = got[std::size_t(i)] - expected[std::size_t(i)];
      difference += delta * delta;
      reference += expected[std::size_t(i)] * expected[std::size_t(i)];
      if (std::fabs(delta) > worst) {
        worst = std::fabs(delta);
        worst_index = i - block.offset;
      }
    }
    difference = std::sqrt(difference);
    reference = std::sqrt(reference);
    // Blocks whose gradient vanishes (e.g. the unused upper triangle) must vanish on both.
    const double relative = reference > 1e-10 ? difference / reference : difference;
    EXPECT_LT(relative, tolerance)
        << label << ": block '" << block.name << "' relative error " << relative << " (|ref| "
        << reference << ", |diff| " << difference << "); worst element " << worst_index
        << ": expected " << expected[std::size_t(block.offset + worst_index)] << ", got "
        << got[std::size_t(block.offset + worst_index)];
  }
}

constexpr const char* paths_agree = "ancestors agree at every step";

/// How many (trial, step) cells have the same ancestors on both backends; a near-tie in the
/// float cumulative weights sends the two filters down different paths, after which their
/// gradients legitimately differ. Printed with every comparison as a diagnostic.
std::string path_agreement(Backend& cpu, Backend& gpu, const Model& model,
                           const SequenceBatch& batch, const FilterOptions& options,
                           std::uint64_t seed) {
  const FilterResult a = cpu.filter(model, batch, options, seed, {false, true});
  const FilterResult b = gpu.filter(model, batch, options, seed, {false, true});
  const std::size_t K = std::size_t(options.num_particles);
  int differing = 0, first_trial = -1, first_step = -1;
  for (int trial = 0; trial < batch.num_trials; ++trial)
    for (int step = 0; step < batch.num_steps; ++step) {
      const std::size_t cell = std::size_t(trial) * batch.num_steps + step;
      bool same = true;
      for (std::size_t k = 0; k < K && same; ++k)
        same = a.ancestors[cell * K + k] == b.ancestors[cell * K + k];
      if (!same && differing++ == 0) {
        first_trial = trial;
        first_step = step;
      }
    }
  std::ostringstream text;
  if (differing == 0) {
    text << paths_agree;
  } else {
    text << "ancestors differ at " << differing << " of " << batch.num_trials * batch.num_steps
         << " steps (first: trial " << first_trial << ", step " << first_step
         << "): a float near-tie, so gradients may differ there without a kernel bug";
  }
  return text.str();
}

/// Compares a gradient with a reference at 1e-3 per block, and the ELBO at 1e-4, where both
/// filters followed the same ancestors (`paths` is path_agreement's text); returns whether it
/// did. Once a float near-tie parts the paths, the two gradients are different Monte Carlo
/// samples and no bound on them is meaningful: measured on the CPU, float32 against float64 on
/// parted paths differ by up to 0.35 per block and 2.5e-3 in the ELBO over
/// CudaGradientTest's cases (3.6e-2 and 0.22 at rank 5, 0.14 under the ESS threshold), so a
/// fixed loose bound failed at random. Then only the ELBO is checked, at 1e-2, as a sanity
/// bound on the forward pass.
bool compare_on_same_paths(const ModelConfig& config, const GradientResult& reference,
                           const GradientResult& result, const std::string& paths,
                           const std::string& label) {
  if (paths != paths_agree) {
    EXPECT_NEAR(result.elbo, reference.elbo, 1e-2 * std::fabs(reference.elbo))
        << label << "; " << paths;
    std::printf("note: %s: %s; gradient blocks not compared\n", label.c_str(), paths.c_str());
    return false;
  }
  EXPECT_NEAR(result.elbo, reference.elbo, 1e-4 * std::fabs(reference.elbo)) << label;
  expect_blocks_close(config, reference.gradient, result.gradient, 1e-3, label + "; " + paths);
  return true;
}

/// The reference backend's gradient against the GPU's on the same draws, compared where their
/// paths agree (compare_on_same_paths); returns whether they were.
bool compare_gradients(Backend& reference, Backend& gpu, const Model& model,
                       const SequenceBatch& batch, const FilterOptions& options,
                       std::uint64_t seed, const std::string& label) {
  const std::string paths = path_agreement(reference, gpu, model, batch, options, seed);
  const GradientResult expected = reference.elbo_gradient(model, batch, options, seed);
  const GradientResult got = gpu.elbo_gradient(model, batch, options, seed);
  return compare_on_same_paths(model.config, expected, got, paths, label);
}

constexpr const char* nothing_compared =
    "every configuration parted from the CPU's ancestors at a near-tie: no gradient was compared";

class CudaGradientTest : public ::testing::TestWithParam<testing::OptionCombination> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

TEST_P(CudaGradientTest, MatchesCpuOnTheSameDraws) {
  const auto [nonlinearity, proposal, observation, noise, resampling] = GetParam();
  if (proposal == Proposal::optimal && observation.observation != Observation::gaussian)
    GTEST_SKIP() << "the optimal proposal needs Gaussian observations";
  const ModelConfig config =
      testing::medium_config(nonlinearity, noise, observation.observation, observation.link);
  const Model model = testing::random_model(config, 12);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 20, 4);
  FilterOptions options;
  options.num_particles = 300;  // more than one block of threads: strided loops run
  options.proposal = proposal;
  options.resampling = resampling;
  auto cpu = testing::cpu_float_backend();
  auto cpu_double = make_backend(BackendKind::cpu);
  auto gpu = make_backend(BackendKind::cuda);
  // A near-tie in the cumulative weights, resolved the other way by float64 (or by another
  // float rounding), sends the filters down other particles; a reference on other paths is not
  // compared (CudaFilterTest checks the ancestors themselves). Near-ties depend on the draws, so
  // the next seed is tried until a reference follows the GPU's paths; a case that parts from
  // both on every seed is reported as skipped, so that a run shows what was not compared.
  std::string paths;
  for (std::uint64_t seed = 21; seed < 61; ++seed) {
    paths = path_agreement(*cpu, *gpu, model, batch, options, seed);
    const std::string double_paths = path_agreement(*cpu_double, *gpu, model, batch, options, seed);
    if (paths != paths_agree && double_paths != paths_agree) continue;
    const GradientResult result = gpu->elbo_gradient(model, batch, options, seed);
    const std::string label = "seed " + std::to_string(seed) + ", vs cpu ";
    if (paths == paths_agree)
      (void)compare_on_same_paths(config, cpu->elbo_gradient(model, batch, options, seed), result,
                                  paths, label + "float");
    if (double_paths == paths_agree)
      (void)compare_on_same_paths(config, cpu_double->elbo_gradient(model, batch, options, seed),
                                  result, double_paths, label + "float64");
    return;
  }
  GTEST_SKIP() << "on seeds 21 to 60 the GPU's ancestors part from both CPU references at a "
                  "near-tie (last: " << paths << "); no gradient was compared";
}

INSTANTIATE_TEST_SUITE_P(
    AllOptions, CudaGradientTest,
    ::testing::Combine(::testing::Values(Nonlinearity::relu, Nonlinearity::clipped_relu,
                                         Nonlinearity::tanh, Nonlinearity::identity),
                       ::testing::Values(Proposal::bootstrap, Proposal::optimal),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::identity},
                                         ObservationCase{Observation::poisson, Link::softplus}),
                       ::testing::Values(NoiseType::full, NoiseType::diag),
                       ::testing::Values(Resampling::systematic, Resampling::stratified,
                                         Resampling::multinomial)),
    testing::combination_name);

TEST(CudaGradient, CarriedWeightsUnderAnEssThreshold) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 7);
  const SequenceBatch batch = testing::sampled_batch(model, 6, 25, 3);
  auto cpu = testing::cpu_float_backend();
  auto gpu = make_backend(BackendKind::cuda);
  int compared = 0;  // threshold 0 never resamples: its paths cannot part
  for (const double threshold : {0.0, 0.5}) {
    for (const Proposal proposal : {Proposal::bootstrap, Proposal::optimal}) {
      FilterOptions options;
      options.num_particles = 700;  // more than two blocks of threads
      options.proposal = proposal;
      options.resample_threshold = threshold;
      const std::string label =
          ::testing::PrintToString(proposal) + ", threshold " + std::to_string(threshold);
      compared += compare_gradients(*cpu, *gpu, model, batch, options, 4, label) ? 1 : 0;
    }
  }
  EXPECT_GT(compared, 0) << nothing_compared;
}

TEST(CudaGradient, FewParticlesSplitUnitsOverLanes) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  // With few particles each one runs on a group of threads that splits its hidden units and
  // channels (K = 1 and 5: 32 lanes, K = 10: 16 lanes as in the EEG setting, K = 33: 4).
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                             Observation::gaussian, Link::identity, 1);
  config.rank = 3;
  config.num_hidden = 96;
  config.num_channels = 20;
  const Model model = testing::random_model(config, 14);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 30, 5);
  auto cpu = testing::cpu_float_backend();
  auto gpu = make_backend(BackendKind::cuda);
  int compared = 0;
  for (const int particles : {1, 5, 10, 33}) {
    for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap}) {
      FilterOptions options;
      options.num_particles = particles;
      options.proposal = proposal;
      const std::string label =
          std::to_string(particles) + " particles, " + ::testing::PrintToString(proposal);
      compared += compare_gradients(*cpu, *gpu, model, batch, options, 8, label) ? 1 : 0;
    }
  }
  EXPECT_GT(compared, 0) << nothing_compared;
}

TEST(CudaGradient, RanksOtherThanTwoAndThreeUseTheGenericKernel) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  // Ranks 2 and 3 run kernels compiled for their rank; every other rank the generic one.
  auto cpu = testing::cpu_float_backend();
  auto gpu = make_backend(BackendKind::cuda);
  int compared = 0;
  for (const int rank : {1, 5}) {
    ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                               Observation::gaussian, Link::identity, 1);
    config.rank = rank;
    config.num_hidden = 40;
    config.num_channels = 12;
    const Model model = testing::random_model(config, 20 + rank);
    const SequenceBatch batch = testing::sampled_batch(model, 3, 20, 6);
    for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap}) {
      FilterOptions options;
      options.num_particles = 200;
      options.proposal = proposal;
      const std::string label = "rank " + std::to_string(rank) + ", " +
                                ::testing::PrintToString(proposal);
      compared += compare_gradients(*cpu, *gpu, model, batch, options, 3, label) ? 1 : 0;
    }
  }
  EXPECT_GT(compared, 0) << nothing_compared;
}

TEST(CudaGradient, RepeatedRunsAreBitwiseIdentical) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  const ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity, 2);
  const Model model = testing::random_model(config, 3);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 30, 2);
  FilterOptions options;
  options.num_particles = 1000;
  auto gpu = make_backend(BackendKind::cuda);
  const auto a = gpu->elbo_gradient(model, batch, options, 5);
  const auto b = gpu->elbo_gradient(model, batch, options, 5);
  EXPECT_EQ(a.elbo_per_trial, b.elbo_per_trial);
  EXPECT_EQ(a.gradient, b.gradient) << "the same seed must give bitwise the same gradient";
}

#if defined(LRSMC_WITH_CUDA)
TEST(CudaGradient, SplittingABatchOverTrialsGivesTheSameBits) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity, 1);
  const Model model = testing::random_model(config, 8);
  const SequenceBatch batch = testing::sampled_batch(model, 7, 15, 6);
  FilterOptions options;
  options.num_particles = 64;
  const auto whole = cuda::elbo_gradient(model, batch, options, 9, 0);
  for (const int chunk : {1, 2, 3}) {
    const auto split = cuda::elbo_gradient(model, batch, options, 9, 0, chunk);
    EXPECT_EQ(whole.elbo_per_trial, split.elbo_per_trial) << "chunks of " << chunk;
    EXPECT_EQ(whole.gradient, split.gradient) << "chunks of " << chunk;
  }
}

TEST(CudaGradient, MemoryPlanCoversTheBackwardPassAndSplits) {
  // Host-only arithmetic, but it lives in the CUDA build.
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
  const SequenceBatch batch =
      continuous ? testing::sampled_batch(model, 1, 400, 31) : testing::sampled_batch(model, 12, 20, 31);
  data.num_trials = batch.num_trials;
  data.num_steps = batch.num_steps;
  data.observations = batch.observations;
  data.inputs = batch.inputs;
  data.continuous = continuous;
  return data;
}

TrainingOptions training_options(const TrainingCase& which) {
  TrainingOptions options;
  options.epochs = 3;
  options.batch_size = 4;
  options.window = 25;
  options.windows_per_epoch = 8;
  options.learning_rate = 1e-3;
  options.learning_rate_end = 5e-4;
  options.optimizer = which.optimizer;
  options.gradient_clip = which.clip;
  options.filter.num_particles = 64;
  options.filter.proposal = Proposal::optimal;
  options.seed = 17;
  return options;
}

TEST(CudaTraining, StepsMatchTheCpuTrainer) {
  if (!cuda_available()) GTEST_SKIP() << no_device;
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                             Observation::gaussian, Link::identity, 1);
  config.num_hidden = 32;
  const Model model = testing::random_model(config, 5);
  for (const TrainingCase which : {TrainingCase{false, Optimizer::radam, 0.0},
                                   TrainingCase{true, Optimizer::adam, 0.5}}) {
    const Dataset data = training_data(model, which.continuous);
    const Dataset none;
    TrainingOptions options = training_options(which);
    // No resampling: both runs then follow the same particles whatever the float rounding. With
    // it, a near-tie in the cumulative weights (the optimal proposal's constants are rounded
    // differently on the two sides) sends the runs down partly different paths, and Adam's
    // first steps of ±lr amplify the Monte Carlo difference into parameters that differ by
    // more than float tolerance. The resampling's backward pass is compared path by path in
    // CudaGradient.
    options.filter.resample_threshold = 0.0;
    auto cpu = testing::cpu_float_backend();
    auto gpu = make_backend(BackendKind::cuda);
    const TrainingResult reference = Trainer(*cpu, options).fit(model, data, none);
    const TrainingResult result = Trainer(*gpu, options).fit(model, data, none);
    const std::string label = std::string(which.continuous ? "windows" : "trials") + ", " +
                              to_string(which.optimizer) + ", clip " + std::to_string(which.clip);
    ASSERT_TRUE(reference.completed) << label << ": " << reference.stop_reason;
    ASSERT_TRUE(result.completed) << label << ": " << result.stop_reason;
    ASSERT_EQ(result.history.size(), reference.history.size());
    for (std::size_t epoch = 0; epoch < reference.history.size(); ++epoch) {
      EXPECT_NEAR(result.history[epoch].train_elbo, reference.history[epoch].train_elbo,
                  1e-3 * std::fabs(reference.history[epoch].train_elbo))
          << label << ", epoch " << epoch + 1;
      EXPECT_EQ(result.history[epoch].learning_rate, reference.history[epoch].learning_rate);
    }
    // The parameters' change over 6 steps, block by block (Adam's steps are ±lr where the
    // gradient is tiny, so compare changes, not values).
    std::vector<double> change_reference(model.parameters.size()), change(model.parameters.size());
    double largest = 0;
    for (std::size_t i = 0; i < model.parameters.size(); ++i) {
      change_reference[i] = reference.model.parameters[i] - model.parameters[i];
      change[i] = result.model.parameters[i] - model.parameters[i];
      largest = std::max(largest, std::fabs(result.model.parameters[i] - reference.model.parameters[i]));
    }
    expect_blocks_close(config, change_reference, change, 2e-2, label + ": parameter change");
    EXPECT_LT(largest, 2e-3) << label << ": largest parameter difference";
  }
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
  const TrainingResult first = Trainer(*gpu, options).fit(
      model, data, none, [](const EpochReport& report) { return report.epoch < 2; });
  ASSERT_FALSE(first.completed);
  const TrainingResult resumed =
      Trainer(*gpu, options).fit(model, data, none, {}, options.checkpoint_path);
  ASSERT_TRUE(resumed.completed) << resumed.stop_reason;
  EXPECT_EQ(resumed.model.parameters, whole.model.parameters)
      << "resuming on the GPU must reproduce the uninterrupted run bit for bit";
  std::filesystem::remove_all(directory);
}

}  // namespace
}  // namespace lrsmc
