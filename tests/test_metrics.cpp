// The metrics of lrsmc/metrics.hpp, each against a small case computed independently here: by
// hand, by a direct formula (a naive DFT, explicit mirror padding) or by a distribution whose
// divergence is known in closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <limits>
#include <vector>

#include "lrsmc/errors.hpp"
#include "lrsmc/metrics.hpp"

namespace lrsmc::metrics {
namespace {

Array series(std::int64_t rows, std::int64_t cols, std::vector<double> values) {
  return Array({rows, cols}, std::move(values));
}

// ---- D_stsp -------------------------------------------------------------------------------------

TEST(StateSpaceDivergence, LogRatioIsTheDirectKernelSum) {
  const Array truth = series(3, 2, {0.0, 0.0, 1.0, -0.5, 0.3, 2.0});
  const Array generated = series(2, 2, {0.5, 0.5, -1.0, 1.0});
  const Array points = series(2, 2, {0.2, -0.1, 1.5, 1.0});
  const double s = 0.7;
  const auto ratio = log_density_ratio(truth, generated, points, s, false);
  const auto ratio_float = log_density_ratio(truth, generated, points, s, true);
  ASSERT_EQ(ratio.size(), 2u);
  for (int j = 0; j < 2; ++j) {
    const auto density = [&](const Array& centres) {
      double sum = 0.0;
      for (std::int64_t t = 0; t < centres.shape[0]; ++t) {
        const double dx = points.data[std::size_t(2 * j)] - centres.data[std::size_t(2 * t)];
        const double dy = points.data[std::size_t(2 * j + 1)] - centres.data[std::size_t(2 * t + 1)];
        sum += std::exp(-(dx * dx + dy * dy) / (2 * s * s)) / (s * s);
      }
      return sum / double(centres.shape[0]);
    };
    const double expected = std::log(density(truth)) - std::log(density(generated));
    EXPECT_NEAR(ratio[std::size_t(j)], expected, 1e-12 * (1 + std::fabs(expected)));
    // float32: a few roundings of relative size 2^-24 in densities of order 0.1–1.
    EXPECT_NEAR(ratio_float[std::size_t(j)], expected, 1e-5);
  }
}

// Truth: every point at 0; generated: every point at δ. The kernel estimates are then exactly
// N(0, s²I) and N(δ, s²I), whose KL is ‖δ‖²/(2s²), and each Monte-Carlo term is
// ‖δ‖²/(2s²) − ξ·δ/s with ξ ~ N(0, I): the estimate's standard deviation is ‖δ‖/(s√S).
TEST(StateSpaceDivergence, TwoPointMassesGiveTheirKl) {
  const int D = 3, T = 40;
  const std::vector<double> delta{0.6, -0.3, 0.2};
  Array truth({T, D});
  Array generated({T, D});
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) generated.data[std::size_t(t * D + d)] = delta[std::size_t(d)];
  StateSpaceOptions options;
  options.samples = 4000;
  options.kernel_std = 0.8;
  double norm2 = 0.0;
  for (const double v : delta) norm2 += v * v;
  const double kl = norm2 / (2 * options.kernel_std * options.kernel_std);
  const double sigma = std::sqrt(norm2) / (options.kernel_std * std::sqrt(options.samples));
  for (const bool reference : {false, true}) {
    options.reference_float32 = reference;
    const auto result = state_space_divergence(truth, generated, options);
    EXPECT_EQ(result.samples_used, options.samples);
    EXPECT_NEAR(result.value, kl, 5 * sigma) << "reference_float32 " << reference;
  }
  // Identical sets: every term is exactly 0.
  EXPECT_EQ(state_space_divergence(truth, truth, options).value, 0.0);
}

// In 64 dimensions a set 20 per dimension away has density exp(−12800) at the truth's points:
// float32 in linear space underflows at every point (the reference drops them all), log space
// gives the divergence, ‖δ‖²/2 = 12800 ± ‖δ‖/√S.
TEST(StateSpaceDivergence, LogSpaceSurvivesWhereTheReferenceUnderflows) {
  const int D = 64, T = 10;
  Array truth({T, D});
  Array generated({T, D});
  for (double& v : generated.data) v = 20.0;
  StateSpaceOptions options;
  options.samples = 500;
  const auto log_space = state_space_divergence(truth, generated, options);
  EXPECT_EQ(log_space.samples_used, 500);
  EXPECT_NEAR(log_space.value, 12800.0, 5 * 160.0 / std::sqrt(500.0));
  options.reference_float32 = true;
  const auto reference = state_space_divergence(truth, generated, options);
  EXPECT_EQ(reference.samples_used, 0);
  EXPECT_TRUE(std::isnan(reference.value));
}

TEST(StateSpaceDivergence, BadInputIsRefused) {
  const Array a = series(2, 2, {0, 1, 2, 3});
  EXPECT_THROW((void)state_space_divergence(a, series(2, 1, {0, 1})), InvalidInput);
  EXPECT_THROW((void)state_space_divergence(a, Array({4}, {0, 1, 2, 3})), InvalidInput);
  EXPECT_THROW((void)state_space_divergence(a, series(1, 2, {0, std::nan("")})), InvalidInput);
  StateSpaceOptions options;
  options.kernel_std = 0.0;
  EXPECT_THROW((void)state_space_divergence(a, a, options), InvalidInput);
  options = {};
  options.samples = 0;
  EXPECT_THROW((void)state_space_divergence(a, a, options), InvalidInput);
}

// ---- D_H ----------------------------------------------------------------------------------------

/// The normalised smoothed spectrum by a naive DFT and a Gaussian filter over an explicitly
/// mirrored copy of the spectrum.
std::vector<double> naive_spectrum(std::vector<double> x, double sigma) {
  // z-scored over every sample, then an odd series loses its last sample.
  double mean = 0, var = 0;
  for (const double v : x) mean += v / double(x.size());
  for (const double v : x) var += (v - mean) * (v - mean) / double(x.size());
  for (double& v : x) v = (v - mean) / std::sqrt(var);
  if (x.size() % 2 == 1) x.pop_back();
  const auto n = double(x.size());
  const std::size_t bins = x.size() / 2 + 1;
  std::vector<double> power(bins);
  for (std::size_t k = 0; k < bins; ++k) {
    std::complex<double> sum = 0;
    for (std::size_t t = 0; t < x.size(); ++t)
      sum += x[t] * std::polar(1.0, -2 * M_PI * double(k * t) / n);
    power[k] = 2 * std::norm(sum) / n;
  }
  const int radius = int(4 * sigma + 0.5);
  std::vector<double> padded;  // mirror (edge included) on both sides, radius ≤ bins here
  for (int i = radius - 1; i >= 0; --i) padded.push_back(power[std::size_t(i)]);
  padded.insert(padded.end(), power.begin(), power.end());
  for (int i = 0; i < radius; ++i) padded.push_back(power[bins - 1 - std::size_t(i)]);
  std::vector<double> weights;
  double total = 0;
  for (int i = -radius; i <= radius; ++i) {
    weights.push_back(std::exp(-0.5 * i * i / (sigma * sigma)));
    total += weights.back();
  }
  std::vector<double> smoothed(bins);
  double sum = 0;
  for (std::size_t k = 0; k < bins; ++k) {
    for (int i = 0; i <= 2 * radius; ++i)
      smoothed[k] += weights[std::size_t(i)] / total * padded[k + std::size_t(i)];
    sum += smoothed[k];
  }
  for (double& v : smoothed) v /= sum + 1e-8;
  return smoothed;
}

TEST(PowerSpectrumDistance, MatchesANaiveDftAndMirroredFilter) {
  for (const int length : {40, 41}) {
    std::vector<double> a(static_cast<std::size_t>(length)), b(static_cast<std::size_t>(length));
    for (int t = 0; t < length; ++t) {
      a[std::size_t(t)] = std::sin(0.7 * t) + 0.3 * std::cos(2.1 * t + 0.2) + 0.01 * t;
      b[std::size_t(t)] = std::sin(1.3 * t) * std::exp(-0.02 * t) + 0.5 * std::sin(0.3 * t);
    }
    const double sigma = 2.0;
    const auto pa = naive_spectrum(a, sigma), pb = naive_spectrum(b, sigma);
    const auto spectrum = normalised_spectrum(a.data(), length, 1, sigma);
    ASSERT_EQ(spectrum.size(), pa.size());
    for (std::size_t k = 0; k < pa.size(); ++k) EXPECT_NEAR(spectrum[k], pa[k], 1e-12);
    // D_H with the EEG cutoff −1: the last bin is dropped, both renormalised.
    double sa = 0, sb = 0;
    for (std::size_t k = 0; k + 1 < pa.size(); ++k) {
      sa += pa[k];
      sb += pb[k];
    }
    double squared = 0;
    for (std::size_t k = 0; k + 1 < pa.size(); ++k) {
      const double d = std::sqrt(pa[k] / sa) - std::sqrt(pb[k] / sb);
      squared += d * d;
    }
    SpectrumOptions options;
    options.smoothing = sigma;
    options.frequency_cutoff = -1;
    // Two columns: the pair and the pair swapped give the same distance.
    Array truth({length, 2}), generated({length, 2});
    for (int t = 0; t < length; ++t) {
      truth.data[std::size_t(2 * t)] = generated.data[std::size_t(2 * t + 1)] = a[std::size_t(t)];
      generated.data[std::size_t(2 * t)] = truth.data[std::size_t(2 * t + 1)] = b[std::size_t(t)];
    }
    const auto distance = power_spectrum_distance(truth, generated, options);
    const double expected = std::sqrt(squared / 2);
    ASSERT_EQ(distance.per_dim.size(), 2u);
    EXPECT_NEAR(distance.per_dim[0], expected, 1e-12);
    EXPECT_NEAR(distance.per_dim[1], expected, 1e-12);
    EXPECT_NEAR(distance.value, expected, 1e-12);
  }
}

// Pure tones at different bins without smoothing: disjoint spectra, H = 1; the same series
// scaled and shifted: z-scoring makes the spectra equal, H = 0.
TEST(PowerSpectrumDistance, DisjointTonesAreOneApartAndAffineCopiesZero) {
  const int n = 64;
  Array a({n, 1}), b({n, 1}), c({n, 1});
  for (int t = 0; t < n; ++t) {
    a.data[std::size_t(t)] = std::sin(2 * M_PI * 3 * t / n);
    b.data[std::size_t(t)] = std::sin(2 * M_PI * 7 * t / n);
    c.data[std::size_t(t)] = 5 * a.data[std::size_t(t)] - 2;
  }
  SpectrumOptions options;
  options.smoothing = 0;
  EXPECT_NEAR(power_spectrum_distance(a, b, options).value, 1.0, 1e-9);
  options.smoothing = 20;
  EXPECT_NEAR(power_spectrum_distance(a, c, options).value, 0.0, 1e-12);
  options.frequency_cutoff = 0;  // nothing left to compare
  EXPECT_THROW((void)power_spectrum_distance(a, c, options), InvalidInput);
  EXPECT_THROW((void)power_spectrum_distance(a, Array({40, 1})), InvalidInput);
}

TEST(HannSmoothing, IsTheMirroredWindowSumThenZScored) {
  // Window 5: weights 0, ½, 1, ½, 0; reflect boundary x[−1] = x[0], x[n] = x[n−1].
  const std::vector<double> x{1.0, 4.0, 2.0, 0.0, 3.0};
  std::vector<double> y(5);
  for (int i = 0; i < 5; ++i) {
    const double left = x[std::size_t(i == 0 ? 0 : i - 1)];
    const double right = x[std::size_t(i == 4 ? 4 : i + 1)];
    y[std::size_t(i)] = 0.5 * left + x[std::size_t(i)] + 0.5 * right;
  }
  double mean = 0, var = 0;
  for (const double v : y) mean += v / 5;
  for (const double v : y) var += (v - mean) * (v - mean) / 5;
  const Array out = hann_smooth_and_standardise(Array({5, 1}, x), 5);
  for (int i = 0; i < 5; ++i)
    EXPECT_NEAR(out.data[std::size_t(i)], (y[std::size_t(i)] - mean) / std::sqrt(var), 1e-12);
  EXPECT_THROW((void)hann_smooth_and_standardise(Array({5, 1}, x), 0), InvalidInput);
}

TEST(MeanRateError, IsTheSquaredSumDifferenceOverSteps) {
  const Array truth = series(2, 2, {1, 0, 3, 2});
  const Array generated = series(2, 2, {0, 0, 1, 1});
  // dim 0: sums 4 and 1, (3)²/2 = 4.5; dim 1: sums 2 and 1, 1/2 = 0.5; mean 2.5.
  EXPECT_DOUBLE_EQ(mean_rate_error(truth, generated), 2.5);
  EXPECT_THROW((void)mean_rate_error(truth, series(1, 2, {0, 0})), InvalidInput);
}

// ---- spike counts ------------------------------------------------------------------------------

TEST(SpikeStatistics, RatesIntervalsAndCorrelationsByHand) {
  // (2 trials, 6 bins, 3 neurons). Neuron 0: trial 0 spikes in bins 0, 2 (two), 5; trial 1 in
  // bins 1, 4: ISIs 2, 3, 3 bins. Neuron 1 silent. Neuron 2 = neuron 0's counts doubled.
  Array counts({2, 6, 3});
  const auto set = [&](int b, int t, int n, double v) {
    counts.data[std::size_t((b * 6 + t) * 3 + n)] = v;
  };
  for (const auto& [b, t, v] : std::vector<std::tuple<int, int, double>>{
           {0, 0, 1}, {0, 2, 2}, {0, 5, 1}, {1, 1, 1}, {1, 4, 1}}) {
    set(b, t, 0, v);
    set(b, t, 2, 2 * v);
  }
  const double dt = 0.01;
  const auto stats = spike_statistics(counts, dt);
  EXPECT_NEAR(stats.mean_rate[0], 6.0 / 12 / dt, 1e-9);
  EXPECT_EQ(stats.mean_rate[1], 0.0);
  EXPECT_NEAR(stats.mean_isi[0], 8.0 / 3 * dt, 1e-15);
  EXPECT_NEAR(stats.isi_cv[0], std::sqrt(2.0 / 9) / (8.0 / 3), 1e-12);
  EXPECT_TRUE(std::isnan(stats.mean_isi[1]));
  ASSERT_EQ(stats.pair_correlation.size(), 3u);  // (0,1), (0,2), (1,2)
  EXPECT_TRUE(std::isnan(stats.pair_correlation[0]));
  EXPECT_NEAR(stats.pair_correlation[1], 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(stats.pair_correlation[2]));
  // Four ISIs required: neuron 0 has three.
  EXPECT_TRUE(std::isnan(spike_statistics(counts, dt, 4).mean_isi[0]));
  counts.data[0] = -1;
  EXPECT_THROW((void)spike_statistics(counts, dt), InvalidInput);
}

TEST(Pearson, KnownValuesAndNonFiniteEntriesLeftOut) {
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 6, 8}), 1.0, 1e-15);
  // x = 1,2,3; y = 1,3,2: cov 0.5·2/… → r = 0.5.
  EXPECT_NEAR(pearson({1, 2, 3}, {1, 3, 2}), 0.5, 1e-15);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NEAR(pearson({1, nan, 2, 3}, {1, 5, 3, 2}), 0.5, 1e-15);
  EXPECT_TRUE(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
}

TEST(BitsPerSpike, IsThePoissonLikelihoodGainOverTheMeanRate) {
  const Array counts({2, 2, 2}, {0, 1, 2, 0, 1, 3, 0, 0});
  const Array rates({2, 2, 2}, {0.5, 1.2, 1.5, 0.1, 0.8, 2.0, 0.2, 0.7});
  // Full Poisson log-likelihoods (the log k! terms cancel in the difference).
  const auto loglik = [](double r, double k) { return k * std::log(r) - r - std::lgamma(k + 1); };
  const double mean0 = 3.0 / 4, mean1 = 4.0 / 4;
  double model = 0, null = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    model += loglik(rates.data[i], counts.data[i]);
    null += loglik(i % 2 == 0 ? mean0 : mean1, counts.data[i]);
  }
  EXPECT_NEAR(bits_per_spike(rates, counts), (model - null) / 7 / std::log(2.0), 1e-12);
  // The mean rates themselves score 0.
  Array means = counts;
  for (std::size_t i = 0; i < 8; ++i) means.data[i] = i % 2 == 0 ? mean0 : mean1;
  EXPECT_NEAR(bits_per_spike(means, counts), 0.0, 1e-15);
  // A NaN count leaves its entry out of both likelihoods and of the neuron's mean.
  Array masked = counts;
  masked.data[5] = std::nan("");
  const double mean1_masked = 1.0 / 3;
  model = null = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    if (i == 5) continue;
    model += loglik(rates.data[i], counts.data[i]);
    null += loglik(i % 2 == 0 ? mean0 : mean1_masked, counts.data[i]);
  }
  EXPECT_NEAR(bits_per_spike(rates, masked), (model - null) / 4 / std::log(2.0), 1e-12);
  EXPECT_THROW((void)bits_per_spike(Array({2, 2, 2}), Array({2, 2, 2})), InvalidInput);  // no spikes
  Array negative = rates;
  negative.data[0] = -0.1;
  EXPECT_THROW((void)bits_per_spike(negative, counts), InvalidInput);
}

TEST(PsthR2, ConditionMeansScoredPerNeuron) {
  // 3 trials × 2 bins × 1 neuron; conditions 0, 0, 1. PSTH: cond 0 = (1, 2), cond 1 = (3, 0).
  const Array counts({3, 2, 1}, {0, 2, 2, 2, 3, 0});
  const Array rates({3, 2, 1}, {1, 1, 1, 3, 2, 1});
  // Predicted PSTH: cond 0 = (1, 2), cond 1 = (2, 1). Residual 0+0+1+1 = 2; truth mean 1.5,
  // spread 0.25 + 0.25 + 2.25 + 2.25 = 5: R² = 0.6.
  EXPECT_NEAR(psth_r2(rates, counts, {0, 0, 1}), 0.6, 1e-12);
  EXPECT_NEAR(psth_r2(counts, counts, {0, 0, 1}), 1.0, 1e-15);
  EXPECT_THROW((void)psth_r2(rates, counts, {0, 1}), InvalidInput);
  EXPECT_THROW((void)psth_r2(rates, counts, {0, -1, 1}), InvalidInput);
}

TEST(RidgeDecoding, OneFeatureMatchesTheClosedForm) {
  const std::vector<double> x{0, 1, 2, 3, 4, 5}, y{1.0, 2.9, 5.2, 7.1, 8.8, 11.0};
  const double alpha = 2.0;
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    mx += x[i] / 6;
    my += y[i] / 6;
  }
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  const double w = sxy / (sxx + alpha), c = my - w * mx;
  const Array X({6, 1}, x), Y({6, 1}, y);
  const Array test_x({2, 1}, {1.5, 6.0}), test_y({2, 1}, {4.0, 13.0});
  const auto result = ridge_decoding(X, Y, test_x, test_y, {alpha}, 3);
  EXPECT_EQ(result.alpha, alpha);
  EXPECT_NEAR(result.weights.data[0], w, 1e-12);
  EXPECT_NEAR(result.weights.data[1], c, 1e-12);
  const double p0 = w * 1.5 + c, p1 = w * 6.0 + c;
  const double r2 = 1 - ((4 - p0) * (4 - p0) + (13 - p1) * (13 - p1)) / (2 * 4.5 * 4.5);
  EXPECT_NEAR(result.r2, r2, 1e-12);
}

// Noiseless targets: cross-validation picks the smallest penalty and the test R² is 1.
TEST(RidgeDecoding, CrossValidationPrefersNoPenaltyForExactTargets) {
  Array X({20, 2}), Y({20, 1}), Xt({5, 2}), Yt({5, 1});
  for (int i = 0; i < 25; ++i) {
    const double a = std::sin(1.7 * i), b = std::cos(0.9 * i);
    Array& features = i < 20 ? X : Xt;
    Array& targets = i < 20 ? Y : Yt;
    const int row = i < 20 ? i : i - 20;
    features.data[std::size_t(2 * row)] = a;
    features.data[std::size_t(2 * row + 1)] = b;
    targets.data[std::size_t(row)] = 3 * a - 2 * b + 0.5;
  }
  const auto result = ridge_decoding(X, Y, Xt, Yt, {0.0, 1.0, 10.0}, 4);
  EXPECT_EQ(result.alpha, 0.0);
  EXPECT_NEAR(result.r2, 1.0, 1e-12);
  EXPECT_THROW((void)ridge_decoding(X, Y, Xt, Yt, {}, 1), InvalidInput);
  EXPECT_THROW((void)ridge_decoding(X, Y, Xt, Yt, {-1.0}), InvalidInput);
}

TEST(R2VarianceWeighted, PoolsSumsOfSquaresOverOutputs) {
  const Array targets = series(3, 2, {1, 0, 2, 0, 3, 3});
  const Array predictions = series(3, 2, {1, 1, 2, 0, 2, 3});
  // SS_res = 1 + 1 = 2; SS_tot = 2 + (1 + 1 + 4) = 8: R² = 0.75.
  EXPECT_NEAR(r2_variance_weighted(targets, predictions), 0.75, 1e-15);
}

}  // namespace
}  // namespace lrsmc::metrics
