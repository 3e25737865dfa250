// CUDA forward filter against the CPU backend on the same Philox draws, for every option
// combination: ELBO to 1e-4 relative, ancestors equal except at near-ties, particles to 1e-4.
// Skips with a message when lrsmc was built without CUDA or no device answers.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "support/filter_comparison.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"

namespace lrsmc {
namespace {

using testing::ObservationCase;

class CudaFilterTest : public ::testing::TestWithParam<testing::OptionCombination> {
 protected:
  void SetUp() override {
    if (!cuda_available())
      GTEST_SKIP() << "no CUDA device (lrsmc built without CUDA, or no GPU answers): "
                      "CPU-vs-CUDA comparison skipped";
  }
};

TEST_P(CudaFilterTest, MatchesCpuOnTheSameDraws) {
  const auto [nonlinearity, proposal, observation, noise, resampling] = GetParam();
  if (proposal == Proposal::optimal && observation.observation != Observation::gaussian)
    GTEST_SKIP() << "the optimal proposal needs Gaussian observations";
  const ModelConfig config =
      testing::medium_config(nonlinearity, noise, observation.observation, observation.link);
  const Model model = testing::random_model(config, 12);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 20, 4);
  FilterOptions options;
  options.num_particles = 300;
  options.proposal = proposal;
  options.resampling = resampling;
  // The CPU float path mirrors the kernel's arithmetic (testing::expect_same_filter: paths
  // step by step, a differing ancestor only at a near-tie, the ELBO to 1e-4 while the paths
  // agree); the float64 reference bounds the ELBO.
  auto cpu = testing::cpu_float_backend();
  auto cpu_double = make_backend(BackendKind::cpu);
  auto gpu = make_backend(BackendKind::cuda);
  const std::string label = ::testing::PrintToString(GetParam());
  testing::expect_same_filter(*cpu, *gpu, model, batch, options, 99, 1e-4, {}, label);
  // Float64 parts from float at near-ties too: the same checks, the ELBO to 1e-3 while the
  // paths agree.
  testing::expect_same_filter(*cpu_double, *gpu, model, batch, options, 99, 1e-3, {},
                              label + ", against float64");
}

INSTANTIATE_TEST_SUITE_P(
    AllOptions, CudaFilterTest,
    ::testing::Combine(::testing::Values(Nonlinearity::relu, Nonlinearity::clipped_relu,
                                         Nonlinearity::tanh, Nonlinearity::identity),
                       ::testing::Values(Proposal::bootstrap, Proposal::optimal),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::identity},
                                         ObservationCase{Observation::poisson, Link::softplus}),
                       ::testing::Values(NoiseType::full, NoiseType::diag),
                       ::testing::Values(Resampling::systematic, Resampling::multinomial)),
    testing::combination_name);

TEST(CudaFilter, EffectiveSampleSizeThresholdWithoutStoredPaths) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: ESS-threshold comparison skipped";
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 7);
  const SequenceBatch batch = testing::sampled_batch(model, 6, 25, 3);
  for (const double threshold : {0.0, 0.5}) {
    FilterOptions options;
    options.num_particles = 700;  // more than one block of threads
    options.proposal = Proposal::bootstrap;
    options.resample_threshold = threshold;
    auto cpu = testing::cpu_float_backend();
    auto gpu = make_backend(BackendKind::cuda);
    SCOPED_TRACE(::testing::Message() << "threshold " << threshold);
    // Without stored paths the kernel keeps two particle slices instead of every step: the
    // arithmetic is the same, so the results are bitwise those of the run that stores them,
    // which is compared with the CPU step by step (a differing ancestor only at a near-tie).
    const auto without = gpu->filter(model, batch, options, 4, {true, false});
    const auto with = gpu->filter(model, batch, options, 4, {true, true});
    EXPECT_EQ(without.elbo_per_trial, with.elbo_per_trial);
    EXPECT_EQ(without.filtered_mean, with.filtered_mean);
    testing::expect_same_filter(*cpu, *gpu, model, batch, options, 4, 1e-4, {},
                                "threshold " + std::to_string(threshold));
  }
}

TEST(CudaFilter, RepeatedRunsAreBitwiseIdentical) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: determinism check skipped";
  const ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 3);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 30, 2);
  FilterOptions options;
  options.num_particles = 1000;
  auto gpu = make_backend(BackendKind::cuda);
  const auto a = gpu->filter(model, batch, options, 5, {true, false});
  const auto b = gpu->filter(model, batch, options, 5, {true, false});
  EXPECT_EQ(a.elbo_per_trial, b.elbo_per_trial);
  EXPECT_EQ(a.filtered_mean, b.filtered_mean);
}

// The backend keeps its device workspace between filter calls (issue 3): calls that grow,
// shrink and grow again in particles, trials and stored outputs, in both regimes, give bitwise
// what a fresh backend gives on the same seed; a call refused for memory leaves it usable.
TEST(CudaFilter, ReusedWorkspaceGivesWhatAFreshBackendGives) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: workspace-reuse check skipped";
  ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                             Observation::gaussian, Link::identity, 1);
  config.num_hidden = 64;
  config.rank = 3;
  config.num_channels = 8;
  const Model model = testing::random_model(config, 17);
  struct Call {
    int particles, trials;
    FilterRequest request;
  };
  const std::vector<Call> calls = {
      {10, 2, {false, true}},   {300, 5, {true, true}},  {10, 3, {false, false}},
      {40, 1, {true, false}},   {700, 6, {true, true}},  {2500, 2, {false, true}},
      {20, 4, {true, true}},    {3000, 7, {true, true}}, {10, 10, {false, true}}};
  for (const auto regime : {CudaFilterRegime::automatic, CudaFilterRegime::block_per_trial,
                            CudaFilterRegime::many_particles}) {
    BackendOptions backend_options;
    backend_options.cuda_filter_regime = regime;
    auto reused = make_backend(BackendKind::cuda, backend_options);
    std::uint64_t seed = 40;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const Call& call = calls[i];
      SCOPED_TRACE(::testing::Message()
                   << "regime " << int(regime) << ", call " << i << ": " << call.particles
                   << " particles × " << call.trials << " trials");
      const SequenceBatch batch = testing::sampled_batch(model, call.trials, 12, 100 + i);
      FilterOptions options;
      options.num_particles = call.particles;
      options.proposal = i % 2 == 0 ? Proposal::optimal : Proposal::bootstrap;
      const FilterResult result = reused->filter(model, batch, options, seed, call.request);
      auto fresh = make_backend(BackendKind::cuda, backend_options);
      testing::expect_bitwise_equal(fresh->filter(model, batch, options, seed, call.request), result);
      ++seed;
      if (i == 4) {  // refused for memory (terabytes), between a large and a larger call
        FilterOptions huge = options;
        huge.num_particles = 100'000'000;
        const SequenceBatch many_trials = testing::sampled_batch(model, 100, 3, 3);
        EXPECT_THROW((void)reused->filter(model, many_trials, huge, seed, {true, true}),
                     OutOfMemory);
        // The same call again after the refusal.
        testing::expect_bitwise_equal(
            result, reused->filter(model, batch, options, seed - 1, call.request));
      }
    }
  }
}

}  // namespace
}  // namespace lrsmc
