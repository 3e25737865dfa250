// Forward filter: Philox known answers, the ELBO against the exact Kalman log-likelihood of a
// linear-Gaussian model, reproducibility, thread independence, float vs double, outputs.
#include <gtest/gtest.h>

#include <cmath>

#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/philox.hpp"
#include "support/linear_gaussian.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Random123 kat_vectors: philox4x32 10 <counter> <key> → <output>.
  struct Vector {
    std::uint32_t counter[4], key[2], expected[4];
  };
  const Vector vectors[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}};
  for (const auto& vector : vectors) {
    const math::PhiloxCounter counter{
        {vector.counter[0], vector.counter[1], vector.counter[2], vector.counter[3]}};
    const auto output = math::philox4x32_10(counter, vector.key[0], vector.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(output.word[i], vector.expected[i]);
  }
}

TEST(Philox, NormalDrawsHaveUnitMoments) {
  double sum = 0, squares = 0;
  const int count = 200000;
  for (int i = 0; i < count; ++i) {
    const double value = math::standard_normal(9, 0, std::uint32_t(i / 64), std::uint32_t(i % 64),
                                               math::DrawStream::proposal_noise, 0);
    sum += value;
    squares += value * value;
  }
  EXPECT_NEAR(sum / count, 0.0, 0.01);
  EXPECT_NEAR(squares / count, 1.0, 0.01);
}

TEST(Filter, ElboApproachesExactLikelihoodOfLinearGaussianModel) {
  for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap, Proposal::encoder}) {
    ModelConfig config = testing::small_config(Nonlinearity::identity, NoiseType::full,
                                               Observation::gaussian, Link::identity);
    if (proposal == Proposal::encoder) {  // an untrained encoder: any proposal is consistent
      config.encoder = testing::small_encoder({3, 1}, {4});
      config.encoder->init_scale = 1.0;
    }
    Model model = testing::random_model(config, 2);
    // Keep the linear dynamics stable.
    auto n = model.get("n");
    for (auto& value : n) value *= 0.3;
    model.set("n", n);
    const SequenceBatch batch = testing::sampled_batch(model, 4, 20, 3);
    const double exact = testing::kalman_log_likelihood(model, batch);
    FilterOptions options;
    options.proposal = proposal;
    options.num_particles = proposal == Proposal::optimal ? 2000 : 20000;
    // The float64 reference and the default packed float32 engine.
    for (const auto& backend : {testing::reference_backend(), make_backend(BackendKind::cpu)}) {
      const double estimate = backend->filter(model, batch, options, 1).elbo;
      SCOPED_TRACE(to_string(proposal) + ", " + backend->name());
      EXPECT_NEAR(estimate, exact, 0.01 * std::fabs(exact) + 0.01);
      EXPECT_LT(estimate, exact + 0.01);  // a lower bound (up to Monte Carlo error)
    }
  }
}

TEST(Filter, SameSeedSameResultWhateverTheThreadCount) {
  const ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 4);
  const SequenceBatch batch = testing::sampled_batch(model, 7, 12, 5);
  FilterOptions options;
  options.num_particles = 32;
  BackendOptions one_thread;
  one_thread.num_threads = 1;
  BackendOptions two_threads;
  two_threads.num_threads = 2;
  auto first = make_backend(BackendKind::cpu, one_thread);
  auto second = make_backend(BackendKind::cpu, two_threads);
  const auto a = first->elbo_gradient(model, batch, options, 17);
  const auto b = second->elbo_gradient(model, batch, options, 17);
  EXPECT_EQ(a.elbo, b.elbo);
  EXPECT_EQ(a.gradient, b.gradient);
  const auto c = first->elbo_gradient(model, batch, options, 18);
  EXPECT_NE(a.elbo, c.elbo);
}

/// ‖a − b‖ / ‖b‖.
double relative_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double norm = 0, difference = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    norm += b[i] * b[i];
    difference += (a[i] - b[i]) * (a[i] - b[i]);
  }
  return std::sqrt(difference / norm);
}

TEST(Filter, FloatBackendAgreesWithDouble) {
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 6);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 2);
  FilterOptions options;
  options.num_particles = 50;
  auto reference = testing::reference_backend();
  const auto a = reference->elbo_gradient(model, batch, options, 3);
  // Both float32 engines: the kernels' order and the packed default.
  for (const auto& reduced : {testing::cpu_float_backend(), make_backend(BackendKind::cpu)}) {
    const auto b = reduced->elbo_gradient(model, batch, options, 3);
    SCOPED_TRACE(reduced->name());
    EXPECT_NEAR(a.elbo, b.elbo, 1e-4 * std::fabs(a.elbo));
    EXPECT_LT(relative_difference(b.gradient, a.gradient), 1e-3);
  }
}

TEST(Filter, EncoderProposalIsThreadIndependentAndFloatAgreesWithDouble) {
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, NoiseType::full,
                                             Observation::poisson, Link::softplus);
  config.encoder = testing::small_encoder({5, 3, 1}, {6, 5});
  config.encoder->padding = EncoderPadding::windowed;
  config.encoder->init_scale = 0.5;
  const Model model = testing::random_model(config, 8);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 12, 4);
  FilterOptions options;
  options.num_particles = 40;
  options.proposal = Proposal::encoder;
  // Each engine gives the same bits on one thread as on two (trials split over threads, or a
  // trial's particle blocks, which the encoder's per-trial constants do not change).
  for (const CpuPrecision precision :
       {CpuPrecision::float64, CpuPrecision::device_float32, CpuPrecision::packed_float32}) {
    BackendOptions one_thread, two_threads;
    one_thread.cpu_precision = two_threads.cpu_precision = precision;
    one_thread.num_threads = 1;
    two_threads.num_threads = 2;
    const auto a = make_backend(BackendKind::cpu, one_thread)->elbo_gradient(model, batch, options, 9);
    const auto b =
        make_backend(BackendKind::cpu, two_threads)->elbo_gradient(model, batch, options, 9);
    SCOPED_TRACE(to_string(precision));
    EXPECT_EQ(a.elbo, b.elbo);
    EXPECT_EQ(a.gradient, b.gradient);
  }
  // The float32 engines against the float64 reference, as for the other proposals.
  const auto reference = testing::reference_backend()->elbo_gradient(model, batch, options, 3);
  for (const auto& reduced : {testing::cpu_float_backend(), make_backend(BackendKind::cpu)}) {
    const auto b = reduced->elbo_gradient(model, batch, options, 3);
    SCOPED_TRACE(reduced->name());
    EXPECT_NEAR(reference.elbo, b.elbo, 1e-4 * std::fabs(reference.elbo));
    EXPECT_LT(relative_difference(b.gradient, reference.gradient), 1e-3);
  }
}

TEST(Filter, ForecastStepsDrawFromTheDynamicsAndTheEncoderDoesNotSeeThem) {
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::diag,
                                             Observation::poisson, Link::softplus);
  config.encoder = testing::small_encoder({4, 1}, {5});
  config.encoder->padding = EncoderPadding::acausal;  // each step's factor reads later steps
  config.encoder->init_scale = 0.5;
  const Model model = testing::random_model(config, 12);
  const int steps = 10, forecast = 3, R = config.rank;
  SequenceBatch batch = testing::sampled_batch(model, 2, steps, 6);
  SequenceBatch changed = batch;  // other counts in the forecast steps only
  for (int trial = 0; trial < 2; ++trial)
    for (int step = steps - forecast; step < steps; ++step)
      for (int i = 0; i < config.num_channels; ++i)
        changed.observations[std::size_t((trial * steps + step) * config.num_channels + i)] += 2;
  FilterOptions options;
  options.num_particles = 12;
  options.proposal = Proposal::encoder;
  FilterRequest request;
  request.particles = true;
  auto backend = testing::reference_backend();
  const auto particles_before_the_forecast = [&](const FilterResult& result) {
    std::vector<double> kept;
    for (int trial = 0; trial < 2; ++trial)
      for (int step = 0; step < steps - forecast; ++step) {
        const auto first = result.particles.begin() +
                           std::ptrdiff_t((trial * steps + step) * options.num_particles * R);
        kept.insert(kept.end(), first, first + options.num_particles * R);
      }
    return kept;
  };
  // Without a forecast the acausal encoder carries the last steps' counts into earlier steps.
  EXPECT_NE(particles_before_the_forecast(backend->filter(model, batch, options, 3, request)),
            particles_before_the_forecast(backend->filter(model, changed, options, 3, request)));
  options.t_forward = forecast;
  const FilterResult a = backend->filter(model, batch, options, 3, request);
  const FilterResult b = backend->filter(model, changed, options, 3, request);
  EXPECT_EQ(particles_before_the_forecast(a), particles_before_the_forecast(b));
  EXPECT_NE(a.elbo, b.elbo);  // the forecast steps are still weighed by their counts
  // The bootstrap proposal draws every step from the dynamics: a forecast changes nothing.
  options.proposal = Proposal::bootstrap;
  const double forecast_elbo = backend->filter(model, batch, options, 3).elbo;
  options.t_forward = 0;
  EXPECT_EQ(backend->filter(model, batch, options, 3).elbo, forecast_elbo);
  options.t_forward = steps;
  EXPECT_THROW((void)backend->filter(model, batch, options, 3), InvalidInput);
}

TEST(Sample, ADrawInPartsEqualsTheDrawAtOnce) {
  for (const Observation observation : {Observation::gaussian, Observation::poisson}) {
    const ModelConfig config = testing::small_config(
        Nonlinearity::tanh, NoiseType::full, observation,
        observation == Observation::poisson ? Link::softplus : Link::identity, 1);
    const Model model = testing::random_model(config, 14);
    const int trials = 5, steps = 7;
    std::vector<double> inputs(std::size_t(trials) * steps);
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = std::sin(0.3 * double(i));
    auto backend = make_backend(BackendKind::cpu);
    const SampleResult whole = backend->sample(model, trials, steps, inputs, 8);
    const std::vector<double> first_inputs(inputs.begin(), inputs.begin() + 2 * steps),
        rest_inputs(inputs.begin() + 2 * steps, inputs.end());
    const SampleResult first = backend->sample(model, 2, steps, first_inputs, 8, 0);
    const SampleResult rest = backend->sample(model, 3, steps, rest_inputs, 8, 2);
    const auto joined = [](std::vector<double> a, const std::vector<double>& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    SCOPED_TRACE(to_string(observation));
    EXPECT_EQ(joined(first.latents, rest.latents), whole.latents);
    EXPECT_EQ(joined(first.observations, rest.observations), whole.observations);
    EXPECT_EQ(joined(first.rates, rest.rates), whole.rates);
    // The later trials are not the first ones drawn again.
    const std::vector<double> leading(whole.latents.begin(),
                                      whole.latents.begin() + std::ptrdiff_t(rest.latents.size()));
    EXPECT_NE(rest.latents, leading);
  }
}

// Given initial states are each trial's first latent, and the later steps follow from them
// through the transition: the same draws as a sequence whose first state was that draw.
TEST(Sample, GivenInitialStatesStartTheSequences) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 3);
  auto backend = testing::reference_backend();
  const SampleResult prior = backend->sample(model, 2, 6, {}, 4);
  const std::vector<double> states = {0.5, -1.0, 2.0, 0.25};  // (2 trials, rank 2)
  const SampleResult started = backend->sample(model, 2, 6, {}, 4, 0, states);
  for (int trial = 0; trial < 2; ++trial)
    for (int r = 0; r < 2; ++r)
      EXPECT_EQ(started.latents[std::size_t(trial) * 6 * 2 + r], states[std::size_t(trial * 2 + r)]);
  // Starting from the prior draw's own first states gives the prior draw back.
  std::vector<double> first(4);
  for (int trial = 0; trial < 2; ++trial)
    for (int r = 0; r < 2; ++r)
      first[std::size_t(trial * 2 + r)] = prior.latents[std::size_t(trial) * 6 * 2 + r];
  const SampleResult again = backend->sample(model, 2, 6, {}, 4, 0, first);
  EXPECT_EQ(again.latents, prior.latents);
  EXPECT_EQ(again.observations, prior.observations);
  for (const auto& [bad, message] :
       {std::pair<std::vector<double>, std::string>{{1.0, 2.0, 3.0},
                                                    "initial states have the wrong size; got 3 "
                                                    "values, expected 4 (trials × rank)"},
        {{1.0, NAN, 0.0, 0.0}, "initial state 0 is not finite; got nan in latent dimension 1"}}) {
    try {
      (void)backend->sample(model, 2, 6, {}, 4, 0, bad);
      ADD_FAILURE() << "sampled from " << message;
    } catch (const InvalidInput& error) {
      EXPECT_NE(std::string(error.what()).find(message), std::string::npos) << error.what();
    }
  }
}

// Each read-out's rates, written out from the parameters (method.md §1.7) with the inputs of
// the observation's step, against the sampler's (float64, Gaussian identity link: λ = η).
TEST(Sample, EveryReadoutGivesTheRatesOfItsFormula) {
  for (const ReadoutFrom readout_from :
       {ReadoutFrom::z, ReadoutFrom::z_and_v, ReadoutFrom::currents, ReadoutFrom::rates}) {
    SCOPED_TRACE(to_string(readout_from));
    const ModelConfig config =
        testing::with_readout(testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                    Observation::gaussian, Link::identity, 2),
                              readout_from);
    const Model model = testing::random_model(config, 6);
    const int trials = 2, steps = 5, R = config.rank, D = config.num_channels, U = 2;
    std::vector<double> inputs(std::size_t(trials) * steps * U);
    for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = std::cos(0.7 * double(i));
    const SampleResult sample =
        testing::reference_backend()->sample(model, trials, steps, inputs, 3);
    const std::vector<double> bias = model.get("readout_bias"), m = model.get("m"),
                              w_u = model.get("w_u"), h = model.get("h");
    for (int cell = 0; cell < trials * steps; ++cell) {
      const double* z = sample.latents.data() + std::size_t(cell) * R;
      const double* v = inputs.data() + std::size_t(cell) * U;
      for (int i = 0; i < D; ++i) {
        double eta = bias[std::size_t(i)];
        if (readout_from == ReadoutFrom::z || readout_from == ReadoutFrom::z_and_v) {
          const std::vector<double> weight = model.get("readout_weight");
          const int input_rows = readout_from == ReadoutFrom::z_and_v ? U : 0;
          for (int j = 0; j < input_rows; ++j) eta += weight[std::size_t(j * D + i)] * v[j];
          for (int r = 0; r < R; ++r) eta += weight[std::size_t((input_rows + r) * D + i)] * z[r];
        } else {
          double current = 0.0;
          for (int r = 0; r < R; ++r) current += m[std::size_t(i * R + r)] * z[r];
          for (int j = 0; j < U; ++j) current += w_u[std::size_t(i * U + j)] * v[j];
          const double unit =
              readout_from == ReadoutFrom::rates ? std::tanh(current - h[std::size_t(i)]) : current;
          eta += model.get("readout_gain")[std::size_t(i)] * unit;
        }
        // Sums of a few float64 terms of order one, in another order than the library's.
        EXPECT_NEAR(sample.rates[std::size_t(cell) * D + i], eta, 1e-12)
            << "trial-step " << cell << ", channel " << i;
      }
    }
    // observation_means gives the sampler's rates at its latents: the same float64 code.
    EXPECT_EQ(observation_means(model, trials, steps, sample.latents, inputs), sample.rates);
    EXPECT_THROW((void)observation_means(model, trials, steps, sample.latents, {}), InvalidInput);
  }
}

TEST(Filter, OutputsHaveConsistentShapesAndWeights) {
  const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::diag,
                                                   Observation::poisson, Link::softplus);
  const Model model = testing::random_model(config, 8);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 9, 1);
  FilterOptions options;
  options.num_particles = 16;
  options.proposal = Proposal::bootstrap;
  options.resample_threshold = 0.5;
  FilterRequest request;
  request.filtered_mean = true;
  request.particles = true;
  auto backend = make_backend(BackendKind::cpu);
  const auto result = backend->filter(model, batch, options, 2, request);
  ASSERT_EQ(result.filtered_mean.size(), 2u * 9 * 2);
  ASSERT_EQ(result.particles.size(), 2u * 9 * 16 * 2);
  ASSERT_EQ(result.ancestors.size(), 2u * 9 * 16);
  int resampled = 0;
  for (int cell = 0; cell < 2 * 9; ++cell) {
    double total = 0;
    for (int k = 0; k < 16; ++k) total += std::exp(result.log_weights[cell * 16 + k]);
    EXPECT_NEAR(total, 1.0, 1e-12);
    resampled += result.resampled[cell];
    for (int k = 0; k < 16; ++k) {
      const int ancestor = result.ancestors[cell * 16 + k];
      EXPECT_GE(ancestor, 0);
      EXPECT_LT(ancestor, 16);
      if (!result.resampled[cell]) {
        EXPECT_EQ(ancestor, k);
      }
      if (k > 0 && result.resampled[cell]) {
        EXPECT_GE(ancestor, result.ancestors[cell * 16 + k - 1]);
      }
    }
  }
  EXPECT_GT(resampled, 0);
  EXPECT_LT(resampled, 18);  // the ESS threshold skips some steps
  double elbo = 0;
  for (const double value : result.elbo_per_trial) elbo += value / 2;
  EXPECT_DOUBLE_EQ(elbo, result.elbo);
}

TEST(Filter, RejectsBadRequests) {
  const ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 1);
  SequenceBatch batch = testing::sampled_batch(model, 2, 5, 1);
  auto backend = make_backend(BackendKind::cpu);
  FilterOptions options;
  options.num_particles = 0;
  EXPECT_THROW(
      {
        try {
          (void)backend->filter(model, batch, options, 0);
        } catch (const InvalidInput& error) {
          EXPECT_NE(std::string(error.what()).find("particles must be at least 1; got 0"),
                    std::string::npos);
          throw;
        }
      },
      InvalidInput);
  options.num_particles = 4;
  batch.observations[3] = std::nan("");
  EXPECT_THROW((void)backend->filter(model, batch, options, 0), InvalidInput);
  batch = testing::sampled_batch(model, 2, 5, 1);
  batch.num_channels = 3;
  EXPECT_THROW((void)backend->filter(model, batch, options, 0), InvalidInput);
  batch = testing::sampled_batch(model, 2, 5, 1);
  options.num_particles = 90'000'000;
  EXPECT_THROW(
      {
        try {
          (void)backend->filter(model, batch, options, 0, {false, true});
        } catch (const Error& error) {
          EXPECT_NE(std::string(error.what()).find("particles"), std::string::npos);
          throw;
        }
      },
      Error);
  // The backend stays usable after throwing.
  options.num_particles = 4;
  EXPECT_TRUE(std::isfinite(backend->filter(model, batch, options, 0).elbo));
  // No CUDA in this build or on this machine: asking for it is a clear error.
  if (!cuda_available()) {
    EXPECT_THROW((void)make_backend(BackendKind::cuda), Error);
  }
}

}  // namespace
}  // namespace lrsmc
