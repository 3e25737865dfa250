// The optimal proposal's per-particle algebra, method.md §3.4, shared by the CPU backend and the
// CUDA kernels: the whitened residual of log 𝒩(z; μ, L Lᵀ) and its adjoint direction.
// Factors are lower-triangular rank×rank matrices stored row-major.
#pragma once

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// e = L^{-1}(z − μ) by forward substitution; log 𝒩(z; μ, L Lᵀ) = −½‖e‖² − Σ ln L_ii − (R/2) ln 2π.
template <typename Scalar>
LRSMC_HD void whitened_residual(int rank, const Scalar* factor, const Scalar* z, const Scalar* mean,
                                Scalar* residual) {
  for (int r = 0; r < rank; ++r) {
    Scalar value = z[r] - mean[r];
    for (int s = 0; s < r; ++s) value -= factor[r * rank + s] * residual[s];
    residual[r] = value / factor[r * rank + r];
  }
}

/// f = L^{-T} e by back substitution: ∂/∂z of −½‖e‖² is −f, ∂/∂μ is f, and ∂/∂L (lower) is
/// f eᵀ − diag(1/L_ii) with the log-determinant.
template <typename Scalar>
LRSMC_HD void whitened_adjoint(int rank, const Scalar* factor, const Scalar* residual,
                               Scalar* scaled) {
  for (int r = rank - 1; r >= 0; --r) {
    Scalar value = residual[r];
    for (int s = r + 1; s < rank; ++s) value -= factor[s * rank + r] * scaled[s];
    scaled[r] = value / factor[r * rank + r];
  }
}

}  // namespace lrsmc::math
