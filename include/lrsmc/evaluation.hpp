// Judging a fitted model on a recording the way the paper does (method.md §6.1–6.6): the
// held-out ELBO, data generated from posterior starts scored against the recording, and a
// baseline beside every number so that it can be read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/metrics.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc {

struct EvaluationOptions {
  /// The filter of the ELBO and of the posterior that starts the generated data (its particle
  /// count and proposal).
  FilterOptions filter;
  /// Generated data sets, each scored on its own (the paper's EEG table: 20).
  int repeats = 1;
  /// Steps generated and dropped after each posterior start (the paper's EEG table: 2400).
  int burn_in = 0;
  /// Each recorded trial is scored on its first min(steps, max_steps) steps.
  int max_steps = 10000;
  /// Backward-simulation trajectories per trial whose mean gives the smoothed rates of count
  /// data (bits per spike); at least `repeats` are drawn.
  int trajectories = 20;
  /// Hann window applied to generated continuous data before it is scored, then z-scored
  /// (method.md §6.2, the paper's EEG pipeline uses 15); 0 scores the draws as they are.
  int hann_window = 0;
  metrics::StateSpaceOptions state_space;  ///< its seed is replaced per repeat
  metrics::SpectrumOptions spectrum;
  double bin_seconds = 1.0;  ///< bin width of count data: rates in spikes per second
  /// Channels the posterior does not see (treated as missing in the filter and smoother) whose
  /// smoothed predictions are scored: co-smoothing. Needs the bootstrap proposal.
  std::vector<int> held_out_channels;
  /// Forward prediction: the last forward_steps steps of each trial are predicted from the
  /// posterior of the steps before them (filter and smoother over those alone; `trajectories`
  /// draws carried forward by the dynamics), scored as `fp_bps` (counts) or `forward_r2`.
  int forward_steps = 0;
  /// One condition label (≥ 0) per trial, or empty: `psth_r2` of the smoothed predictions.
  std::vector<int> conditions;
  /// A behavioural variable (trials, steps, behaviour_dims), or empty: `decoding_r2`, ridge
  /// regression from the smoothed latent means, fitted on the first 70 % of the trials and
  /// scored on the rest, beside the same regression from the recorded channels.
  std::vector<double> behaviour;
  int behaviour_dims = 0;
  std::uint64_t seed = 0;
};

/// One measure over the repeats, and the same measure for a baseline in place of the model.
struct MetricValues {
  std::string name;         ///< e.g. "d_stsp"
  std::string description;  ///< one sentence: what it is, which way is better
  std::vector<double> values;  ///< one per repeat (one value for measures of the posterior)
  std::string baseline;        ///< what stands in for the model
  std::vector<double> baseline_values;
  /// Why a value is NaN where the measure is undefined for this data (no spikes among the
  /// scored neurons, constant targets), or empty.
  std::string note;
};

struct Evaluation {
  double elbo = 0.0;  ///< per step, mean over trials, with options.filter
  int trials = 0, steps = 0, channels = 0;
  std::vector<MetricValues> metrics;
};

/// Evaluates `model` on `data` (trials, steps, channels with its inputs, if any) on `backend`.
/// Every trial is filtered and smoothed (lrsmc::smooth); generated data set r starts each
/// trial at smoother trajectory r's first state (the smoothing posterior at step 0), runs
/// burn_in + steps steps under the trial's inputs (zeros during the burn-in) and keeps the
/// observation draws after the burn-in. Continuous data (Gaussian read-out), trials
/// concatenated: D_stsp in log space and in the reference's float32, D_H and the mean-rate
/// error, against Gaussian noise with the recording's mean and covariance. Counts (Poisson):
/// Pearson r across neurons of mean rate, mean ISI and pairwise correlation (recorded vs
/// generated), the mean-rate error, against each neuron's counts shuffled independently over
/// all bins; and the bits per spike of the smoothed rates against each neuron's mean rate.
/// With held-out channels the posterior sees the other channels only, and their smoothed
/// predictions are scored: `co_bps` (counts: bits per spike against each neuron's mean rate,
/// as the Neural Latents Benchmark scores co-smoothing) or `held_out_r2` (continuous: R² of the
/// smoothed means, variance weighted, against the channels' means); the smoothed bits per spike
/// is then over the held-in channels. forward_steps, conditions and behaviour add their
/// measures (see their fields). Throws InvalidInput for absurd options.
[[nodiscard]] Evaluation evaluate(Backend& backend, const Model& model, const Dataset& data,
                                  const EvaluationOptions& options);

/// The median of `values` (NaN left out; NaN when none is left).
[[nodiscard]] double median(std::vector<double> values);
/// The median absolute deviation from the median (unscaled), NaN left out.
[[nodiscard]] double median_absolute_deviation(const std::vector<double>& values);

}  // namespace lrsmc
