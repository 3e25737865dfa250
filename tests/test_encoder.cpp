// The convolutional encoder (method.md §4): padding semantics, the forward pass against a direct
// convolution over explicitly padded sequences, the hand-written backward pass against central
// finite differences in double for every padding location × mode × activation, the float pass
// within its rounding bound, initialisation, and bad configurations.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/encoder.hpp"
#include "lrsmc/math/gaussian_product.hpp"
#include "lrsmc/math/philox.hpp"
#include "model/encoder_factors.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"

namespace lrsmc {
namespace {

std::vector<double> draws(std::size_t count, std::uint64_t seed, double scale) {
  std::vector<double> values(count);
  for (std::size_t i = 0; i < count; ++i)
    values[i] = scale * math::standard_normal(seed, 7, 0, 0, math::DrawStream::generative,
                                              std::uint32_t(i));
  return values;
}

TEST(EncoderPadding, WidthsKeepTheLengthAndSourcesFollowTheModes) {
  EXPECT_EQ(math::pad_widths(EncoderPadding::causal, 5).left, 4);
  EXPECT_EQ(math::pad_widths(EncoderPadding::causal, 5).right, 0);
  EXPECT_EQ(math::pad_widths(EncoderPadding::acausal, 5).right, 4);
  // windowed: the reference's (k/2, k/2 − 1) for even k; (⌊k/2⌋, ⌊(k−1)/2⌋) keeps odd k's length.
  EXPECT_EQ(math::pad_widths(EncoderPadding::windowed, 4).left, 2);
  EXPECT_EQ(math::pad_widths(EncoderPadding::windowed, 4).right, 1);
  EXPECT_EQ(math::pad_widths(EncoderPadding::windowed, 5).left, 2);
  EXPECT_EQ(math::pad_widths(EncoderPadding::windowed, 5).right, 2);
  EXPECT_EQ(math::pad_widths(EncoderPadding::windowed, 1).right, 0);
  // A sequence of 5 steps, positions −2 … 6.
  const int length = 5;
  const std::vector<int> zeros = {-1, -1, 0, 1, 2, 3, 4, -1, -1};
  const std::vector<int> reflect = {2, 1, 0, 1, 2, 3, 4, 3, 2};
  const std::vector<int> replicate = {0, 0, 0, 1, 2, 3, 4, 4, 4};
  const std::vector<int> circular = {3, 4, 0, 1, 2, 3, 4, 0, 1};
  for (int step = -2; step <= 6; ++step) {
    const std::size_t i = std::size_t(step + 2);
    EXPECT_EQ(math::padded_source(PaddingMode::zeros, step, length), zeros[i]) << step;
    EXPECT_EQ(math::padded_source(PaddingMode::reflect, step, length), reflect[i]) << step;
    EXPECT_EQ(math::padded_source(PaddingMode::replicate, step, length), replicate[i]) << step;
    EXPECT_EQ(math::padded_source(PaddingMode::circular, step, length), circular[i]) << step;
  }
}

TEST(EncoderActivation, ValuesAndSlopes) {
  // GELU(1) = Φ(1) = 0.8413447460685429; its slope Φ(1) + φ(1) = 0.8413447… + 0.2419707245…
  const auto gelu = math::activate(EncoderActivation::gelu, 1.0);
  EXPECT_NEAR(gelu.value, 0.8413447460685429, 1e-15);
  EXPECT_NEAR(gelu.slope, 0.8413447460685429 + 0.24197072451914337, 1e-15);
  EXPECT_EQ(math::activate(EncoderActivation::gelu, 0.0).value, 0.0);
  EXPECT_EQ(math::activate(EncoderActivation::leaky_relu, -2.0).value, -0.2);
  EXPECT_EQ(math::activate(EncoderActivation::leaky_relu, -2.0).slope, 0.1);
  EXPECT_EQ(math::activate(EncoderActivation::leaky_relu, 3.0).slope, 1.0);
  EXPECT_EQ(math::encoder_variance(std::log(4.0)).value, 4.0);
  EXPECT_EQ(math::encoder_variance(-30.0).value, 1e-8);  // exp(−30) < 1e-8: clamped, no slope
  EXPECT_EQ(math::encoder_variance(-30.0).slope, 0.0);
  EXPECT_EQ(math::encoder_variance(5.0).value, 100.0);
}

/// The encoder computed directly: each layer pads each sequence explicitly (a copy of the
/// padded sequence, built from the mode's definition) and sums the valid convolution.
struct Direct {
  std::vector<double> mean, log_variance;
};

std::vector<double> pad_sequence(const std::vector<double>& sequence, int steps, int channels,
                                 int left, int right, PaddingMode mode) {
  std::vector<double> padded(std::size_t(steps + left + right) * std::size_t(channels), 0.0);
  for (int p = 0; p < steps + left + right; ++p) {
    int t = p - left;
    if (t < 0 || t >= steps) {
      if (mode == PaddingMode::zeros) continue;
      if (mode == PaddingMode::replicate) t = t < 0 ? 0 : steps - 1;
      if (mode == PaddingMode::reflect) t = t < 0 ? -t : 2 * steps - 2 - t;
      if (mode == PaddingMode::circular) t = (t + steps) % steps;
    }
    for (int c = 0; c < channels; ++c)
      padded[std::size_t(p) * std::size_t(channels) + std::size_t(c)] =
          sequence[std::size_t(t) * std::size_t(channels) + std::size_t(c)];
  }
  return padded;
}

std::vector<double> direct_convolution(const EncoderConfig& config, const std::vector<double>& x,
                                       int trials, int steps, int in, int out, int kernel,
                                       const double* weight, const double* bias) {
  const math::PadWidths pad = math::pad_widths(config.padding, kernel);
  std::vector<double> y(std::size_t(trials) * std::size_t(steps) * std::size_t(out));
  for (int b = 0; b < trials; ++b) {
    const std::vector<double> sequence(x.begin() + std::ptrdiff_t(b) * steps * in,
                                       x.begin() + std::ptrdiff_t(b + 1) * steps * in);
    const std::vector<double> padded =
        pad_sequence(sequence, steps, in, pad.left, pad.right, config.padding_mode);
    for (int t = 0; t < steps; ++t)
      for (int o = 0; o < out; ++o) {
        double sum = bias[o];
        for (int i = 0; i < in; ++i)
          for (int j = 0; j < kernel; ++j)
            sum += weight[(o * in + i) * kernel + j] * padded[std::size_t((t + j) * in + i)];
        y[(std::size_t(b) * std::size_t(steps) + std::size_t(t)) * std::size_t(out) +
          std::size_t(o)] = sum;
      }
  }
  return y;
}

Direct direct_encoder(const EncoderConfig& config, const std::vector<double>& parameters,
                      const std::vector<double>& x, int trials, int steps, int in, int rank) {
  const auto blocks = encoder_blocks(config, in, rank);
  const auto offset = [&](const std::string& name) {
    for (const auto& block : blocks)
      if (block.name == name) return block.offset;
    ADD_FAILURE() << "no block " << name;
    return std::size_t(0);
  };
  std::vector<double> input = x;
  int channels = in;
  for (std::size_t layer = 0; layer < config.channels.size(); ++layer) {
    const std::string prefix = "encoder_conv" + std::to_string(layer + 1);
    input = direct_convolution(config, input, trials, steps, channels, config.channels[layer],
                               config.kernels[layer], &parameters[offset(prefix + "_weight")],
                               &parameters[offset(prefix + "_bias")]);
    for (double& value : input) value = math::activate(config.activation, value).value;
    channels = config.channels[layer];
  }
  Direct direct;
  direct.mean = direct_convolution(config, input, trials, steps, channels, rank,
                                   config.kernels.back(), &parameters[offset("encoder_mean_weight")],
                                   &parameters[offset("encoder_mean_bias")]);
  if (config.constant_variance) {
    for (std::size_t row = 0; row < std::size_t(trials * steps); ++row)
      for (int r = 0; r < rank; ++r)
        direct.log_variance.push_back(parameters[offset("encoder_log_variance") + std::size_t(r)]);
  } else {
    direct.log_variance = direct_convolution(
        config, input, trials, steps, channels, rank, config.kernels.back(),
        &parameters[offset("encoder_log_variance_weight")],
        &parameters[offset("encoder_log_variance_bias")]);
  }
  return direct;
}

using EncoderCase = std::tuple<EncoderPadding, PaddingMode, EncoderActivation>;

class EncoderTest : public ::testing::TestWithParam<EncoderCase> {
 protected:
  EncoderConfig config() const {
    EncoderConfig config;
    std::tie(config.padding, config.padding_mode, config.activation) = GetParam();
    config.kernels = {4, 3, 2};  // an even and an odd kernel, and a head kernel above 1
    config.channels = {5, 4};
    config.init_scale = 0.3;
    return config;
  }
  static constexpr int trials = 2, steps = 7, in = 3, rank = 2;
};

TEST_P(EncoderTest, ForwardIsTheDirectConvolutionOfThePaddedSequences) {
  const EncoderConfig config = this->config();
  const std::vector<double> parameters = initialise_encoder(config, in, rank, 5);
  const std::vector<double> x = draws(std::size_t(trials * steps * in), 3, 1.0);
  const EncoderPass<double> pass = encoder_forward(config, parameters, x, trials, steps, in, rank);
  const Direct direct = direct_encoder(config, parameters, x, trials, steps, in, rank);
  ASSERT_EQ(pass.mean.size(), direct.mean.size());
  // The same sums in another order: a few units in the last place of the terms' magnitude.
  for (std::size_t i = 0; i < pass.mean.size(); ++i) {
    EXPECT_NEAR(pass.mean[i], direct.mean[i], 1e-13) << i;
    EXPECT_NEAR(pass.log_variance[i], direct.log_variance[i], 1e-13) << i;
  }
}

/// The gradient of L = Σ a·mean + Σ c·log-variance (fixed random a, c) with respect to every
/// parameter, against central differences. A LeakyReLU coordinate whose ±step moves some
/// pre-activation across 0 has no derivative there and is not compared; few may be skipped.
void expect_gradient_matches(const EncoderConfig& config, int trials, int steps, int in,
                             int rank) {
  const std::vector<double> parameters = initialise_encoder(config, in, rank, 21);
  const std::vector<double> x = draws(std::size_t(trials * steps * in), 8, 1.0);
  const std::size_t outputs = std::size_t(trials * steps * rank);
  const std::vector<double> a = draws(outputs, 9, 1.0), c = draws(outputs, 10, 1.0);
  const auto loss = [&](const EncoderPass<double>& pass) {
    double total = 0;
    for (std::size_t i = 0; i < outputs; ++i) total += a[i] * pass.mean[i] + c[i] * pass.log_variance[i];
    return total;
  };
  const EncoderPass<double> pass = encoder_forward(config, parameters, x, trials, steps, in, rank);
  const std::vector<double> analytic = encoder_backward(config, parameters, pass, a, c);
  ASSERT_EQ(analytic.size(), parameters.size());
  const double step = 1e-6;
  std::vector<double> numeric(parameters.size());
  std::vector<bool> compared(parameters.size(), true);
  double largest = 0;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    std::vector<double> plus = parameters, minus = parameters;
    plus[i] += step;
    minus[i] -= step;
    const auto up = encoder_forward(config, plus, x, trials, steps, in, rank);
    const auto down = encoder_forward(config, minus, x, trials, steps, in, rank);
    numeric[i] = (loss(up) - loss(down)) / (2 * step);
    largest = std::max(largest, std::fabs(numeric[i]));
    if (config.activation == EncoderActivation::leaky_relu)
      for (std::size_t layer = 0; layer < up.pre_activations.size() && compared[i]; ++layer)
        for (std::size_t j = 0; j < up.pre_activations[layer].size(); ++j)
          if ((up.pre_activations[layer][j] >= 0) != (down.pre_activations[layer][j] >= 0)) {
            compared[i] = false;
            break;
          }
  }
  ASSERT_GT(largest, 0.0);
  std::size_t skipped = 0;
  for (const auto& block : encoder_blocks(config, in, rank))
    for (std::size_t j = 0; j < block.size; ++j) {
      const std::size_t i = block.offset + j;
      if (!compared[i]) {
        ++skipped;
        continue;
      }
      // Central differences: truncation O(step²) and rounding O(ε·|L|/step), both below 1e-8
      // of the gradient's scale here; the scale is floored at 1% of the largest entry.
      const double scale = std::max(std::fabs(numeric[i]), 1e-2 * largest);
      EXPECT_LT(std::fabs(analytic[i] - numeric[i]) / scale, 1e-5)
          << block.name << "[" << j << "]: analytic " << analytic[i] << ", finite difference "
          << numeric[i];
    }
  EXPECT_LE(skipped, parameters.size() / 50) << "coordinates at a LeakyReLU kink";
}

TEST_P(EncoderTest, BackwardMatchesCentralFiniteDifferences) {
  expect_gradient_matches(config(), trials, steps, in, rank);
}

TEST_P(EncoderTest, BackwardWithAConstantVarianceAndNoHiddenLayer) {
  EncoderConfig constant = config();
  constant.constant_variance = true;
  expect_gradient_matches(constant, trials, steps, in, rank);
  EncoderConfig heads_only = config();
  heads_only.kernels = {3};
  heads_only.channels = {};
  expect_gradient_matches(heads_only, trials, steps, in, rank);
}

std::string case_name(const ::testing::TestParamInfo<EncoderCase>& info) {
  const auto [padding, mode, activation] = info.param;
  return to_string(padding) + "_" + to_string(mode) + "_" + to_string(activation);
}

INSTANTIATE_TEST_SUITE_P(
    EveryPadding, EncoderTest,
    ::testing::Combine(::testing::Values(EncoderPadding::causal, EncoderPadding::acausal,
                                         EncoderPadding::windowed),
                       ::testing::Values(PaddingMode::zeros, PaddingMode::reflect,
                                         PaddingMode::replicate, PaddingMode::circular),
                       ::testing::Values(EncoderActivation::gelu, EncoderActivation::leaky_relu)),
    case_name);

// A single convolution (the heads only) in float: each output is a sum of n = in·k + 1 terms,
// so it lies within γ_n·Σ|terms| of the exact sum, γ_n = n·u/(1 − n·u) with u = 2⁻²⁴, plus the
// rounding of the inputs to float (one u of each term).
TEST(EncoderFloat, FollowsTheDoublePassWithinItsRoundingBound) {
  EncoderConfig config;
  config.kernels = {9};
  config.channels = {};
  config.padding = EncoderPadding::causal;
  const int trials = 3, steps = 20, in = 6, rank = 3;
  const std::vector<double> parameters = initialise_encoder(config, in, rank, 2);
  const std::vector<double> x = draws(std::size_t(trials * steps * in), 4, 2.0);
  const std::vector<float> x32(x.begin(), x.end());
  const auto exact = encoder_forward(config, parameters, x, trials, steps, in, rank);
  const auto single = encoder_forward(config, parameters, x32, trials, steps, in, rank);
  // Σ|terms| per output: the same convolution of |x| with |weights| and |bias|.
  std::vector<double> magnitude_parameters(parameters.size());
  for (std::size_t i = 0; i < parameters.size(); ++i) magnitude_parameters[i] = std::fabs(parameters[i]);
  std::vector<double> magnitude_x(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) magnitude_x[i] = std::fabs(x[i]);
  const auto magnitude =
      encoder_forward(config, magnitude_parameters, magnitude_x, trials, steps, in, rank);
  const double u = std::ldexp(1.0, -24);
  const double n = in * 9 + 1;
  const double gamma = (n + 2) * u / (1 - (n + 2) * u);  // sums, products and rounded inputs
  for (std::size_t i = 0; i < exact.mean.size(); ++i) {
    EXPECT_LE(std::fabs(double(single.mean[i]) - exact.mean[i]), gamma * magnitude.mean[i]) << i;
    EXPECT_LE(std::fabs(double(single.log_variance[i]) - exact.log_variance[i]),
              gamma * magnitude.log_variance[i])
        << i;
  }
}

TEST(EncoderInitialisation, IsPyTorchsDefaultWithTheLogVarianceShift) {
  EncoderConfig config;  // 21,11,1 with 64,64
  const int in = 40, rank = 2;
  const std::vector<double> first = initialise_encoder(config, in, rank, 3);
  EXPECT_EQ(first, initialise_encoder(config, in, rank, 3));
  EXPECT_NE(first, initialise_encoder(config, in, rank, 4));
  const auto blocks = encoder_blocks(config, in, rank);
  ASSERT_EQ(blocks.size(), 8u);
  EXPECT_EQ(blocks[0].name, "encoder_conv1_weight");
  EXPECT_EQ(blocks[0].shape, (std::vector<std::int64_t>{64, 40, 21}));
  EXPECT_EQ(blocks[7].name, "encoder_log_variance_bias");
  const double shift = 2 * std::log(0.1);
  const double head_bound = 1 / std::sqrt(64.0);
  for (std::size_t j = 0; j < 2; ++j) {
    const double bias = first[blocks[7].offset + j];
    EXPECT_GE(bias, shift - head_bound);
    EXPECT_LE(bias, shift + head_bound);
  }
  const double conv1_bound = 1 / std::sqrt(40.0 * 21);
  for (std::size_t j = 0; j < blocks[0].size; ++j)
    EXPECT_LE(std::fabs(first[blocks[0].offset + j]), conv1_bound);
  config.constant_variance = true;
  const auto constant = initialise_encoder(config, in, rank, 3);
  const auto constant_blocks = encoder_blocks(config, in, rank);
  EXPECT_EQ(constant_blocks.back().name, "encoder_log_variance");
  EXPECT_EQ(constant[constant_blocks.back().offset], shift);
}

/// The encoder proposal's constants of one step, with their storage.
struct StepConstants {
  int rank;
  std::vector<double> precision, covariance, gain, alpha, proposal_factor, gain_term;
  double log_det = 0;
  explicit StepConstants(int r)
      : rank(r), precision(std::size_t(r * r)), covariance(std::size_t(r * r)),
        gain(std::size_t(r * r)), alpha(std::size_t(r * r)), proposal_factor(std::size_t(r * r)),
        gain_term(std::size_t(r)) {}
  math::GaussianProduct out() {
    return {precision.data(), covariance.data(), gain.data(), alpha.data(), proposal_factor.data(),
            &log_det};
  }
  math::GaussianProductView view() const {
    return {precision.data(), covariance.data(), gain.data(), alpha.data(), proposal_factor.data(),
            &log_det};
  }
  bool compute(const std::vector<double>& factor, const std::vector<double>& mean,
               const std::vector<double>& variance) {
    std::vector<double> scratch(std::size_t(math::encoder_step_scratch_size(rank)));
    return math::encoder_step_constants(rank, factor.data(), mean.data(), variance.data(), out(),
                                        gain_term.data(), scratch.data());
  }
};

TEST(EncoderProposal, DiagonalPriorGivesTheReferencesDimensionwiseProduct) {
  const int R = 3;
  const std::vector<double> prior_std = {0.3, 1.2, 0.05}, encoder_variance = {0.5, 0.01, 2.0};
  const std::vector<double> encoder_mean = {1.0, -2.0, 0.25};
  std::vector<double> factor(9, 0.0);
  for (int r = 0; r < R; ++r) factor[std::size_t(r * R + r)] = prior_std[std::size_t(r)];
  StepConstants step(R);
  ASSERT_TRUE(step.compute(factor, encoder_mean, encoder_variance));
  for (int r = 0; r < R; ++r) {
    const double prior = prior_std[std::size_t(r)] * prior_std[std::size_t(r)];
    const double encoder = encoder_variance[std::size_t(r)];
    const double alpha = prior / (prior + encoder);  // the weight on the encoder
    EXPECT_NEAR(step.alpha[std::size_t(r * R + r)], alpha, 1e-15);
    EXPECT_NEAR(step.gain_term[std::size_t(r)], alpha * encoder_mean[std::size_t(r)], 1e-15);
    EXPECT_NEAR(step.proposal_factor[std::size_t(r * R + r)],
                std::sqrt(prior * encoder / (prior + encoder) + 1e-8), 1e-15);
    for (int s = 0; s < R; ++s)
      if (s != r) {
        EXPECT_EQ(step.alpha[std::size_t(r * R + s)], 0.0);
      }
  }
}

TEST(EncoderProposal, FullPriorGivesTheExactGaussianProduct) {
  // Σ = L Lᵀ with a correlation; the product's covariance is (Σ^{-1} + D^{-1})^{-1}, written out
  // for 2 × 2, and its mean for a particle at μ is Σ_q (Σ^{-1} μ + D^{-1} μ_e).
  const std::vector<double> factor = {0.8, 0.0, 0.5, 0.4};
  const std::vector<double> variance = {0.3, 0.7}, encoder_mean = {-0.4, 1.1}, mean = {0.2, 0.9};
  StepConstants step(2);
  ASSERT_TRUE(step.compute(factor, encoder_mean, variance));
  const double s11 = 0.64, s12 = 0.4, s22 = 0.25 + 0.16;
  const double det = s11 * s22 - s12 * s12;
  const double p11 = s22 / det + 1 / variance[0], p12 = -s12 / det, p22 = s11 / det + 1 / variance[1];
  const double pdet = p11 * p22 - p12 * p12;
  const double c11 = p22 / pdet, c12 = -p12 / pdet, c22 = p11 / pdet;
  EXPECT_NEAR(step.covariance[0], c11, 1e-14);
  EXPECT_NEAR(step.covariance[1], c12, 1e-14);
  EXPECT_NEAR(step.covariance[3], c22, 1e-14);
  const double i1 = (s22 * mean[0] - s12 * mean[1]) / det + encoder_mean[0] / variance[0];
  const double i2 = (-s12 * mean[0] + s11 * mean[1]) / det + encoder_mean[1] / variance[1];
  for (int r = 0; r < 2; ++r) {
    // μ_q = (I − α) μ + G μ_e, as `propose` forms it.
    double proposal_mean = mean[std::size_t(r)] + step.gain_term[std::size_t(r)];
    for (int s = 0; s < 2; ++s)
      proposal_mean -= step.alpha[std::size_t(r * 2 + s)] * mean[std::size_t(s)];
    const double exact = r == 0 ? c11 * i1 + c12 * i2 : c12 * i1 + c22 * i2;
    EXPECT_NEAR(proposal_mean, exact, 1e-14) << r;
  }
}

// The adjoint of the step constants against central differences of
// Λ = Σ_k w_kᵀ μ_q,k + Σ_{r≥s} c_rs L_q,rs + c·Σ ln L_q,rr over the prior factor, the encoder's
// mean and its variances.
TEST(EncoderProposal, BackwardMatchesCentralFiniteDifferences) {
  const int R = 3, K = 4;
  std::vector<double> factor = {0.7, 0, 0, 0.2, 0.9, 0, -0.3, 0.1, 0.5};
  std::vector<double> encoder_mean = draws(R, 31, 1.0);
  std::vector<double> encoder_variance = {0.4, 1.3, 0.2};
  const std::vector<double> means = draws(std::size_t(R * K), 32, 1.0);
  const std::vector<double> weights = draws(std::size_t(R * K), 33, 1.0);
  const std::vector<double> factor_weights = draws(std::size_t(R * R), 34, 1.0);
  const double log_det_weight = 0.7;
  const auto loss = [&](const std::vector<double>& f, const std::vector<double>& m,
                        const std::vector<double>& v) {
    StepConstants step(R);
    EXPECT_TRUE(step.compute(f, m, v));
    double total = log_det_weight * step.log_det;
    for (int k = 0; k < K; ++k)
      for (int r = 0; r < R; ++r) {
        double proposal_mean = means[std::size_t(k * R + r)] + step.gain_term[std::size_t(r)];
        for (int s = 0; s < R; ++s)
          proposal_mean -= step.alpha[std::size_t(r * R + s)] * means[std::size_t(k * R + s)];
        total += weights[std::size_t(k * R + r)] * proposal_mean;
      }
    for (int r = 0; r < R; ++r)
      for (int s = 0; s <= r; ++s)
        total += factor_weights[std::size_t(r * R + s)] * step.proposal_factor[std::size_t(r * R + s)];
    return total;
  };
  StepConstants step(R);
  ASSERT_TRUE(step.compute(factor, encoder_mean, encoder_variance));
  std::vector<double> mean_product(std::size_t(R * R), 0.0), mean_sum(std::size_t(R), 0.0);
  for (int k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) {
      mean_sum[std::size_t(r)] += weights[std::size_t(k * R + r)];
      for (int s = 0; s < R; ++s)
        mean_product[std::size_t(r * R + s)] +=
            weights[std::size_t(k * R + r)] * means[std::size_t(k * R + s)];
    }
  std::vector<double> grad_proposal_factor(std::size_t(R * R), 0.0);
  for (int r = 0; r < R; ++r)
    for (int s = 0; s <= r; ++s)
      grad_proposal_factor[std::size_t(r * R + s)] =
          factor_weights[std::size_t(r * R + s)] +
          (r == s ? log_det_weight / step.proposal_factor[std::size_t(r * R + r)] : 0.0);
  std::vector<double> grad_factor(std::size_t(R * R), 0.0), grad_mean(std::size_t(R), 0.0),
      grad_variance(std::size_t(R), 0.0);
  std::vector<double> scratch(std::size_t(math::encoder_step_scratch_size(R)));
  math::encoder_step_constants_backward(R, factor.data(), encoder_mean.data(),
                                        encoder_variance.data(), step.view(), mean_product.data(),
                                        mean_sum.data(), grad_proposal_factor.data(),
                                        grad_factor.data(), grad_mean.data(),
                                        grad_variance.data(), scratch.data());
  const double h = 1e-6;
  const auto central = [&](std::vector<double>& values, std::size_t i) {
    const double kept = values[i];
    values[i] = kept + h;
    const double up = loss(factor, encoder_mean, encoder_variance);
    values[i] = kept - h;
    const double down = loss(factor, encoder_mean, encoder_variance);
    values[i] = kept;
    return (up - down) / (2 * h);
  };
  // Central differences: truncation O(h²) and rounding O(ε|Λ|/h) both far below 1e-6 here.
  const auto expect_close = [](double analytic, double numeric, const std::string& what) {
    EXPECT_LT(std::fabs(analytic - numeric) / std::max(std::fabs(numeric), 1e-2), 1e-6)
        << what << ": analytic " << analytic << ", finite difference " << numeric;
  };
  for (int r = 0; r < R; ++r)
    for (int s = 0; s <= r; ++s)
      expect_close(grad_factor[std::size_t(r * R + s)], central(factor, std::size_t(r * R + s)),
                   "dL[" + std::to_string(r) + "," + std::to_string(s) + "]");
  for (int r = 0; r < R; ++r) {
    expect_close(grad_mean[std::size_t(r)], central(encoder_mean, std::size_t(r)),
                 "dmu_e[" + std::to_string(r) + "]");
    expect_close(grad_variance[std::size_t(r)], central(encoder_variance, std::size_t(r)),
                 "dsigma_e^2[" + std::to_string(r) + "]");
  }
}

void expect_invalid(const EncoderConfig& config, int in, int rank, int steps,
                    const std::string& expected) {
  try {
    validate(config, in, rank, steps, "spikes.npy");
    ADD_FAILURE() << "accepted; expected: " << expected;
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
  }
}

TEST(EncoderValidation, BadConfigurationsNameTheFieldAndValue) {
  EncoderConfig config;
  config.padding_mode = PaddingMode::reflect;
  expect_invalid(config, 40, 2, 15,
                 "spikes.npy: encoder kernel 1 of 21 taps pads 20 steps by reflection, which "
                 "needs trials longer than 20 steps; got 15");
  config.padding_mode = PaddingMode::circular;
  expect_invalid(config, 40, 2, 19, "pads 20 steps circularly");
  EXPECT_NO_THROW(validate(config, 40, 2, 20, "spikes.npy"));
  config.padding_mode = PaddingMode::zeros;
  EXPECT_NO_THROW(validate(config, 40, 2, 5, "spikes.npy"));  // zeros pad any length
  expect_invalid(config, 0, 2, 50, "needs at least one input channel; got 0");
  config.channels = {64};
  expect_invalid(config, 40, 2, 50, "3 kernels and 1 channel counts");
  config.channels = {64, 0};
  expect_invalid(config, 40, 2, 50, "encoder channel count 2 is out of range; got 0");
  config.channels = {64, 64};
  config.kernels = {21, 0, 1};
  expect_invalid(config, 40, 2, 50, "encoder kernel 2 is out of range; got 0");
  config.kernels = {21, 11, 1};
  config.init_scale = 0;
  expect_invalid(config, 40, 2, 50, "init_scale must be positive; got 0");
  EXPECT_THROW((void)parse_padding_mode("mirror"), InvalidInput);
  try {
    (void)parse_encoder_padding("centred", "--encoder-padding");
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("--encoder-padding is not recognised; got 'centred', "
                                             "expected one of causal, acausal, windowed"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace lrsmc

namespace lrsmc {
namespace {

// The engines' encoder pass splits a batch of 8 × 400 trial-steps into 3 blocks of trials run in
// parallel: the factors and the gradient are the same bits on 1, 2 or 3 threads (in float64,
// whose block gradients, unlike float32 ones, round when summed in another order).
TEST(EncoderFactors, BlocksOfTrialsGiveTheSameBitsOnAnyThreads) {
  ModelConfig config = testing::small_config(Nonlinearity::relu, NoiseType::full,
                                             Observation::poisson, Link::softplus);
  config.encoder = testing::small_encoder({5, 3, 1}, {6, 5});
  const Model model = testing::random_model(config, 3);
  const SequenceBatch batch = testing::sampled_batch(model, 8, 400, 2);
  const std::size_t cells = std::size_t(8) * 400 * config.rank;
  std::vector<double> grad_mean(cells), grad_variance(cells);
  for (std::size_t i = 0; i < cells; ++i) {
    grad_mean[i] = std::sin(0.1 * double(i));
    grad_variance[i] = 0.01 * std::cos(0.3 * double(i));
  }
  const auto run = [&](int threads) {
    const model::EncoderFactors<double> factors(model, batch, 400, threads);
    std::vector<double> gradient(model.parameters.size(), 0.0);
    factors.add_gradient(grad_mean, grad_variance, gradient);
    return std::make_tuple(factors.mean(), factors.variance(), gradient);
  };
  const auto one = run(1);
  for (const int threads : {2, 3}) EXPECT_EQ(run(threads), one) << threads << " threads";
}

}  // namespace
}  // namespace lrsmc
