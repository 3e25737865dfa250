// Missing observations (NaN with SequenceBatch::allow_missing): a channel missing everywhere is
// the model without that channel, to rounding; the data loaders keep NaN only when asked; the
// proposals that need every observation refuse it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/errors.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

/// `model` without read-out channel `dropped`: the read-out's column, bias and noise removed.
Model without_channel(const Model& model, int dropped) {
  ModelConfig config = model.config;
  const int D = config.num_channels;
  config.num_channels = D - 1;
  Model reduced = Model::initialise(config, 0);
  const ParameterLayout layout(config);
  for (const ParameterBlock& block : layout.blocks()) {
    std::vector<double> values = model.get(block.name);
    if (block.name == "readout_weight") {
      std::vector<double> kept;
      for (std::size_t i = 0; i < values.size(); ++i)
        if (int(i % std::size_t(D)) != dropped) kept.push_back(values[i]);
      values = kept;
    } else if (block.name == "readout_bias" || block.name == "observation_noise") {
      values.erase(values.begin() + dropped);
    }
    reduced.set(block.name, values);
  }
  return reduced;
}

SequenceBatch without_channel(const SequenceBatch& batch, int dropped) {
  SequenceBatch reduced = batch;
  reduced.num_channels = batch.num_channels - 1;
  reduced.observations.clear();
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    if (int(i % std::size_t(batch.num_channels)) != dropped)
      reduced.observations.push_back(batch.observations[i]);
  return reduced;
}

// The bootstrap proposal's draws do not depend on the observations, so the filter of a batch
// whose channel 2 is missing everywhere runs the same particles as the model without channel 2.
// The log-weights then differ only by the order in which a particle's channels are summed
// (channel i into lane i mod lanes): a few float64 roundings per step, far below 1e-9 relative.
TEST(MissingValues, AChannelMissingEverywhereIsTheModelWithoutIt) {
  for (const auto& [observation, link] : {std::pair{Observation::gaussian, Link::identity},
                                          std::pair{Observation::poisson, Link::softplus}}) {
    SCOPED_TRACE(to_string(observation));
    const ModelConfig config =
        testing::small_config(Nonlinearity::tanh, NoiseType::full, observation, link);
    const Model model = testing::random_model(config, 3);
    const int dropped = 2, D = config.num_channels;
    const SequenceBatch complete = testing::sampled_batch(model, 3, 10, 5);
    const SequenceBatch reduced_batch = without_channel(complete, dropped);
    const SequenceBatch batch = testing::with_missing(complete, std::size_t(dropped), std::size_t(D));
    const Model reduced = without_channel(model, dropped);
    FilterOptions options;
    options.num_particles = 40;
    options.proposal = Proposal::bootstrap;
    auto backend = testing::reference_backend();
    const double elbo = backend->filter(model, batch, options, 6).elbo;
    EXPECT_NEAR(elbo, backend->filter(reduced, reduced_batch, options, 6).elbo,
                1e-9 * std::fabs(elbo));
    const GradientResult full = backend->elbo_gradient(model, batch, options, 6);
    const GradientResult small = backend->elbo_gradient(reduced, reduced_batch, options, 6);
    const ParameterLayout layout(config), reduced_layout(reduced.config);
    for (const ParameterBlock& block : layout.blocks()) {
      const ParameterBlock& other = reduced_layout.block(block.name);
      std::int64_t j = 0;  // entry of the reduced block
      for (std::int64_t e = 0; e < block.size; ++e) {
        const double value = full.gradient[std::size_t(block.offset + e)];
        const bool channel_entry = block.name == "readout_weight" || block.name == "readout_bias" ||
                                   block.name == "observation_noise";
        if (channel_entry && int(e % D) == dropped) {
          EXPECT_EQ(value, 0.0) << block.name << "[" << e << "]: the missing channel's";
          continue;
        }
        const double expected = small.gradient[std::size_t(other.offset + j++)];
        EXPECT_NEAR(value, expected, 1e-9 * std::max(1.0, std::fabs(expected)))
            << block.name << "[" << e << "]";
      }
    }
  }
}

TEST(MissingValues, RefusedUnlessAskedAndByTheProposalsThatNeedEveryObservation) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 3);
  SequenceBatch batch = testing::sampled_batch(model, 2, 6, 5);
  batch.observations[9] = nan;  // trial 0, step 2, channel 1
  FilterOptions options;
  options.num_particles = 8;
  options.proposal = Proposal::bootstrap;
  auto backend = testing::reference_backend();
  const auto refuses = [&](const std::string& expected) {
    try {
      (void)backend->filter(model, batch, options, 1);
      ADD_FAILURE() << "accepted: " << expected;
    } catch (const InvalidInput& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
  };
  refuses("observations contain nan at trial 0, step 2, channel 1");
  batch.allow_missing = true;
  EXPECT_TRUE(std::isfinite(backend->filter(model, batch, options, 1).elbo));
  options.proposal = Proposal::optimal;
  refuses("the optimal proposal needs every observation, but observations has a missing value "
          "(NaN) at trial 0, step 2, channel 1; use the bootstrap proposal");
  batch.observations[9] = std::numeric_limits<double>::infinity();
  options.proposal = Proposal::bootstrap;
  refuses("observations contain inf");

  // The loader keeps NaN only when asked, and never infinities.
  Array array({1, 3, 2}, {0.0, 1.0, nan, 2.0, 3.0, 4.0});
  try {
    (void)dataset_from_array(array, DataLayout::trials_time_channels, "x.npy");
    ADD_FAILURE() << "NaN accepted without allow_missing";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("x.npy: value at trial 0, step 1, channel 0 is NaN"),
              std::string::npos)
        << error.what();
    EXPECT_NE(std::string(error.what()).find("--allow-missing"), std::string::npos) << error.what();
  }
  const Dataset data = dataset_from_array(array, DataLayout::trials_time_channels, "x.npy", true);
  EXPECT_TRUE(data.has_missing());
  EXPECT_TRUE(trials_batch(data, 0, 1).allow_missing);
  array.data[0] = std::numeric_limits<double>::infinity();
  EXPECT_THROW((void)dataset_from_array(array, DataLayout::trials_time_channels, "x.npy", true),
               InvalidInput);
}

// The packed float32 engine (the CPU default) skips the same entries: it follows the float64
// engine's run within the tolerance a GPU meets, filter and gradient.
TEST(MissingValues, ThePackedEngineFollowsTheReference) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::poisson, Link::softplus);
  const Model model = testing::random_model(config, 5);
  const SequenceBatch batch = testing::with_missing(testing::sampled_batch(model, 3, 8, 2), 0, 3);
  FilterOptions options;
  options.num_particles = 37;
  options.proposal = Proposal::bootstrap;
  testing::expect_packed_follows_reference(model, batch, options, 4, "missing entries");
  testing::expect_packed_gradient_follows_reference(model, batch, options, 4, "missing entries");
}

// The readings that look like a mistake still work with missing values: a raw-scale recording
// with a NaN is still told to z-score, and counts with a NaN are still recognised as counts.
TEST(MissingValues, DataWarningsLeaveMissingValuesOut) {
  std::vector<double> raw(2 * 50 * 3);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = 1000.0 * std::sin(0.37 * double(i));
  raw[4] = nan;
  const Dataset scaled =
      dataset_from_array(Array({2, 50, 3}, raw), DataLayout::trials_time_channels, "raw.npy", true);
  const auto warnings = data_warnings(scaled, Observation::gaussian);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("typical standard deviation"), std::string::npos) << warnings[0];
  std::vector<double> counts(2 * 50 * 3, 2.0);
  counts[7] = nan;
  const Dataset spikes = dataset_from_array(Array({2, 50, 3}, counts),
                                            DataLayout::trials_time_channels, "counts.npy", true);
  const auto count_warnings = data_warnings(spikes, Observation::gaussian);
  ASSERT_FALSE(count_warnings.empty());
  EXPECT_NE(count_warnings[0].find("non-negative integer"), std::string::npos) << count_warnings[0];
}

}  // namespace
}  // namespace lrsmc
