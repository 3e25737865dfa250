// Noise Cholesky factors (chol_embed, method.md §1.6) and the time-invariant quantities of the
// optimal proposal (method.md §3.4, information form), with their hand-written adjoints.
#pragma once

#include <Eigen/Dense>
#include <vector>

#include "lrsmc/config.hpp"

namespace lrsmc::cpu {

template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// L = chol_embed(ρ) for full noise (strict lower triangle of ρ, diagonal exp(ρ_ii/2)), or
/// diag(exp(ρ/2)) for diagonal noise. ρ is (R, R) or (R) as in ParameterLayout.
template <typename Scalar>
Matrix<Scalar> noise_factor(const double* rho, NoiseType type, int rank);

/// Adds dρ for a given dL (only the lower triangle of dL is read).
template <typename Scalar>
void noise_factor_backward(const Matrix<Scalar>& factor, const Matrix<Scalar>& grad_factor,
                           NoiseType type, int rank, double* grad_rho);

/// Optimal-proposal quantities for one prior covariance L Lᵀ:
///   Σ_q = (Σ^{-1} + B S^{-1} Bᵀ)^{-1},  G = Σ_q B S^{-1},  α = G Bᵀ,
///   L_q = chol(½(Σ_q + Σ_qᵀ) + 1e-8 I),  S = diag(max(exp(ρ_x), 1e-8)).
template <typename Scalar>
struct KalmanQuantities {
  Matrix<Scalar> gain;            ///< G (R, D)
  Matrix<Scalar> alpha;           ///< α = G Bᵀ (R, R)
  Matrix<Scalar> proposal_factor; ///< L_q (R, R) lower
  // Saved for the backward pass.
  Matrix<Scalar> covariance;      ///< Σ_q before symmetrisation
  Matrix<Scalar> precision;       ///< Σ^{-1}
  Vector<Scalar> variance;        ///< S diagonal
};

template <typename Scalar>
KalmanQuantities<Scalar> kalman_quantities(const Matrix<Scalar>& prior_factor,
                                           const Matrix<Scalar>& readout,
                                           const double* observation_log_variance);

/// Given dG and dL_q, adds dL (prior factor), dB (readout) and dρ_x.
template <typename Scalar>
void kalman_quantities_backward(const KalmanQuantities<Scalar>& kalman,
                                const Matrix<Scalar>& prior_factor, const Matrix<Scalar>& readout,
                                const double* observation_log_variance,
                                const Matrix<Scalar>& grad_gain,
                                const Matrix<Scalar>& grad_proposal_factor,
                                Matrix<Scalar>& grad_prior_factor, Matrix<Scalar>& grad_readout,
                                double* grad_observation_log_variance);

/// Adjoint of Σ = L Lᵀ (Cholesky) for a lower-triangular dL: the symmetric dΣ.
template <typename Scalar>
Matrix<Scalar> cholesky_backward(const Matrix<Scalar>& factor, const Matrix<Scalar>& grad_factor);

}  // namespace lrsmc::cpu
