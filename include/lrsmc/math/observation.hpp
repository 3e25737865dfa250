// Read-out link functions g(η), per-channel observation log-likelihoods and their adjoints
// (method.md §1.7), and the log-likelihood of a particle summed over channels with the lane
// split of dynamics.hpp, for every engine.
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/dynamics.hpp"

namespace lrsmc::math {

template <typename Value>
struct LinkResponse {
  Value rate;   ///< λ = g(η)
  Value slope;  ///< dλ/dη
};

template <typename Value>
LRSMC_HD LinkResponse<Value> link_response(Link link, Value eta) {
  switch (link) {
    case Link::exp: {
      const Value value = exp_of(eta);
      return {value + Value(Lane<Value>(1e-10)), value};
    }
    case Link::relu:
      return {max_of(eta, Value(0)) + Value(Lane<Value>(1e-10)),
              choose(eta > Value(0), Value(1), Value(0))};
    case Link::softplus: {
      // PyTorch softplus (β = 1, linear above η > 20) plus 1e-6. Both sides are evaluated
      // (lanes of a pack may differ); above 20 the logarithmic side is finite or +inf, unused.
      const auto linear = eta > Value(20);
      const Value value = log1p_of(exp_of(eta));
      return {choose(linear, eta + Value(Lane<Value>(1e-6)), value + Value(Lane<Value>(1e-6))),
              choose(linear, Value(1), Value(1) / (Value(1) + exp_of(-eta)))};
    }
    case Link::identity:
      break;
  }
  return {eta, Value(1)};
}

/// Gaussian log-density of one channel with log-variance `log_variance`, and its derivatives
/// with respect to the mean and to the log-variance.
template <typename Value>
struct GaussianTerm {
  Value log_density;
  Value d_mean;
  Value d_log_variance;
};

template <typename Scalar, typename Value>
LRSMC_HD GaussianTerm<Value> gaussian_term(Scalar observed, Value mean, Scalar log_variance) {
  const Scalar precision = exp_of(-log_variance);
  const Value residual = observed - mean;
  const Value scaled = residual * residual * precision;
  return {Scalar(-0.5) * (scaled + log_variance + Scalar(log_two_pi)), residual * precision,
          Scalar(0.5) * (scaled - Scalar(1))};
}

/// Poisson log-probability x ln λ − λ − ln Γ(x + 1); `log_factorial` = ln Γ(x + 1) is passed in
/// because it depends only on the data.
template <typename Scalar, typename Value>
LRSMC_HD Value poisson_log_probability(Scalar count, Value rate, Scalar log_factorial) {
  return count * log_of(rate) - rate - log_factorial;
}

/// d/dλ of the Poisson log-probability: x/λ − 1.
template <typename Scalar, typename Value>
LRSMC_HD Value poisson_rate_slope(Scalar count, Value rate) {
  return count / rate - Scalar(1);
}

/// η_i = b_i + Σ_r B_ri z_r.
template <typename Scalar, typename Value>
LRSMC_HD Value readout_value(const ParticleModel<Scalar>& model, const Value* z, int i) {
  Value eta = Value(model.readout_bias[i]);
  for (int r = 0; r < model.rank; ++r) eta += model.readout[r * model.channels + i] * z[r];
  return eta;
}

/// log p(x_i | g(η_i)) of channel i. `log_factorial` is ln Γ(x + 1) (Poisson).
template <typename Scalar, typename Value>
LRSMC_HD Value channel_log_likelihood(const ParticleModel<Scalar>& model, const Scalar* observed,
                                      const Scalar* log_factorial, const Value* z, int i) {
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
template <typename Scalar, typename Value>
LRSMC_HD Value observation_log_likelihood(const ParticleModel<Scalar>& model,
                                          const Scalar* observed, const Scalar* log_factorial,
                                          const Value* z, int lanes, Value* scratch) {
  for (int lane = 0; lane < lanes; ++lane) scratch[lane] = Value(0);
  for (int i = 0; i < model.channels; ++i)
    scratch[i % lanes] += channel_log_likelihood(model, observed, log_factorial, z, i);
  butterfly_sum(scratch, lanes, 1);
  return scratch[0];
}

/// One channel in the reverse sweep, for a particle whose log-weight has adjoint `weight`:
/// dη_i = weight · dℓ/dλ · g'(η) and weight · dℓ/dρ_x,i (Gaussian; 0 for Poisson).
template <typename Value>
struct ChannelAdjoint {
  Value grad_eta;
  Value grad_log_variance;
};

template <typename Scalar, typename Value>
LRSMC_HD ChannelAdjoint<Value> channel_adjoint(const ParticleModel<Scalar>& model,
                                               const Scalar* observed, const Value* z, Value weight,
                                               int i) {
  const auto link = link_response(model.link, readout_value(model, z, i));
  if (model.observation == Observation::gaussian) {
    const auto term = gaussian_term(observed[i], link.rate, model.log_variance[i]);
    return {weight * term.d_mean * link.slope, weight * term.d_log_variance};
  }
  return {weight * poisson_rate_slope(observed[i], link.rate) * link.slope, Value(0)};
}

/// Adds channel i's term B_i dη_i to a partial sum of d log p(x_t | z)/dz · weight.
template <typename Scalar, typename Value>
LRSMC_HD void add_eta_adjoint(const ParticleModel<Scalar>& model, int i, Value grad_eta,
                              Value* partial) {
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

/// Adds one particle's terms of channel i to the read-out gradients (accumulate()): db_i += dη_i,
/// dρ_x,i += weight · dℓ/dρ_x,i, dB_ri += dη_i z_r
/// (`grad_readout` strided).
template <typename Value, typename Total>
LRSMC_HD void add_channel_gradient(const ChannelAdjoint<Value>& channel, const Value* z, int rank,
                                   Total& grad_bias, Total& grad_log_variance, Total* grad_readout,
                                   std::int64_t readout_stride) {
  accumulate(grad_bias, channel.grad_eta);
  accumulate(grad_log_variance, channel.grad_log_variance);
  for (int r = 0; r < rank; ++r)
    accumulate(grad_readout[r * readout_stride], channel.grad_eta * z[r]);
}

}  // namespace lrsmc::math
