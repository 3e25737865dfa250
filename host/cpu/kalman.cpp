// Noise factors and optimal-proposal (Kalman) quantities with their adjoints, method.md §1.6
// and §3.4. R×R algebra on the host: these are computed once per filter call.
#include "cpu/kalman.hpp"

#include <cmath>

#include "lrsmc/errors.hpp"

namespace lrsmc::cpu {

template <typename Scalar>
Matrix<Scalar> noise_factor(const double* rho, NoiseType type, int rank) {
  Matrix<Scalar> factor = Matrix<Scalar>::Zero(rank, rank);
  for (int row = 0; row < rank; ++row) {
    if (type == NoiseType::diag) {
      factor(row, row) = static_cast<Scalar>(std::exp(0.5 * rho[row]));
      continue;
    }
    for (int column = 0; column < row; ++column)
      factor(row, column) = static_cast<Scalar>(rho[row * rank + column]);
    factor(row, row) = static_cast<Scalar>(std::exp(0.5 * rho[row * rank + row]));
  }
  return factor;
}

template <typename Scalar>
void noise_factor_backward(const Matrix<Scalar>& factor, const Matrix<Scalar>& grad_factor,
                           NoiseType type, int rank, double* grad_rho) {
  for (int row = 0; row < rank; ++row) {
    const double diagonal = 0.5 * static_cast<double>(grad_factor(row, row) * factor(row, row));
    if (type == NoiseType::diag) {
      grad_rho[row] += diagonal;
      continue;
    }
    for (int column = 0; column < row; ++column)
      grad_rho[row * rank + column] += static_cast<double>(grad_factor(row, column));
    grad_rho[row * rank + row] += diagonal;
  }
}

template <typename Scalar>
KalmanQuantities<Scalar> kalman_quantities(const Matrix<Scalar>& prior_factor,
                                           const Matrix<Scalar>& readout,
                                           const double* observation_log_variance) {
  const auto rank = prior_factor.rows();
  const auto channels = readout.cols();
  KalmanQuantities<Scalar> kalman;
  kalman.variance.resize(channels);
  for (Eigen::Index i = 0; i < channels; ++i)
    kalman.variance(i) = static_cast<Scalar>(std::max(std::exp(observation_log_variance[i]), 1e-8));
  // Σ^{-1} through the Cholesky factor: L^{-T} L^{-1}.
  const Matrix<Scalar> factor_inverse = prior_factor.template triangularView<Eigen::Lower>().solve(
      Matrix<Scalar>::Identity(rank, rank));
  kalman.precision = factor_inverse.transpose() * factor_inverse;
  const Matrix<Scalar> scaled_readout = readout * kalman.variance.cwiseInverse().asDiagonal();
  const Matrix<Scalar> information = kalman.precision + scaled_readout * readout.transpose();
  kalman.covariance = information.inverse();
  kalman.gain = kalman.covariance * scaled_readout;
  kalman.alpha = kalman.gain * readout.transpose();
  Matrix<Scalar> symmetric = Scalar(0.5) * (kalman.covariance + kalman.covariance.transpose());
  symmetric.diagonal().array() += Scalar(1e-8);
  Eigen::LLT<Matrix<Scalar>> cholesky(symmetric);
  if (cholesky.info() != Eigen::Success)
    throw NumericalError("optimal proposal: the posterior covariance is not positive definite "
                         "(noise parameters have diverged)");
  kalman.proposal_factor = cholesky.matrixL();
  return kalman;
}

template <typename Scalar>
Matrix<Scalar> cholesky_backward(const Matrix<Scalar>& factor, const Matrix<Scalar>& grad_factor) {
  // Murray (2016): Φ(Lᵀ dL) with Φ taking the lower triangle and halving the diagonal, then
  // dΣ = ½ (S + Sᵀ) with S = L^{-T} Φ L^{-1}.
  const auto rank = factor.rows();
  Matrix<Scalar> phi = factor.transpose() * grad_factor.template triangularView<Eigen::Lower>().toDenseMatrix();
  for (Eigen::Index row = 0; row < rank; ++row) {
    for (Eigen::Index column = row + 1; column < rank; ++column) phi(row, column) = Scalar(0);
    phi(row, row) *= Scalar(0.5);
  }
  const auto lower = factor.template triangularView<Eigen::Lower>();
  // S = L^{-T} Φ L^{-1}: solve Lᵀ X = Φ, then S = X L^{-1} ⇔ Sᵀ = L^{-T} Xᵀ.
  const Matrix<Scalar> left = lower.transpose().solve(phi);
  const Matrix<Scalar> both = lower.transpose().solve(left.transpose()).transpose();
  return Scalar(0.5) * (both + both.transpose());
}

template <typename Scalar>
void kalman_quantities_backward(const KalmanQuantities<Scalar>& kalman,
                                const Matrix<Scalar>& prior_factor, const Matrix<Scalar>& readout,
                                const double* observation_log_variance,
                                const Matrix<Scalar>& grad_gain,
                                const Matrix<Scalar>& grad_proposal_factor,
                                Matrix<Scalar>& grad_prior_factor, Matrix<Scalar>& grad_readout,
                                double* grad_observation_log_variance) {
  const auto channels = readout.cols();
  const Vector<Scalar> inverse_variance = kalman.variance.cwiseInverse();
  const Matrix<Scalar> scaled_readout = readout * inverse_variance.asDiagonal();
  const Matrix<Scalar>& covariance = kalman.covariance;
  // L_q = chol(½(C + Cᵀ) + εI): dC = sym(dΣ_q), which is already symmetric.
  Matrix<Scalar> grad_covariance = cholesky_backward(kalman.proposal_factor, grad_proposal_factor);
  // G = C B S^{-1}.
  grad_covariance += grad_gain * scaled_readout.transpose();
  grad_readout += covariance.transpose() * grad_gain * inverse_variance.asDiagonal();
  Vector<Scalar> grad_variance = Vector<Scalar>::Zero(channels);
  for (Eigen::Index i = 0; i < channels; ++i)
    grad_variance(i) -= grad_gain.col(i).dot(kalman.gain.col(i)) * inverse_variance(i);
  // C = Λ^{-1}, Λ = P + B S^{-1} Bᵀ.
  const Matrix<Scalar> grad_information =
      -covariance.transpose() * grad_covariance * covariance.transpose();
  grad_readout += (grad_information + grad_information.transpose()) * scaled_readout;
  const Matrix<Scalar> projected = readout.transpose() * grad_information * readout;
  for (Eigen::Index i = 0; i < channels; ++i)
    grad_variance(i) -= projected(i, i) * inverse_variance(i) * inverse_variance(i);
  // P = (L Lᵀ)^{-1}: dΣ = −P dP P; Σ = L Lᵀ: dL = (dΣ + dΣᵀ) L.
  const Matrix<Scalar> grad_prior_covariance =
      -kalman.precision.transpose() * grad_information * kalman.precision.transpose();
  grad_prior_factor += (grad_prior_covariance + grad_prior_covariance.transpose()) * prior_factor;
  for (Eigen::Index i = 0; i < channels; ++i) {
    const double variance = std::exp(observation_log_variance[i]);
    if (variance > 1e-8)  // the clip at 1e-8 stops the gradient below it
      grad_observation_log_variance[i] += static_cast<double>(grad_variance(i)) * variance;
  }
}

#define LRSMC_INSTANTIATE(Scalar)                                                             \
  template Matrix<Scalar> noise_factor<Scalar>(const double*, NoiseType, int);               \
  template void noise_factor_backward<Scalar>(const Matrix<Scalar>&, const Matrix<Scalar>&,  \
                                              NoiseType, int, double*);                      \
  template KalmanQuantities<Scalar> kalman_quantities<Scalar>(                                \
      const Matrix<Scalar>&, const Matrix<Scalar>&, const double*);                           \
  template Matrix<Scalar> cholesky_backward<Scalar>(const Matrix<Scalar>&,                    \
                                                    const Matrix<Scalar>&);                   \
  template void kalman_quantities_backward<Scalar>(                                           \
      const KalmanQuantities<Scalar>&, const Matrix<Scalar>&, const Matrix<Scalar>&,          \
      const double*, const Matrix<Scalar>&, const Matrix<Scalar>&, Matrix<Scalar>&,           \
      Matrix<Scalar>&, double*);
LRSMC_INSTANTIATE(double)
LRSMC_INSTANTIATE(float)
#undef LRSMC_INSTANTIATE

}  // namespace lrsmc::cpu
