// The CUDA forward filter against the CPU float engine on the same Philox draws
// (support/engine_comparison.hpp): bit for bit on the emulated device, within one derived
// tolerance along the GPU's own run on a GPU. Every runnable option combination in both regimes,
// few particles on lane groups, thousands of particles over many tiles, the ESS threshold, ranks
// without a specialised kernel, loadings in and beyond shared memory, determinism, the kept
// workspace, the automatic regime choice, 10^7 particles, and out-of-memory refusals. Skips
// with a message when lrsmc was built without CUDA or no device answers.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/cuda_backend.hpp"
#include "cuda/filter_plan.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/smoother.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"

namespace lrsmc {
namespace {

constexpr const char* no_device =
    "no CUDA device (lrsmc built without CUDA, or no GPU answers): CPU-vs-CUDA filter checks "
    "skipped";

std::unique_ptr<Backend> cuda_backend(CudaFilterRegime regime) {
  BackendOptions options;
  options.cuda_filter_regime = regime;
  return make_backend(BackendKind::cuda, options);
}

const char* regime_name(CudaFilterRegime regime) {
  switch (regime) {
    case CudaFilterRegime::block_per_trial:
      return "block per trial";
    case CudaFilterRegime::many_particles:
      return "many particles";
    case CudaFilterRegime::automatic:
      break;
  }
  return "automatic";
}

class CudaFilterTest : public ::testing::TestWithParam<testing::OptionCombination> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

// Both regimes at K = 300 (two tiles, the second partly empty; one particle per thread) and
// K = 10 (the paper's training setting: 16 lanes per particle).
TEST_P(CudaFilterTest, MatchesTheCpuInBothRegimes) {
  const auto [nonlinearity, proposal, observation, noise, resampling] = GetParam();
  const ModelConfig config =
      testing::medium_config(nonlinearity, noise, observation.observation, observation.link);
  const Model model = testing::random_model(config, 12);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 20, 4);
  for (const int particles : {300, 10}) {
    for (const auto regime :
         {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
      FilterOptions options;
      options.num_particles = particles;
      options.proposal = proposal;
      options.resampling = resampling;
      auto gpu = cuda_backend(regime);
      (void)testing::expect_same_filter(*gpu, model, batch, options, 99,
                                        ::testing::PrintToString(GetParam()) + ", K = " +
                                            std::to_string(particles) + ", " + regime_name(regime));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllOptions, CudaFilterTest,
                         ::testing::ValuesIn(testing::runnable_combinations(
                             {Resampling::systematic, Resampling::stratified,
                              Resampling::multinomial})),
                         testing::combination_name);

class CudaFilter : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

// Every particle count from 1 to 129 splits a particle over its own number of lanes
// (math::lanes_per_particle: 32 down to 1).
TEST_F(CudaFilter, EveryLaneSplit) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            14);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 8, 5);
  auto gpu = cuda_backend(CudaFilterRegime::automatic);
  for (const int particles : {1, 5, 8, 9, 16, 17, 33, 64, 65, 128, 129}) {
    FilterOptions options;
    options.num_particles = particles;
    (void)testing::expect_same_filter(*gpu, model, batch, options, 8,
                                      "K = " + std::to_string(particles) + ", " +
                                          std::to_string(math::lanes_per_particle(particles)) +
                                          " lanes");
  }
}

// Without stored paths the kernels keep two particle slices instead of every step: the same
// arithmetic, so the results are bitwise those of the run that stores them.
TEST_F(CudaFilter, EffectiveSampleSizeThresholdWithoutStoredPaths) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 7);
  const SequenceBatch batch = testing::sampled_batch(model, 6, 25, 3);
  for (const auto regime : {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
    for (const double threshold : {0.0, 0.5}) {
      FilterOptions options;
      options.num_particles = 700;  // three tiles
      options.proposal = Proposal::bootstrap;
      options.resample_threshold = threshold;
      auto gpu = cuda_backend(regime);
      const std::string label =
          std::string(regime_name(regime)) + ", threshold " + std::to_string(threshold);
      const FilterResult with = testing::expect_same_filter(*gpu, model, batch, options, 4, label);
      const FilterResult without = gpu->filter(model, batch, options, 4, {true, false});
      EXPECT_EQ(without.elbo_per_trial, with.elbo_per_trial) << label;
      EXPECT_EQ(without.filtered_mean, with.filtered_mean) << label;
    }
  }
}

TEST_F(CudaFilter, RepeatedRunsAreBitwiseIdentical) {
  const ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 3);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 30, 2);
  for (const auto regime : {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
    FilterOptions options;
    options.num_particles = 1000;
    auto gpu = cuda_backend(regime);
    const auto a = gpu->filter(model, batch, options, 5, {true, true});
    const auto b = gpu->filter(model, batch, options, 5, {true, true});
    testing::expect_identical(a, b, regime_name(regime));
  }
}

// The backend keeps its device workspace between filter calls: calls that grow, shrink and
// grow again in particles, trials and stored outputs, in both regimes, give bitwise what a
// fresh backend gives on the same seed; a call refused for memory leaves it usable.
TEST_F(CudaFilter, ReusedWorkspaceGivesWhatAFreshBackendGives) {
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
      {10, 2, {false, true}}, {300, 5, {true, true}},  {10, 3, {false, false}},
      {40, 1, {true, false}}, {700, 6, {true, true}},  {2500, 2, {false, true}},
      {20, 4, {true, true}},  {3000, 7, {true, true}}, {10, 10, {false, true}}};
  for (const auto regime : {CudaFilterRegime::automatic, CudaFilterRegime::block_per_trial,
                            CudaFilterRegime::many_particles}) {
    auto reused = cuda_backend(regime);
    std::uint64_t seed = 40;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const Call& call = calls[i];
      const std::string label = std::string(regime_name(regime)) + ", call " + std::to_string(i) +
                                ": " + std::to_string(call.particles) + " particles × " +
                                std::to_string(call.trials) + " trials";
      const SequenceBatch batch = testing::sampled_batch(model, call.trials, 12, 100 + i);
      FilterOptions options;
      options.num_particles = call.particles;
      options.proposal = i % 2 == 0 ? Proposal::optimal : Proposal::bootstrap;
      const FilterResult result = reused->filter(model, batch, options, seed, call.request);
      auto fresh = cuda_backend(regime);
      testing::expect_identical(fresh->filter(model, batch, options, seed, call.request), result,
                                label);
      ++seed;
      if (i == 4) {  // refused for memory (terabytes), between a large and a larger call
        FilterOptions huge = options;
        huge.num_particles = 100'000'000;
        const SequenceBatch many_trials = testing::sampled_batch(model, 100, 3, 3);
        EXPECT_THROW((void)reused->filter(model, many_trials, huge, seed, {true, true}),
                     OutOfMemory);
        testing::expect_identical(result,
                                  reused->filter(model, batch, options, seed - 1, call.request),
                                  label + ", again after the refusal");
      }
    }
  }
}

// Thousands of particles per trial (20 tiles, the last partly empty), every proposal and
// resampling scheme, in the automatic choice (the many-particle regime).
TEST_F(CudaFilter, ThousandsOfParticlesInEveryScheme) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            21);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 12, 5);
  auto gpu = cuda_backend(CudaFilterRegime::automatic);
  for (const auto proposal : {Proposal::bootstrap, Proposal::optimal})
    for (const auto resampling :
         {Resampling::systematic, Resampling::stratified, Resampling::multinomial}) {
      FilterOptions options;
      options.num_particles = 5000;
      ASSERT_EQ(cuda::choose_filter_regime(options.num_particles, CudaFilterRegime::automatic),
                cuda::FilterRegime::many_particles);
      options.proposal = proposal;
      options.resampling = resampling;
      (void)testing::expect_same_filter(*gpu, model, batch, options, 7,
                                        to_string(proposal) + ", " + to_string(resampling));
    }
}

// Missing observations (NaN, allow_missing) in both regimes: the shared likelihood skips them.
TEST_F(CudaFilter, MissingObservationsMatchTheCpuInBothRegimes) {
  for (const Observation observation : {Observation::gaussian, Observation::poisson}) {
    const auto [model, batch] = testing::missing_case(observation);
    FilterOptions options;
    options.proposal = Proposal::bootstrap;
    for (const int particles : {300, 3000}) {
      options.num_particles = particles;
      for (const auto regime :
           {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
        auto gpu = cuda_backend(regime);
        (void)testing::expect_same_filter(
            *gpu, model, batch, options, 5,
            to_string(observation) + ", K = " + std::to_string(particles) + ", " +
                regime_name(regime));
      }
    }
  }
}

// More tiles per trial (274) than a block has threads (256): the tiles' combination runs over
// all of them in order, in both regimes.
TEST_F(CudaFilter, MoreTilesThanABlockHasThreads) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            8);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 4, 9);
  FilterOptions options;
  options.num_particles = 70'000;
  for (const auto regime : {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
    auto gpu = cuda_backend(regime);
    (void)testing::expect_same_filter(*gpu, model, batch, options, 11,
                                      std::string("K = 70000, ") + regime_name(regime));
  }
}

// Ranks 2 and 3 run kernels compiled for their rank (kernels/dispatch.cuh); the others run the
// generic kernels.
TEST_F(CudaFilter, RanksWithoutASpecialisedKernel) {
  for (const int rank : {1, 5}) {
    ModelConfig config = testing::medium_config(Nonlinearity::tanh, NoiseType::full,
                                                Observation::gaussian, Link::identity);
    config.rank = rank;
    const Model model = testing::random_model(config, 40 + std::uint64_t(rank));
    const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 7);
    for (const auto regime :
         {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
      FilterOptions options;
      options.num_particles = 600;
      auto gpu = cuda_backend(regime);
      (void)testing::expect_same_filter(
          *gpu, model, batch, options, 13,
          "rank " + std::to_string(rank) + ", " + regime_name(regime));
    }
  }
}

// The encoder proposal (the device encoder's factors, each step's product with the prior on the
// device) for both noise types, and t_forward forecast steps under every proposal, in
// both regimes at K = 300 and K = 10.
TEST_F(CudaFilter, EncoderProposalAndForecastStepsMatchTheCpuInBothRegimes) {
  for (const auto& [label, model, options] : testing::encoder_cases()) {
    const SequenceBatch batch = testing::sampled_batch(model, 4, 12, 4);
    for (const int particles : {300, 10}) {
      for (const auto regime :
           {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
        FilterOptions run = options;
        run.num_particles = particles;
        auto gpu = cuda_backend(regime);
        (void)testing::expect_same_filter(*gpu, model, batch, run, 99,
                                          label + ", K = " + std::to_string(particles) + ", " +
                                              regime_name(regime));
      }
    }
  }
}

// The smoother draws through the device's particles: on the emulated device the same
// trajectories as through the CPU float engine's; on a GPU, finite ones of the right shape.
TEST_F(CudaFilter, SmootherDrawsThroughTheDevicesParticles) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::tanh, NoiseType::full, Observation::gaussian,
                             Link::identity),
      4);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 2);
  FilterOptions options;
  options.num_particles = 64;
  const SmoothResult gpu = smooth(*make_backend(BackendKind::cuda), model, batch, options, 5, 8);
  ASSERT_EQ(gpu.trajectories.size(), std::size_t(3 * 8 * 10 * model.config.rank));
  for (const double value : gpu.trajectories) ASSERT_TRUE(std::isfinite(value));
  if (!testing::emulated_device) return;
  const SmoothResult cpu = smooth(*testing::cpu_float_backend(), model, batch, options, 5, 8);
  EXPECT_EQ(gpu.trajectories, cpu.trajectories);
  EXPECT_EQ(gpu.elbo, cpu.elbo);
}

// The read-outs beyond Bᵀz (the comparison shape has an input, which they see at the
// observation's step: B_vᵀ u_t, or the currents one to one), Gaussian and Poisson, in both
// regimes at K = 300 and K = 10.
TEST_F(CudaFilter, EveryReadoutMatchesTheCpuInBothRegimes) {
  for (const auto& [label, model] : testing::readout_models(12)) {
    const SequenceBatch batch = testing::sampled_batch(model, 4, 12, 4);
    for (const int particles : {300, 10}) {
      for (const auto regime :
           {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
        FilterOptions options;
        options.num_particles = particles;
        options.proposal = Proposal::bootstrap;
        auto gpu = cuda_backend(regime);
        (void)testing::expect_same_filter(*gpu, model, batch, options, 99,
                                          label + ", K = " + std::to_string(particles) + ", " +
                                              regime_name(regime));
      }
    }
  }
}

// The loadings m, n, h take 4 (2 R + 1) N bytes of shared memory beside the kernels' static
// storage: N = 1700 (47,600 bytes) needs the opt-in only because of that storage, N = 2400
// (67,200 bytes) for the loadings alone; at N = 2400 and R = 12 (240,000 bytes) they pass the
// device's opt-in limit and the kernels read them from global memory.
TEST_F(CudaFilter, LoadingsInAndBeyondSharedMemory) {
#if defined(LRSMC_WITH_CUDA)
  // The first case tests the opt-in only if the kernels' static storage pushes 47,600 bytes
  // past 48 KB (the emulation reports LRSMC_EMULATED_STATIC_SHARED, 4608 bytes by default).
  const std::size_t static_bytes = cuda::particle_kernels_static_shared_bytes();
  EXPECT_GT(47'600 + static_bytes, std::size_t(48 * 1024))
      << "static shared memory " << static_bytes << " bytes: N = 1700 does not need the opt-in";
#endif
  for (const auto& [hidden, rank] : {std::pair{1700, 3}, std::pair{2400, 3}, std::pair{2400, 12}}) {
    ModelConfig config = testing::medium_config(Nonlinearity::relu, NoiseType::full,
                                                Observation::gaussian, Link::identity);
    config.num_hidden = hidden;
    config.rank = rank;
    const Model model = testing::random_model(config, 9);
    const SequenceBatch batch = testing::sampled_batch(model, 2, 4, 3);
    for (const auto regime :
         {CudaFilterRegime::block_per_trial, CudaFilterRegime::many_particles}) {
      FilterOptions options;
      options.num_particles = 300;
      auto gpu = cuda_backend(regime);
      (void)testing::expect_same_filter(*gpu, model, batch, options, 5,
                                        "hidden " + std::to_string(hidden) + ", rank " +
                                            std::to_string(rank) + ", " + regime_name(regime));
    }
  }
}

// Around the threshold the automatic choice runs exactly the forced regime.
TEST_F(CudaFilter, AutomaticChoiceFollowsTheThreshold) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::diag,
                                                   Observation::gaussian, Link::identity),
                            4);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 2);
  auto automatic = cuda_backend(CudaFilterRegime::automatic);
  for (const auto& [particles, regime] :
       {std::pair{cuda::many_particle_threshold - 1, CudaFilterRegime::block_per_trial},
        std::pair{cuda::many_particle_threshold, CudaFilterRegime::many_particles}}) {
    FilterOptions options;
    options.num_particles = particles;
    auto forced = cuda_backend(regime);
    testing::expect_identical(forced->filter(model, batch, options, 1, {true, true}),
                              automatic->filter(model, batch, options, 1, {true, true}),
                              "K = " + std::to_string(particles));
  }
}

// 10^5 particles per trial and 10^7 in all (100 trials), without stored paths. Two of the
// trials are run again alone: trial_ids address the draws, so a batch of just those trials with
// their ids draws the same numbers and gives the same results, bit for bit; on the CPU float
// engine too (on the emulated device: on a GPU, with stored paths, step by step).
TEST_F(CudaFilter, TenMillionParticlesInAll) {
  ModelConfig config = testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                              Observation::gaussian, Link::identity);
  config.num_inputs = 0;
  config.num_hidden = 128;
  const Model model = testing::random_model(config, 31);
  const SequenceBatch batch = testing::sampled_batch(model, 100, 4, 17);
  FilterOptions options;
  options.num_particles = 100'000;
  auto gpu = cuda_backend(CudaFilterRegime::automatic);
  const FilterResult result = gpu->filter(model, batch, options, 23, {true, false});
  ASSERT_EQ(result.elbo_per_trial.size(), 100u);
  for (const double elbo : result.elbo_per_trial) ASSERT_TRUE(std::isfinite(elbo));
  SequenceBatch subset;
  subset.num_trials = 2;
  subset.num_steps = batch.num_steps;
  subset.num_channels = batch.num_channels;
  const std::vector<int> picked = {0, 57};
  FilterResult expected;
  const std::size_t means = std::size_t(batch.num_steps) * config.rank;
  for (const int trial : picked) {
    const std::size_t size = std::size_t(batch.num_steps) * batch.num_channels;
    subset.observations.insert(subset.observations.end(),
                               batch.observations.begin() + std::ptrdiff_t(trial * size),
                               batch.observations.begin() + std::ptrdiff_t((trial + 1) * size));
    subset.trial_ids.push_back(std::uint32_t(trial));
    expected.elbo_per_trial.push_back(result.elbo_per_trial[std::size_t(trial)]);
    expected.filtered_mean.insert(
        expected.filtered_mean.end(),
        result.filtered_mean.begin() + std::ptrdiff_t(std::size_t(trial) * means),
        result.filtered_mean.begin() + std::ptrdiff_t(std::size_t(trial + 1) * means));
  }
  const FilterResult alone = gpu->filter(model, subset, options, 23, {true, false});
  EXPECT_EQ(alone.elbo_per_trial, expected.elbo_per_trial) << "trials 0 and 57 alone";
  EXPECT_EQ(alone.filtered_mean, expected.filtered_mean) << "trials 0 and 57 alone";
  if (testing::emulated_device) {
    auto cpu = testing::cpu_float_backend();
    const FilterResult reference = cpu->filter(model, subset, options, 23, {true, false});
    EXPECT_EQ(reference.elbo_per_trial, expected.elbo_per_trial) << "trials 0 and 57 on the CPU";
    EXPECT_EQ(reference.filtered_mean, expected.filtered_mean) << "trials 0 and 57 on the CPU";
  } else {
    (void)testing::expect_same_filter(*gpu, model, subset, options, 23, "trials 0 and 57 of 100");
  }
}

// A request far beyond the device's memory fails before allocating, says what would fit, and
// leaves the backend usable.
TEST_F(CudaFilter, OutOfMemoryIsClearAndTheBackendStaysUsable) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            2);
  const SequenceBatch batch = testing::sampled_batch(model, 100, 3, 3);
  FilterOptions options;
  options.num_particles = 100'000'000;  // 10^10 particles: terabytes
  auto gpu = cuda_backend(CudaFilterRegime::automatic);
  try {
    (void)gpu->filter(model, batch, options, 1);
    ADD_FAILURE() << "expected OutOfMemory";
  } catch (const OutOfMemory& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("particles per trial (or"), std::string::npos) << message;
    EXPECT_NE(message.find("would fit"), std::string::npos) << message;
  }
  options.num_particles = 3000;
  const FilterResult after = gpu->filter(model, batch, options, 1);
  EXPECT_TRUE(std::isfinite(after.elbo));
}

}  // namespace
}  // namespace lrsmc
