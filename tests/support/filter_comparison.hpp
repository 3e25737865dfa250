// Element-by-element comparison of two particle-filter runs on the same Philox draws (CPU
// against CUDA, or one CUDA regime against the other), with failure messages that locate the
// first difference and say whether a differing ancestor is an honest near-tie.
#pragma once

#include <cstdint>
#include <string>

#include "lrsmc/backend.hpp"

namespace lrsmc::testing {

struct PathTolerance {
  double particle = 1e-4;    ///< |a − b| / max(1, |a|) for particles
  double log_weight = 1e-3;  ///< |a − b| / max(1, |a|) for normalised log-weights
  /// A differing ancestor is a near-tie when the reference's cumulative weight at the boundary
  /// between the two choices lies within this of the resampling position.
  double near_tie = 1e-4;
};

/// What expect_same_paths compared.
struct PathAgreement {
  std::int64_t cells = 0;             ///< (trial, step) cells
  std::int64_t identical_cells = 0;   ///< cells before the trial's first differing ancestor
  std::int64_t particles = 0;         ///< particle slots over all cells
  std::int64_t same_lineage = 0;      ///< slots whose whole ancestry agrees (compared)
};

/// Compares stored paths (FilterRequest::particles) of `result` with `reference`, trial by
/// trial and step by step. Until a trial's first differing ancestor every particle and
/// normalised log-weight is compared, and every differing ancestor of that step must be a
/// near-tie of the reference's cumulative weights. Afterwards the runs follow partly different
/// particles: only slots whose whole ancestry agrees are compared (particles directly,
/// log-weights up to the step's common offset, since the normaliser c_t differs). Adds a
/// GoogleTest failure naming trial, step, slot and both values for each kind of difference.
PathAgreement expect_same_paths(const FilterResult& reference, const FilterResult& result,
                                const SequenceBatch& batch, const FilterOptions& options,
                                int rank, std::uint64_t seed, const PathTolerance& tolerance,
                                const std::string& label);

/// ELBO per trial and filtered means (when both have them) within `relative`.
void expect_close_summaries(const FilterResult& reference, const FilterResult& result,
                            double relative, const std::string& label);

/// Every output bitwise equal: ELBO per trial, filtered means, particles, log-weights,
/// ancestors and resampling flags (empty where neither result has them).
void expect_bitwise_equal(const FilterResult& reference, const FilterResult& result);

/// Runs `reference` and `result` with stored paths and the filtered mean on the same draws.
/// Paths: see testing::expect_same_paths. ELBO: while no ancestor differs the runs follow the
/// same particles and the ELBO agrees to `elbo_relative`; after a near-tie the runs follow
/// partly different particles and agree only as two Monte Carlo estimates, so the check then
/// allows 5/√K more (the exact agreement of c_t is checked by a one-step run, and the regimes
/// against each other, where near-ties do not happen, to 1e-9).
void expect_same_filter(Backend& reference_backend, Backend& backend, const Model& model,
                        const SequenceBatch& batch, const FilterOptions& options,
                        std::uint64_t seed, double elbo_relative,
                        const PathTolerance& tolerance, const std::string& label);

}  // namespace lrsmc::testing
