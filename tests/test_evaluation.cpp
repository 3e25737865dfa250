// lrsmc::evaluate (lrsmc/evaluation.hpp): each scored value rebuilt here from the public pieces
// it is documented to be made of (the smoother's draw as the start, the sampler after the
// burn-in, the metrics), the baselines' defining properties, and bad options.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/evaluation.hpp"
#include "lrsmc/smoother.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

Dataset dataset_of(const SequenceBatch& batch) {
  Dataset data;
  data.source = "test batch";
  data.num_trials = batch.num_trials;
  data.num_steps = batch.num_steps;
  data.num_channels = batch.num_channels;
  data.num_inputs = batch.num_inputs;
  data.observations = batch.observations;
  data.inputs = batch.inputs;
  return data;
}

const MetricValues& metric(const Evaluation& evaluation, const std::string& name) {
  for (const MetricValues& m : evaluation.metrics)
    if (m.name == name) return m;
  throw std::runtime_error("no metric " + name);
}

/// The starts of repeat `repeat`: smoother trajectory `repeat` at step 0 of each trial.
std::vector<double> starts(const SmoothResult& smoothed, int trials, int steps, int rank,
                           int repeat) {
  std::vector<double> states(std::size_t(trials) * rank);
  for (int b = 0; b < trials; ++b)
    for (int r = 0; r < rank; ++r)
      states[std::size_t(b) * rank + r] =
          smoothed.trajectories[((std::size_t(b) * smoothed.num_trajectories + repeat) * steps) *
                                    rank +
                                r];
  return states;
}

/// The mean over the smoother's trajectories of the read-out's means (trials, steps, channels).
std::vector<double> smoothed_rates(const Model& model, const SmoothResult& smoothed, int trials,
                                   int steps) {
  const int R = model.config.rank, M = smoothed.num_trajectories;
  std::vector<double> rates(std::size_t(trials) * steps * model.config.num_channels, 0.0),
      latents(std::size_t(trials) * steps * R);
  for (int m = 0; m < M; ++m) {
    for (int b = 0; b < trials; ++b)
      for (int t = 0; t < steps; ++t)
        for (int r = 0; r < R; ++r)
          latents[(std::size_t(b) * steps + t) * R + r] =
              smoothed.trajectories[((std::size_t(b) * M + m) * steps + t) * R + r];
    const auto means = observation_means(model, trials, steps, latents, {});
    for (std::size_t i = 0; i < rates.size(); ++i) rates[i] += means[i] / M;
  }
  return rates;
}

/// Steps [skip, skip + steps) of each trial of (trials, skip + steps, width) values.
std::vector<double> drop_first(const std::vector<double>& values, int trials, int skip, int steps,
                               int width) {
  std::vector<double> kept;
  for (int b = 0; b < trials; ++b)
    for (int t = skip; t < skip + steps; ++t)
      for (int i = 0; i < width; ++i)
        kept.push_back(values[(std::size_t(b) * (skip + steps) + t) * width + i]);
  return kept;
}

TEST(Evaluate, ContinuousScoresAreTheMetricsOfTheSmootherStartedDraws) {
  const Model model = oscillator_teacher();
  const int B = 12, T = 40, D = model.config.num_channels, R = model.config.rank;
  const SequenceBatch batch = testing::sampled_batch(model, B, T, 5);
  EvaluationOptions options;
  options.filter.num_particles = 100;
  options.filter.proposal = default_proposal(model.config);
  options.repeats = 2;
  options.burn_in = 3;
  options.trajectories = 3;
  options.hann_window = 5;
  options.state_space.samples = 300;
  options.seed = 7;
  auto backend = testing::reference_backend();
  const Evaluation evaluation = evaluate(*backend, model, dataset_of(batch), options);
  EXPECT_EQ(evaluation.trials, B);
  EXPECT_EQ(evaluation.steps, T);

  const SmoothResult smoothed = smooth(*backend, model, batch, options.filter, 7, 3);
  EXPECT_EQ(evaluation.elbo, smoothed.elbo);
  const Array recorded({B * T, D}, batch.observations);
  for (int repeat = 0; repeat < 2; ++repeat) {
    SCOPED_TRACE(repeat);
    const SampleResult drawn = backend->sample(model, B, 3 + T, {}, 7 + 1 + repeat, 0,
                                               starts(smoothed, B, T, R, repeat));
    const Array generated = metrics::hann_smooth_and_standardise(
        Array({B * T, D}, drop_first(drawn.observations, B, 3, T, D)), 5);
    metrics::StateSpaceOptions state_space;
    state_space.samples = 300;
    state_space.seed = 7 + std::uint64_t(repeat);
    EXPECT_EQ(metric(evaluation, "d_stsp").values.at(std::size_t(repeat)),
              metrics::state_space_divergence(recorded, generated, state_space).value);
    state_space.reference_float32 = true;
    EXPECT_EQ(metric(evaluation, "d_stsp_reference_float32").values.at(std::size_t(repeat)),
              metrics::state_space_divergence(recorded, generated, state_space).value);
    EXPECT_EQ(metric(evaluation, "d_h").values.at(std::size_t(repeat)),
              metrics::power_spectrum_distance(recorded, generated).value);
    EXPECT_EQ(metric(evaluation, "mean_rate_error").values.at(std::size_t(repeat)),
              metrics::mean_rate_error(recorded, generated));
  }
  // The same options give the same numbers.
  const Evaluation again = evaluate(*backend, model, dataset_of(batch), options);
  EXPECT_EQ(metric(again, "d_h").baseline_values, metric(evaluation, "d_h").baseline_values);
  // Scored as drawn (the Hann pipeline z-scores the generated data, and this recording is not
  // z-scored): the model generated its own recording, so it is closer to it in state space and
  // in its spectra than noise of the recording's covariance, which has no dynamics.
  options.hann_window = 0;
  const Evaluation unsmoothed = evaluate(*backend, model, dataset_of(batch), options);
  for (const char* name : {"d_stsp", "d_h"})
    EXPECT_LT(median(metric(unsmoothed, name).values),
              median(metric(unsmoothed, name).baseline_values))
        << name;
}

TEST(Evaluate, CountScoresAndTheirBaselines) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::poisson, Link::softplus);
  const Model model = testing::random_model(config, 4);
  const int B = 6, T = 30, D = config.num_channels, R = config.rank, M = 4;
  const SequenceBatch batch = testing::sampled_batch(model, B, T, 2);
  EvaluationOptions options;
  options.filter.num_particles = 50;
  options.filter.proposal = Proposal::bootstrap;
  options.repeats = 1;
  options.trajectories = M;
  options.bin_seconds = 0.02;
  auto backend = testing::reference_backend();
  const Evaluation evaluation = evaluate(*backend, model, dataset_of(batch), options);
  std::vector<std::string> names;
  for (const MetricValues& m : evaluation.metrics) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"mean_rate_r", "mean_isi_r", "pair_correlation_r",
                                             "mean_rate_error", "bits_per_spike_smoothed"}));

  const SmoothResult smoothed = smooth(*backend, model, batch, options.filter, 0, M);
  const Array counts({B, T, D}, batch.observations);
  const SampleResult drawn = backend->sample(model, B, T, {}, 1, 0, starts(smoothed, B, T, R, 0));
  const auto recorded_stats = metrics::spike_statistics(counts, 0.02);
  const auto generated_stats = metrics::spike_statistics(Array({B, T, D}, drawn.observations), 0.02);
  EXPECT_EQ(metric(evaluation, "mean_rate_r").values.at(0),
            metrics::pearson(recorded_stats.mean_rate, generated_stats.mean_rate));
  EXPECT_EQ(metric(evaluation, "pair_correlation_r").values.at(0),
            metrics::pearson(recorded_stats.pair_correlation, generated_stats.pair_correlation));
  // Smoothed rates: the trajectories' mean of the read-out's means.
  const std::vector<double> rates = smoothed_rates(model, smoothed, B, T);
  EXPECT_NEAR(metric(evaluation, "bits_per_spike_smoothed").values.at(0),
              metrics::bits_per_spike(Array({B, T, D}, rates), counts), 1e-12);
  // Shuffling a neuron's counts over the bins keeps its mean rate: r = 1 and no rate error,
  // up to the rounding of sums taken in another order.
  EXPECT_NEAR(metric(evaluation, "mean_rate_r").baseline_values.at(0), 1.0, 1e-12);
  EXPECT_NEAR(metric(evaluation, "mean_rate_error").baseline_values.at(0), 0.0, 1e-20);
  EXPECT_EQ(metric(evaluation, "bits_per_spike_smoothed").baseline_values.at(0), 0.0);
}

// Co-smoothing: the posterior sees the other channels only (the held-out ones missing), and the
// held-out channels' smoothed rates are scored.
TEST(Evaluate, HeldOutChannelsAreScoredFromTheOthers) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::poisson, Link::softplus);
  const Model model = testing::random_model(config, 4);
  const int B = 5, T = 20, D = config.num_channels, M = 3;
  const SequenceBatch batch = testing::sampled_batch(model, B, T, 2);
  EvaluationOptions options;
  options.filter.num_particles = 50;
  options.filter.proposal = Proposal::bootstrap;
  options.trajectories = M;
  options.held_out_channels = {1, 3};
  auto backend = testing::reference_backend();
  const Evaluation evaluation = evaluate(*backend, model, dataset_of(batch), options);

  SequenceBatch seen = batch;
  seen.allow_missing = true;
  for (std::size_t i = 0; i < seen.observations.size(); ++i)
    if (i % std::size_t(D) == 1 || i % std::size_t(D) == 3) seen.observations[i] = std::nan("");
  const SmoothResult smoothed = smooth(*backend, model, seen, options.filter, 0, M);
  EXPECT_EQ(evaluation.elbo, smoothed.elbo);
  const std::vector<double> rates = smoothed_rates(model, smoothed, B, T);
  std::vector<double> held_rates, held_counts, kept_rates, kept_counts;
  for (std::size_t i = 0; i < rates.size(); ++i) {
    const bool held = i % std::size_t(D) == 1 || i % std::size_t(D) == 3;
    (held ? held_rates : kept_rates).push_back(rates[i]);
    (held ? held_counts : kept_counts).push_back(batch.observations[i]);
  }
  EXPECT_NEAR(metric(evaluation, "co_bps").values.at(0),
              metrics::bits_per_spike(Array({B, T, 2}, held_rates), Array({B, T, 2}, held_counts)),
              1e-12);
  EXPECT_NEAR(metric(evaluation, "bits_per_spike_smoothed").values.at(0),
              metrics::bits_per_spike(Array({B, T, D - 2}, kept_rates),
                                      Array({B, T, D - 2}, kept_counts)),
              1e-12);
  options.held_out_channels = {1, 1};
  EXPECT_THROW((void)evaluate(*backend, model, dataset_of(batch), options), InvalidInput);
  options.held_out_channels = {D};
  EXPECT_THROW((void)evaluate(*backend, model, dataset_of(batch), options), InvalidInput);
  // The optimal and encoder proposals need every observation.
  options.held_out_channels = {0};
  const ModelConfig gaussian = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                     Observation::gaussian, Link::identity);
  const Model linear = testing::random_model(gaussian, 4);
  options.filter.proposal = Proposal::optimal;
  try {
    (void)evaluate(*backend, linear, dataset_of(testing::sampled_batch(linear, 2, 6, 1)), options);
    ADD_FAILURE() << "held-out channels accepted with the optimal proposal";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("held-out channels need the bootstrap proposal"),
              std::string::npos)
        << error.what();
  }
  // A silent held-out neuron: co-smoothing is undefined, NaN with the reason; the rest stands.
  SequenceBatch silent = batch;
  for (std::size_t i = 1; i < silent.observations.size(); i += std::size_t(D))
    silent.observations[i] = 0.0;
  options.filter.proposal = Proposal::bootstrap;
  options.held_out_channels = {1};
  const Evaluation undefined = evaluate(*backend, model, dataset_of(silent), options);
  EXPECT_TRUE(std::isnan(metric(undefined, "co_bps").values.at(0)));
  EXPECT_NE(metric(undefined, "co_bps").note.find("needs at least one spike"), std::string::npos)
      << metric(undefined, "co_bps").note;
  EXPECT_TRUE(std::isfinite(metric(undefined, "bits_per_spike_smoothed").values.at(0)));
}

// A channel of the oscillator teacher is predicted from the other 19 far better than by its mean.
TEST(Evaluate, AHeldOutChannelOfTheTeacherIsPredictedByTheOthers) {
  const Model model = oscillator_teacher();
  const SequenceBatch batch = testing::sampled_batch(model, 10, 40, 3);
  EvaluationOptions options;
  options.filter.num_particles = 200;
  options.filter.proposal = Proposal::bootstrap;
  options.held_out_channels = {4};
  auto backend = testing::reference_backend();
  const Evaluation evaluation = evaluate(*backend, model, dataset_of(batch), options);
  EXPECT_GT(metric(evaluation, "held_out_r2").values.at(0), 0.5);
  EXPECT_EQ(metric(evaluation, "held_out_r2").baseline_values.at(0), 0.0);
}

// Forward prediction, PSTH R² and decoding, each rebuilt from the pieces it is made of, on the
// oscillator teacher whose latents are the behaviour.
TEST(Evaluate, ForwardPredictionPsthAndDecoding) {
  const Model model = oscillator_teacher();
  const int B = 10, T = 40, F = 5, D = model.config.num_channels, R = model.config.rank, M = 6;
  auto backend = testing::reference_backend();
  const SampleResult drawn = backend->sample(model, B, T, {}, 11);
  SequenceBatch batch;
  batch.num_trials = B;
  batch.num_steps = T;
  batch.num_channels = D;
  batch.observations = drawn.observations;
  EvaluationOptions options;
  options.filter.num_particles = 200;
  options.filter.proposal = default_proposal(model.config);
  options.trajectories = M;
  options.forward_steps = F;
  options.conditions = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
  options.behaviour = drawn.latents;
  options.behaviour_dims = R;
  const Evaluation evaluation = evaluate(*backend, model, dataset_of(batch), options);

  // PSTH R² of the smoothed rates; decoding from the smoothed means (7 trials fit, 3 scored).
  const SmoothResult smoothed = smooth(*backend, model, batch, options.filter, 0, M);
  const Array recorded({B, T, D}, batch.observations);
  EXPECT_NEAR(metric(evaluation, "psth_r2").values.at(0),
              metrics::psth_r2(Array({B, T, D}, smoothed_rates(model, smoothed, B, T)), recorded,
                               options.conditions),
              1e-12);
  const auto rows = [&](const std::vector<double>& values, int width, int first, int count) {
    return Array({std::int64_t(count) * T, width},
                 std::vector<double>(values.begin() + std::ptrdiff_t(first) * T * width,
                                     values.begin() + std::ptrdiff_t(first + count) * T * width));
  };
  const double decoding = metrics::ridge_decoding(rows(smoothed.smoothed_mean, R, 0, 7),
                                                  rows(drawn.latents, R, 0, 7),
                                                  rows(smoothed.smoothed_mean, R, 7, 3),
                                                  rows(drawn.latents, R, 7, 3))
                              .r2;
  EXPECT_EQ(metric(evaluation, "decoding_r2").values.at(0), decoding);
  EXPECT_GT(decoding, 0.9);  // the smoothed latents are the teacher's latents, nearly

  // Forward prediction: the posterior of the first T − F steps carried forward M times.
  SequenceBatch past = batch;
  past.num_steps = T - F;
  past.observations.clear();
  for (int b = 0; b < B; ++b)
    past.observations.insert(past.observations.end(),
                             batch.observations.begin() + std::ptrdiff_t(b) * T * D,
                             batch.observations.begin() + std::ptrdiff_t(b * T + T - F) * D);
  const SmoothResult before = smooth(*backend, model, past, options.filter, 0, M);
  std::vector<double> forecast(std::size_t(B) * F * D, 0.0), recorded_forward;
  for (int m = 0; m < M; ++m) {
    std::vector<double> starts(std::size_t(B) * R);
    for (int b = 0; b < B; ++b)
      for (int r = 0; r < R; ++r)
        starts[std::size_t(b) * R + r] =
            before.trajectories[((std::size_t(b) * M + m) * (T - F) + (T - F - 1)) * R + r];
    const SampleResult ahead = backend->sample(model, B, F + 1, {}, 1 + 1 + m, 0, starts);
    const std::vector<double> later = drop_first(ahead.rates, B, 1, F, D);
    for (std::size_t i = 0; i < forecast.size(); ++i) forecast[i] += later[i] / M;
  }
  for (int b = 0; b < B; ++b)
    recorded_forward.insert(recorded_forward.end(),
                            batch.observations.begin() + std::ptrdiff_t(b * T + T - F) * D,
                            batch.observations.begin() + std::ptrdiff_t(b + 1) * T * D);
  const double forward = metrics::r2_variance_weighted(Array({B * F, D}, recorded_forward),
                                                       Array({B * F, D}, forecast));
  EXPECT_NEAR(metric(evaluation, "forward_r2").values.at(0), forward, 1e-12);
  EXPECT_GT(forward, 0.5);  // five steps of a noisy limit cycle are predictable

  options.forward_steps = T - 1;
  EXPECT_THROW((void)evaluate(*backend, model, dataset_of(batch), options), InvalidInput);
  options.forward_steps = 0;
  options.conditions = {0, 1};
  EXPECT_THROW((void)evaluate(*backend, model, dataset_of(batch), options), InvalidInput);
  options.conditions.clear();
  options.behaviour.pop_back();
  EXPECT_THROW((void)evaluate(*backend, model, dataset_of(batch), options), InvalidInput);
}

TEST(Evaluate, MedianAndMadLeaveNanOut) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(median({3, 1, nan, 2, 10}), 2.5);
  EXPECT_EQ(median_absolute_deviation({3, 1, nan, 2, 10}), 1.0);  // |dev|: .5 .5 1.5 7.5
  EXPECT_EQ(median({5, 1, 2}), 2.0);
  EXPECT_TRUE(std::isnan(median({nan})));
}

TEST(Evaluate, AbsurdOptionsAreRefused) {
  const Model model = oscillator_teacher();
  const Dataset data = dataset_of(testing::sampled_batch(model, 2, 10, 1));
  auto backend = testing::reference_backend();
  const auto refuses = [&](EvaluationOptions options, const std::string& expected) {
    options.filter.proposal = Proposal::bootstrap;
    try {
      (void)evaluate(*backend, model, data, options);
      ADD_FAILURE() << "accepted: " << expected;
    } catch (const InvalidInput& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
  };
  EvaluationOptions options;
  options.repeats = 0;
  refuses(options, "repeats must be 1 to 10000; got 0");
  options = {};
  options.burn_in = -1;
  refuses(options, "the burn-in must be 0 to 10^7 steps; got -1");
  options = {};
  options.hann_window = -3;
  refuses(options, "the Hann window must be 0 (none) or odd, up to 10^5 steps; got -3");
  options = {};
  options.bin_seconds = 0;
  refuses(options, "the bin width must be positive seconds; got 0");
  options = {};
  options.hann_window = 14;
  refuses(options, "the Hann window must be 0 (none) or odd, up to 10^5 steps; got 14");
  // Missing values are for the posterior, not for scoring.
  Dataset missing = data;
  missing.allow_missing = true;
  missing.observations[3] = std::nan("");
  try {
    (void)evaluate(*backend, model, missing, EvaluationOptions{});
    ADD_FAILURE() << "a recording with missing values was scored";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("has missing values (NaN); evaluation scores complete "
                                             "recordings"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace lrsmc
