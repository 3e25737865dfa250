// Backward-simulation smoothing (FFBSi) of a model's latents given a recording: the forward
// filter on any backend stores its particles and weights, then trajectories are drawn backwards
// through them (Godsill, Doucet & West 2004). The reference's smoother pairs each candidate with
// the future particle in its own slot (method.md §3.8, a quirk); lrsmc scores every candidate
// against the trajectory's one future state, the textbook backward simulation.
#pragma once

#include <cstdint>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc {

struct SmoothResult {
  double elbo = 0.0;                   ///< the forward filter's, as Backend::filter gives it
  std::vector<double> elbo_per_trial;  ///< (trials)
  int num_trajectories = 0;
  std::vector<double> trajectories;   ///< (trials, trajectories, steps, rank)
  std::vector<double> smoothed_mean;  ///< (trials, steps, rank): the trajectories' mean
};

/// Draws `trajectories` smoothed trajectories per trial of `batch`: the filter runs on `backend`
/// with `options` (any proposal), a few trials at a time so that the stored particles stay
/// within about 256 MiB, and each trajectory goes backwards from a particle drawn by the last
/// step's filtering weights: at step t every particle z_t^k is weighed by W_t^k p(z̃_{t+1} | z_t^k)
/// with the transition density of the model, and one is drawn (Philox uniforms addressed by
/// seed, trial, step and trajectory, so the result does not depend on threads or on the split).
/// The filtered means are not computed. Throws InvalidInput for trajectories < 1.
[[nodiscard]] SmoothResult smooth(Backend& backend, const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed,
                                  int trajectories);

}  // namespace lrsmc
