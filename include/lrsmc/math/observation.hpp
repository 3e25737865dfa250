// Read-out link functions g(η) and per-channel observation log-likelihoods, method.md §1.7.
#pragma once

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

template <typename Scalar>
struct LinkResponse {
  Scalar rate;   ///< λ = g(η)
  Scalar slope;  ///< dλ/dη
};

template <typename Scalar>
LRSMC_HD LinkResponse<Scalar> link_response(Link link, Scalar eta) {
  switch (link) {
    case Link::exp: {
      const Scalar value = std::exp(eta);
      return {value + Scalar(1e-10), value};
    }
    case Link::relu:
      return {max_of(eta, Scalar(0)) + Scalar(1e-10), eta > Scalar(0) ? Scalar(1) : Scalar(0)};
    case Link::softplus: {
      // PyTorch softplus (β = 1, linear above η > 20) plus 1e-6.
      if (eta > Scalar(20)) return {eta + Scalar(1e-6), Scalar(1)};
      const Scalar value = std::log1p(std::exp(eta));
      return {value + Scalar(1e-6), Scalar(1) / (Scalar(1) + std::exp(-eta))};
    }
    case Link::identity: break;
  }
  return {eta, Scalar(1)};
}

/// Gaussian log-density of one channel with log-variance `log_variance`, and its derivatives
/// with respect to the mean and to the log-variance.
template <typename Scalar>
struct GaussianTerm {
  Scalar log_density;
  Scalar d_mean;
  Scalar d_log_variance;
};

template <typename Scalar>
LRSMC_HD GaussianTerm<Scalar> gaussian_term(Scalar observed, Scalar mean, Scalar log_variance) {
  const Scalar precision = std::exp(-log_variance);
  const Scalar residual = observed - mean;
  const Scalar scaled = residual * residual * precision;
  return {Scalar(-0.5) * (scaled + log_variance + Scalar(log_two_pi)), residual * precision,
          Scalar(0.5) * (scaled - Scalar(1))};
}

/// Poisson log-probability x ln λ − λ − ln Γ(x + 1); `log_factorial` = ln Γ(x + 1) is passed in
/// because it depends only on the data.
template <typename Scalar>
LRSMC_HD Scalar poisson_log_probability(Scalar count, Scalar rate, Scalar log_factorial) {
  return count * std::log(rate) - rate - log_factorial;
}

}  // namespace lrsmc::math
