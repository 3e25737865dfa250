// The CUDA forward filter's many-particle regime (kernels/filter_many_particles.cu) against the
// CPU float path and against the block-per-trial regime on the same Philox draws, its
// determinism and automatic choice, and the memory plan and out-of-memory message
// (host/cuda/filter_plan.hpp). The plan tests are arithmetic and run everywhere; the others
// skip with a message when lrsmc was built without CUDA or no device answers.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/filter_plan.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "support/filter_comparison.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

using cuda::FilterRegime;
using cuda::FilterShape;

// --- memory plan and regime choice (no GPU needed) -----------------------------------------

FilterShape plan_shape(int rank, std::int64_t trials, std::int64_t steps, std::int64_t particles) {
  FilterShape shape;
  shape.config.rank = rank;
  shape.config.num_hidden = 128;
  shape.config.num_channels = 32;
  shape.trials = trials;
  shape.steps = steps;
  shape.particles = particles;
  return shape;
}

TEST(CudaFilterPlan, ChoosesTheRegimeByParticlesPerTrial) {
  const int threshold = cuda::many_particle_threshold;
  EXPECT_EQ(cuda::choose_filter_regime(10, CudaFilterRegime::automatic),
            FilterRegime::block_per_trial);
  EXPECT_EQ(cuda::choose_filter_regime(threshold - 1, CudaFilterRegime::automatic),
            FilterRegime::block_per_trial);
  EXPECT_EQ(cuda::choose_filter_regime(threshold, CudaFilterRegime::automatic),
            FilterRegime::many_particles);
  EXPECT_EQ(cuda::choose_filter_regime(100'000, CudaFilterRegime::automatic),
            FilterRegime::many_particles);
  EXPECT_EQ(cuda::choose_filter_regime(100'000, CudaFilterRegime::block_per_trial),
            FilterRegime::block_per_trial);
  EXPECT_EQ(cuda::choose_filter_regime(10, CudaFilterRegime::many_particles),
            FilterRegime::many_particles);
}

TEST(CudaFilterPlan, PerParticleBytesMatchTheBufferList) {
  // Sizes chosen so that every buffer's growth is a multiple of the 512-byte rounding.
  const int rank = 4;
  const FilterShape small = plan_shape(rank, 64, 10, 4096);
  FilterShape large = small;
  large.particles += 512;  // two more blocks of 256 per trial
  // Many-particle regime, no stored paths: particles 2 slices × rank × 4 B, log-weight 8 B,
  // ancestor 4 B, two cumulative slices 16 B; per block five float64 partials.
  const std::int64_t many = 64 * 512 * (2 * rank * 4 + 8 + 4 + 16) + 64 * 2 * 5 * 8;
  EXPECT_EQ(cuda::filter_device_bytes(large, FilterRegime::many_particles) -
                cuda::filter_device_bytes(small, FilterRegime::many_particles),
            many);
  // Block per trial: carried and cumulative weights instead, no partials.
  const std::int64_t block = 64 * 512 * (2 * rank * 4 + 8 + 4 + 16);
  EXPECT_EQ(cuda::filter_device_bytes(large, FilterRegime::block_per_trial) -
                cuda::filter_device_bytes(small, FilterRegime::block_per_trial),
            block);
  // Stored paths keep every step: 10 particle slices instead of 2, 10 weight and ancestor
  // slices instead of 1, and a resampling flag per cell (640 B, rounded to 1024).
  FilterShape stored = small;
  stored.store_all = true;
  EXPECT_EQ(cuda::filter_device_bytes(stored, FilterRegime::many_particles) -
                cuda::filter_device_bytes(small, FilterRegime::many_particles),
            std::int64_t(64) * 4096 * (8 * rank * 4 + 9 * (8 + 4)) + 1024);
  // The filtered mean: (trials, steps, rank) float64, plus rank partials per block.
  FilterShape mean = small;
  mean.filtered_mean = true;
  EXPECT_EQ(cuda::filter_device_bytes(mean, FilterRegime::many_particles) -
                cuda::filter_device_bytes(small, FilterRegime::many_particles),
            std::int64_t(64) * 10 * rank * 8 + 64 * 16 * rank * 8);
}

TEST(CudaFilterPlan, UploadBytesCountTheUploadedBuffersFirst) {
  // Rank 3, 128 units, 32 channels, 10 trials × 50 steps, Gaussian, optimal proposal, no
  // inputs; every buffer rounded up to 512 bytes. Model: m and n 1536 B each, h 512 B, read-out
  // weight (384 B), bias and log-variances (128 B each) 512 B each. Per phase: noise factor,
  // gain, α and L_q, 512 B each. Observations 500 × 32 × 4 = 64000 B; initial means and trial
  // ids 512 B each.
  const FilterShape shape = plan_shape(3, 10, 50, 10);
  const std::int64_t model = 2 * 1536 + 4 * 512, constants = 2 * 4 * 512, data = 64000 + 2 * 512;
  EXPECT_EQ(cuda::filter_upload_bytes(shape), model + constants + data);
  // The random-walk proposal uploads only the noise factors.
  FilterShape bootstrap = shape;
  bootstrap.optimal = false;
  EXPECT_EQ(cuda::filter_upload_bytes(bootstrap), model + 2 * 512 + data);
  // Poisson: no log-variances, ln Γ(x + 1) beside the observations.
  FilterShape poisson = shape;
  poisson.config.observation = Observation::poisson;
  EXPECT_EQ(cuda::filter_upload_bytes(poisson), model - 512 + constants + data + 64000);
  // Inputs: the currents W_u u_t, 500 × 128 × 4 B.
  FilterShape inputs = shape;
  inputs.config.num_inputs = 2;
  EXPECT_EQ(cuda::filter_upload_bytes(inputs), model + constants + data + 256000);
  // The uploads are part of the workspace and do not depend on the particles, the regime or
  // what is stored: the buffers after them account for those.
  for (const FilterRegime regime : {FilterRegime::block_per_trial, FilterRegime::many_particles}) {
    for (const std::int64_t particles : {10, 4096}) {
      FilterShape call = shape;
      call.particles = particles;
      call.store_all = particles > 10;
      call.filtered_mean = particles > 10;
      EXPECT_EQ(cuda::filter_upload_bytes(call), cuda::filter_upload_bytes(shape));
      EXPECT_GT(cuda::filter_buffer_bytes(call, regime), cuda::filter_upload_bytes(call));
    }
  }
}

TEST(CudaFilterPlan, GrowsWithEveryDimension) {
  const FilterShape base = plan_shape(3, 10, 50, 100'000);
  for (const FilterRegime regime : {FilterRegime::block_per_trial, FilterRegime::many_particles}) {
    const std::int64_t bytes = cuda::filter_device_bytes(base, regime);
    FilterShape more = base;
    more.trials += 1;
    EXPECT_GT(cuda::filter_device_bytes(more, regime), bytes);
    more = base;
    more.steps += 1;
    EXPECT_GT(cuda::filter_device_bytes(more, regime), bytes);
    more = base;
    more.particles += 1;
    EXPECT_GT(cuda::filter_device_bytes(more, regime), bytes);
  }
}

TEST(CudaFilterPlan, LargestFittingCountsFitAndOneMoreDoesNot) {
  FilterShape shape = plan_shape(3, 10, 50, 10'000'000);
  shape.config.num_hidden = 512;
  shape.config.num_channels = 64;
  for (const bool store_all : {false, true}) {
    shape.store_all = store_all;
    SCOPED_TRACE(store_all ? "stored paths" : "no stored paths");
    const std::int64_t available = std::int64_t(2) << 30;
    const auto fit = cuda::largest_fitting(shape, CudaFilterRegime::automatic, available);
    ASSERT_GT(fit.particles, 0);
    ASSERT_LT(fit.particles, shape.particles);
    const auto bytes_at = [&](std::int64_t particles, std::int64_t trials) {
      FilterShape candidate = shape;
      candidate.particles = particles;
      candidate.trials = trials;
      return cuda::filter_device_bytes(
          candidate, cuda::choose_filter_regime(int(particles), CudaFilterRegime::automatic));
    };
    EXPECT_LE(bytes_at(fit.particles, shape.trials), available);
    EXPECT_GT(bytes_at(fit.particles + 1, shape.trials), available);
    ASSERT_LT(fit.trials, shape.trials);
    if (fit.trials > 0) {
      EXPECT_LE(bytes_at(shape.particles, fit.trials), available);
    }
    EXPECT_GT(bytes_at(shape.particles, fit.trials + 1), available);
  }
  // Less than the fixed margin: nothing fits.
  const auto none = cuda::largest_fitting(shape, CudaFilterRegime::automatic, 1 << 20);
  EXPECT_EQ(none.particles, 0);
  EXPECT_EQ(none.trials, 0);
}

TEST(CudaFilterPlan, OutOfMemoryMessageSaysWhatWouldFit) {
  FilterShape shape = plan_shape(3, 10, 50, 100'000);
  shape.store_all = true;
  const std::int64_t available = std::int64_t(256) << 20;
  const auto fit = cuda::largest_fitting(shape, CudaFilterRegime::automatic, available);
  const std::string message =
      cuda::out_of_memory_message(shape, CudaFilterRegime::automatic, available);
  EXPECT_NE(message.find("many-particle regime, storing every step"), std::string::npos) << message;
  EXPECT_NE(message.find("100000 particles × 10 trials × 50 steps needs "), std::string::npos)
      << message;
  EXPECT_NE(message.find("but only 256 MiB are free"), std::string::npos) << message;
  EXPECT_NE(message.find("at most " + std::to_string(fit.particles) + " particles per trial (or " +
                         std::to_string(fit.trials) + " trials of 100000 particles) would fit"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("without stored particle paths"), std::string::npos) << message;
  // A forced regime is the one reported.
  shape.store_all = false;
  const std::string forced =
      cuda::out_of_memory_message(shape, CudaFilterRegime::block_per_trial, available);
  EXPECT_NE(forced.find("(block-per-trial regime)"), std::string::npos) << forced;
}

/// A backend with a fixed affine estimate and a fixed amount of memory: exercises
/// Backend::check_fits, which every backend's filter() runs before do_filter.
class TinyMemoryBackend final : public Backend {
 public:
  [[nodiscard]] std::string name() const override { return "tiny"; }
  [[nodiscard]] std::int64_t memory_estimate(const ModelConfig&, int num_trials, int,
                                             int num_particles, bool) const override {
    return 1000 + std::int64_t(num_trials) * num_particles * 100;
  }
  [[nodiscard]] std::int64_t memory_available() const override { return 1'000'000; }

 private:
  FilterResult do_filter(const Model&, const SequenceBatch&, const FilterOptions&, std::uint64_t,
                         const FilterRequest&) override {
    ADD_FAILURE() << "do_filter ran although the estimate does not fit";
    return {};
  }
  GradientResult do_elbo_gradient(const Model&, const SequenceBatch&, const FilterOptions&,
                                  std::uint64_t) override {
    return {};
  }
  SampleResult do_sample(const Model&, int, int, const std::vector<double>&,
                         std::uint64_t) override {
    return {};
  }
};

TEST(BackendMemoryCheck, OutOfMemorySaysHowManyParticlesAndTrialsFit) {
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 1);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 5, 2);
  FilterOptions options;
  options.num_particles = 5000;  // 4 × 5000 × 100 + 1000 bytes > 1,000,000
  TinyMemoryBackend backend;
  try {
    (void)backend.filter(model, batch, options, 1);
    ADD_FAILURE() << "expected OutOfMemory";
  } catch (const OutOfMemory& error) {
    const std::string message = error.what();
    // (1,000,000 − 1000) / (4 · 100) = 2497 particles; / (5000 · 100) = 1 trial.
    EXPECT_NE(message.find("at most 2497 particles per trial (or 1 trials of 5000 particles) "
                           "would fit"),
              std::string::npos)
        << message;
  }
}

TEST(BackendMemoryCheck, StoredPathsSayHowManyParticlesFit) {
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 1);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 5, 2);
  FilterOptions options;
  options.num_particles = 2000;  // the estimate fits (801,000 bytes) ...
  TinyMemoryBackend backend;
  try {
    (void)backend.filter(model, batch, options, 1, {false, true});
    ADD_FAILURE() << "expected OutOfMemory";
  } catch (const OutOfMemory& error) {
    // ... the float64 paths do not: 4 trials × 5 steps × (rank 2 + 2) × 8 = 640 bytes per
    // particle, and 1562 × 640 < 1,000,000 ≤ 1563 × 640.
    const std::string message = error.what();
    EXPECT_NE(message.find("at most 1562 particles per trial would fit with stored paths"),
              std::string::npos)
        << message;
  }
}

// --- the many-particle regime on a device ---------------------------------------------------

bool skip_without_device(std::string& reason) {
  if (cuda_available()) return false;
  reason = "no CUDA device (lrsmc built without CUDA, or no GPU answers): many-particle "
           "regime checks skipped";
  return true;
}

#define LRSMC_SKIP_WITHOUT_DEVICE()                   \
  do {                                                \
    std::string lrsmc_reason;                         \
    if (skip_without_device(lrsmc_reason)) GTEST_SKIP() << lrsmc_reason; \
  } while (false)

std::unique_ptr<Backend> cuda_backend(CudaFilterRegime regime) {
  BackendOptions options;
  options.cuda_filter_regime = regime;
  return make_backend(BackendKind::cuda, options);
}

/// One option combination; printed readably in test names and failure messages.
struct OptionCase {
  Nonlinearity nonlinearity;
  Proposal proposal;
  Observation observation;
  Link link;
  NoiseType noise;
  Resampling resampling;
};

std::string case_name(const OptionCase& c) {
  return to_string(c.nonlinearity) + "_" + to_string(c.proposal) + "_" + to_string(c.observation) +
         "_" + to_string(c.link) + "_" + to_string(c.noise) + "_" + to_string(c.resampling);
}

void PrintTo(const OptionCase& value, std::ostream* os) { *os << case_name(value); }

std::vector<OptionCase> every_option() {
  std::vector<OptionCase> cases;
  for (const auto nonlinearity : {Nonlinearity::relu, Nonlinearity::clipped_relu,
                                  Nonlinearity::tanh, Nonlinearity::identity})
    for (const auto proposal : {Proposal::bootstrap, Proposal::optimal})
      for (const auto observation : {Observation::gaussian, Observation::poisson})
        for (const auto noise : {NoiseType::full, NoiseType::diag})
          for (const auto resampling : {Resampling::systematic, Resampling::multinomial}) {
            if (proposal == Proposal::optimal && observation != Observation::gaussian) continue;
            const Link link = observation == Observation::gaussian ? Link::identity : Link::softplus;
            cases.push_back({nonlinearity, proposal, observation, link, noise, resampling});
          }
  return cases;
}

std::string option_case_name(const ::testing::TestParamInfo<OptionCase>& info) {
  return case_name(info.param);
}

// The comparison itself, on the CPU: float against float64 on the same draws is the same
// situation as CUDA against the CPU float path (the log-weights differ by float rounding, so
// ancestors differ at near-ties and the runs then follow partly different particles), and a
// corrupted ancestor must be reported as what it is.
TEST(FilterComparison, CpuFloatAgainstFloat64PassesTheSameChecks) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full, Observation::gaussian,
                    Link::identity),
      21);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 8, 5);
  auto float64 = make_backend(BackendKind::cpu);
  auto float32 = testing::cpu_float_backend();
  for (const int particles : {300, 3000}) {
    FilterOptions options;
    options.num_particles = particles;
    options.resampling = Resampling::multinomial;
    testing::expect_same_filter(*float64, *float32, model, batch, options, 7, 1e-4, {},
                       "cpu float against float64, K = " + std::to_string(particles));
  }
}

TEST(FilterComparison, ReportsACorruptedAncestor) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::tanh, NoiseType::diag, Observation::gaussian, Link::identity),
      3);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 6, 1);
  FilterOptions options;
  options.num_particles = 200;
  auto cpu = make_backend(BackendKind::cpu);
  const FilterResult reference = cpu->filter(model, batch, options, 2, {true, true});
  const auto same = testing::expect_same_paths(reference, reference, batch, options,
                                               model.config.rank, 2, {}, "itself");
  EXPECT_EQ(same.identical_cells, same.cells);
  EXPECT_EQ(same.same_lineage, same.particles);
  FilterResult corrupted = reference;
  const std::size_t slot = std::size_t(1) * batch.num_steps * 200 + 2 * 200 + 17;  // trial 1, step 2
  corrupted.ancestors[slot] = (corrupted.ancestors[slot] + 100) % 200;
  EXPECT_NONFATAL_FAILURE(
      (void)testing::expect_same_paths(reference, corrupted, batch, options, model.config.rank, 2,
                                       {}, "corrupted"),
      "ancestor of slot 17, trial 1, step 2");
  FilterResult moved = reference;
  moved.particles[(std::size_t(0) * batch.num_steps * 200 + 4 * 200 + 9) * 3 + 1] += 0.5;
  EXPECT_NONFATAL_FAILURE(
      (void)testing::expect_same_paths(reference, moved, batch, options, model.config.rank, 2, {},
                                       "moved"),
      "particle 9 component 1 of trial 0, step 4 differs");
}

class CudaManyParticleOptionsTest : public ::testing::TestWithParam<OptionCase> {
 protected:
  void SetUp() override { LRSMC_SKIP_WITHOUT_DEVICE(); }
};

// Every option combination in the many-particle regime, forced at K = 300 (two blocks per
// trial, the second partly empty), against the CPU float path.
TEST_P(CudaManyParticleOptionsTest, MatchesCpuOnTheSameDraws) {
  const OptionCase c = GetParam();
  const Model model =
      testing::random_model(testing::medium_config(c.nonlinearity, c.noise, c.observation, c.link), 12);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 20, 4);
  FilterOptions options;
  options.num_particles = 300;
  options.proposal = c.proposal;
  options.resampling = c.resampling;
  auto cpu = testing::cpu_float_backend();
  auto gpu = cuda_backend(CudaFilterRegime::many_particles);
  testing::expect_same_filter(*cpu, *gpu, model, batch, options, 99, 1e-4, {}, case_name(c));
}

INSTANTIATE_TEST_SUITE_P(AllOptions, CudaManyParticleOptionsTest, ::testing::ValuesIn(every_option()),
                         option_case_name);

/// Proposal × resampling scheme, for the large-K comparisons.
struct SchemeCase {
  Proposal proposal;
  Resampling resampling;
};

std::string scheme_name(const SchemeCase& c) {
  return to_string(c.proposal) + "_" + to_string(c.resampling);
}

void PrintTo(const SchemeCase& value, std::ostream* os) { *os << scheme_name(value); }

std::vector<SchemeCase> every_scheme() {
  std::vector<SchemeCase> cases;
  for (const auto proposal : {Proposal::bootstrap, Proposal::optimal})
    for (const auto resampling :
         {Resampling::systematic, Resampling::multinomial, Resampling::stratified})
      cases.push_back({proposal, resampling});
  return cases;
}

std::string scheme_case_name(const ::testing::TestParamInfo<SchemeCase>& info) {
  return scheme_name(info.param);
}

class CudaManyParticleSchemeTest : public ::testing::TestWithParam<SchemeCase> {
 protected:
  void SetUp() override { LRSMC_SKIP_WITHOUT_DEVICE(); }
};

// Thousands of particles per trial (20 blocks, the last partly empty) in the automatic
// choice, against the CPU float path.
TEST_P(CudaManyParticleSchemeTest, MatchesCpuWithThousandsOfParticles) {
  const SchemeCase c = GetParam();
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full, Observation::gaussian,
                    Link::identity),
      21);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 12, 5);
  FilterOptions options;
  options.num_particles = 5000;
  ASSERT_EQ(cuda::choose_filter_regime(options.num_particles, CudaFilterRegime::automatic),
            FilterRegime::many_particles);
  options.proposal = c.proposal;
  options.resampling = c.resampling;
  auto cpu = testing::cpu_float_backend();
  auto gpu = cuda_backend(CudaFilterRegime::automatic);
  testing::expect_same_filter(*cpu, *gpu, model, batch, options, 7, 1e-4, {}, scheme_name(c));
}

// The two regimes on the same draws share the per-particle code, so particles agree to
// rounding and only the float64 sums' order differs: ancestors agree everywhere.
TEST_P(CudaManyParticleSchemeTest, RegimesAgreeOnTheSameDraws) {
  const SchemeCase c = GetParam();
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::tanh, NoiseType::full, Observation::gaussian, Link::identity), 5);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 15, 6);
  auto block = cuda_backend(CudaFilterRegime::block_per_trial);
  auto many = cuda_backend(CudaFilterRegime::many_particles);
  for (const double threshold : {1.0, 0.5, 0.0}) {
    FilterOptions options;
    options.num_particles = 3000;
    options.proposal = c.proposal;
    options.resampling = c.resampling;
    options.resample_threshold = threshold;
    testing::PathTolerance tight;
    tight.particle = 1e-6;
    tight.log_weight = 1e-9;
    tight.near_tie = 1e-9;
    const std::string label = scheme_name(c) + ", threshold " + std::to_string(threshold);
    const FilterRequest request{true, true};
    const FilterResult reference = block->filter(model, batch, options, 3, request);
    const FilterResult result = many->filter(model, batch, options, 3, request);
    testing::expect_close_summaries(reference, result, 1e-9, label);
    const auto agreement =
        testing::expect_same_paths(reference, result, batch, options, 3, 3, tight, label);
    EXPECT_EQ(agreement.identical_cells, agreement.cells)
        << label << ": an ancestor differs between the regimes (a near-tie at 1e-9 is "
                    "improbable; see the failure above if it was not one)";
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, CudaManyParticleSchemeTest, ::testing::ValuesIn(every_scheme()),
                         scheme_case_name);

class CudaManyParticles : public ::testing::Test {
 protected:
  void SetUp() override { LRSMC_SKIP_WITHOUT_DEVICE(); }
};

// More blocks per trial (274) than the combine kernel's block holds threads (256): its loops
// over the blocks' partials and the tiled scan of the block offsets take two rounds.
TEST_F(CudaManyParticles, MoreBlocksThanOneCombineTile) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::relu, NoiseType::full, Observation::gaussian, Link::identity), 8);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 4, 9);
  FilterOptions options;
  options.num_particles = 70'000;
  auto cpu = testing::cpu_float_backend();
  auto gpu = cuda_backend(CudaFilterRegime::many_particles);
  testing::expect_same_filter(*cpu, *gpu, model, batch, options, 11, 1e-4, {}, "K = 70000");
}

// Ranks 2 and 3 run kernels compiled for that rank (kernels/dispatch.cuh); the others run the
// generic kernels, checked here in both regimes.
TEST_F(CudaManyParticles, RanksWithoutASpecialisedKernel) {
  for (const int rank : {1, 5}) {
    ModelConfig config = testing::medium_config(Nonlinearity::tanh, NoiseType::full, Observation::gaussian,
                                       Link::identity);
    config.rank = rank;
    const Model model = testing::random_model(config, 40 + std::uint64_t(rank));
    const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 7);
    FilterOptions options;
    options.num_particles = 600;
    const std::string label = "rank " + std::to_string(rank);
    auto cpu = testing::cpu_float_backend();
    auto block = cuda_backend(CudaFilterRegime::block_per_trial);
    auto many = cuda_backend(CudaFilterRegime::many_particles);
    testing::expect_same_filter(*cpu, *block, model, batch, options, 13, 1e-4, {}, label + ", block per trial");
    testing::expect_same_filter(*cpu, *many, model, batch, options, 13, 1e-4, {}, label + ", many particles");
  }
}

// Loadings of 4·(2·3·1700 + 1700) = 47,600 bytes: under 48 KB, but over it with the kernels'
// static CUB storage, so both regimes must opt in to more shared memory (the default dynamic
// limit is 48 KB minus the static storage) or their launch fails.
// Shared memory holds the loadings, 4 (2 R + 1) N bytes, beside CUB's static storage: at
// N = 1700 (47,600 bytes) the kernels need the opt-in only because of that storage (only a GPU
// sees it: the emulation reports no static shared memory), at N = 2400 (67,200 bytes) for the
// loadings alone (the emulation's launch check refuses a kernel that did not opt in). K = 200
// runs the many-particle regime with one block per trial; the gradient runs the backward
// kernel, which opts in on its own.
TEST_F(CudaManyParticles, LoadingsAroundAndOver48KilobytesStillLaunch) {
  for (const auto& [hidden, particles] : {std::pair{1700, 300}, std::pair{2400, 200}}) {
    ModelConfig config = testing::medium_config(Nonlinearity::relu, NoiseType::full,
                                       Observation::gaussian, Link::identity);
    config.num_hidden = hidden;
    const Model model = testing::random_model(config, 9);
    const SequenceBatch batch = testing::sampled_batch(model, 2, 4, 3);
    FilterOptions options;
    options.num_particles = particles;
    auto block = cuda_backend(CudaFilterRegime::block_per_trial);
    auto many = cuda_backend(CudaFilterRegime::many_particles);
    const FilterRequest request{true, true};
    const FilterResult reference = block->filter(model, batch, options, 5, request);
    const FilterResult result = many->filter(model, batch, options, 5, request);
    const std::string label = "hidden " + std::to_string(hidden);
    ASSERT_TRUE(std::isfinite(reference.elbo)) << label;
    testing::PathTolerance tight;
    tight.particle = 1e-6;
    tight.log_weight = 1e-9;
    tight.near_tie = 1e-9;
    testing::expect_close_summaries(reference, result, 1e-9, label);
    (void)testing::expect_same_paths(reference, result, batch, options, config.rank, 5, tight,
                                     label);
    const GradientResult gradient = block->elbo_gradient(model, batch, options, 5);
    EXPECT_NEAR(gradient.elbo, reference.elbo, 1e-9 * std::fabs(reference.elbo)) << label;
    for (const double value : gradient.gradient) ASSERT_TRUE(std::isfinite(value)) << label;
  }
}

// Around the threshold the automatic choice runs exactly the forced regime (bitwise).
TEST_F(CudaManyParticles, AutomaticChoiceFollowsTheThreshold) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::clipped_relu, NoiseType::diag, Observation::gaussian,
                    Link::identity),
      4);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 2);
  auto automatic = cuda_backend(CudaFilterRegime::automatic);
  auto block = cuda_backend(CudaFilterRegime::block_per_trial);
  auto many = cuda_backend(CudaFilterRegime::many_particles);
  FilterOptions options;
  options.num_particles = cuda::many_particle_threshold - 1;
  EXPECT_EQ(automatic->filter(model, batch, options, 1, {true, false}).filtered_mean,
            block->filter(model, batch, options, 1, {true, false}).filtered_mean)
      << "below the threshold the automatic choice should be block per trial";
  options.num_particles = cuda::many_particle_threshold;
  EXPECT_EQ(automatic->filter(model, batch, options, 1, {true, false}).filtered_mean,
            many->filter(model, batch, options, 1, {true, false}).filtered_mean)
      << "at the threshold the automatic choice should be many particles";
}

TEST_F(CudaManyParticles, RepeatedRunsAreBitwiseIdentical) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::tanh, NoiseType::full, Observation::poisson, Link::softplus), 6);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 12, 1);
  FilterOptions options;
  options.num_particles = 9000;
  options.proposal = Proposal::bootstrap;
  options.resampling = Resampling::multinomial;
  auto gpu = cuda_backend(CudaFilterRegime::many_particles);
  const auto a = gpu->filter(model, batch, options, 5, {true, true});
  const auto b = gpu->filter(model, batch, options, 5, {true, true});
  testing::expect_bitwise_equal(a, b);
}

// 10^5 particles per trial and 10^7 in all (100 trials), without stored paths. Two of the
// trials are run again on the CPU float path: trial_ids address the draws, so a batch of just
// those trials with their ids draws the same numbers.
TEST_F(CudaManyParticles, TenMillionParticlesInAll) {
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
  for (const int trial : picked) {
    const std::size_t size = std::size_t(batch.num_steps) * batch.num_channels;
    subset.observations.insert(subset.observations.end(),
                               batch.observations.begin() + std::ptrdiff_t(trial * size),
                               batch.observations.begin() + std::ptrdiff_t((trial + 1) * size));
    subset.trial_ids.push_back(std::uint32_t(trial));
  }
  auto cpu = testing::cpu_float_backend();
  const FilterResult reference = cpu->filter(model, subset, options, 23, {true, false});
  for (std::size_t i = 0; i < picked.size(); ++i) {
    const std::size_t trial = std::size_t(picked[i]);
    // At 10^5 particles near-ties are certain, so later steps agree as Monte Carlo estimates.
    EXPECT_NEAR(result.elbo_per_trial[trial], reference.elbo_per_trial[i],
                1e-4 * std::fabs(reference.elbo_per_trial[i]) + 5.0 / std::sqrt(1e5))
        << "trial " << trial;
    // Step 0 involves no resampling: its filtered mean agrees to float rounding.
    for (int r = 0; r < config.rank; ++r) {
      const double expected = reference.filtered_mean[i * batch.num_steps * config.rank + r];
      EXPECT_NEAR(result.filtered_mean[trial * batch.num_steps * config.rank + r], expected,
                  1e-4 * std::max(1.0, std::fabs(expected)))
          << "trial " << trial << ", step 0, component " << r;
    }
  }
}

// A request far beyond the device's memory fails before allocating, says what would fit, and
// leaves the backend usable.
TEST_F(CudaManyParticles, OutOfMemoryIsClearAndTheBackendStaysUsable) {
  const Model model = testing::random_model(
      testing::medium_config(Nonlinearity::relu, NoiseType::full, Observation::gaussian, Link::identity), 2);
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
