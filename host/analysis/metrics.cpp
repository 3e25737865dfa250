// The paper's measures of a fit; see lrsmc/metrics.hpp and method.md §6.
#include "lrsmc/metrics.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <map>
#include <string>
#include <unsupported/Eigen/FFT>

#include "core/block_errors.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc::metrics {
namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

/// Rows and columns of a (rows, cols) array; throws naming `name` when it is not 2-D, empty
/// or not finite.
void require_series(const Array& series, const char* name) {
  LRSMC_REQUIRE(series.ndim() == 2, name, " must be 2-D (time, dims); got shape ",
                series.shape_string());
  LRSMC_REQUIRE(series.shape[0] >= 1 && series.shape[1] >= 1, name,
                " must have at least one row and one column; got shape ", series.shape_string());
  for (std::size_t i = 0; i < series.data.size(); ++i)
    LRSMC_REQUIRE(std::isfinite(series.data[i]), name, " has a non-finite value (",
                  series.data[i], ") at row ", i / std::size_t(series.shape[1]), ", column ",
                  i % std::size_t(series.shape[1]));
}

void require_same_columns(const Array& a, const char* a_name, const Array& b, const char* b_name) {
  LRSMC_REQUIRE(a.shape[1] == b.shape[1], a_name, " has ", a.shape[1], " columns and ", b_name,
                " ", b.shape[1], "; they must match");
}

void require_recorded_and_generated(const Array& truth, const Array& generated) {
  require_series(truth, "the recorded series");
  require_series(generated, "the generated series");
  require_same_columns(truth, "the recorded series", generated, "the generated series");
}

/// scipy.ndimage's "reflect" boundary: (d c b a | a b c d | d c b a), repeated.
std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  const std::int64_t period = 2 * n;
  std::int64_t m = i % period;
  if (m < 0) m += period;
  return m >= n ? period - 1 - m : m;
}

/// Correlates a strided series with a symmetric window centred on it (origin at size/2),
/// reflecting at the ends: scipy.ndimage.convolve1d / correlate1d for symmetric weights.
std::vector<double> filter_reflect(const double* values, std::int64_t length, std::int64_t stride,
                                   const std::vector<double>& window) {
  const auto half = std::int64_t(window.size()) / 2;
  std::vector<double> out(std::size_t(length), 0.0);
  for (std::int64_t i = 0; i < length; ++i) {
    double sum = 0.0;
    for (std::size_t j = 0; j < window.size(); ++j)
      sum += window[j] * values[reflect_index(i + std::int64_t(j) - half, length) * stride];
    out[std::size_t(i)] = sum;
  }
  return out;
}

/// log Σ_t exp(−‖y − μ_t‖² / (2s²)) over the first `points` rows of `centres`.
double log_kernel_sum(const double* y, const Array& centres, std::int64_t points, double s) {
  const std::int64_t D = centres.shape[1];
  const double scale = 0.5 / (s * s);
  double largest = -std::numeric_limits<double>::infinity();
  std::vector<double> exponents(static_cast<std::size_t>(points));
  for (std::int64_t t = 0; t < points; ++t) {
    const double* mu = centres.data.data() + t * D;
    double squared = 0.0;
    for (std::int64_t d = 0; d < D; ++d) squared += (y[d] - mu[d]) * (y[d] - mu[d]);
    exponents[std::size_t(t)] = -scale * squared;
    largest = std::max(largest, exponents[std::size_t(t)]);
  }
  double sum = 0.0;
  for (const double e : exponents) sum += std::exp(e - largest);
  return largest + std::log(sum);
}

/// The reference's density: Σ_t exp(−‖y − μ_t‖²/(2s²)) / s^D / T in float32, linear space.
float linear_density_float(const double* y, const Array& centres, std::int64_t points, double s) {
  const std::int64_t D = centres.shape[1];
  const float precision = 1.0f / (float(s) * float(s));
  float sum = 0.0f;
  for (std::int64_t t = 0; t < points; ++t) {
    const double* mu = centres.data.data() + t * D;
    float exponent = 0.0f;
    for (std::int64_t d = 0; d < D; ++d) {
      const float v = float(y[d]) - float(mu[d]);
      exponent += v * precision * v;
    }
    sum += std::exp(-0.5f * exponent) / std::pow(float(s), float(D));
  }
  return sum / float(points);
}

double log_ratio_at(const double* y, const Array& truth, std::int64_t truth_points,
                    const Array& generated, std::int64_t generated_points, double s,
                    bool reference_float32) {
  if (reference_float32) {
    const float p_true = linear_density_float(y, truth, truth_points, s);
    const float p_gen = linear_density_float(y, generated, generated_points, s);
    if (p_true == 0.0f || p_gen == 0.0f) return nan;
    return double(std::log(p_true) - std::log(p_gen));
  }
  // The s^D factors cancel; the counts do not when the sets differ in length.
  return log_kernel_sum(y, truth, truth_points, s) - std::log(double(truth_points)) -
         (log_kernel_sum(y, generated, generated_points, s) - std::log(double(generated_points)));
}

double sum_of(const std::vector<double>& values) {
  double sum = 0.0;
  for (const double v : values) sum += v;
  return sum;
}

}  // namespace

// ---- state space ------------------------------------------------------------------------------

std::vector<double> log_density_ratio(const Array& truth, const Array& generated,
                                      const Array& points, double kernel_std,
                                      bool reference_float32) {
  require_series(truth, "the recorded series");
  require_series(generated, "the generated series");
  require_series(points, "the points");
  require_same_columns(truth, "the recorded series", generated, "the generated series");
  require_same_columns(truth, "the recorded series", points, "the points");
  LRSMC_REQUIRE(std::isfinite(kernel_std) && kernel_std > 0.0,
                "the kernel's standard deviation must be positive and finite; got ", kernel_std);
  std::vector<double> ratios(static_cast<std::size_t>(points.shape[0]));
  for (std::int64_t j = 0; j < points.shape[0]; ++j)
    ratios[std::size_t(j)] =
        log_ratio_at(points.data.data() + j * points.shape[1], truth, truth.shape[0], generated,
                     generated.shape[0], kernel_std, reference_float32);
  return ratios;
}

void validate(const StateSpaceOptions& options) {
  LRSMC_REQUIRE(options.samples >= 1 && options.samples <= 10000000,
                "D_stsp's samples must be between 1 and 10^7; got ", options.samples);
  LRSMC_REQUIRE(std::isfinite(options.kernel_std) && options.kernel_std > 0.0,
                "D_stsp's kernel standard deviation must be positive and finite; got ",
                options.kernel_std);
  LRSMC_REQUIRE(options.max_points >= 1, "D_stsp's max_points must be at least 1; got ",
                options.max_points);
}

void validate(const SpectrumOptions& options) {
  LRSMC_REQUIRE(std::isfinite(options.smoothing) && options.smoothing >= 0.0,
                "the spectrum's smoothing must be a finite σ ≥ 0; got ", options.smoothing);
}

StateSpaceDivergence state_space_divergence(const Array& truth, const Array& generated,
                                            const StateSpaceOptions& options) {
  require_recorded_and_generated(truth, generated);
  validate(options);
  const std::int64_t D = truth.shape[1];
  const std::int64_t truth_points = std::min(truth.shape[0], options.max_points);
  const std::int64_t generated_points = std::min(generated.shape[0], options.max_points);
  std::vector<double> ratios(static_cast<std::size_t>(options.samples));
  detail::BlockErrors errors(options.samples);
  // Each point's draws are addressed by its index: the result does not depend on threads.
#pragma omp parallel for schedule(dynamic, 8)
  for (int j = 0; j < options.samples; ++j) errors.run(j, [&] {
    const auto u = math::uniform(options.seed, 0, 0, std::uint32_t(j), math::DrawStream::evaluation, 0);
    const auto t = std::min(truth_points - 1, std::int64_t(u * double(truth_points)));
    std::vector<double> y(static_cast<std::size_t>(D));
    for (std::int64_t d = 0; d < D; ++d)
      y[std::size_t(d)] = truth.data[std::size_t(t * D + d)] +
                          options.kernel_std * math::standard_normal(options.seed, 0, 0, std::uint32_t(j),
                                                               math::DrawStream::evaluation,
                                                               std::uint32_t(4 + d));
    ratios[std::size_t(j)] = log_ratio_at(y.data(), truth, truth_points, generated,
                                          generated_points, options.kernel_std,
                                          options.reference_float32);
  });
  errors.rethrow();
  StateSpaceDivergence result;
  double sum = 0.0;
  for (const double r : ratios)
    if (!std::isnan(r)) {
      sum += r;
      ++result.samples_used;
    }
  result.value = result.samples_used > 0 ? sum / result.samples_used : nan;
  return result;
}

// ---- spectra ----------------------------------------------------------------------------------

std::vector<double> normalised_spectrum(const double* values, std::int64_t length,
                                        std::int64_t stride, double smoothing) {
  LRSMC_REQUIRE(length >= 2, "a power spectrum needs at least 2 steps; got ", length);
  LRSMC_REQUIRE(std::isfinite(smoothing) && smoothing >= 0.0,
                "the spectrum's smoothing must be a finite σ ≥ 0; got ", smoothing);
  // z-scored over every sample, then the last dropped when the length is odd (method.md §6.4).
  double mean = 0.0;
  for (std::int64_t t = 0; t < length; ++t) mean += values[t * stride];
  mean /= double(length);
  double variance = 0.0;
  for (std::int64_t t = 0; t < length; ++t)
    variance += (values[t * stride] - mean) * (values[t * stride] - mean);
  const double std_dev = std::sqrt(variance / double(length));
  const std::int64_t n = length - length % 2;
  std::vector<double> series(static_cast<std::size_t>(n));
  // A constant series has no spectrum: it stays zero (the reference divides by 0).
  for (std::int64_t t = 0; t < n; ++t)
    series[std::size_t(t)] = std_dev > 0.0 ? (values[t * stride] - mean) / std_dev : 0.0;
  Eigen::FFT<double> fft;
  fft.SetFlag(Eigen::FFT<double>::HalfSpectrum);
  std::vector<std::complex<double>> transform;
  fft.fwd(transform, series);
  const std::int64_t bins = n / 2 + 1;
  std::vector<double> power(static_cast<std::size_t>(bins));
  for (std::int64_t k = 0; k < bins; ++k)
    power[std::size_t(k)] = std::norm(transform[std::size_t(k)]) / double(n) * 2.0;  // "ortho"
  if (smoothing > 0.0) {
    // scipy.ndimage.gaussian_filter1d: radius int(4σ + 0.5), weights normalised to sum 1.
    const auto radius = std::int64_t(4.0 * smoothing + 0.5);
    std::vector<double> weights(static_cast<std::size_t>(2 * radius + 1));
    for (std::int64_t x = -radius; x <= radius; ++x)
      weights[std::size_t(x + radius)] = std::exp(-0.5 * double(x * x) / (smoothing * smoothing));
    const double total = sum_of(weights);
    for (double& w : weights) w /= total;
    power = filter_reflect(power.data(), bins, 1, weights);
  }
  for (double& p : power) p = std::max(p, 0.0);
  const double total = sum_of(power) + 1e-8;
  for (double& p : power) p /= total;
  return power;
}

SpectrumDistance power_spectrum_distance(const Array& truth, const Array& generated,
                                         const SpectrumOptions& options) {
  require_recorded_and_generated(truth, generated);
  validate(options);
  const std::int64_t D = truth.shape[1];
  // Bins [0, cutoff) in Python slice semantics.
  const auto cut = [&](std::int64_t bins) {
    const std::int64_t end = options.frequency_cutoff < 0 ? bins + options.frequency_cutoff
                                                          : options.frequency_cutoff;
    return std::clamp<std::int64_t>(end, 0, bins);
  };
  SpectrumDistance result;
  for (std::int64_t d = 0; d < D; ++d) {
    auto p_true = normalised_spectrum(truth.data.data() + d, truth.shape[0], D, options.smoothing);
    auto p_gen =
        normalised_spectrum(generated.data.data() + d, generated.shape[0], D, options.smoothing);
    p_true.resize(std::size_t(cut(std::int64_t(p_true.size()))));
    p_gen.resize(std::size_t(cut(std::int64_t(p_gen.size()))));
    LRSMC_REQUIRE(p_true.size() == p_gen.size() && !p_true.empty(),
                  "the spectra of the recorded (", truth.shape[0], " steps) and generated (",
                  generated.shape[0], " steps) series have ", p_true.size(), " and ",
                  p_gen.size(), " bins below the cutoff ", options.frequency_cutoff,
                  "; they must be equal and not empty");
    const double sum_true = sum_of(p_true), sum_gen = sum_of(p_gen);
    double squared = 0.0;
    for (std::size_t k = 0; k < p_true.size(); ++k) {
      const double a = sum_true > 0.0 ? std::sqrt(p_true[k] / sum_true) : 0.0;
      const double b = sum_gen > 0.0 ? std::sqrt(p_gen[k] / sum_gen) : 0.0;
      squared += (a - b) * (a - b);
    }
    result.per_dim.push_back(std::sqrt(squared) / std::sqrt(2.0));
  }
  result.value = sum_of(result.per_dim) / double(D);
  return result;
}

Array hann_smooth_and_standardise(const Array& series, int window) {
  require_series(series, "the series to smooth");
  LRSMC_REQUIRE(window >= 1 && window <= 100000 && window % 2 == 1,
                "the Hann window's length must be odd (centred on its step), 1 to 10^5; got ",
                window);
  // scipy.signal.windows.hann(window), symmetric: 0.5 − 0.5 cos(2πk/(window − 1)).
  std::vector<double> weights(std::size_t(window), 1.0);
  if (window > 1)
    for (int k = 0; k < window; ++k)
      weights[std::size_t(k)] = 0.5 - 0.5 * std::cos(2.0 * M_PI * k / (window - 1));
  const std::int64_t T = series.shape[0], D = series.shape[1];
  Array out({T, D});
  for (std::int64_t d = 0; d < D; ++d) {
    const auto smoothed = filter_reflect(series.data.data() + d, T, D, weights);
    const double mean = sum_of(smoothed) / double(T);
    double variance = 0.0;
    for (const double v : smoothed) variance += (v - mean) * (v - mean);
    const double std_dev = std::sqrt(variance / double(T));
    for (std::int64_t t = 0; t < T; ++t)
      out.data[std::size_t(t * D + d)] =
          std_dev > 0.0 ? (smoothed[std::size_t(t)] - mean) / std_dev : 0.0;
  }
  return out;
}

double mean_rate_error(const Array& truth, const Array& generated) {
  require_series(truth, "the recorded series");
  require_series(generated, "the generated series");
  LRSMC_REQUIRE(truth.shape == generated.shape, "the mean-rate error needs series of one shape; got ",
                truth.shape_string(), " recorded and ", generated.shape_string(), " generated");
  const std::int64_t T = truth.shape[0], D = truth.shape[1];
  double error = 0.0;
  for (std::int64_t d = 0; d < D; ++d) {
    double difference = 0.0;
    for (std::int64_t t = 0; t < T; ++t)
      difference += truth.data[std::size_t(t * D + d)] - generated.data[std::size_t(t * D + d)];
    error += difference * difference / double(T);
  }
  return error / double(D);
}

// ---- spike counts -----------------------------------------------------------------------------

namespace {

void require_counts(const Array& counts, const char* name, bool allow_nan) {
  LRSMC_REQUIRE(counts.ndim() == 3, name, " must be 3-D (trials, time, neurons); got shape ",
                counts.shape_string());
  LRSMC_REQUIRE(counts.size() > 0, name, " is empty (shape ", counts.shape_string(), ")");
  for (std::size_t i = 0; i < counts.data.size(); ++i) {
    const double v = counts.data[i];
    LRSMC_REQUIRE((allow_nan && std::isnan(v)) || (std::isfinite(v) && v >= 0.0), name,
                  " must hold finite values ≥ 0", allow_nan ? " (or NaN where missing)" : "",
                  "; got ", v, " at flat index ", i);
  }
}

double mean_of(const std::vector<double>& values) { return sum_of(values) / double(values.size()); }

double population_std(const std::vector<double>& values) {
  const double mean = mean_of(values);
  double variance = 0.0;
  for (const double v : values) variance += (v - mean) * (v - mean);
  return std::sqrt(variance / double(values.size()));
}

}  // namespace

SpikeStatistics spike_statistics(const Array& counts, double bin_seconds, int min_isis) {
  require_counts(counts, "the counts", false);
  LRSMC_REQUIRE(std::isfinite(bin_seconds) && bin_seconds > 0.0,
                "the bin width must be positive seconds; got ", bin_seconds);
  LRSMC_REQUIRE(min_isis >= 1, "min_isis must be at least 1; got ", min_isis);
  const std::int64_t B = counts.shape[0], T = counts.shape[1], N = counts.shape[2];
  const auto at = [&](std::int64_t b, std::int64_t t, std::int64_t n) {
    return counts.data[std::size_t((b * T + t) * N + n)];
  };
  SpikeStatistics stats;
  std::vector<std::vector<double>> columns(std::size_t(N), std::vector<double>(std::size_t(B * T)));
  for (std::int64_t n = 0; n < N; ++n) {
    std::vector<double> isis;
    for (std::int64_t b = 0; b < B; ++b) {
      std::int64_t last = -1;
      for (std::int64_t t = 0; t < T; ++t) {
        columns[std::size_t(n)][std::size_t(b * T + t)] = at(b, t, n);
        if (at(b, t, n) > 0.0) {
          if (last >= 0) isis.push_back(double(t - last) * bin_seconds);
          last = t;
        }
      }
    }
    stats.mean_rate.push_back(mean_of(columns[std::size_t(n)]) / bin_seconds);
    if (std::int64_t(isis.size()) < min_isis) {
      stats.mean_isi.push_back(nan);
      stats.isi_cv.push_back(nan);
    } else {
      const double mean = mean_of(isis), std_dev = population_std(isis);
      stats.mean_isi.push_back(mean);
      stats.isi_cv.push_back(std_dev > 0.0 ? std_dev / mean : nan);
    }
  }
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t j = i + 1; j < N; ++j)
      stats.pair_correlation.push_back(pearson(columns[std::size_t(i)], columns[std::size_t(j)]));
  return stats;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  LRSMC_REQUIRE(x.size() == y.size(), "a correlation needs vectors of one length; got ", x.size(),
                " and ", y.size());
  std::vector<double> a, b;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) {
      a.push_back(x[i]);
      b.push_back(y[i]);
    }
  if (a.size() < 2) return nan;
  const double mean_a = mean_of(a), mean_b = mean_of(b);
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - mean_a) * (b[i] - mean_b);
    saa += (a[i] - mean_a) * (a[i] - mean_a);
    sbb += (b[i] - mean_b) * (b[i] - mean_b);
  }
  if (saa <= 0.0 || sbb <= 0.0) return nan;
  return sab / std::sqrt(saa * sbb);
}

double bits_per_spike(const Array& rates, const Array& counts) {
  require_counts(counts, "the counts", true);
  LRSMC_REQUIRE(rates.shape == counts.shape, "the rates' shape ", rates.shape_string(),
                " differs from the counts' ", counts.shape_string());
  for (std::size_t i = 0; i < rates.data.size(); ++i)
    LRSMC_REQUIRE(std::isfinite(rates.data[i]) && rates.data[i] >= 0.0,
                  "the predicted rates must be finite and ≥ 0; got ", rates.data[i],
                  " at flat index ", i);
  const std::int64_t N = counts.shape[2];
  const auto cells = std::int64_t(counts.data.size()) / N;
  std::vector<double> null_sum(std::size_t(N), 0.0), null_count(std::size_t(N), 0.0);
  double spikes = 0.0;
  for (std::int64_t c = 0; c < cells; ++c)
    for (std::int64_t n = 0; n < N; ++n) {
      const double k = counts.data[std::size_t(c * N + n)];
      if (std::isnan(k)) continue;
      null_sum[std::size_t(n)] += k;
      null_count[std::size_t(n)] += 1.0;
      spikes += k;
    }
  LRSMC_REQUIRE(spikes > 0.0, "bits per spike needs at least one spike in the counts");
  const auto nll = [](double rate, double k) {
    const double r = rate == 0.0 ? 1e-9 : rate;
    return r - k * std::log(r);
  };
  double model = 0.0, null = 0.0;
  for (std::int64_t c = 0; c < cells; ++c)
    for (std::int64_t n = 0; n < N; ++n) {
      const double k = counts.data[std::size_t(c * N + n)];
      if (std::isnan(k)) continue;
      model += nll(rates.data[std::size_t(c * N + n)], k);
      null += nll(null_sum[std::size_t(n)] / null_count[std::size_t(n)], k);
    }
  return (null - model) / spikes / std::log(2.0);
}

double psth_r2(const Array& rates, const Array& counts, const std::vector<int>& conditions) {
  LRSMC_REQUIRE(counts.ndim() == 3 && counts.size() > 0,
                "the recorded activity must be 3-D (trials, time, channels) and not empty; got "
                "shape ", counts.shape_string());
  LRSMC_REQUIRE(rates.shape == counts.shape, "the rates' shape ", rates.shape_string(),
                " differs from the counts' ", counts.shape_string());
  for (std::size_t i = 0; i < counts.data.size(); ++i)
    LRSMC_REQUIRE(std::isfinite(counts.data[i]) && std::isfinite(rates.data[i]),
                  "PSTH R² needs finite values; got ", counts.data[i], " recorded and ",
                  rates.data[i], " predicted at flat index ", i);
  const std::int64_t B = counts.shape[0], T = counts.shape[1], N = counts.shape[2];
  LRSMC_REQUIRE(std::int64_t(conditions.size()) == B, "there are ", conditions.size(),
                " condition labels for ", B, " trials");
  std::map<int, std::vector<std::int64_t>> trials_of;
  for (std::int64_t b = 0; b < B; ++b) {
    LRSMC_REQUIRE(conditions[std::size_t(b)] >= 0, "condition labels must be ≥ 0; trial ", b,
                  " has ", conditions[std::size_t(b)]);
    trials_of[conditions[std::size_t(b)]].push_back(b);
  }
  double total = 0.0;
  for (std::int64_t n = 0; n < N; ++n) {
    std::vector<double> truth, predicted;
    for (const auto& [label, trials] : trials_of)
      for (std::int64_t t = 0; t < T; ++t) {
        double k = 0.0, r = 0.0;
        for (const std::int64_t b : trials) {
          k += counts.data[std::size_t((b * T + t) * N + n)];
          r += rates.data[std::size_t((b * T + t) * N + n)];
        }
        truth.push_back(k / double(trials.size()));
        predicted.push_back(r / double(trials.size()));
      }
    const double mean = mean_of(truth);
    double residual = 0.0, spread = 0.0;
    for (std::size_t i = 0; i < truth.size(); ++i) {
      residual += (truth[i] - predicted[i]) * (truth[i] - predicted[i]);
      spread += (truth[i] - mean) * (truth[i] - mean);
    }
    total += spread > 0.0 ? 1.0 - residual / spread : (residual == 0.0 ? 1.0 : 0.0);
  }
  return total / double(N);
}

double r2_variance_weighted(const Array& targets, const Array& predictions) {
  require_series(targets, "the targets");
  require_series(predictions, "the predictions");
  LRSMC_REQUIRE(targets.shape == predictions.shape, "the targets' shape ",
                targets.shape_string(), " differs from the predictions' ",
                predictions.shape_string());
  const std::int64_t S = targets.shape[0], Q = targets.shape[1];
  double residual = 0.0, spread = 0.0;
  for (std::int64_t q = 0; q < Q; ++q) {
    double mean = 0.0;
    for (std::int64_t s = 0; s < S; ++s) mean += targets.data[std::size_t(s * Q + q)];
    mean /= double(S);
    for (std::int64_t s = 0; s < S; ++s) {
      const double y = targets.data[std::size_t(s * Q + q)];
      const double e = y - predictions.data[std::size_t(s * Q + q)];
      residual += e * e;
      spread += (y - mean) * (y - mean);
    }
  }
  LRSMC_REQUIRE(spread > 0.0, "R² is undefined for constant targets");
  return 1.0 - residual / spread;
}

namespace {

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Matrix as_matrix(const Array& array) {
  return Eigen::Map<const Matrix>(array.data.data(), array.shape[0], array.shape[1]);
}

Array as_array(const Matrix& matrix) {
  return Array({matrix.rows(), matrix.cols()},
               std::vector<double>(matrix.data(), matrix.data() + matrix.size()));
}

/// Ridge with an intercept on centred data; (features + 1, outputs), intercept last.
Matrix fit_ridge(const Matrix& X, const Matrix& Y, double alpha) {
  const Eigen::RowVectorXd x_mean = X.colwise().mean(), y_mean = Y.colwise().mean();
  const Matrix Xc = X.rowwise() - x_mean, Yc = Y.rowwise() - y_mean;
  Matrix gram = Xc.transpose() * Xc;
  gram.diagonal().array() += alpha;
  const Matrix W = gram.ldlt().solve(Xc.transpose() * Yc);
  Matrix weights(X.cols() + 1, Y.cols());
  weights.topRows(X.cols()) = W;
  weights.bottomRows(1) = y_mean - x_mean * W;
  return weights;
}

Matrix predict(const Matrix& X, const Matrix& weights) {
  return (X * weights.topRows(X.cols())).rowwise() + weights.bottomRows(1).row(0);
}

}  // namespace

RidgeDecoding ridge_decoding(const Array& train_features, const Array& train_targets,
                             const Array& test_features, const Array& test_targets,
                             const std::vector<double>& alphas, int folds) {
  require_series(train_features, "the training features");
  require_series(train_targets, "the training targets");
  require_series(test_features, "the test features");
  require_series(test_targets, "the test targets");
  LRSMC_REQUIRE(train_features.shape[0] == train_targets.shape[0], "there are ",
                train_features.shape[0], " training feature rows and ", train_targets.shape[0],
                " target rows");
  LRSMC_REQUIRE(test_features.shape[0] == test_targets.shape[0], "there are ",
                test_features.shape[0], " test feature rows and ", test_targets.shape[0],
                " target rows");
  require_same_columns(train_features, "the training features", test_features,
                       "the test features");
  require_same_columns(train_targets, "the training targets", test_targets, "the test targets");
  LRSMC_REQUIRE(folds >= 2 && folds <= train_features.shape[0], "folds must be 2 to the ",
                train_features.shape[0], " training rows; got ", folds);
  std::vector<double> grid = alphas;
  if (grid.empty())
    for (int e = -4; e <= 4; ++e) grid.push_back(std::pow(10.0, e));
  for (const double alpha : grid)
    LRSMC_REQUIRE(std::isfinite(alpha) && alpha >= 0.0, "ridge penalties must be finite and ≥ 0; got ",
                  alpha);
  const Matrix X = as_matrix(train_features), Y = as_matrix(train_targets);
  const std::int64_t n = X.rows();
  RidgeDecoding result;
  double best = -std::numeric_limits<double>::infinity();
  for (const double alpha : grid) {
    // Contiguous folds: neighbouring bins of a time series stay together.
    double residual = 0.0, spread = 0.0;
    for (int f = 0; f < folds; ++f) {
      const std::int64_t begin = n * f / folds, end = n * (f + 1) / folds;
      Matrix X_fit(n - (end - begin), X.cols()), Y_fit(n - (end - begin), Y.cols());
      X_fit << X.topRows(begin), X.bottomRows(n - end);
      Y_fit << Y.topRows(begin), Y.bottomRows(n - end);
      const Matrix held_out = Y.middleRows(begin, end - begin);
      const Matrix error = held_out - predict(X.middleRows(begin, end - begin), fit_ridge(X_fit, Y_fit, alpha));
      residual += error.squaredNorm();
      spread += (held_out.rowwise() - held_out.colwise().mean()).squaredNorm();
    }
    const double score = spread > 0.0 ? 1.0 - residual / spread : -residual;
    if (score > best) {
      best = score;
      result.alpha = alpha;
    }
  }
  const Matrix weights = fit_ridge(X, Y, result.alpha);
  result.weights = as_array(weights);
  result.r2 = r2_variance_weighted(test_targets, as_array(predict(as_matrix(test_features), weights)));
  return result;
}

}  // namespace lrsmc::metrics
