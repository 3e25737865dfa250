// The backward-simulation smoother (lrsmc/smoother.hpp): its means against the exact
// Rauch–Tung–Striebel smoother of a linear-Gaussian model, its independence of threads and of
// how the trials are split, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/smoother.hpp"
#include "support/linear_gaussian.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

/// The linear-Gaussian model of the filter's Kalman test: identity nonlinearity, Gaussian
/// identity read-out, stable dynamics.
Model linear_gaussian_model() {
  const ModelConfig config = testing::small_config(Nonlinearity::identity, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  Model model = testing::random_model(config, 2);
  auto n = model.get("n");
  for (auto& value : n) value *= 0.3;
  model.set("n", n);
  return model;
}

// Each smoothed mean averages M = 400 backward draws, independent given the particles, so its
// Monte Carlo standard deviation is about σ/√M = σ/20 for the exact posterior's σ, plus the
// particle approximation's, of order σ/√K = σ/63 at K = 4000: about 0.053σ. Over the 60 entries
// (2 trials × 15 steps × rank 2) the mean of |z| = |smoothed − exact|/σ is then about
// 0.8 × 0.053 ≈ 0.042 (bound 0.08) and the largest below 4 × 0.053 ≈ 0.21 but with probability
// ~4e-3 (bound 0.25). The filtered means, which do not see the later observations, are farther
// from the smoothed posterior before the last step.
TEST(Smoother, MeansApproachTheExactRtsSmoother) {
  const Model model = linear_gaussian_model();
  const SequenceBatch batch = testing::sampled_batch(model, 2, 15, 3);
  const testing::ExactSmoother exact = testing::rts_smoother(model, batch);
  FilterOptions options;
  options.proposal = Proposal::optimal;
  options.num_particles = 4000;
  auto backend = testing::reference_backend();
  const SmoothResult smoothed = smooth(*backend, model, batch, options, 1, 400);
  FilterRequest request;
  request.filtered_mean = true;
  const FilterResult filtered = backend->filter(model, batch, options, 1, request);
  EXPECT_EQ(smoothed.elbo, filtered.elbo);
  ASSERT_EQ(smoothed.smoothed_mean.size(), exact.mean.size());
  ASSERT_EQ(smoothed.trajectories.size(), 400 * exact.mean.size());
  double total = 0.0, largest = 0.0, filtered_total = 0.0, smoothed_early = 0.0;
  const int rank = model.config.rank, steps = batch.num_steps;
  for (std::size_t i = 0; i < exact.mean.size(); ++i) {
    const double z = std::fabs(smoothed.smoothed_mean[i] - exact.mean[i]) / exact.std_dev[i];
    total += z;
    largest = std::max(largest, z);
    if (int(i / std::size_t(rank)) % steps == steps - 1) continue;  // the last step: the same
    smoothed_early += z;
    filtered_total += std::fabs(filtered.filtered_mean[i] - exact.mean[i]) / exact.std_dev[i];
  }
  EXPECT_LT(total / double(exact.mean.size()), 0.08);
  EXPECT_LT(largest, 0.25);
  EXPECT_LT(smoothed_early, 0.5 * filtered_total);
}

// The same draws on one thread or several, and for a trial smoothed alone (its random-number
// address kept) or with others; every backend's filter gives the particles.
TEST(Smoother, DrawsDependOnTheTrialsAddressOnly) {
  const Model model = linear_gaussian_model();
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 5);
  FilterOptions options;
  options.num_particles = 50;
  options.proposal = Proposal::bootstrap;
  BackendOptions one, two;
  one.num_threads = 1;
  two.num_threads = 2;
  const SmoothResult a = smooth(*make_backend(BackendKind::cpu, one), model, batch, options, 7, 20);
  const SmoothResult b = smooth(*make_backend(BackendKind::cpu, two), model, batch, options, 7, 20);
  EXPECT_EQ(a.trajectories, b.trajectories);
  EXPECT_EQ(a.smoothed_mean, b.smoothed_mean);
  SequenceBatch last = batch;  // the third trial alone, at its own address
  last.num_trials = 1;
  const std::size_t per_trial = std::size_t(batch.num_steps) * batch.num_channels;
  last.observations.assign(batch.observations.begin() + std::ptrdiff_t(2 * per_trial),
                           batch.observations.end());
  last.trial_ids = {2};
  const SmoothResult alone =
      smooth(*make_backend(BackendKind::cpu, one), model, last, options, 7, 20);
  EXPECT_TRUE(std::equal(alone.trajectories.begin(), alone.trajectories.end(),
                         a.trajectories.end() - std::ptrdiff_t(alone.trajectories.size())));
}

TEST(Smoother, AbsurdTrajectoryCountsAreRefused) {
  const Model model = linear_gaussian_model();
  const SequenceBatch batch = testing::sampled_batch(model, 1, 5, 5);
  FilterOptions options;
  auto backend = make_backend(BackendKind::cpu);
  for (const int trajectories : {0, -3, 2'000'000}) {
    try {
      (void)smooth(*backend, model, batch, options, 1, trajectories);
      ADD_FAILURE() << trajectories << " trajectories were drawn";
    } catch (const InvalidInput& error) {
      EXPECT_NE(
          std::string(error.what())
              .find("smoother: trajectories is out of range; got " + std::to_string(trajectories)),
          std::string::npos)
          << error.what();
    }
  }
}

}  // namespace
}  // namespace lrsmc
