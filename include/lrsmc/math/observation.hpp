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

/// Channel i's read-out of a particle (method.md §1.7): η_i and the slopes its adjoint needs.
/// y_i is the read-out's linear part in z: B_iᵀ z + o_i for the read-outs of the latent state,
/// the current X_i = m_i z + c_i one to one.
template <typename Value>
struct ReadoutResponse {
  Value eta;
  Value gained;      ///< what the gain multiplies: X_i (currents), φ(X_i; h_i) (rates), else 0
  Value slope;       ///< dη_i/dy_i
  Value bias_slope;  ///< dη_i/dh_i (rates), else 0
};

/// `offset` is the step's part of y that does not depend on z, per channel: o = B_vᵀ v_t
/// (z_and_v) or the input currents c = W_u v_t (one to one); null when there is none.
template <typename Scalar, typename Value>
LRSMC_HD ReadoutResponse<Value> readout_response(const ParticleModel<Scalar>& model,
                                                 const Value* z, const Scalar* offset, int i) {
  switch (model.readout_from) {
    case ReadoutFrom::currents: {
      const Value current = unit_current(model, z, offset, i);
      const Value gain(model.readout_gain[i]);
      return {gain * current + Value(model.readout_bias[i]), current, gain, Value(0)};
    }
    case ReadoutFrom::rates: {
      const auto unit =
          unit_response(model.nonlinearity, unit_current(model, z, offset, i), model.h[i]);
      const Value gain(model.readout_gain[i]);
      return {gain * unit.value + Value(model.readout_bias[i]), unit.value, gain * unit.slope,
              gain * unit.bias_slope};
    }
    case ReadoutFrom::z:
    case ReadoutFrom::z_and_v:
      break;
  }
  Value eta = Value(model.readout_bias[i]);
  if (offset != nullptr) eta += Value(offset[i]);
  for (int r = 0; r < model.rank; ++r) eta += model.readout[r * model.channels + i] * z[r];
  return {eta, Value(0), Value(1), Value(0)};
}

/// Whether the read-out reads the units one to one (its y_i is unit i's current).
template <typename Scalar>
LRSMC_HD bool one_to_one(const ParticleModel<Scalar>& model) {
  return model.readout_from == ReadoutFrom::currents || model.readout_from == ReadoutFrom::rates;
}

/// log p(x_i | g(η_i)) of channel i; 0 when x_i is missing (NaN). `log_factorial` is
/// ln Γ(x + 1) (Poisson), `offset` the step's read-out offset (readout_response).
template <typename Scalar, typename Value>
LRSMC_HD Value channel_log_likelihood(const ParticleModel<Scalar>& model, const Scalar* observed,
                                      const Scalar* log_factorial, const Scalar* offset,
                                      const Value* z, int i) {
  if (is_missing(observed[i])) return Value(0);
  const auto link = link_response(model.link, readout_response(model, z, offset, i).eta);
  if (model.observation == Observation::gaussian)
    return gaussian_term(observed[i], link.rate, model.log_variance[i]).log_density;
  return poisson_log_probability(observed[i], link.rate, log_factorial[i]);
}

/// Lane `lane`'s part of log p(x_t | z) = Σ_i log p(x_i | g(η_i)), over channels lane,
/// lane + lanes, … (combined with butterfly_sum).
template <typename Scalar>
LRSMC_HD Scalar observation_partial(const ParticleModel<Scalar>& model, const Scalar* observed,
                                    const Scalar* log_factorial, const Scalar* offset,
                                    const Scalar* z, int lane, int lanes) {
  Scalar total = 0;
  for (int i = lane; i < model.channels; i += lanes)
    total += channel_log_likelihood(model, observed, log_factorial, offset, z, i);
  return total;
}

/// log p(x_t | z) on one thread: every lane's part in one pass over the channels (channel i
/// into lane i mod lanes, in order: observation_partial's sums), the butterfly. `scratch`
/// holds lanes values.
template <typename Scalar, typename Value>
LRSMC_HD Value observation_log_likelihood(const ParticleModel<Scalar>& model,
                                          const Scalar* observed, const Scalar* log_factorial,
                                          const Scalar* offset, const Value* z, int lanes,
                                          Value* scratch) {
  for (int lane = 0; lane < lanes; ++lane) scratch[lane] = Value(0);
  for (int i = 0; i < model.channels; ++i)
    scratch[i % lanes] += channel_log_likelihood(model, observed, log_factorial, offset, z, i);
  butterfly_sum(scratch, lanes, 1);
  return scratch[0];
}

/// One channel in the reverse sweep, for a particle whose log-weight has adjoint `weight`:
/// dη_i = weight · dℓ/dλ · g'(η), the adjoint of the linear part dy_i = dη_i · dη_i/dy_i,
/// weight · dℓ/dρ_x,i (Gaussian; 0 for Poisson), and the one-to-one gain's and bias's terms.
template <typename Value>
struct ChannelAdjoint {
  Value grad_eta;
  Value grad_linear;
  Value grad_log_variance;
  Value grad_gain;  ///< dη_i · X_i or dη_i · φ_i (one to one)
  Value grad_h;     ///< dη_i · dη_i/dh_i (rates)
};

/// A missing x_i (NaN) has no terms: every field is 0.
template <typename Scalar, typename Value>
LRSMC_HD ChannelAdjoint<Value> channel_adjoint(const ParticleModel<Scalar>& model,
                                               const Scalar* observed, const Scalar* offset,
                                               const Value* z, Value weight, int i) {
  if (is_missing(observed[i])) return {Value(0), Value(0), Value(0), Value(0), Value(0)};
  const auto readout = readout_response(model, z, offset, i);
  const auto link = link_response(model.link, readout.eta);
  Value grad_eta = Value(0), grad_log_variance = Value(0);
  if (model.observation == Observation::gaussian) {
    const auto term = gaussian_term(observed[i], link.rate, model.log_variance[i]);
    grad_eta = weight * term.d_mean * link.slope;
    grad_log_variance = weight * term.d_log_variance;
  } else {
    grad_eta = weight * poisson_rate_slope(observed[i], link.rate) * link.slope;
  }
  return {grad_eta, grad_eta * readout.slope, grad_log_variance, grad_eta * readout.gained,
          grad_eta * readout.bias_slope};
}

/// Adds channel i's term w_i dy_i to a partial sum of d log p(x_t | z)/dz · weight, where w_i is
/// B_i (the latent state's read-outs) or m_i (one to one).
template <typename Scalar, typename Value>
LRSMC_HD void add_readout_adjoint(const ParticleModel<Scalar>& model, int i, Value grad_linear,
                                  Value* partial) {
  if (one_to_one(model)) {
    for (int r = 0; r < model.rank; ++r)
      partial[r] += model.m[i * model.rank + r] * grad_linear;
    return;
  }
  for (int r = 0; r < model.rank; ++r)
    partial[r] += model.readout[r * model.channels + i] * grad_linear;
}

/// Lane `lane`'s part of d log p(x_t | z)/dz · weight = Σ_i w_i dy_i (rank values).
template <typename Scalar>
LRSMC_HD void observation_adjoint_partial(const ParticleModel<Scalar>& model,
                                          const Scalar* observed, const Scalar* offset,
                                          const Scalar* z, Scalar weight, int lane, int lanes,
                                          Scalar* partial) {
  for (int r = 0; r < model.rank; ++r) partial[r] = Scalar(0);
  for (int i = lane; i < model.channels; i += lanes)
    add_readout_adjoint(model, i,
                        channel_adjoint(model, observed, offset, z, weight, i).grad_linear,
                        partial);
}

/// Adds one particle's terms of channel i to the read-out gradients (accumulate()): db_i += dη_i,
/// dρ_x,i += weight · dℓ/dρ_x,i, dw_ri += dy_i z_r (`grad_weight` strided: B's column, or m's
/// row one to one).
template <typename Value, typename Total>
LRSMC_HD void add_channel_gradient(const ChannelAdjoint<Value>& channel, const Value* z, int rank,
                                   Total& grad_bias, Total& grad_log_variance, Total* grad_weight,
                                   std::int64_t weight_stride) {
  accumulate(grad_bias, channel.grad_eta);
  accumulate(grad_log_variance, channel.grad_log_variance);
  for (int r = 0; r < rank; ++r)
    accumulate(grad_weight[r * weight_stride], channel.grad_linear * z[r]);
}

/// Adds one particle's one-to-one terms of channel i: dg_i and, reading rates, dh_i.
template <typename Value, typename Total>
LRSMC_HD void add_unit_readout_gradient(const ChannelAdjoint<Value>& channel, bool rates,
                                        Total& grad_gain, Total& grad_h) {
  accumulate(grad_gain, channel.grad_gain);
  if (rates) accumulate(grad_h, channel.grad_h);
}

}  // namespace lrsmc::math
