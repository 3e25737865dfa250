// Read-out link functions g(η), per-channel observation log-likelihoods and their adjoints
// (method.md §1.7), and the log-likelihood of a particle summed over channels with the lane
// split of dynamics.hpp, for every engine.
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/dynamics.hpp"

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
    case Link::identity:
      break;
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

/// d/dλ of the Poisson log-probability: x/λ − 1.
template <typename Scalar>
LRSMC_HD Scalar poisson_rate_slope(Scalar count, Scalar rate) {
  return count / rate - Scalar(1);
}

/// η_i = b_i + Σ_r B_ri z_r.
template <typename Scalar>
LRSMC_HD Scalar readout_value(const ParticleModel<Scalar>& model, const Scalar* z, int i) {
  Scalar eta = model.readout_bias[i];
  for (int r = 0; r < model.rank; ++r) eta += model.readout[r * model.channels + i] * z[r];
  return eta;
}

/// log p(x_i | g(η_i)) of channel i. `log_factorial` is ln Γ(x + 1) (Poisson).
template <typename Scalar>
LRSMC_HD Scalar channel_log_likelihood(const ParticleModel<Scalar>& model, const Scalar* observed,
                                       const Scalar* log_factorial, const Scalar* z, int i) {
  const auto link = link_response(model.link, readout_value(model, z, i));
  if (model.observation == Observation::gaussian)
    return gaussian_term(observed[i], link.rate, model.log_variance[i]).log_density;
  return poisson_log_probability(observed[i], link.rate, log_factorial[i]);
}

/// Lane `lane`'s part of log p(x_t | z) = Σ_i log p(x_i | g(η_i)), over channels lane,
/// lane + lanes, … (combined with butterfly_sum).
template <typename Scalar>
LRSMC_HD Scalar observation_partial(const ParticleModel<Scalar>& model, const Scalar* observed,
                                    const Scalar* log_factorial, const Scalar* z, int lane,
                                    int lanes) {
  Scalar total = 0;
  for (int i = lane; i < model.channels; i += lanes)
    total += channel_log_likelihood(model, observed, log_factorial, z, i);
  return total;
}

/// log p(x_t | z) on one thread: every lane's part in one pass over the channels (channel i
/// into lane i mod lanes, in order: observation_partial's sums), the butterfly. `scratch`
/// holds lanes values.
template <typename Scalar>
LRSMC_HD Scalar observation_log_likelihood(const ParticleModel<Scalar>& model,
                                           const Scalar* observed, const Scalar* log_factorial,
                                           const Scalar* z, int lanes, Scalar* scratch) {
  for (int lane = 0; lane < lanes; ++lane) scratch[lane] = Scalar(0);
  for (int i = 0; i < model.channels; ++i)
    scratch[i % lanes] += channel_log_likelihood(model, observed, log_factorial, z, i);
  butterfly_sum(scratch, lanes, 1);
  return scratch[0];
}

/// One channel in the reverse sweep, for a particle whose log-weight has adjoint `weight`:
/// dη_i = weight · dℓ/dλ · g'(η) and weight · dℓ/dρ_x,i (Gaussian; 0 for Poisson).
template <typename Scalar>
struct ChannelAdjoint {
  Scalar grad_eta;
  Scalar grad_log_variance;
};

template <typename Scalar>
LRSMC_HD ChannelAdjoint<Scalar> channel_adjoint(const ParticleModel<Scalar>& model,
                                                const Scalar* observed, const Scalar* z,
                                                Scalar weight, int i) {
  const auto link = link_response(model.link, readout_value(model, z, i));
  if (model.observation == Observation::gaussian) {
    const auto term = gaussian_term(observed[i], link.rate, model.log_variance[i]);
    return {weight * term.d_mean * link.slope, weight * term.d_log_variance};
  }
  return {weight * poisson_rate_slope(observed[i], link.rate) * link.slope, Scalar(0)};
}

/// Adds channel i's term B_i dη_i to a partial sum of d log p(x_t | z)/dz · weight.
template <typename Scalar>
LRSMC_HD void add_eta_adjoint(const ParticleModel<Scalar>& model, int i, Scalar grad_eta,
                              Scalar* partial) {
  for (int r = 0; r < model.rank; ++r)
    partial[r] += model.readout[r * model.channels + i] * grad_eta;
}

/// Lane `lane`'s part of d log p(x_t | z)/dz · weight = Σ_i B_i dη_i (rank values).
template <typename Scalar>
LRSMC_HD void observation_adjoint_partial(const ParticleModel<Scalar>& model,
                                          const Scalar* observed, const Scalar* z, Scalar weight,
                                          int lane, int lanes, Scalar* partial) {
  for (int r = 0; r < model.rank; ++r) partial[r] = Scalar(0);
  for (int i = lane; i < model.channels; i += lanes)
    add_eta_adjoint(model, i, channel_adjoint(model, observed, z, weight, i).grad_eta, partial);
}

/// Adds one particle's terms of channel i to the read-out gradients (float64 accumulators):
/// db_i += dη_i, dρ_x,i += weight · dℓ/dρ_x,i, dB_ri += dη_i z_r (`grad_readout` strided).
template <typename Scalar>
LRSMC_HD void add_channel_gradient(const ChannelAdjoint<Scalar>& channel, const Scalar* z, int rank,
                                   double& grad_bias, double& grad_log_variance,
                                   double* grad_readout, std::int64_t readout_stride) {
  grad_bias += double(channel.grad_eta);
  grad_log_variance += double(channel.grad_log_variance);
  for (int r = 0; r < rank; ++r)
    grad_readout[r * readout_stride] += double(channel.grad_eta * z[r]);
}

}  // namespace lrsmc::math
