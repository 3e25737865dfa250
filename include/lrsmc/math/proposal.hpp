// The proposals of one particle and their adjoints, method.md §3.2 (bootstrap, z = μ + L ξ with
// the full Cholesky factor) and §3.4 (optimal proposal for Gaussian read-outs), for every engine.
// Factors are lower-triangular rank×rank matrices stored row-major.
#pragma once

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// The step-dependent constants of one phase (the initial step, or the later steps) in the
/// working precision; the optimal-proposal members are only read when `optimal` is set.
template <typename Scalar>
struct PhaseConstants {
  const Scalar* factor = nullptr;           ///< L (rank, rank): Σ = L Lᵀ (Σ_z0 or Σ_z)
  Scalar log_det = 0;                       ///< Σ_r ln L_rr
  const Scalar* gain = nullptr;             ///< G (rank, channels)
  const Scalar* alpha = nullptr;            ///< α = G Bᵀ (rank, rank)
  const Scalar* proposal_factor = nullptr;  ///< L_q (rank, rank)
  Scalar proposal_log_det = 0;              ///< Σ_r ln L_q,rr
};

/// e = L^{-1}(z − μ) by forward substitution; log 𝒩(z; μ, L Lᵀ) = −½‖e‖² − Σ ln L_ii − (R/2) ln 2π.
template <typename Scalar, typename Value>
LRSMC_HD void whitened_residual(int rank, const Scalar* factor, const Value* z, const Value* mean,
                                Value* residual) {
  for (int r = 0; r < rank; ++r) {
    Value value = z[r] - mean[r];
    for (int s = 0; s < r; ++s) value -= factor[r * rank + s] * residual[s];
    residual[r] = value / factor[r * rank + r];
  }
}

/// f = L^{-T} e by back substitution: ∂/∂z of −½‖e‖² is −f, ∂/∂μ is f, and ∂/∂L (lower) is
/// f eᵀ − diag(1/L_ii) with the log-determinant.
template <typename Scalar, typename Value>
LRSMC_HD void whitened_adjoint(int rank, const Scalar* factor, const Value* residual,
                               Value* scaled) {
  for (int r = rank - 1; r >= 0; --r) {
    Value value = residual[r];
    for (int s = r + 1; s < rank; ++s) value -= factor[s * rank + r] * scaled[s];
    scaled[r] = value / factor[r * rank + r];
  }
}

/// G (x_t − b): the optimal proposal's data term, the same for every particle of a step.
template <typename Scalar>
LRSMC_HD void gain_observation(const PhaseConstants<Scalar>& phase, int rank, int channels,
                               const Scalar* observed, const Scalar* readout_bias, Scalar* out) {
  for (int r = 0; r < rank; ++r) {
    Scalar sum = 0;
    for (int i = 0; i < channels; ++i)
      sum += phase.gain[r * channels + i] * (observed[i] - readout_bias[i]);
    out[r] = sum;
  }
}

/// Draws z from the proposal given the transition mean μ and the standard normals ξ, and
/// returns the proposal's part of the log-weight (the observation term is added by the caller):
///   bootstrap: z = μ + L ξ; 0 (prior and proposal cancel);
///   optimal:   μ_q = (I − α) μ + G (x − b), z = μ_q + L_q ξ;
///              log 𝒩(z; μ, L Lᵀ) − log 𝒩(z; μ_q, L_q L_qᵀ) = −½‖L^{-1}(z − μ)‖² − Σ ln L_ii
///              + ½‖ξ‖² + Σ ln L_q,ii.
/// `gain_term` is G (x − b) (optimal only); `scratch` holds rank values.
template <typename Scalar, typename Value>
LRSMC_HD Value propose(bool optimal, int rank, const PhaseConstants<Scalar>& phase,
                       const Scalar* gain_term, const Value* mean, const Value* xi, Value* scratch,
                       Value* z) {
  if (!optimal) {
    for (int r = 0; r < rank; ++r) {
      Value value = mean[r];
      for (int s = 0; s <= r; ++s) value += phase.factor[r * rank + s] * xi[s];
      z[r] = value;
    }
    return Value(0);
  }
  Value* proposal_mean = scratch;
  for (int r = 0; r < rank; ++r) {
    Value value = mean[r] + gain_term[r];
    for (int s = 0; s < rank; ++s) value -= phase.alpha[r * rank + s] * mean[s];
    proposal_mean[r] = value;
  }
  for (int r = 0; r < rank; ++r) {
    Value value = proposal_mean[r];
    for (int s = 0; s <= r; ++s) value += phase.proposal_factor[r * rank + s] * xi[s];
    z[r] = value;
  }
  Value* residual = scratch;  // over μ_q, which z has used
  whitened_residual(rank, phase.factor, z, mean, residual);
  Value squared = Value(0), noise_squared = Value(0);
  for (int r = 0; r < rank; ++r) {
    squared += residual[r] * residual[r];
    noise_squared += xi[r] * xi[r];
  }
  return Scalar(-0.5) * squared - phase.log_det + Scalar(0.5) * noise_squared +
         phase.proposal_log_det;
}

/// What the reverse sweep keeps of one particle's proposal adjoint for the constants' adjoints:
/// dz (after the transition density's term), and for the optimal proposal e = L^{-1}(z − μ)
/// and f = L^{-T} e.
template <typename Value>
struct ProposalRecord {
  Value* grad_z;    ///< in: dz from the observation and later steps; out: dμ_q (optimal) or dz
  Value* residual;  ///< e (optimal)
  Value* scaled;    ///< f (optimal)
};

/// Adjoint of propose() for one particle with log-weight adjoint `weight`: fills the record and
/// the adjoint dμ of the transition mean.
///   bootstrap: dμ = dz;
///   optimal:   dz −= weight f;  dμ = dz + weight f − αᵀ dz (μ_q = (I − α) μ + G (x − b)).
template <typename Scalar, typename Value>
LRSMC_HD void propose_adjoint(bool optimal, int rank, const PhaseConstants<Scalar>& phase,
                              const Value* z, const Value* mean, Value weight,
                              const ProposalRecord<Value>& record, Value* grad_mean) {
  Value* grad_z = record.grad_z;
  if (!optimal) {
    for (int r = 0; r < rank; ++r) grad_mean[r] = grad_z[r];
    return;
  }
  whitened_residual(rank, phase.factor, z, mean, record.residual);
  whitened_adjoint(rank, phase.factor, record.residual, record.scaled);
  for (int r = 0; r < rank; ++r) grad_z[r] -= weight * record.scaled[r];
  for (int r = 0; r < rank; ++r) {
    Value value = grad_z[r] + weight * record.scaled[r];
    for (int s = 0; s < rank; ++s) value -= phase.alpha[s * rank + r] * grad_z[s];
    grad_mean[r] = value;
  }
}

/// One particle's term of entry (r, s ≤ r) of dL, the adjoint of the phase's noise factor:
///   optimal:   weight f_r e_s − [r = s] weight / L_rr (the transition density and its log-det);
///   bootstrap: dz_r ξ_s (z = μ + L ξ).
template <typename Scalar, typename Value>
LRSMC_HD Wide<Value> factor_adjoint_term(bool optimal, int rank,
                                         const PhaseConstants<Scalar>& phase, Value weight,
                                         const Value* grad_z, const Value* xi,
                                         const Value* residual, const Value* scaled, int r, int s) {
  if (!optimal) return widen(grad_z[r] * xi[s]);
  Wide<Value> term = widen(weight * scaled[r] * residual[s]);
  if (r == s) term -= widen(weight / phase.factor[r * rank + r]);
  return term;
}

/// One particle's term of entry (r, s ≤ r) of dL_q (optimal): dμ_q,r ξ_s (z = μ_q + L_q ξ), and on
/// the diagonal weight / L_q,rr (−log q = ½‖ξ‖² + Σ ln L_q,ii + const).
template <typename Scalar, typename Value>
LRSMC_HD Wide<Value> proposal_factor_adjoint_term(int rank, const PhaseConstants<Scalar>& phase,
                                                  Value weight, const Value* grad_z,
                                                  const Value* xi, int r, int s) {
  Wide<Value> term = widen(grad_z[r] * xi[s]);
  if (r == s) term += widen(weight / phase.proposal_factor[r * rank + r]);
  return term;
}

/// One particle's term of entry (r, s) of Σ dμ_q μᵀ (optimal), from which dG and dB follow.
template <typename Value>
LRSMC_HD Wide<Value> mean_product_term(const Value* grad_z, const Value* mean, int r, int s) {
  return widen(grad_z[r] * mean[s]);
}

/// The step's term of entry (r, i) of dG (optimal): (Σ_k dμ_q,r)(x_i − b_i), where
/// `gain_sum` is Σ_k dμ_q,r in float64 (particles in index order).
template <typename Scalar, typename RoundedProduct>
LRSMC_HD double gain_adjoint_term(double gain_sum, Scalar observed, Scalar bias,
                                  const RoundedProduct& product) {
  return product(gain_sum, double(observed - bias));
}

/// One particle's term of Σ dμ · z_{t−1}, the adjoint of the decay a (μ = a z_{t−1} + …).
template <typename Value>
LRSMC_HD Wide<Value> decay_adjoint_term(int rank, const Value* grad_mean, const Value* previous) {
  Wide<Value> term = Wide<Value>(0.0);
  for (int r = 0; r < rank; ++r) term += widen(grad_mean[r] * previous[r]);
  return term;
}

}  // namespace lrsmc::math
