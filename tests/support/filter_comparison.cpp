// Element-by-element comparison of two particle-filter runs; see filter_comparison.hpp.
#include "support/filter_comparison.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "lrsmc/math/weights.hpp"

namespace lrsmc::testing {
namespace {

double relative_error(double reference, double value) {
  return std::fabs(reference - value) / std::max(1.0, std::fabs(reference));
}

}  // namespace

PathAgreement expect_same_paths(const FilterResult& reference, const FilterResult& result,
                                const SequenceBatch& batch, const FilterOptions& options,
                                int rank, std::uint64_t seed, const PathTolerance& tolerance,
                                const std::string& label) {
  const int trials = batch.num_trials, steps = batch.num_steps, K = options.num_particles;
  const std::size_t cells = std::size_t(trials) * steps;
  PathAgreement agreement;
  const bool sizes_match = reference.particles.size() == cells * K * rank &&
                           result.particles.size() == reference.particles.size() &&
                           reference.log_weights.size() == cells * K &&
                           result.log_weights.size() == reference.log_weights.size() &&
                           reference.ancestors.size() == cells * K &&
                           result.ancestors.size() == reference.ancestors.size() &&
                           reference.resampled.size() == cells &&
                           result.resampled.size() == cells;
  if (!sizes_match) {
    ADD_FAILURE() << label << ": stored paths have the wrong sizes: particles "
                  << result.particles.size() << " (reference " << reference.particles.size()
                  << "), log-weights " << result.log_weights.size() << ", ancestors "
                  << result.ancestors.size() << ", resampled " << result.resampled.size()
                  << "; expected " << cells * K * rank << ", " << cells * K << ", " << cells * K
                  << ", " << cells;
    return agreement;
  }
  std::vector<double> cumulative(static_cast<std::size_t>(K));
  std::vector<char> lineage(static_cast<std::size_t>(K)), next_lineage(static_cast<std::size_t>(K));
  for (int trial = 0; trial < trials; ++trial) {
    const std::uint32_t trial_id =
        batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    std::fill(lineage.begin(), lineage.end(), char(1));
    bool identical = true;  // no ancestor has differed yet in this trial
    for (int step = 0; step < steps; ++step) {
      const std::size_t cell = std::size_t(trial) * steps + step;
      ++agreement.cells;
      agreement.particles += K;
      // Particles and log-weights of the slots whose ancestry agrees; the worst of each.
      double worst = 0, worst_weight = 0, offset = 0;
      std::size_t worst_index = 0, worst_weight_index = 0;
      bool have_offset = false;
      for (int k = 0; k < K; ++k) {
        if (!lineage[std::size_t(k)]) continue;
        ++agreement.same_lineage;
        for (int r = 0; r < rank; ++r) {
          const std::size_t i = (cell * K + k) * rank + r;
          const double error = relative_error(reference.particles[i], result.particles[i]);
          if (!(error <= worst)) {  // also catches NaN
            worst = error;
            worst_index = i;
          }
        }
        const std::size_t i = cell * K + k;
        if (!identical && !have_offset) {
          offset = result.log_weights[i] - reference.log_weights[i];
          have_offset = true;
        }
        const double error =
            relative_error(reference.log_weights[i], result.log_weights[i] - offset);
        if (!(error <= worst_weight)) {
          worst_weight = error;
          worst_weight_index = i;
        }
      }
      const char* context = identical ? "" : " (a slot whose ancestry agrees)";
      if (!(worst <= tolerance.particle)) {
        const std::size_t local = worst_index - cell * K * rank;
        ADD_FAILURE() << label << ": particle " << local / rank << context << " component "
                      << local % rank << " of trial " << trial << ", step " << step
                      << " differs: reference " << reference.particles[worst_index] << ", got "
                      << result.particles[worst_index] << " (relative error " << worst
                      << ", tolerance " << tolerance.particle << ")";
        break;
      }
      if (!(worst_weight <= tolerance.log_weight)) {
        ADD_FAILURE() << label << ": normalised log-weight of particle "
                      << worst_weight_index - cell * K << context << ", trial " << trial
                      << ", step " << step << " differs: reference "
                      << reference.log_weights[worst_weight_index] << ", got "
                      << result.log_weights[worst_weight_index] << " less the step's offset "
                      << offset << " (relative error " << worst_weight << ", tolerance "
                      << tolerance.log_weight << ")";
        break;
      }
      if (identical && reference.resampled[cell] != result.resampled[cell]) {
        ADD_FAILURE() << label << ": resampling decision of trial " << trial << ", step " << step
                      << " differs: reference " << int(reference.resampled[cell]) << ", got "
                      << int(result.resampled[cell]);
        break;
      }
      // Ancestors. While the trial is identical, each differing slot must be a near-tie of the
      // reference's cumulative weights (float64, normalised by the last value, as built by the
      // resampler); afterwards the cumulative weights differ and only lineages are followed.
      bool valid = true;
      for (int k = 0; k < K && valid; ++k) {
        const std::int32_t expected = reference.ancestors[cell * K + k],
                           got = result.ancestors[cell * K + k];
        if (got < 0 || got >= K || (!result.resampled[cell] && got != k)) {
          ADD_FAILURE() << label << ": ancestor of slot " << k << ", trial " << trial
                        << ", step " << step << " is " << got << ", expected " << expected
                        << (result.resampled[cell] ? " (out of range)"
                                                   : " (the step did not resample: identity)");
          valid = false;
        }
      }
      if (!valid) break;
      bool step_identical = true;
      for (int k = 0; k < K; ++k) {
        const std::int32_t expected = reference.ancestors[cell * K + k],
                           got = result.ancestors[cell * K + k];
        next_lineage[std::size_t(k)] =
            char(expected == got && lineage[std::size_t(expected)] ? 1 : 0);
        if (expected == got || !identical) continue;
        if (step_identical) {  // first differing slot of the step: build the reference's sums
          double running = 0;
          for (int j = 0; j < K; ++j) {
            running += std::exp(reference.log_weights[cell * K + j]);
            cumulative[std::size_t(j)] = running;
          }
          for (double& value : cumulative) value /= running;
        }
        step_identical = false;
        const double position =
            math::resampling_position(options.resampling, seed, trial_id, std::uint32_t(step),
                                      std::uint32_t(k), std::uint32_t(K));
        const std::int32_t boundary = std::min(expected, got);
        const double gap = std::fabs(cumulative[std::size_t(boundary)] - position);
        if (!(gap <= tolerance.near_tie)) {
          ADD_FAILURE() << label << ": ancestor of slot " << k << ", trial " << trial
                        << ", step " << step << " is " << got << ", expected " << expected
                        << "; not a near-tie: position " << position
                        << ", reference cumulative weight at " << boundary << " is "
                        << cumulative[std::size_t(boundary)] << " (gap " << gap
                        << ", tolerance " << tolerance.near_tie << ")";
          valid = false;
          break;
        }
      }
      if (!valid) break;
      if (identical) ++agreement.identical_cells;
      identical = identical && step_identical;
      lineage.swap(next_lineage);
    }
  }
  return agreement;
}

void expect_close_summaries(const FilterResult& reference, const FilterResult& result,
                            double relative, const std::string& label) {
  EXPECT_NEAR(result.elbo, reference.elbo, relative * std::fabs(reference.elbo)) << label;
  ASSERT_EQ(result.elbo_per_trial.size(), reference.elbo_per_trial.size()) << label;
  for (std::size_t trial = 0; trial < reference.elbo_per_trial.size(); ++trial)
    EXPECT_NEAR(result.elbo_per_trial[trial], reference.elbo_per_trial[trial],
                relative * std::fabs(reference.elbo_per_trial[trial]))
        << label << ": ELBO of trial " << trial;
  if (reference.filtered_mean.empty() || result.filtered_mean.empty()) return;
  ASSERT_EQ(result.filtered_mean.size(), reference.filtered_mean.size()) << label;
  double worst = 0;
  std::size_t worst_index = 0;
  for (std::size_t i = 0; i < reference.filtered_mean.size(); ++i) {
    const double error = relative_error(reference.filtered_mean[i], result.filtered_mean[i]);
    if (!(error <= worst)) {
      worst = error;
      worst_index = i;
    }
  }
  EXPECT_LE(worst, 10 * relative) << label << ": filtered mean at flat index " << worst_index
                                  << ": reference " << reference.filtered_mean[worst_index]
                                  << ", got " << result.filtered_mean[worst_index];
}

void expect_bitwise_equal(const FilterResult& reference, const FilterResult& result) {
  EXPECT_EQ(result.elbo_per_trial, reference.elbo_per_trial);
  EXPECT_EQ(result.filtered_mean, reference.filtered_mean);
  EXPECT_EQ(result.particles, reference.particles);
  EXPECT_EQ(result.log_weights, reference.log_weights);
  EXPECT_EQ(result.ancestors, reference.ancestors);
  EXPECT_EQ(result.resampled, reference.resampled);
}

/// Runs `reference` and `result` with stored paths and the filtered mean on the same draws.
/// Paths: see expect_same_paths. ELBO: while no ancestor differs the runs follow the
/// same particles and the ELBO agrees to `elbo_relative`; after a near-tie the runs follow
/// partly different particles and agree only as two Monte Carlo estimates, so the check then
/// allows 5/√K more (the exact agreement of c_t is checked by a one-step run, and the regimes
/// against each other, where near-ties do not happen, to 1e-9).
void expect_same_filter(Backend& reference_backend, Backend& backend, const Model& model,
                        const SequenceBatch& batch, const FilterOptions& options,
                        std::uint64_t seed, double elbo_relative,
                        const PathTolerance& tolerance, const std::string& label) {
  const FilterRequest request{true, true};
  const FilterResult reference = reference_backend.filter(model, batch, options, seed, request);
  const FilterResult result = backend.filter(model, batch, options, seed, request);
  const auto agreement = expect_same_paths(reference, result, batch, options,
                                                    model.config.rank, seed, tolerance, label);
  const std::string history = label + ": " + std::to_string(agreement.identical_cells) + " of " +
                              std::to_string(agreement.cells) +
                              " cells before the first differing ancestor, " +
                              std::to_string(agreement.same_lineage) + " of " +
                              std::to_string(agreement.particles) +
                              " particle slots with the reference's ancestry";
  if (agreement.identical_cells == agreement.cells) {
    expect_close_summaries(reference, result, elbo_relative, history);
  } else {
    const double allowance = 5.0 / std::sqrt(double(options.num_particles));
    EXPECT_NEAR(result.elbo, reference.elbo, elbo_relative * std::fabs(reference.elbo) + allowance)
        << history;
  }
  // At least the first resampling must mostly agree: step 0 (all slots) and most of step 1.
  const double fraction =
      double(agreement.same_lineage) / double(std::max<std::int64_t>(1, agreement.particles));
  if (batch.num_steps > 1) {
    EXPECT_GE(fraction, 1.5 / batch.num_steps) << history;
  }
  std::cout << "[ paths    ] " << history << "\n";
  // One step: c_0 depends on no resampling, so the ELBO agrees tightly whatever the paths.
  SequenceBatch first = batch;
  first.num_steps = 1;
  first.observations.clear();
  first.inputs.clear();
  const std::size_t channels = std::size_t(batch.num_channels), inputs = std::size_t(batch.num_inputs);
  for (int trial = 0; trial < batch.num_trials; ++trial) {
    const std::size_t row = std::size_t(trial) * batch.num_steps;
    first.observations.insert(first.observations.end(),
                              batch.observations.begin() + std::ptrdiff_t(row * channels),
                              batch.observations.begin() + std::ptrdiff_t((row + 1) * channels));
    first.inputs.insert(first.inputs.end(), batch.inputs.begin() + std::ptrdiff_t(row * inputs),
                        batch.inputs.begin() + std::ptrdiff_t((row + 1) * inputs));
  }
  const double one_step_reference = reference_backend.filter(model, first, options, seed).elbo;
  EXPECT_NEAR(backend.filter(model, first, options, seed).elbo, one_step_reference,
              elbo_relative * std::fabs(one_step_reference))
      << label << ": one step (log-sum-exp of the first weights)";
}

}  // namespace lrsmc::testing
