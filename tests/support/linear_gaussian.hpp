// The exact posterior of a linear-Gaussian model (identity nonlinearity, Gaussian identity
// read-out, no inputs): z_t = (aI + n m) z_{t−1} − n h + ε, x_t = Bᵀ z_t + b + η, by the Kalman
// filter and the Rauch–Tung–Striebel smoother, for the filter's and the smoother's tests.
#pragma once

#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc::testing {

/// The exact log-likelihood per time step, averaged over the batch's trials and steps.
[[nodiscard]] double kalman_log_likelihood(const Model& model, const SequenceBatch& batch);

/// The exact smoothed means and standard deviations of z_t, (trials, steps, rank) each.
struct ExactSmoother {
  std::vector<double> mean, std_dev;
};
[[nodiscard]] ExactSmoother rts_smoother(const Model& model, const SequenceBatch& batch);

}  // namespace lrsmc::testing
