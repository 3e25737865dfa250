// The paper's measures of a fit (method.md §6): how close generated data is to a recording in
// state space (D_stsp) and in its power spectra (D_H), the mean-rate error, spike statistics,
// Poisson bits per spike of predicted rates, PSTH R² and ridge decoding of a behavioural
// variable. Each takes plain arrays, so that any generated or predicted data can be scored.
//
// Layouts: a "series" is (time, dims), several trials being concatenated in time as the
// reference does before it scores; "counts" and "rates" are (trials, time, neurons).
#pragma once

#include <cstdint>
#include <vector>

#include "lrsmc/array.hpp"

namespace lrsmc::metrics {

// ---- state space and spectra -------------------------------------------------------------------

struct StateSpaceOptions {
  int samples = 1000;            ///< Monte-Carlo points y_j
  double kernel_std = 1.0;       ///< s, the Gaussian kernel's standard deviation
  std::int64_t max_points = 10000;  ///< the first min(rows, max_points) rows of each set are used
  std::uint64_t seed = 0;
  /// The reference's arithmetic: densities in linear space in float32, points where either
  /// density underflows to 0 dropped. Off: log-sum-exp in float64, nothing dropped.
  bool reference_float32 = false;
};

/// Throws InvalidInput for samples outside 1 … 10^7, a kernel std that is not positive and
/// finite, max_points < 1.
void validate(const StateSpaceOptions& options);

struct StateSpaceDivergence {
  double value = 0.0;   ///< mean_j [ln p_true(y_j) − ln p_gen(y_j)] ≈ KL(p_true ‖ p_gen)
  int samples_used = 0;  ///< points left after dropping underflows (reference_float32 only)
};

/// D_stsp (method.md §6.3): Gaussian kernel density estimates of both point sets (each from its
/// first min(rows, max_points) rows), compared at points drawn from the truth's estimate. Throws InvalidInput for arrays that are not 2-D with the same
/// number of columns, for empty sets, non-finite values or absurd options. value is NaN when
/// every point underflowed (reference_float32).
[[nodiscard]] StateSpaceDivergence state_space_divergence(const Array& truth, const Array& generated,
                                                          const StateSpaceOptions& options = {});

/// ln p(y) − ln p'(y) of the two kernel density estimates at given points (rows of `points`):
/// the quantity D_stsp averages, exposed so that its arithmetic can be checked point by point.
/// NaN where reference_float32 and either density underflows.
[[nodiscard]] std::vector<double> log_density_ratio(const Array& truth, const Array& generated,
                                                    const Array& points, double kernel_std,
                                                    bool reference_float32);

struct SpectrumOptions {
  double smoothing = 20.0;  ///< σ of the Gaussian filter along frequency, in bins (0: none)
  /// Bins [0, cutoff) are kept, Python slice semantics: −1 drops the last bin (EEG), a value
  /// beyond the spectrum keeps every bin.
  std::int64_t frequency_cutoff = 10000;
};

/// Throws InvalidInput for a smoothing σ that is negative or not finite.
void validate(const SpectrumOptions& options);

struct SpectrumDistance {
  double value = 0.0;               ///< D_H: mean over dims of the Hellinger distances
  std::vector<double> per_dim;      ///< H_d
};

/// D_H (method.md §6.4): per column, the z-scored series' power spectrum (|rfft|² of an even
/// length: an odd series drops its last sample after z-scoring), Gaussian-smoothed along frequency (reflect boundary, truncated at 4σ), clipped at
/// 0, normalised, cut, renormalised; H_d = ‖√P_gen − √P_true‖₂ / √2. Both series need the same
/// columns; their lengths may differ only when the cut spectra have the same number of bins.
[[nodiscard]] SpectrumDistance power_spectrum_distance(const Array& truth, const Array& generated,
                                                       const SpectrumOptions& options = {});

/// The normalised smoothed spectrum of one series before cutting (steps 1–3 of §6.4): exposed
/// for plots and tests. `values` has `length` entries with `stride` between them.
[[nodiscard]] std::vector<double> normalised_spectrum(const double* values, std::int64_t length,
                                                      std::int64_t stride, double smoothing);

/// The reference's smoothing of generated data before it is scored (method.md §6.2): each
/// column convolved with an unnormalised symmetric Hann window of `window` points, odd so that
/// it is centred (reflect boundary), then z-scored (population standard deviation; a constant
/// column becomes 0).
[[nodiscard]] Array hann_smooth_and_standardise(const Array& series, int window = 15);

/// Mean-rate error (method.md §6.5): mean over dims of (Σ_t x_true − Σ_t x_gen)² / T. Both
/// series must have the same shape.
[[nodiscard]] double mean_rate_error(const Array& truth, const Array& generated);

// ---- spike counts -----------------------------------------------------------------------------

struct SpikeStatistics {
  std::vector<double> mean_rate;    ///< per neuron, spikes per second (count per bin / bin)
  std::vector<double> mean_isi;     ///< per neuron, seconds; NaN with fewer than min_isis ISIs
  std::vector<double> isi_cv;       ///< std / mean of the ISIs; NaN as mean_isi or zero std
  /// Pearson correlations of neuron pairs (i < j, row by row) over all bins; NaN for a
  /// neuron that never changes.
  std::vector<double> pair_correlation;
};

/// Statistics of counts (trials, time, neurons) with bins of `bin_seconds` (method.md §6.6):
/// ISIs are differences of the bin indices with a nonzero count within each trial, times the
/// bin (a bin with several spikes is one spike time), concatenated over trials.
[[nodiscard]] SpikeStatistics spike_statistics(const Array& counts, double bin_seconds,
                                               int min_isis = 2);

/// Pearson correlation of two equally long vectors over the entries where both are finite;
/// NaN with fewer than two such entries or no variance.
[[nodiscard]] double pearson(const std::vector<double>& x, const std::vector<double>& y);

/// Poisson bits per spike of predicted rates (expected counts per bin) against counts, both
/// (trials, time, neurons), as nlb_tools computes co-bps and fp-bps: the log-likelihood gain
/// over each neuron's mean count, per spike, in bits. Entries where the count is NaN are left
/// out; a zero rate counts as 1e-9. Throws InvalidInput for shape mismatches, negative or NaN
/// rates and recordings without spikes.
[[nodiscard]] double bits_per_spike(const Array& rates, const Array& counts);

/// R² of condition-averaged predicted rates against the recorded PSTHs: per condition (label
/// per trial, ≥ 0) the mean over its trials, every (condition, time) a sample, R² per neuron,
/// averaged over neurons (sklearn's r2_score; a neuron with a constant PSTH scores 1 when
/// predicted exactly and 0 otherwise).
[[nodiscard]] double psth_r2(const Array& rates, const Array& counts,
                             const std::vector<int>& conditions);

/// R² = 1 − SS_res/SS_tot of predictions against targets (rows = samples, cols = outputs),
/// SS summed over outputs ("variance weighted", as the NLB velocity decoding scores it).
[[nodiscard]] double r2_variance_weighted(const Array& targets, const Array& predictions);

struct RidgeDecoding {
  double r2 = 0.0;       ///< on the test rows, variance weighted
  double alpha = 0.0;    ///< the penalty chosen by cross-validation on the training rows
  Array weights;         ///< (features + 1, outputs): intercept last
};

/// Linear decoding of targets from features (rows = samples) by ridge regression with an
/// intercept: α from `alphas` by `folds`-fold contiguous cross-validation on the training rows,
/// refitted on all of them, scored on the test rows.
[[nodiscard]] RidgeDecoding ridge_decoding(const Array& train_features, const Array& train_targets,
                                           const Array& test_features, const Array& test_targets,
                                           const std::vector<double>& alphas = {},
                                           int folds = 5);

}  // namespace lrsmc::metrics
