// The CUDA forward filter's regime choice and device-memory plan (host/cuda/filter_plan.hpp),
// and the backend's memory check and out-of-memory messages (Backend::check_fits): arithmetic,
// run on every machine.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/filter_plan.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
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

TEST(FilterMemoryPlan, ChoosesTheRegimeByParticlesPerTrial) {
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

// The device encoder's buffers: counted in the call's need, kept out of the workspace (they are
// allocated by the encoder), and growing with the trials by their per-row buffers.
TEST(FilterMemoryPlan, EncoderBuffersCountInTheNeedButNotInTheWorkspace) {
  FilterShape shape = plan_shape(3, 8, 100, 64);
  shape.config.encoder = testing::small_encoder({21, 11, 1}, {64, 64});
  const std::int64_t encoder = cuda::encoder_device_bytes(shape.config, 8, 100);
  FilterShape without = shape;
  without.encoder = false;
  shape.encoder = true;
  for (const FilterRegime regime : {FilterRegime::many_particles, FilterRegime::block_per_trial}) {
    // The encoder's own bytes (rounded to the plan's 512) and its proposal's products.
    const std::int64_t products =
        cuda::filter_buffer_bytes(shape, regime) - cuda::filter_buffer_bytes(without, regime);
    EXPECT_GT(products, 0);
    EXPECT_EQ(cuda::filter_device_bytes(shape, regime) - cuda::filter_device_bytes(without, regime),
              products + (encoder + 511) / 512 * 512);
  }
  // One block of 800 rows: per row two hidden layers of 64 (pre-activation and output), the
  // heads' 2 × 3 floats, the block's gathered and spread inputs (64 wide), two adjoints (64),
  // the heads' adjoints (2 × 3) and a one; the factors' 3 × 3 doubles.
  const std::int64_t per_row = (2 * 128 + 6 + 2 * 64 + 2 * 64 + 6 + 1) * 4 + 9 * 8;
  EXPECT_EQ(cuda::encoder_device_bytes(shape.config, 9, 100) - encoder, 100 * per_row);
}

TEST(FilterMemoryPlan, PerParticleBytesMatchTheBufferList) {
  // Sizes chosen so that every buffer's growth is a multiple of the 512-byte rounding.
  const int rank = 4;
  const FilterShape small = plan_shape(rank, 64, 10, 4096);
  FilterShape large = small;
  large.particles += 512;  // two more tiles of 256 per trial
  // Without stored paths: particles 2 slices × rank × 4 B, log-weight 8 B, ancestor 4 B, and
  // two cumulative slices (many particles) or the carried and cumulative weights (block per
  // trial), 16 B; per tile five float64 sums and rank mean sums.
  const std::int64_t per_particle = 64 * 512 * (2 * rank * 4 + 8 + 4 + 16);
  const std::int64_t per_tile = 64 * 2 * (5 + rank) * 8;
  for (const FilterRegime regime : {FilterRegime::many_particles, FilterRegime::block_per_trial})
    EXPECT_EQ(cuda::filter_device_bytes(large, regime) - cuda::filter_device_bytes(small, regime),
              per_particle + per_tile);
  // Stored paths keep every step: 10 particle slices instead of 2, 10 weight and ancestor
  // slices instead of 1, and a resampling flag per cell (640 B, rounded to 1024).
  FilterShape stored = small;
  stored.store_all = true;
  EXPECT_EQ(cuda::filter_device_bytes(stored, FilterRegime::many_particles) -
                cuda::filter_device_bytes(small, FilterRegime::many_particles),
            std::int64_t(64) * 4096 * (8 * rank * 4 + 9 * (8 + 4)) + 1024);
  // The filtered mean: (trials, steps, rank) float64.
  FilterShape mean = small;
  mean.filtered_mean = true;
  EXPECT_EQ(cuda::filter_device_bytes(mean, FilterRegime::many_particles) -
                cuda::filter_device_bytes(small, FilterRegime::many_particles),
            std::int64_t(64) * 10 * rank * 8);
}

std::int64_t rounded(std::int64_t bytes) { return (bytes + 511) / 512 * 512; }

TEST(FilterMemoryPlan, UploadBytesCountTheUploadedBuffersFirst) {
  // Rank 3, 128 units, 32 channels, 10 trials × 50 steps, Gaussian, no inputs; every buffer
  // rounded up to 512 bytes: the flat float64 parameters, the observations (500 × 32 × 4 B) and
  // the trial ids. The per-call constants are built on the device, so the proposal does not
  // change the uploads.
  const FilterShape shape = plan_shape(3, 10, 50, 10);
  const auto parameters = [](const ModelConfig& config) {
    return rounded(ParameterLayout(config).total_size() * 8);
  };
  const std::int64_t observations = 500 * 32 * 4, ids = rounded(10 * 4);
  EXPECT_EQ(cuda::filter_upload_bytes(shape), parameters(shape.config) + observations + ids);
  FilterShape bootstrap = shape;
  bootstrap.optimal = false;
  EXPECT_EQ(cuda::filter_upload_bytes(bootstrap), cuda::filter_upload_bytes(shape));
  // Poisson: no observation noise among the parameters, ln Γ(x + 1) beside the observations.
  FilterShape poisson = shape;
  poisson.config.observation = Observation::poisson;
  EXPECT_EQ(cuda::filter_upload_bytes(poisson),
            parameters(poisson.config) + 2 * observations + ids);
  // Inputs: W_u among the parameters, and the float64 inputs, 500 × 2 × 8 B.
  FilterShape inputs = shape;
  inputs.config.num_inputs = 2;
  EXPECT_EQ(cuda::filter_upload_bytes(inputs),
            parameters(inputs.config) + observations + rounded(500 * 2 * 8) + ids);
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

TEST(FilterMemoryPlan, GrowsWithEveryDimension) {
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

TEST(FilterMemoryPlan, LargestFittingCountsFitAndOneMoreDoesNot) {
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

TEST(FilterMemoryPlan, OutOfMemoryMessageSaysWhatWouldFit) {
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
  SampleResult do_sample(const Model&, int, int, const std::vector<double>&, std::uint64_t,
                         int, const std::vector<double>&) override {
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

}  // namespace
}  // namespace lrsmc
