// The CPU backend's hand-written ELBO gradient against central finite differences in double
// precision, for every nonlinearity × proposal × observation model × noise type.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>

#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"

namespace lrsmc {
namespace {

struct ObservationCase {
  Observation observation;
  Link link;
};
void PrintTo(const ObservationCase& value, std::ostream* os) {
  *os << to_string(value.observation) << "/" << to_string(value.link);
}

using GradientCase = std::tuple<Nonlinearity, Proposal, ObservationCase, NoiseType>;

/// Largest relative error over all parameters, with the scale floored at 1% of the largest
/// finite-difference entry so that entries that are ~0 are judged against the gradient's size.
void expect_gradient_matches(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, double tolerance) {
  auto backend = testing::reference_backend();
  const std::uint64_t seed = 4242;
  const GradientResult analytic = backend->elbo_gradient(model, batch, options, seed);
  const double elbo = backend->filter(model, batch, options, seed).elbo;
  EXPECT_NEAR(analytic.elbo, elbo, 1e-12 * std::fabs(elbo));
  std::vector<double> numeric(model.parameters.size());
  double largest = 0;
  const double step = 1e-6;
  for (std::size_t i = 0; i < model.parameters.size(); ++i) {
    Model plus = model, minus = model;
    plus.parameters[i] += step;
    minus.parameters[i] -= step;
    numeric[i] = (backend->filter(plus, batch, options, seed).elbo -
                  backend->filter(minus, batch, options, seed).elbo) /
                 (2 * step);
    largest = std::max(largest, std::fabs(numeric[i]));
  }
  ASSERT_GT(largest, 0.0);
  const ParameterLayout layout(model.config);
  for (const auto& block : layout.blocks())
    for (std::int64_t j = 0; j < block.size; ++j) {
      const std::size_t i = std::size_t(block.offset + j);
      const double scale = std::max(std::fabs(numeric[i]), 1e-2 * largest);
      EXPECT_LT(std::fabs(analytic.gradient[i] - numeric[i]) / scale, tolerance)
          << "parameter " << block.name << "[" << j << "]: analytic " << analytic.gradient[i]
          << ", finite difference " << numeric[i];
    }
}

class GradientTest : public ::testing::TestWithParam<GradientCase> {};

TEST_P(GradientTest, MatchesCentralFiniteDifferences) {
  const auto [nonlinearity, proposal, observation, noise] = GetParam();
  const ModelConfig config = testing::small_config(nonlinearity, noise, observation.observation,
                                                   observation.link);
  const Model model = testing::random_model(config, 11);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 6, 5);
  FilterOptions options;
  options.num_particles = 5;
  options.proposal = proposal;
  expect_gradient_matches(model, batch, options, 1e-5);
}

std::string case_name(const ::testing::TestParamInfo<GradientCase>& info) {
  const auto [nonlinearity, proposal, observation, noise] = info.param;
  return to_string(nonlinearity) + "_" + to_string(proposal) + "_" +
         to_string(observation.observation) + "_" + to_string(observation.link) + "_" +
         to_string(noise);
}

INSTANTIATE_TEST_SUITE_P(
    GaussianBothProposals, GradientTest,
    ::testing::Combine(::testing::Values(Nonlinearity::relu, Nonlinearity::clipped_relu,
                                         Nonlinearity::tanh, Nonlinearity::identity),
                       ::testing::Values(Proposal::bootstrap, Proposal::optimal),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::identity}),
                       ::testing::Values(NoiseType::full, NoiseType::diag)),
    case_name);

INSTANTIATE_TEST_SUITE_P(
    PoissonBootstrap, GradientTest,
    ::testing::Combine(::testing::Values(Nonlinearity::relu, Nonlinearity::clipped_relu,
                                         Nonlinearity::tanh, Nonlinearity::identity),
                       ::testing::Values(Proposal::bootstrap),
                       ::testing::Values(ObservationCase{Observation::poisson, Link::exp},
                                         ObservationCase{Observation::poisson, Link::softplus},
                                         ObservationCase{Observation::poisson, Link::relu}),
                       ::testing::Values(NoiseType::full, NoiseType::diag)),
    case_name);

INSTANTIATE_TEST_SUITE_P(
    GaussianNonlinearLinks, GradientTest,
    ::testing::Combine(::testing::Values(Nonlinearity::clipped_relu),
                       ::testing::Values(Proposal::bootstrap),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::softplus},
                                         ObservationCase{Observation::gaussian, Link::exp}),
                       ::testing::Values(NoiseType::full)),
    case_name);

/// The encoder proposal: the model's gradient and the encoder's, through the per-step product
/// of the prior with the encoder's factor, for every padding location × mode × activation ×
/// observation model × noise type. A small encoder (kernels 3, 2; 3 channels) whose head has two
/// taps, on trials long enough for every padding mode.
using EncoderGradientCase =
    std::tuple<EncoderPadding, PaddingMode, EncoderActivation, ObservationCase, NoiseType>;

class EncoderGradientTest : public ::testing::TestWithParam<EncoderGradientCase> {};

TEST_P(EncoderGradientTest, MatchesCentralFiniteDifferences) {
  const auto [padding, mode, activation, observation, noise] = GetParam();
  ModelConfig config = testing::small_config(Nonlinearity::clipped_relu, noise,
                                             observation.observation, observation.link);
  EncoderConfig encoder;
  encoder.kernels = {3, 2};
  encoder.channels = {3};
  encoder.padding = padding;
  encoder.padding_mode = mode;
  encoder.activation = activation;
  encoder.init_scale = 0.5;
  config.encoder = encoder;
  const Model model = testing::random_model(config, 11);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 6, 5);
  FilterOptions options;
  options.num_particles = 5;
  options.proposal = Proposal::encoder;
  expect_gradient_matches(model, batch, options, 1e-5);
}

std::string encoder_case_name(const ::testing::TestParamInfo<EncoderGradientCase>& info) {
  const auto [padding, mode, activation, observation, noise] = info.param;
  return to_string(padding) + "_" + to_string(mode) + "_" + to_string(activation) + "_" +
         to_string(observation.observation) + "_" + to_string(observation.link) + "_" +
         to_string(noise);
}

INSTANTIATE_TEST_SUITE_P(
    EveryEncoderAndReadout, EncoderGradientTest,
    ::testing::Combine(::testing::Values(EncoderPadding::causal, EncoderPadding::acausal,
                                         EncoderPadding::windowed),
                       ::testing::Values(PaddingMode::zeros, PaddingMode::reflect,
                                         PaddingMode::replicate, PaddingMode::circular),
                       ::testing::Values(EncoderActivation::gelu, EncoderActivation::leaky_relu),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::identity},
                                         ObservationCase{Observation::poisson, Link::exp},
                                         ObservationCase{Observation::poisson, Link::softplus},
                                         ObservationCase{Observation::poisson, Link::relu}),
                       ::testing::Values(NoiseType::full, NoiseType::diag)),
    encoder_case_name);

/// The read-outs beyond Bᵀz (method.md §1.7): Bᵀ[v; z] and the one-to-one read-outs of the
/// units' currents or rates with per-unit gains, for every nonlinearity × observation model ×
/// noise type, with two inputs (which the one-to-one read-outs see through X = m z + W_u v_t).
using ReadoutGradientCase = std::tuple<ReadoutFrom, Nonlinearity, ObservationCase, NoiseType>;

ModelConfig readout_config(ReadoutFrom readout_from, Nonlinearity nonlinearity,
                           ObservationCase observation, NoiseType noise, int inputs) {
  return testing::with_readout(testing::small_config(nonlinearity, noise, observation.observation,
                                                     observation.link, inputs),
                               readout_from);
}

class ReadoutGradientTest : public ::testing::TestWithParam<ReadoutGradientCase> {};

TEST_P(ReadoutGradientTest, MatchesCentralFiniteDifferences) {
  const auto [readout_from, nonlinearity, observation, noise] = GetParam();
  const Model model =
      testing::random_model(readout_config(readout_from, nonlinearity, observation, noise, 2), 11);
  const SequenceBatch batch = testing::sampled_batch(model, 2, 6, 5);
  FilterOptions options;
  options.num_particles = 5;
  options.proposal = Proposal::bootstrap;
  expect_gradient_matches(model, batch, options, 1e-5);
}

std::string readout_case_name(const ::testing::TestParamInfo<ReadoutGradientCase>& info) {
  const auto [readout_from, nonlinearity, observation, noise] = info.param;
  return to_string(readout_from) + "_" + to_string(nonlinearity) + "_" +
         to_string(observation.observation) + "_" + to_string(observation.link) + "_" +
         to_string(noise);
}

INSTANTIATE_TEST_SUITE_P(
    EveryReadout, ReadoutGradientTest,
    ::testing::Combine(::testing::Values(ReadoutFrom::z_and_v, ReadoutFrom::currents,
                                         ReadoutFrom::rates),
                       ::testing::Values(Nonlinearity::relu, Nonlinearity::clipped_relu,
                                         Nonlinearity::tanh, Nonlinearity::identity),
                       ::testing::Values(ObservationCase{Observation::gaussian, Link::identity},
                                         ObservationCase{Observation::poisson, Link::exp},
                                         ObservationCase{Observation::poisson, Link::softplus},
                                         ObservationCase{Observation::poisson, Link::relu}),
                       ::testing::Values(NoiseType::full, NoiseType::diag)),
    readout_case_name);

TEST(GradientOptions, OneToOneReadoutsWithoutInputs) {
  for (const ReadoutFrom readout_from : {ReadoutFrom::currents, ReadoutFrom::rates}) {
    const Model model = testing::random_model(
        readout_config(readout_from, Nonlinearity::clipped_relu,
                       {Observation::gaussian, Link::softplus}, NoiseType::full, 0),
        7);
    FilterOptions options;
    options.num_particles = 4;
    options.proposal = Proposal::bootstrap;
    SCOPED_TRACE(to_string(readout_from));
    expect_gradient_matches(model, testing::sampled_batch(model, 2, 5, 3), options, 1e-5);
  }
}

TEST(GradientOptions, EncoderProposalWithEveryReadout) {
  for (const ReadoutFrom readout_from :
       {ReadoutFrom::z_and_v, ReadoutFrom::currents, ReadoutFrom::rates}) {
    ModelConfig config = readout_config(readout_from, Nonlinearity::relu,
                                        {Observation::poisson, Link::softplus}, NoiseType::full, 1);
    config.encoder = testing::small_encoder({3, 2}, {3});
    config.encoder->init_scale = 0.5;
    const Model model = testing::random_model(config, 13);
    FilterOptions options;
    options.num_particles = 5;
    options.proposal = Proposal::encoder;
    SCOPED_TRACE(to_string(readout_from));
    expect_gradient_matches(model, testing::sampled_batch(model, 2, 6, 4), options, 1e-5);
  }
}

TEST(GradientOptions, ForecastStepsForEveryProposal) {
  for (const Proposal proposal : {Proposal::bootstrap, Proposal::optimal, Proposal::encoder}) {
    const bool counts = proposal == Proposal::encoder;
    ModelConfig config = testing::small_config(
        Nonlinearity::clipped_relu, NoiseType::full,
        counts ? Observation::poisson : Observation::gaussian,
        counts ? Link::softplus : Link::identity);
    if (counts) {
      config.encoder = testing::small_encoder({3, 2}, {3});
      config.encoder->padding = EncoderPadding::windowed;
      config.encoder->init_scale = 0.5;
    }
    const Model model = testing::random_model(config, 17);
    const SequenceBatch batch = testing::sampled_batch(model, 2, 7, 4);
    FilterOptions options;
    options.num_particles = 5;
    options.proposal = proposal;
    options.t_forward = 3;
    SCOPED_TRACE(to_string(proposal));
    expect_gradient_matches(model, batch, options, 1e-5);
  }
}

TEST(GradientOptions, AnEncoderIsLeftAloneByTheOtherProposals) {
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::diag,
                                             Observation::poisson, Link::softplus);
  config.encoder = testing::small_encoder({3, 1}, {4});
  const Model with_encoder = testing::random_model(config, 6);
  Model plain;
  plain.config = config;
  plain.config.encoder.reset();
  const std::int64_t own = ParameterLayout(plain.config).total_size();
  plain.parameters.assign(with_encoder.parameters.begin(), with_encoder.parameters.begin() + own);
  const SequenceBatch batch = testing::sampled_batch(plain, 2, 6, 3);
  FilterOptions options;
  options.num_particles = 6;
  options.proposal = Proposal::bootstrap;
  for (const auto& backend : {testing::reference_backend(), make_backend(BackendKind::cpu)}) {
    const GradientResult a = backend->elbo_gradient(with_encoder, batch, options, 2);
    const GradientResult b = backend->elbo_gradient(plain, batch, options, 2);
    SCOPED_TRACE(backend->name());
    EXPECT_EQ(a.elbo, b.elbo);
    ASSERT_EQ(a.gradient.size(), with_encoder.parameters.size());
    EXPECT_EQ(std::vector<double>(a.gradient.begin(), a.gradient.begin() + own), b.gradient);
    for (std::size_t i = std::size_t(own); i < a.gradient.size(); ++i)
      EXPECT_EQ(a.gradient[i], 0.0) << "encoder parameter " << i - std::size_t(own);
  }
}

TEST(GradientOptions, InputsAndTrainableInitialState) {
  for (const Proposal proposal : {Proposal::bootstrap, Proposal::optimal}) {
    const ModelConfig config = testing::small_config(
        Nonlinearity::clipped_relu, NoiseType::full, Observation::gaussian, Link::identity, 2);
    const Model model = testing::random_model(config, 3);
    const SequenceBatch batch = testing::sampled_batch(model, 3, 5, 8);
    FilterOptions options;
    options.num_particles = 4;
    options.proposal = proposal;
    expect_gradient_matches(model, batch, options, 1e-5);
  }
}

TEST(GradientOptions, ZeroInitialStateHasNoInitialMeanParameter) {
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::diag,
                                             Observation::gaussian, Link::identity);
  config.initial_state = InitialState::zero;
  EXPECT_FALSE(ParameterLayout(config).has("z_init"));
  const Model model = testing::random_model(config, 5);
  FilterOptions options;
  options.num_particles = 4;
  expect_gradient_matches(model, testing::sampled_batch(model, 2, 5, 9), options, 1e-5);
}

TEST(GradientOptions, EffectiveSampleSizeThresholdCarriesWeights) {
  for (const double threshold : {0.0, 0.5}) {
    for (const Resampling scheme : {Resampling::systematic, Resampling::stratified,
                                    Resampling::multinomial}) {
      const ModelConfig config = testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                       Observation::gaussian, Link::identity);
      const Model model = testing::random_model(config, 21);
      FilterOptions options;
      options.num_particles = 6;
      options.proposal = Proposal::bootstrap;
      options.resampling = scheme;
      options.resample_threshold = threshold;
      SCOPED_TRACE(::testing::Message() << "threshold " << threshold << ", resampling "
                                        << to_string(scheme));
      expect_gradient_matches(model, testing::sampled_batch(model, 2, 6, 4), options, 1e-5);
    }
  }
}

// Missing observations (NaN, allow_missing) have no terms in the likelihood or its gradient:
// scattered missing entries, Gaussian and Poisson, under the bootstrap proposal.
TEST(GradientOptions, MissingObservations) {
  for (const auto& [observation, link] : {std::pair{Observation::gaussian, Link::identity},
                                          std::pair{Observation::poisson, Link::softplus}}) {
    SCOPED_TRACE(to_string(observation));
    const ModelConfig config =
        testing::small_config(Nonlinearity::tanh, NoiseType::full, observation, link);
    const Model model = testing::random_model(config, 17);
    const SequenceBatch batch = testing::with_missing(testing::sampled_batch(model, 2, 6, 3), 1, 5);
    FilterOptions options;
    options.num_particles = 5;
    options.proposal = Proposal::bootstrap;
    expect_gradient_matches(model, batch, options, 1e-5);
  }
}

}  // namespace
}  // namespace lrsmc
