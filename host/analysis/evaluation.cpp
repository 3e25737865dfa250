// Evaluation of a fitted model on a recording; see lrsmc/evaluation.hpp.
#include "lrsmc/evaluation.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "lrsmc/errors.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/smoother.hpp"

namespace lrsmc {
namespace {

using math::DrawStream;

/// Steps [first, first + count) of every trial of (trials, all_steps, width) values.
std::vector<double> steps_of(const std::vector<double>& values, int trials, int all_steps,
                             int first, int count, int width) {
  std::vector<double> kept;
  kept.reserve(std::size_t(trials) * std::size_t(count) * std::size_t(width));
  for (int trial = 0; trial < trials; ++trial) {
    const auto begin =
        values.begin() + std::ptrdiff_t((std::size_t(trial) * all_steps + first) * width);
    kept.insert(kept.end(), begin, begin + std::ptrdiff_t(std::size_t(count) * width));
  }
  return kept;
}

/// Gaussian noise with the mean and covariance of the rows of `series` (a symmetric square root
/// of the covariance, so a singular covariance is fine), drawn on the evaluation stream at
/// trial address `address`.
Array gaussian_like(const Array& series, std::uint64_t seed, std::uint32_t address) {
  const std::int64_t T = series.shape[0], D = series.shape[1];
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Matrix> X(series.data.data(), T, D);
  const Eigen::RowVectorXd mean = X.colwise().mean();
  const Matrix centred = X.rowwise() - mean;
  const Eigen::MatrixXd covariance = centred.transpose() * centred / double(T);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(covariance);
  const Eigen::MatrixXd root = eigen.eigenvectors() *
                               eigen.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() *
                               eigen.eigenvectors().transpose();
  Array noise({T, D});
  Eigen::VectorXd xi(D);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t d = 0; d < D; ++d)
      xi(d) = math::standard_normal(seed, address, std::uint32_t(t), 0, DrawStream::evaluation,
                                    std::uint32_t(d));
    const Eigen::VectorXd row = mean.transpose() + root * xi;
    for (std::int64_t d = 0; d < D; ++d) noise.data[std::size_t(t * D + d)] = row(d);
  }
  return noise;
}

/// Each column of (trials, steps, neurons) counts permuted on its own over all its bins
/// (Fisher–Yates on evaluation-stream uniforms at trial address `address`).
Array shuffled_columns(const Array& counts, std::uint64_t seed, std::uint32_t address) {
  const std::int64_t N = counts.shape[2], cells = counts.shape[0] * counts.shape[1];
  Array out = counts;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t i = cells - 1; i > 0; --i) {
      const double u = math::uniform(seed, address, std::uint32_t(n), std::uint32_t(i),
                                     DrawStream::evaluation, 0);
      const auto j = std::min(i, std::int64_t(u * double(i + 1)));
      std::swap(out.data[std::size_t(i * N + n)], out.data[std::size_t(j * N + n)]);
    }
  return out;
}

struct CountScores {
  double mean_rate_r, mean_isi_r, pair_correlation_r, mean_rate_error;
};

CountScores count_scores(const metrics::SpikeStatistics& truth, const Array& recorded,
                         const Array& generated, double bin_seconds) {
  const metrics::SpikeStatistics stats = metrics::spike_statistics(generated, bin_seconds);
  const std::int64_t D = recorded.shape[2], rows = recorded.shape[0] * recorded.shape[1];
  return {metrics::pearson(truth.mean_rate, stats.mean_rate),
          metrics::pearson(truth.mean_isi, stats.mean_isi),
          metrics::pearson(truth.pair_correlation, stats.pair_correlation),
          metrics::mean_rate_error(Array({rows, D}, recorded.data), Array({rows, D}, generated.data))};
}

/// `score()`, or NaN with the reason kept in `metric.note` where the measure is undefined for
/// this data (InvalidInput: no spikes, constant targets).
template <typename Score>
double guarded(MetricValues& metric, const Score& score) {
  try {
    return score();
  } catch (const InvalidInput& error) {
    if (metric.note.empty()) metric.note = error.what();
    return std::numeric_limits<double>::quiet_NaN();
  }
}

}  // namespace

double median(std::vector<double> values) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }),
               values.end());
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double median_absolute_deviation(const std::vector<double>& values) {
  const double centre = median(values);
  std::vector<double> deviations;
  for (const double v : values)
    if (!std::isnan(v)) deviations.push_back(std::fabs(v - centre));
  return median(deviations);
}

Evaluation evaluate(Backend& backend, const Model& model, const Dataset& data,
                    const EvaluationOptions& options) {
  const ModelConfig& config = model.config;
  LRSMC_REQUIRE(options.repeats >= 1 && options.repeats <= 10000,
                "repeats must be 1 to 10000; got ", options.repeats);
  LRSMC_REQUIRE(options.burn_in >= 0 && options.burn_in <= 10'000'000,
                "the burn-in must be 0 to 10^7 steps; got ", options.burn_in);
  LRSMC_REQUIRE(options.max_steps >= 2, "max_steps must be at least 2; got ", options.max_steps);
  LRSMC_REQUIRE(options.trajectories >= 1 && options.trajectories <= 100000,
                "trajectories must be 1 to 100000; got ", options.trajectories);
  LRSMC_REQUIRE(options.hann_window >= 0 && options.hann_window <= 100000 &&
                    (options.hann_window == 0 || options.hann_window % 2 == 1),
                "the Hann window must be 0 (none) or odd, up to 10^5 steps; got ",
                options.hann_window);
  LRSMC_REQUIRE(std::isfinite(options.bin_seconds) && options.bin_seconds > 0.0,
                "the bin width must be positive seconds; got ", options.bin_seconds);
  metrics::validate(options.state_space);
  metrics::validate(options.spectrum);
  LRSMC_REQUIRE(data.num_channels == config.num_channels && data.num_inputs == config.num_inputs,
                data.source, " has ", data.num_channels, " channels and ", data.num_inputs,
                " inputs; the model expects ", config.num_channels, " and ", config.num_inputs);
  LRSMC_REQUIRE(data.num_steps >= 2, data.source, " has ", data.num_steps,
                " steps per trial; evaluation needs at least 2");
  LRSMC_REQUIRE(!data.has_missing(), data.source,
                " has missing values (NaN); evaluation scores complete recordings: to score the "
                "predictions of channels the posterior does not see, give the complete recording "
                "and hold them out (--held-out-channels)");
  const int B = data.num_trials, S = data.num_steps, D = config.num_channels,
            R = config.rank, U = config.num_inputs;
  const int T = std::min(S, options.max_steps);
  std::vector<bool> held_out(std::size_t(D), false);
  for (const int channel : options.held_out_channels) {
    LRSMC_REQUIRE(channel >= 0 && channel < D, "held-out channel ", channel,
                  " is out of range; expected 0 to ", D - 1);
    LRSMC_REQUIRE(!held_out[std::size_t(channel)], "held-out channel ", channel,
                  " is listed twice");
    held_out[std::size_t(channel)] = true;
  }
  const int H = int(options.held_out_channels.size());
  const int F = options.forward_steps;
  LRSMC_REQUIRE(F >= 0 && F <= T - 2, "forward steps must be 0 to ", T - 2,
                " (at least two steps before them); got ", F);
  LRSMC_REQUIRE(options.conditions.empty() || int(options.conditions.size()) == B, "there are ",
                options.conditions.size(), " condition labels for ", B, " trials");
  const int Q = options.behaviour_dims;
  LRSMC_REQUIRE(options.behaviour.empty() ||
                    (Q >= 1 && options.behaviour.size() == std::size_t(B) * S * std::size_t(Q)),
                "the behaviour has ", options.behaviour.size(), " values; expected ", B,
                " trials × ", S, " steps × ", Q, " dimensions");
  LRSMC_REQUIRE(options.behaviour.empty() || B >= 2,
                "decoding the behaviour needs at least 2 trials (training and test); got ", B);
  LRSMC_REQUIRE(H < D, "every channel is held out; the posterior needs at least one");
  LRSMC_REQUIRE(H == 0 || (options.filter.proposal != Proposal::optimal &&
                           options.filter.proposal != Proposal::encoder),
                "held-out channels need the bootstrap proposal: the ",
                to_string(options.filter.proposal),
                " proposal needs every observation, and the held-out ones are hidden from it");
  // The posterior's view of the recording: the held-out channels missing.
  Dataset seen = data;
  if (H > 0) {
    seen.allow_missing = true;
    for (std::size_t i = 0; i < seen.observations.size(); ++i)
      if (held_out[i % std::size_t(D)]) seen.observations[i] = std::nan("");
  }
  const auto columns = [&](const std::vector<double>& values, bool of_held_out) {
    std::vector<double> kept;  // (cells, channels) → (cells, chosen channels)
    for (std::size_t i = 0; i < values.size(); ++i)
      if (held_out[i % std::size_t(D)] == of_held_out) kept.push_back(values[i]);
    return kept;
  };
  const int M = std::max(options.repeats, options.trajectories);
  const bool counts = config.observation == Observation::poisson;

  Evaluation result;
  result.trials = B;
  result.steps = T;
  result.channels = D;
  const SmoothResult smoothed =
      smooth(backend, model, trials_batch(seen, 0, B), options.filter, options.seed, M);
  result.elbo = smoothed.elbo;
  const auto trajectory_state = [&](int trial, int m, int step, int r) {
    return smoothed.trajectories[((std::size_t(trial) * M + m) * S + step) * R + r];
  };

  const std::vector<double> recorded_values = steps_of(data.observations, B, S, 0, T, D);
  const std::vector<double> recorded_inputs =
      U > 0 ? steps_of(data.inputs, B, S, 0, T, U) : std::vector<double>{};
  // Inputs of the generated sequences: zeros during the burn-in, then the trial's.
  std::vector<double> generation_inputs;
  if (U > 0)
    for (int trial = 0; trial < B; ++trial) {
      generation_inputs.insert(generation_inputs.end(), std::size_t(options.burn_in) * U, 0.0);
      const auto begin = recorded_inputs.begin() + std::ptrdiff_t(std::size_t(trial) * T * U);
      generation_inputs.insert(generation_inputs.end(), begin,
                               begin + std::ptrdiff_t(std::size_t(T) * U));
    }

  const Array recorded_series({std::int64_t(B) * T, D}, recorded_values);
  const Array recorded_counts({B, T, D}, recorded_values);
  const metrics::SpikeStatistics recorded_stats =
      counts ? metrics::spike_statistics(recorded_counts, options.bin_seconds)
             : metrics::SpikeStatistics{};
  const auto processed = [&](Array series) {
    return options.hann_window > 0 ? metrics::hann_smooth_and_standardise(series, options.hann_window)
                                   : series;
  };

  std::vector<MetricValues> measures;
  const auto add = [&](const std::string& name, const std::string& description,
                       const std::string& baseline) -> MetricValues& {
    measures.push_back({name, description, {}, baseline, {}, {}});
    return measures.back();
  };
  if (!counts) {
    const std::string noise = "Gaussian noise with the recording's mean and covariance";
    add("d_stsp", "state-space divergence (KL of Gaussian-kernel densities, log space); lower is "
                  "better", noise);
    add("d_stsp_reference_float32",
        "D_stsp in the reference's float32 linear-space arithmetic (points that underflow are "
        "dropped), for comparison with published numbers; lower is better", noise);
    add("d_h", "power-spectrum Hellinger distance, mean over channels; 0 to 1, lower is better",
        noise);
    add("mean_rate_error", "mean over channels of T·(difference of the means)²; lower is better",
        noise);
  } else {
    const std::string shuffled = "each neuron's recorded counts shuffled over all bins";
    add("mean_rate_r", "Pearson r across neurons of mean rates, recorded vs generated; higher is "
                       "better", shuffled);
    add("mean_isi_r", "Pearson r across neurons of mean inter-spike intervals; higher is better",
        shuffled);
    add("pair_correlation_r",
        "Pearson r across neuron pairs of the pairwise count correlations; higher is better",
        shuffled);
    add("mean_rate_error", "mean over neurons of T·(difference of the mean counts)²; lower is "
                           "better", shuffled);
  }

  std::vector<double> initial_states(std::size_t(B) * R);
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    for (int trial = 0; trial < B; ++trial)
      for (int r = 0; r < R; ++r)
        initial_states[std::size_t(trial) * R + r] = trajectory_state(trial, repeat, 0, r);
    const SampleResult drawn =
        backend.sample(model, B, options.burn_in + T, generation_inputs,
                       options.seed + 1 + std::uint64_t(repeat), 0, initial_states);
    const std::vector<double> generated =
        steps_of(drawn.observations, B, options.burn_in + T, options.burn_in, T, D);
    const auto address = std::uint32_t(1 + repeat);  // trial address of the baseline's draws
    if (!counts) {
      const Array model_series = processed(Array({std::int64_t(B) * T, D}, generated));
      const Array noise_series = processed(gaussian_like(recorded_series, options.seed, address));
      metrics::StateSpaceOptions state_space = options.state_space;
      state_space.seed = options.seed + std::uint64_t(repeat);
      for (const bool reference : {false, true}) {
        state_space.reference_float32 = reference;
        MetricValues& measure = measures[reference ? 1 : 0];
        measure.values.push_back(
            metrics::state_space_divergence(recorded_series, model_series, state_space).value);
        measure.baseline_values.push_back(
            metrics::state_space_divergence(recorded_series, noise_series, state_space).value);
      }
      measures[2].values.push_back(
          metrics::power_spectrum_distance(recorded_series, model_series, options.spectrum).value);
      measures[2].baseline_values.push_back(
          metrics::power_spectrum_distance(recorded_series, noise_series, options.spectrum).value);
      measures[3].values.push_back(metrics::mean_rate_error(recorded_series, model_series));
      measures[3].baseline_values.push_back(metrics::mean_rate_error(recorded_series, noise_series));
    } else {
      const CountScores scores = count_scores(recorded_stats, recorded_counts,
                                              Array({B, T, D}, generated), options.bin_seconds);
      const CountScores shuffled =
          count_scores(recorded_stats, recorded_counts,
                       shuffled_columns(recorded_counts, options.seed, address),
                       options.bin_seconds);
      const double CountScores::*fields[] = {&CountScores::mean_rate_r, &CountScores::mean_isi_r,
                                             &CountScores::pair_correlation_r,
                                             &CountScores::mean_rate_error};
      for (std::size_t i = 0; i < 4; ++i) {
        measures[i].values.push_back(scores.*fields[i]);
        measures[i].baseline_values.push_back(shuffled.*fields[i]);
      }
    }
  }

  if (counts || H > 0 || !options.conditions.empty()) {
    // Smoothed rates: the mean over the M trajectories of the read-out's means.
    std::vector<double> rates(std::size_t(B) * S * D, 0.0), latents(std::size_t(B) * S * R);
    for (int m = 0; m < M; ++m) {
      for (int trial = 0; trial < B; ++trial)
        for (int step = 0; step < S; ++step)
          for (int r = 0; r < R; ++r)
            latents[(std::size_t(trial) * S + step) * R + r] = trajectory_state(trial, m, step, r);
      const std::vector<double> means = observation_means(model, B, S, latents, data.inputs);
      for (std::size_t i = 0; i < rates.size(); ++i) rates[i] += means[i] / M;
    }
    const std::vector<double> predicted = steps_of(rates, B, S, 0, T, D);
    const int kept = D - H;
    if (counts) {
      MetricValues& bits = add(
          "bits_per_spike_smoothed",
          "Poisson log-likelihood gain of the smoothed rates over each neuron's mean rate, bits "
          "per spike, on the neurons that drive the posterior; higher is better",
          "each neuron's mean rate");
      bits.values.push_back(guarded(bits, [&] {
        return metrics::bits_per_spike(Array({B, T, kept}, columns(predicted, false)),
                                       Array({B, T, kept}, columns(recorded_values, false)));
      }));
      bits.baseline_values.push_back(0.0);
    }
    if (counts && H > 0) {
      MetricValues& co = add("co_bps",
                             "co-smoothing: bits per spike of the held-out neurons' smoothed rates, "
                             "predicted from the other neurons; higher is better",
                             "each held-out neuron's mean rate");
      co.values.push_back(guarded(co, [&] {
        return metrics::bits_per_spike(Array({B, T, H}, columns(predicted, true)),
                                       Array({B, T, H}, columns(recorded_values, true)));
      }));
      co.baseline_values.push_back(0.0);
    } else if (H > 0) {
      MetricValues& r2 = add("held_out_r2",
                             "R² (variance weighted) of the held-out channels' smoothed means, "
                             "predicted from the other channels; higher is better",
                             "each held-out channel's mean");
      r2.values.push_back(guarded(r2, [&] {
        return metrics::r2_variance_weighted(
            Array({std::int64_t(B) * T, H}, columns(recorded_values, true)),
            Array({std::int64_t(B) * T, H}, columns(predicted, true)));
      }));
      r2.baseline_values.push_back(0.0);
    }
    if (!options.conditions.empty()) {
      MetricValues& psth = add(
          "psth_r2",
          "R² of the condition-averaged smoothed predictions against the recorded condition "
          "averages (PSTHs), mean over channels; higher is better",
          "each channel's mean over every trial and step");
      psth.values.push_back(metrics::psth_r2(Array({B, T, D}, predicted), recorded_counts,
                                             options.conditions));
      std::vector<double> means(std::size_t(D), 0.0);
      for (std::size_t i = 0; i < recorded_values.size(); ++i)
        means[i % std::size_t(D)] += recorded_values[i] / (double(B) * T);
      std::vector<double> flat(recorded_values.size());
      for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = means[i % std::size_t(D)];
      psth.baseline_values.push_back(
          metrics::psth_r2(Array({B, T, D}, flat), recorded_counts, options.conditions));
    }
  }
  if (!options.behaviour.empty()) {
    // Ridge from the smoothed latent means, fitted on the first 70 % of the trials.
    const int train = std::clamp(B * 7 / 10, 1, B - 1);
    const auto rows = [&](const std::vector<double>& values, int width, int first, int count) {
      std::vector<double> kept;
      for (int trial = first; trial < first + count; ++trial)
        for (int step = 0; step < T; ++step)
          for (int i = 0; i < width; ++i)
            kept.push_back(values[(std::size_t(trial) * S + step) * width + i]);
      return Array({std::int64_t(count) * T, width}, kept);
    };
    const auto decode = [&](const std::vector<double>& features, int width) {
      return metrics::ridge_decoding(rows(features, width, 0, train),
                                     rows(options.behaviour, Q, 0, train),
                                     rows(features, width, train, B - train),
                                     rows(options.behaviour, Q, train, B - train))
          .r2;
    };
    MetricValues& decoding = add(
        "decoding_r2",
        "R² (variance weighted) of the behaviour on the last 30 % of the trials, decoded by ridge "
        "regression from the smoothed latent means fitted on the first 70 %; higher is better",
        "the same regression from the recorded channels");
    decoding.values.push_back(guarded(decoding, [&] { return decode(smoothed.smoothed_mean, R); }));
    // The channels the posterior sees.
    decoding.baseline_values.push_back(
        guarded(decoding, [&] { return decode(columns(data.observations, false), D - H); }));
  }
  if (F > 0) {
    // The posterior of the steps before the forecast, carried forward by the dynamics.
    const int P = T - F;
    SequenceBatch past = trials_batch(seen, 0, B);
    past.num_steps = P;
    past.observations = steps_of(seen.observations, B, S, 0, P, D);
    if (U > 0) past.inputs = steps_of(data.inputs, B, S, 0, P, U);
    const SmoothResult before = smooth(backend, model, past, options.filter, options.seed, M);
    const std::vector<double> forward_inputs =  // steps [P − 1, T) of each trial
        U > 0 ? steps_of(data.inputs, B, S, P - 1, F + 1, U) : std::vector<double>{};
    std::vector<double> forecast(std::size_t(B) * F * D, 0.0);
    for (int m = 0; m < M; ++m) {
      for (int trial = 0; trial < B; ++trial)
        for (int r = 0; r < R; ++r)
          initial_states[std::size_t(trial) * R + r] =
              before.trajectories[((std::size_t(trial) * M + m) * P + (P - 1)) * R + r];
      const SampleResult drawn =
          backend.sample(model, B, F + 1, forward_inputs,
                         options.seed + 1 + std::uint64_t(options.repeats) + std::uint64_t(m), 0,
                         initial_states);
      const std::vector<double> later = steps_of(drawn.rates, B, F + 1, 1, F, D);
      for (std::size_t i = 0; i < forecast.size(); ++i) forecast[i] += later[i] / M;
    }
    const std::vector<double> recorded_forward = steps_of(recorded_values, B, T, P, F, D);
    if (counts) {
      MetricValues& fp = add("fp_bps",
                             "forward prediction: bits per spike of the last steps' rates predicted "
                             "from the steps before them; higher is better",
                             "each neuron's mean rate over those steps");
      fp.values.push_back(guarded(fp, [&] {
        return metrics::bits_per_spike(Array({B, F, D}, forecast),
                                       Array({B, F, D}, recorded_forward));
      }));
      fp.baseline_values.push_back(0.0);
    } else {
      MetricValues& fr = add("forward_r2",
                             "forward prediction: R² (variance weighted) of the last steps' means "
                             "predicted from the steps before them; higher is better",
                             "each channel's mean over those steps");
      fr.values.push_back(guarded(fr, [&] {
        return metrics::r2_variance_weighted(Array({std::int64_t(B) * F, D}, recorded_forward),
                                             Array({std::int64_t(B) * F, D}, forecast));
      }));
      fr.baseline_values.push_back(0.0);
    }
  }
  result.metrics = std::move(measures);
  return result;
}

}  // namespace lrsmc
