// The product of the transition prior 𝒩(z; μ, L Lᵀ) with a Gaussian factor of y = Bᵀ z + ε,
// ε ~ 𝒩(0, diag(S)), in information form, and its adjoint. The optimal proposal (method.md §3.4)
// takes the read-out B and the observation noise S (y = x − b); the encoder proposal (§3.3) takes
// B = I and the encoder's variances (y = the encoder's mean), which with a diagonal L is the
// reference's dimension-wise product and with a full L the exact product (lrsmc's choice).
#pragma once

#include <cmath>

#include "lrsmc/math/common.hpp"
#include "lrsmc/math/small_matrix.hpp"

namespace lrsmc::math {

/// Where gaussian_product writes: P = Σ^{-1} = L^{-T} L^{-1} (R × R), Σ_q = (P + B S^{-1} Bᵀ)^{-1}
/// (R × R), G = Σ_q B S^{-1} (R × D), α = G Bᵀ (R × R), L_q = chol(½(Σ_q + Σ_qᵀ) + 1e-8 I) and
/// Σ_r ln L_q,rr. The proposal is then μ_q = (I − α) μ + G y, z = μ_q + L_q ξ.
template <typename Pointer>
struct GaussianProductOf {
  Pointer precision;
  Pointer covariance;
  Pointer gain;
  Pointer alpha;
  Pointer proposal_factor;
  Pointer proposal_log_det;
};
using GaussianProduct = GaussianProductOf<double*>;
using GaussianProductView = GaussianProductOf<const double*>;

/// float64 scratch of gaussian_product (R·D + 3R²) and gaussian_product_backward (R·D + 6R²).
LRSMC_HD int gaussian_product_scratch_size(int rank, int channels) {
  return rank * channels + 6 * rank * rank;
}

/// Fills `out` for the prior factor L (R × R, lower), the read-out B (R × D) and the factor's
/// variances S (D). Returns false when Σ_q or its symmetrised copy is not positive definite.
LRSMC_HD bool gaussian_product(int R, int D, const double* factor, const double* readout,
                               const double* variance, const GaussianProduct& out,
                               double* scratch) {
  double* scaled_readout = scratch;       // B S^{-1} (R × D)
  double* work = scaled_readout + R * D;  // R × R each
  double* information = work + R * R;
  double* information_factor = information + R * R;
  lower_inverse(factor, R, work);
  gram_of_columns(work, R, out.precision);
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < D; ++i) scaled_readout[r * D + i] = readout[r * D + i] / variance[i];
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) {
      double sum = 0.0;
      for (int i = 0; i < D; ++i) sum += scaled_readout[r * D + i] * readout[s * D + i];
      information[r * R + s] = out.precision[r * R + s] + sum;
    }
  if (!cholesky(information, R, information_factor)) return false;
  lower_inverse(information_factor, R, work);
  gram_of_columns(work, R, out.covariance);
  matrix_product(out.covariance, scaled_readout, R, R, D, out.gain);
  matrix_product_transposed(out.gain, readout, R, D, R, out.alpha);
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s)
      work[r * R + s] =
          0.5 * (out.covariance[r * R + s] + out.covariance[s * R + r]) + (r == s ? 1e-8 : 0.0);
  if (!cholesky(work, R, out.proposal_factor)) return false;
  double log_det = 0.0;
  for (int r = 0; r < R; ++r) log_det += std::log(out.proposal_factor[r * R + r]);
  *out.proposal_log_det = log_det;
  return true;
}

/// Adjoint of L = chol(A) for a lower-triangular dL (Murray 2016): the symmetric dA =
/// ½ (S + Sᵀ), S = L^{-T} Φ(Lᵀ dL) L^{-1}, Φ taking the lower triangle and halving the diagonal.
/// `scratch` holds 3 R² values.
LRSMC_HD void cholesky_backward(const double* factor, const double* grad_factor, int R,
                                double* grad_matrix, double* scratch) {
  double* phi = scratch;
  double* inverse = phi + R * R;
  double* left = inverse + R * R;
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < R; ++j) {
      double sum = 0.0;
      for (int k = j; k < R; ++k) sum += factor[k * R + i] * grad_factor[k * R + j];
      phi[i * R + j] = j > i ? 0.0 : (j == i ? 0.5 * sum : sum);
    }
  lower_inverse(factor, R, inverse);
  // S = L^{-T} Φ L^{-1}
  transposed_matrix_product(inverse, phi, R, R, R, left);
  matrix_product(left, inverse, R, R, R, phi);
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < R; ++j) grad_matrix[i * R + j] = 0.5 * (phi[i * R + j] + phi[j * R + i]);
}

/// Adjoint of gaussian_product (the values it wrote are read back from `product`): given dG and
/// dL_q, adds dL to `grad_prior_factor` and dB to `grad_readout` (none when it is null), and
/// writes dS to `grad_variance` (D). The adjoints of α and of the log-determinant enter through
/// dG and dL_q (the caller folds them in).
LRSMC_HD void gaussian_product_backward(int R, int D, const double* factor, const double* readout,
                                        const double* variance,
                                        const GaussianProductView& product,
                                        const double* grad_gain,
                                        const double* grad_proposal_factor,
                                        double* grad_prior_factor, double* grad_readout,
                                        double* grad_variance, double* scratch) {
  const double* covariance = product.covariance;
  const double* precision = product.precision;
  const double* gain = product.gain;
  double* scaled_readout = scratch;                    // B S^{-1}, R × D
  double* grad_covariance = scaled_readout + R * D;    // R × R
  double* grad_information = grad_covariance + R * R;  // R × R
  double* work = grad_information + R * R;             // R × R
  double* cholesky_scratch = work + R * R;             // 3 R × R
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < D; ++i) scaled_readout[r * D + i] = readout[r * D + i] / variance[i];
  // L_q = chol(½(C + Cᵀ) + εI): dC = sym(dΣ_q), already symmetric.
  cholesky_backward(product.proposal_factor, grad_proposal_factor, R, grad_covariance,
                    cholesky_scratch);
  // G = C B S^{-1}.
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) {
      double sum = 0.0;
      for (int i = 0; i < D; ++i) sum += grad_gain[r * D + i] * scaled_readout[s * D + i];
      grad_covariance[r * R + s] += sum;
    }
  if (grad_readout != nullptr)
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < D; ++i) {
        double sum = 0.0;
        for (int s = 0; s < R; ++s) sum += covariance[s * R + r] * grad_gain[s * D + i];
        grad_readout[r * D + i] += sum / variance[i];
      }
  for (int i = 0; i < D; ++i) {
    double sum = 0.0;
    for (int r = 0; r < R; ++r) sum += grad_gain[r * D + i] * gain[r * D + i];
    grad_variance[i] = -sum / variance[i];
  }
  // C = Λ^{-1}, Λ = P + B S^{-1} Bᵀ: dΛ = −Cᵀ dC Cᵀ.
  transposed_matrix_product(covariance, grad_covariance, R, R, R, work);
  matrix_product_transposed(work, covariance, R, R, R, grad_information);
  for (int i = 0; i < R * R; ++i) grad_information[i] = -grad_information[i];
  if (grad_readout != nullptr)
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < D; ++i) {
        double sum = 0.0;
        for (int s = 0; s < R; ++s)
          sum += (grad_information[r * R + s] + grad_information[s * R + r]) *
                 scaled_readout[s * D + i];
        grad_readout[r * D + i] += sum;
      }
  for (int i = 0; i < D; ++i) {
    double projected = 0.0;  // (Bᵀ dΛ B)_ii
    for (int s = 0; s < R; ++s) {
      double row = 0.0;
      for (int r = 0; r < R; ++r) row += readout[r * D + i] * grad_information[r * R + s];
      projected += row * readout[s * D + i];
    }
    grad_variance[i] -= projected / variance[i] / variance[i];
  }
  // P = (L Lᵀ)^{-1}: dΣ = −Pᵀ dP Pᵀ; Σ = L Lᵀ: dL += (dΣ + dΣᵀ) L.
  transposed_matrix_product(precision, grad_information, R, R, R, work);
  matrix_product_transposed(work, precision, R, R, R, grad_covariance);
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) {
      double sum = 0.0;
      for (int k = 0; k < R; ++k)
        sum += -(grad_covariance[r * R + k] + grad_covariance[k * R + r]) * factor[k * R + s];
      grad_prior_factor[r * R + s] += sum;
    }
}

/// float64 scratch of encoder_step_constants and encoder_step_constants_backward.
LRSMC_HD int encoder_step_scratch_size(int rank) {
  return gaussian_product_scratch_size(rank, rank) + 2 * rank * rank + rank;
}

/// The encoder proposal's constants for one trial and step (method.md §3.3): the product of the
/// prior (factor L) with the encoder's factor 𝒩(z; μ_e, diag σ_e²), i.e. gaussian_product with
/// B = I and S = σ_e², and the gain term G μ_e, so that `propose` (proposal.hpp, optimal) draws
/// z = (I − α) μ + G μ_e + L_q ξ and weighs it by log 𝒩(z; μ, L Lᵀ) − log q(z). With a diagonal
/// L, α_rr = σ_p,r² / (σ_p,r² + σ_e,r²) and L_q,rr² = σ_p,r² σ_e,r² / (σ_p,r² + σ_e,r²) (+1e-8),
/// the reference's formula. Returns false when the product is not positive definite.
LRSMC_HD bool encoder_step_constants(int R, const double* factor, const double* encoder_mean,
                                     const double* encoder_variance, const GaussianProduct& out,
                                     double* gain_term, double* scratch) {
  double* identity = scratch;
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) identity[r * R + s] = r == s ? 1.0 : 0.0;
  if (!gaussian_product(R, R, factor, identity, encoder_variance, out, identity + R * R))
    return false;
  for (int r = 0; r < R; ++r) {
    double sum = 0.0;
    for (int s = 0; s < R; ++s) sum += out.gain[r * R + s] * encoder_mean[s];
    gain_term[r] = sum;
  }
  return true;
}

/// Adjoint of encoder_step_constants. The particles of the step give `mean_product`
/// M = Σ_k dμ_q,k μ_kᵀ (R × R) and `mean_sum` g = Σ_k dμ_q,k (R), the adjoints that reach α and
/// the gain term through μ_q = (I − α) μ + G μ_e with α = G, so dG = g μ_eᵀ − M; and
/// `grad_proposal_factor` dL_q, the log-determinant's 1/L_q,rr included. Adds dL to
/// `grad_prior_factor`, Gᵀ g to `grad_encoder_mean` and dσ_e² to `grad_encoder_variance`.
LRSMC_HD void encoder_step_constants_backward(int R, const double* factor,
                                              const double* encoder_mean,
                                              const double* encoder_variance,
                                              const GaussianProductView& product,
                                              const double* mean_product, const double* mean_sum,
                                              const double* grad_proposal_factor,
                                              double* grad_prior_factor, double* grad_encoder_mean,
                                              double* grad_encoder_variance, double* scratch) {
  double* identity = scratch;
  double* grad_gain = identity + R * R;
  double* grad_variance = grad_gain + R * R;
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) {
      identity[r * R + s] = r == s ? 1.0 : 0.0;
      grad_gain[r * R + s] = mean_sum[r] * encoder_mean[s] - mean_product[r * R + s];
    }
  for (int s = 0; s < R; ++s) {
    double sum = 0.0;
    for (int r = 0; r < R; ++r) sum += product.gain[r * R + s] * mean_sum[r];
    grad_encoder_mean[s] += sum;
  }
  gaussian_product_backward(R, R, factor, identity, encoder_variance, product, grad_gain,
                            grad_proposal_factor, grad_prior_factor, nullptr, grad_variance,
                            grad_variance + R);
  for (int r = 0; r < R; ++r) grad_encoder_variance[r] += grad_variance[r];
}

}  // namespace lrsmc::math
