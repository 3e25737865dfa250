// Per-line and per-vertex maths of the hyperplane-arrangement sweep that finds the fixed points of
// piecewise-linear networks (method.md §7.2, §7.5), as LRSMC_HD functions on plain arrays: the CUDA
// enumeration (kernels/fixed_points.cu) runs them per line and per vertex, and
// host/analysis/arrangement_sweep.cpp runs the same functions to finish its results.
//
// They restate, operation for operation, the CPU sweep of host/analysis/cpu_sweep.cpp
// (host/analysis/fixed_points_internal.hpp documents the method: essential space, box, simulation
// of simplicity, lowest vertex along a generic direction), so that with the kernels compiled
// without FMA contraction (-fmad=false) a line's crossing positions, and therefore its order and
// its degeneracy test, are bitwise those of the CPU. What is not restated is the ordering of a
// cluster of coincident crossings by the symbolic perturbation: the vertices inside such a
// cluster are left to the CPU code.
#pragma once

#include <cmath>
#include <cstdint>

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// Largest rank (and essential dimension) the fixed-size per-line state below holds; the CUDA
/// enumeration runs networks up to this rank, larger ones run on the CPU.
constexpr int arrangement_max_rank = 4;
/// Affine piece (M, k) of a region: rank² + rank numbers.
constexpr int arrangement_max_stride = arrangement_max_rank * arrangement_max_rank + arrangement_max_rank;

/// |sin| of the angle below which a line and a hyperplane count as parallel (normalised volume).
constexpr double arrangement_parallel_tolerance = 1e-12;
/// Relative size below which two crossings of a line coincide (see the CPU sweep).
constexpr double arrangement_coincident_tolerance = 1e-11;
/// Relative size below which a coefficient of the symbolic perturbation counts as zero.
constexpr double arrangement_coefficient_tolerance = 1e-9;
/// Pivot, relative to the largest entry, below which a region's system counts as singular.
constexpr double arrangement_singular_tolerance = 1e-12;

/// The arrangement in the essential space ℝ^dim (hyperplane p is {y : w_p·y = b_p}; the last 2·dim
/// are the faces of the bounding box) together with what a region solve needs in ℝ^rank. All
/// pointers are borrowed (host or device memory, matching where the functions run).
struct ArrangementView {
  int rank = 0;         ///< R ≤ arrangement_max_rank
  int dim = 0;          ///< essential dimension, 1 ≤ dim ≤ R
  int num_planes = 0;   ///< network hyperplanes, then 2·dim box faces
  int num_network = 0;  ///< hyperplanes of units
  double decay = 0.0;     ///< a
  double tolerance = 0.0; ///< FixedPointOptions::tolerance
  double distance = 0.0;  ///< largest distance of a hyperplane from the origin
  const double* w = nullptr;          ///< num_planes × dim
  const double* b = nullptr;          ///< num_planes
  const double* norm = nullptr;       ///< num_planes, ‖w_p‖
  const double* normal = nullptr;     ///< num_network × rank, m of the hyperplane's unit
  const double* offset = nullptr;     ///< num_network, c_u − θ_p
  const double* abs_sum = nullptr;    ///< num_network, ‖m_u‖₁
  const double* term = nullptr;       ///< num_network × (rank² + rank): σ n_u m_uᵀ, σ n_u offset_p
  const double* base = nullptr;       ///< rank² + rank: identity units (present everywhere)
  const std::int32_t* order = nullptr;  ///< num_network: the order of the membership test
  const double* direction = nullptr;  ///< dim: the generic direction g
};

/// A line of the arrangement, y(t) = y0 + t·u, the intersection of dim − 1 hyperplanes, plus the
/// two quantities of the lowest-vertex rule (g·u and pinvᵀ g).
/// Trivially constructible (it lives in CUDA shared memory): set `planes`, then call
/// build_arrangement_line, which sets every other member.
struct ArrangementLine {
  std::int32_t planes[arrangement_max_rank];  ///< dim − 1 used, increasing
  double u[arrangement_max_rank];
  double y0[arrangement_max_rank];
  double y0_norm;
  double pinv[arrangement_max_rank * arrangement_max_rank];  ///< dim × (dim − 1)
  double pinv_norm[arrangement_max_rank];
  double volume;
  double g_along;
  double g_pinv[arrangement_max_rank];
};

LRSMC_HD double arrangement_dot(const double* x, const double* y, int size) {
  double sum = 0.0;
  for (int i = 0; i < size; ++i) sum += x[i] * y[i];
  return sum;
}

LRSMC_HD double arrangement_norm2(const double* x, int size) {
  return std::sqrt(arrangement_dot(x, x, size));
}

/// Builds the line through line.planes (already set); false when their normals are numerically
/// dependent. Modified Gram–Schmidt W_P = lower·basis, pinv = basisᵀ·lower⁻¹, y0 = pinv·b_P.
LRSMC_HD bool build_arrangement_line(const ArrangementView& view, ArrangementLine& line) {
  constexpr int kMax = arrangement_max_rank;
  const int dim = view.dim;
  const int count = dim - 1;
  for (int k = 0; k < kMax; ++k) {
    line.u[k] = 0.0;
    line.y0[k] = 0.0;
    line.pinv_norm[k] = 0.0;
    line.g_pinv[k] = 0.0;
  }
  for (int k = 0; k < kMax * kMax; ++k) line.pinv[k] = 0.0;
  line.y0_norm = 0.0;
  line.volume = 1.0;
  line.g_along = 0.0;
  double basis[kMax * kMax] = {};
  double lower[kMax * kMax] = {};
  for (int j = 0; j < count; ++j) {
    const int p = line.planes[j];
    const double* w = &view.w[static_cast<std::int64_t>(p) * dim];
    double* q = &basis[j * dim];
    for (int k = 0; k < dim; ++k) q[k] = w[k];
    for (int i = 0; i < j; ++i) {
      const double* previous = &basis[i * dim];
      const double coefficient = arrangement_dot(q, previous, dim);
      lower[j * count + i] = coefficient;
      for (int k = 0; k < dim; ++k) q[k] -= coefficient * previous[k];
    }
    const double length = arrangement_norm2(q, dim);
    const double scale = view.norm[p];
    if (!(scale > 0.0) || !(length > arrangement_parallel_tolerance * scale)) return false;
    lower[j * count + j] = length;
    line.volume *= length / scale;
    for (int k = 0; k < dim; ++k) q[k] /= length;
  }
  if (!(line.volume > arrangement_parallel_tolerance)) return false;
  // Direction: the coordinate axis with the largest component orthogonal to the normals.
  double best = -1.0;
  int best_axis = 0;
  for (int axis = 0; axis < dim; ++axis) {
    double squared = 1.0;
    for (int i = 0; i < count; ++i) {
      const double component = basis[i * dim + axis];
      squared -= component * component;
    }
    if (squared > best) {
      best = squared;
      best_axis = axis;
    }
  }
  line.u[best_axis] = 1.0;
  for (int i = 0; i < count; ++i) {
    const double* q = &basis[i * dim];
    const double projection = q[best_axis];
    for (int k = 0; k < dim; ++k) line.u[k] -= projection * q[k];
  }
  const double u_length = arrangement_norm2(line.u, dim);
  for (int k = 0; k < dim; ++k) line.u[k] /= u_length;
  line.g_along = arrangement_dot(view.direction, line.u, dim);
  if (count == 0) return true;
  double inverse[kMax * kMax] = {};
  for (int column = 0; column < count; ++column) {
    for (int i = column; i < count; ++i) {
      double sum = i == column ? 1.0 : 0.0;
      for (int k = column; k < i; ++k) sum -= lower[i * count + k] * inverse[k * count + column];
      inverse[i * count + column] = sum / lower[i * count + i];
    }
  }
  for (int k = 0; k < dim; ++k) {
    for (int j = 0; j < count; ++j) {
      double sum = 0.0;
      for (int i = j; i < count; ++i) sum += basis[i * dim + k] * inverse[i * count + j];
      line.pinv[k * count + j] = sum;
    }
  }
  for (int j = 0; j < count; ++j) {
    double squared = 0.0;
    const double b = view.b[line.planes[j]];
    for (int k = 0; k < dim; ++k) {
      const double value = line.pinv[k * count + j];
      squared += value * value;
      line.y0[k] += value * b;
    }
    line.pinv_norm[j] = std::sqrt(squared);
  }
  line.y0_norm = arrangement_norm2(line.y0, dim);
  for (int j = 0; j < count; ++j) {
    double sum = 0.0;
    for (int i = 0; i < dim; ++i) sum += view.direction[i] * line.pinv[i * count + j];
    line.g_pinv[j] = sum;
  }
  return true;
}

/// ∂(w_k·y0)/∂b_{P_j}: the coefficient of ε_{P_j} in w_k·y0(ε).
LRSMC_HD double arrangement_perturbation_coefficient(const ArrangementView& view,
                                                      const ArrangementLine& line, int plane,
                                                      int j) {
  const int dim = view.dim;
  const int count = dim - 1;
  const double* w = &view.w[static_cast<std::int64_t>(plane) * dim];
  double sum = 0.0;
  for (int k = 0; k < dim; ++k) sum += w[k] * line.pinv[k * count + j];
  return sum;
}

/// Side of a hyperplane parallel to the line: its residual at the line or, when the line lies in
/// it, the ε-perturbation (the lowest index with a non-zero coefficient decides).
LRSMC_HD bool arrangement_parallel_sign(const ArrangementView& view, const ArrangementLine& line,
                                        int plane) {
  const int dim = view.dim;
  const double* w = &view.w[static_cast<std::int64_t>(plane) * dim];
  const double b = view.b[plane];
  const double residual = arrangement_dot(w, line.y0, dim) - b;
  const double scale = view.norm[plane] * line.y0_norm + std::fabs(b);
  if (std::fabs(residual) > arrangement_coincident_tolerance * scale / line.volume) {
    return residual > 0.0;
  }
  for (int j = 0; j < dim - 1; ++j) {
    if (line.planes[j] > plane) break;
    const double coefficient = arrangement_perturbation_coefficient(view, line, plane, j);
    const double coefficient_scale = view.norm[plane] * line.pinv_norm[j];
    if (std::fabs(coefficient) > arrangement_coefficient_tolerance * coefficient_scale) {
      return coefficient > 0.0;
    }
  }
  return false;
}

/// How a hyperplane not through the line meets it.
struct PlaneOnLine {
  bool crosses = false;  ///< false: parallel to the line
  bool active = false;   ///< side as t → −∞ (crossing) or everywhere (parallel)
  double t = 0.0;        ///< crossing position
  double along = 0.0;    ///< w·u
  double sine = 0.0;     ///< (w·u)/‖w‖
};

LRSMC_HD PlaneOnLine arrangement_plane_on_line(const ArrangementView& view,
                                               const ArrangementLine& line, int plane) {
  const int dim = view.dim;
  const double* w = &view.w[static_cast<std::int64_t>(plane) * dim];
  const double w_norm = view.norm[plane];
  const double wu = arrangement_dot(w, line.u, dim);
  PlaneOnLine result;
  if (w_norm > 0.0 && std::fabs(wu) / w_norm * line.volume > arrangement_parallel_tolerance) {
    const double b = view.b[plane];
    result.crosses = true;
    result.t = (b - arrangement_dot(w, line.y0, dim)) / wu;
    result.sine = wu / w_norm;
    result.along = wu;
    result.active = wu < 0.0;  // g_p → −∞·sign(w·u) as t → −∞
  } else {
    result.active = arrangement_parallel_sign(view, line, plane);
  }
  return result;
}

/// Whether two consecutive crossings (t_a ≤ t_b) of a line coincide: a vertex with more than dim
/// hyperplanes, whose order needs the symbolic perturbation.
LRSMC_HD bool arrangement_coincident(const ArrangementView& view, const ArrangementLine& line,
                                     double t_a, double sine_a, double t_b, double sine_b) {
  const double determinant = (t_b - t_a) * std::fabs(sine_a) * std::fabs(sine_b) * line.volume;
  const double t_max = math::max_of(std::fabs(t_a), std::fabs(t_b));
  const double position = std::sqrt(line.y0_norm * line.y0_norm + t_max * t_max);
  return !(determinant > arrangement_coincident_tolerance * (position + view.distance));
}

/// The vertex S = P ∪ {k} on a line without coincident crossings, reached at position t.
struct ArrangementVertex {
  int plane = 0;          ///< k
  double t = 0.0;         ///< its crossing position
  bool on_line_active[arrangement_max_rank] = {};  ///< sides of P in the region above the vertex
  bool plane_active = false;                       ///< side of k in that region
};

/// The region above the vertex along g: its sides on the vertex's hyperplanes are the signs of
/// λ in g = Σ_{s∈S} λ_s w_s, λ_k = (g·u)/(w_k·u), λ_P = pinvᵀ(g − λ_k w_k).
LRSMC_HD ArrangementVertex arrangement_vertex(const ArrangementView& view,
                                              const ArrangementLine& line, int plane, double t,
                                              double along) {
  ArrangementVertex vertex;
  vertex.plane = plane;
  vertex.t = t;
  const double lambda_k = line.g_along / along;
  for (int j = 0; j < view.dim - 1; ++j) {
    const double lambda_j =
        line.g_pinv[j] - lambda_k * arrangement_perturbation_coefficient(view, line, plane, j);
    vertex.on_line_active[j] = lambda_j > 0.0;
  }
  vertex.plane_active = lambda_k > 0.0;
  return vertex;
}

/// Side of hyperplane p in the region above the vertex. Off the vertex, the side is that of the
/// sweep: the side at t → −∞ flipped when p crosses the line before the vertex (a line without
/// coincident crossings has distinct positions, so "before" is t_p < t).
LRSMC_HD bool arrangement_vertex_active(const ArrangementView& view, const ArrangementLine& line,
                                        const ArrangementVertex& vertex, int plane) {
  for (int j = 0; j < view.dim - 1; ++j) {
    if (line.planes[j] == plane) return vertex.on_line_active[j];
  }
  if (plane == vertex.plane) return vertex.plane_active;
  const PlaneOnLine crossing = arrangement_plane_on_line(view, line, plane);
  if (!crossing.crosses) return crossing.active;
  return crossing.active != (crossing.t < vertex.t);
}

/// sums += weight · (term of hyperplane `plane`); box faces have none.
LRSMC_HD void arrangement_add_term(const ArrangementView& view, int plane, double weight,
                                   double* sums) {
  if (plane >= view.num_network) return;
  const int stride = view.rank * view.rank + view.rank;
  const double* term = &view.term[static_cast<std::int64_t>(plane) * stride];
  for (int i = 0; i < stride; ++i) sums[i] += weight * term[i];
}

/// Solves A x = b in place (A row-major n×n, b overwritten by x); false when A is numerically
/// singular (Cramer's rule for n ≤ 3, partial pivoting above), as the CPU's solve_small.
LRSMC_HD bool arrangement_solve(int size, double* matrix, double* rhs, double relative_pivot) {
  double largest = 0.0;
  for (int i = 0; i < size * size; ++i) largest = math::max_of(largest, std::fabs(matrix[i]));
  if (!(largest > 0.0)) return false;
  const double* a = matrix;
  if (size == 1) {
    rhs[0] /= a[0];
    return true;
  }
  if (size == 2) {
    const double det = a[0] * a[3] - a[1] * a[2];
    if (!(std::fabs(det) > relative_pivot * largest * largest)) return false;
    const double x0 = (rhs[0] * a[3] - a[1] * rhs[1]) / det;
    const double x1 = (a[0] * rhs[1] - rhs[0] * a[2]) / det;
    rhs[0] = x0;
    rhs[1] = x1;
    return true;
  }
  if (size == 3) {
    const double c0 = a[4] * a[8] - a[5] * a[7];
    const double c1 = a[5] * a[6] - a[3] * a[8];
    const double c2 = a[3] * a[7] - a[4] * a[6];
    const double det = a[0] * c0 + a[1] * c1 + a[2] * c2;
    if (!(std::fabs(det) > relative_pivot * largest * largest * largest)) return false;
    const double b0 = rhs[0];
    const double b1 = rhs[1];
    const double b2 = rhs[2];
    rhs[0] = (c0 * b0 + (a[2] * a[7] - a[1] * a[8]) * b1 + (a[1] * a[5] - a[2] * a[4]) * b2) / det;
    rhs[1] = (c1 * b0 + (a[0] * a[8] - a[2] * a[6]) * b1 + (a[2] * a[3] - a[0] * a[5]) * b2) / det;
    rhs[2] = (c2 * b0 + (a[1] * a[6] - a[0] * a[7]) * b1 + (a[0] * a[4] - a[1] * a[3]) * b2) / det;
    return true;
  }
  const double threshold = relative_pivot * largest;
  for (int col = 0; col < size; ++col) {
    int pivot = col;
    for (int row = col + 1; row < size; ++row) {
      if (std::fabs(matrix[row * size + col]) > std::fabs(matrix[pivot * size + col])) pivot = row;
    }
    if (!(std::fabs(matrix[pivot * size + col]) > threshold)) return false;
    if (pivot != col) {
      for (int j = 0; j < size; ++j) {
        const double swap = matrix[col * size + j];
        matrix[col * size + j] = matrix[pivot * size + j];
        matrix[pivot * size + j] = swap;
      }
      const double swap = rhs[col];
      rhs[col] = rhs[pivot];
      rhs[pivot] = swap;
    }
    const double inverse = 1.0 / matrix[col * size + col];
    for (int row = col + 1; row < size; ++row) {
      const double factor = matrix[row * size + col] * inverse;
      if (factor == 0.0) continue;
      for (int j = col; j < size; ++j) matrix[row * size + j] -= factor * matrix[col * size + j];
      rhs[row] -= factor * rhs[col];
    }
  }
  for (int row = size - 1; row >= 0; --row) {
    double sum = rhs[row];
    for (int j = row + 1; j < size; ++j) sum -= matrix[row * size + j] * rhs[j];
    rhs[row] = sum / matrix[row * size + row];
  }
  return true;
}

/// What one vertex of a sweep contributed (the CPU sweep's tally, per vertex).
struct VertexOutcome {
  bool in_box = false;     ///< the region above the vertex meets the box: it was solved
  bool vertex = false;     ///< a vertex of the network's own hyperplanes inside the box
  bool singular = false;   ///< the region's fixed-point system is singular
  bool accepted = false;   ///< its fixed point lies in the closed region; z holds it
  double z[arrangement_max_rank] = {};
};

/// Solves the region above `vertex` and tests its fixed point, given the affine piece
/// `segment_sums` (rank² + rank) of the line's segment just before the vertex (every hyperplane
/// except P in its sweep state). `was_active` is k's side before the vertex.
LRSMC_HD VertexOutcome arrangement_solve_vertex(const ArrangementView& view,
                                                const ArrangementLine& line,
                                                const ArrangementVertex& vertex, bool was_active,
                                                const double* segment_sums) {
  VertexOutcome outcome;
  const int rank = view.rank;
  const int count = view.dim - 1;
  const int last_on_line = count > 0 ? line.planes[count - 1] : -1;
  // In the box iff no box face is active (outside).
  bool inside_box = true;
  for (int p = view.num_network; p < view.num_planes && inside_box; ++p) {
    if (arrangement_vertex_active(view, line, vertex, p)) inside_box = false;
  }
  if (!inside_box) return outcome;
  outcome.in_box = true;
  outcome.vertex = last_on_line < view.num_network && vertex.plane < view.num_network;
  double sums[arrangement_max_stride];
  const int stride = rank * rank + rank;
  for (int i = 0; i < stride; ++i) sums[i] = segment_sums[i];
  if (was_active) arrangement_add_term(view, vertex.plane, -1.0, sums);
  for (int j = 0; j < count; ++j) {
    if (vertex.on_line_active[j]) arrangement_add_term(view, line.planes[j], 1.0, sums);
  }
  if (vertex.plane_active) arrangement_add_term(view, vertex.plane, 1.0, sums);
  // ((a − 1)I + M) z = −k.
  double* matrix = sums;
  double* z = sums + rank * rank;
  for (int r = 0; r < rank; ++r) {
    matrix[r * rank + r] += view.decay - 1.0;
    z[r] = -z[r];
  }
  if (!arrangement_solve(rank, matrix, z, arrangement_singular_tolerance)) {
    outcome.singular = true;
    return outcome;
  }
  double z_max = 0.0;
  for (int r = 0; r < rank; ++r) z_max = math::max_of(z_max, std::fabs(z[r]));
  for (int i = 0; i < view.num_network; ++i) {
    const int p = view.order[i];
    const double* normal = &view.normal[static_cast<std::int64_t>(p) * rank];
    const double offset = view.offset[p];
    const double value = arrangement_dot(normal, z, rank) + offset;
    const double slack = view.tolerance * (1.0 + std::fabs(offset) + view.abs_sum[p] * z_max);
    const bool active = arrangement_vertex_active(view, line, vertex, p);
    if (active ? value < -slack : value > slack) return outcome;
  }
  outcome.accepted = true;
  for (int r = 0; r < rank; ++r) outcome.z[r] = z[r];
  return outcome;
}

}  // namespace lrsmc::math
