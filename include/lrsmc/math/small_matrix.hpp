// Dense algebra on small row-major matrices (rank × rank, rank × channels) for the per-call
// constants of model_constants.hpp: Cholesky factorisation, triangular inverses and solves,
// products. Plain loops in a fixed order, the same on the host and on one GPU thread.
#pragma once

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// L with A = L Lᵀ (n × n, lower, upper part zeroed); false when A is not positive definite.
template <typename Scalar>
LRSMC_HD bool cholesky(const Scalar* a, int n, Scalar* lower) {
  for (int i = 0; i < n * n; ++i) lower[i] = Scalar(0);
  for (int j = 0; j < n; ++j) {
    Scalar diagonal = a[j * n + j];
    for (int k = 0; k < j; ++k) diagonal -= lower[j * n + k] * lower[j * n + k];
    if (!(diagonal > Scalar(0))) return false;
    const Scalar root = std::sqrt(diagonal);
    lower[j * n + j] = root;
    for (int i = j + 1; i < n; ++i) {
      Scalar value = a[i * n + j];
      for (int k = 0; k < j; ++k) value -= lower[i * n + k] * lower[j * n + k];
      lower[i * n + j] = value / root;
    }
  }
  return true;
}

/// L^{-1} of a lower-triangular L (n × n), by forward substitution column by column.
template <typename Scalar>
LRSMC_HD void lower_inverse(const Scalar* lower, int n, Scalar* inverse) {
  for (int i = 0; i < n * n; ++i) inverse[i] = Scalar(0);
  for (int column = 0; column < n; ++column) {
    for (int i = column; i < n; ++i) {
      Scalar value = i == column ? Scalar(1) : Scalar(0);
      for (int k = column; k < i; ++k) value -= lower[i * n + k] * inverse[k * n + column];
      inverse[i * n + column] = value / lower[i * n + i];
    }
  }
}

/// XᵀX of an n × n matrix X (for Σ^{-1} = L^{-T} L^{-1} with X = L^{-1}); exactly symmetric:
/// entries (i, j) and (j, i) add the same products in the same order.
template <typename Scalar>
LRSMC_HD void gram_of_columns(const Scalar* x, int n, Scalar* out) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      Scalar sum = 0;
      for (int k = 0; k < n; ++k) sum += x[k * n + i] * x[k * n + j];
      out[i * n + j] = sum;
    }
}

/// C = A B with A (n × k), B (k × m); C may not alias A or B.
template <typename Scalar>
LRSMC_HD void matrix_product(const Scalar* a, const Scalar* b, int n, int k, int m, Scalar* c) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      Scalar sum = 0;
      for (int l = 0; l < k; ++l) sum += a[i * k + l] * b[l * m + j];
      c[i * m + j] = sum;
    }
}

/// C = A Bᵀ with A (n × k), B (m × k).
template <typename Scalar>
LRSMC_HD void matrix_product_transposed(const Scalar* a, const Scalar* b, int n, int k, int m,
                                        Scalar* c) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      Scalar sum = 0;
      for (int l = 0; l < k; ++l) sum += a[i * k + l] * b[j * k + l];
      c[i * m + j] = sum;
    }
}

/// C = Aᵀ B with A (k × n), B (k × m).
template <typename Scalar>
LRSMC_HD void transposed_matrix_product(const Scalar* a, const Scalar* b, int n, int k, int m,
                                        Scalar* c) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      Scalar sum = 0;
      for (int l = 0; l < k; ++l) sum += a[l * n + i] * b[l * m + j];
      c[i * m + j] = sum;
    }
}

/// Solves L y = x then Lᵀ z = y in place (x ← (L Lᵀ)^{-1} x) for a Cholesky factor L (n × n).
template <typename Scalar>
LRSMC_HD void cholesky_solve(const Scalar* lower, int n, Scalar* x) {
  for (int i = 0; i < n; ++i) {
    Scalar value = x[i];
    for (int k = 0; k < i; ++k) value -= lower[i * n + k] * x[k];
    x[i] = value / lower[i * n + i];
  }
  for (int i = n - 1; i >= 0; --i) {
    Scalar value = x[i];
    for (int k = i + 1; k < n; ++k) value -= lower[k * n + i] * x[k];
    x[i] = value / lower[i * n + i];
  }
}

}  // namespace lrsmc::math
