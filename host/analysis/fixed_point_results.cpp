// The fixed points found, finished (method.md §7.1, §7.5): recomputed from their activations,
// duplicates merged, and each described by its unit pattern, Jacobian eigenvalues and stability.
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "analysis/fixed_points_internal.hpp"

namespace lrsmc::detail {
namespace {

/// Fixed points closer than this (relative, max-norm) are one.
constexpr double kDuplicateDistance = 1e-7;
/// |λ| within this of 1 is non-hyperbolic.
constexpr double kUnitCircleTolerance = 1e-9;

/// Unit slopes (and the reported pattern) at z, with kinks assigned to the lower side.
void unit_slopes(const PiecewiseLinearNetwork& network, const double* z, double tolerance,
                 std::vector<double>& slope, std::vector<std::int8_t>& pattern, bool& on_boundary) {
  const int rank = network.rank;
  const int num_hidden = network.num_hidden;
  double z_max = 0.0;
  for (int r = 0; r < rank; ++r) z_max = std::max(z_max, std::abs(z[r]));
  slope.assign(static_cast<std::size_t>(num_hidden), 0.0);
  pattern.clear();
  on_boundary = false;
  const bool piecewise = network.nonlinearity == Nonlinearity::relu ||
                         network.nonlinearity == Nonlinearity::clipped_relu;
  if (piecewise) pattern.assign(static_cast<std::size_t>(num_hidden), 0);
  for (int unit = 0; unit < num_hidden; ++unit) {
    const double* m_row = &network.m[static_cast<std::size_t>(unit) * rank];
    double abs_sum = 0.0;
    for (int r = 0; r < rank; ++r) abs_sum += std::abs(m_row[r]);
    const double c = current(network, unit);
    const double x = dot(m_row, z, rank) + c;
    const double bias = network.h[static_cast<std::size_t>(unit)];
    const double slack = tolerance * (1.0 + std::abs(c) + std::abs(bias) + abs_sum * z_max);
    const auto u = static_cast<std::size_t>(unit);
    switch (network.nonlinearity) {
      case Nonlinearity::relu: {
        const double value = x - bias;
        if (std::abs(value) <= slack) on_boundary = true;
        const bool on = value > slack;
        pattern[u] = on ? 1 : 0;
        slope[u] = on ? 1.0 : 0.0;
        break;
      }
      case Nonlinearity::clipped_relu: {
        const double low = std::min(-bias, 0.0);
        const double high = std::max(-bias, 0.0);
        if (std::abs(x - low) <= slack || std::abs(x - high) <= slack) on_boundary = true;
        const int state = (x - low > slack ? 1 : 0) + (x - high > slack ? 1 : 0);
        pattern[u] = static_cast<std::int8_t>(state);
        slope[u] = state == 1 ? (bias > 0.0 ? 1.0 : -1.0) : 0.0;
        break;
      }
      case Nonlinearity::tanh: {
        const double value = std::tanh(x - bias);
        slope[u] = 1.0 - value * value;
        break;
      }
      case Nonlinearity::identity:
        slope[u] = 1.0;
        break;
    }
  }
}

Stability classify(const std::vector<double>& real, const std::vector<double>& imag) {
  bool any_inside = false;
  bool any_outside = false;
  bool any_complex = false;
  for (std::size_t i = 0; i < real.size(); ++i) {
    const double modulus = std::hypot(real[i], imag[i]);
    if (std::abs(modulus - 1.0) <= kUnitCircleTolerance) return Stability::non_hyperbolic;
    if (modulus < 1.0) any_inside = true;
    if (modulus > 1.0) any_outside = true;
    if (std::abs(imag[i]) > 1e-12 * std::max(1.0, modulus)) any_complex = true;
  }
  if (any_inside && any_outside) return Stability::saddle;
  if (any_inside) return any_complex ? Stability::stable_spiral : Stability::stable_node;
  return any_complex ? Stability::unstable_spiral : Stability::unstable_node;
}

FixedPoint describe(const PiecewiseLinearNetwork& network, std::vector<double> z, double tolerance) {
  const int rank = network.rank;
  const int num_hidden = network.num_hidden;
  FixedPoint point;
  std::vector<double> slope;
  unit_slopes(network, z.data(), tolerance, slope, point.pattern, point.on_boundary);
  Eigen::MatrixXd jacobian = network.decay * Eigen::MatrixXd::Identity(rank, rank);
  for (int unit = 0; unit < num_hidden; ++unit) {
    const double s = slope[static_cast<std::size_t>(unit)];
    if (s == 0.0) continue;
    for (int r = 0; r < rank; ++r) {
      const double n_value = s * network.n[static_cast<std::size_t>(r) * num_hidden + unit];
      for (int q = 0; q < rank; ++q) {
        jacobian(r, q) += n_value * network.m[static_cast<std::size_t>(unit) * rank + q];
      }
    }
  }
  Eigen::EigenSolver<Eigen::MatrixXd> solver(jacobian, false);
  std::vector<std::pair<double, double>> eigenvalues;
  for (int r = 0; r < rank; ++r) {
    eigenvalues.emplace_back(solver.eigenvalues()(r).real(), solver.eigenvalues()(r).imag());
  }
  std::sort(eigenvalues.begin(), eigenvalues.end(), [](const auto& a, const auto& b) {
    const double modulus_a = std::hypot(a.first, a.second);
    const double modulus_b = std::hypot(b.first, b.second);
    if (modulus_a != modulus_b) return modulus_a > modulus_b;
    if (a.first != b.first) return a.first > b.first;
    return a.second > b.second;
  });
  for (const auto& [real, imag] : eigenvalues) {
    point.eigenvalues_real.push_back(real);
    point.eigenvalues_imag.push_back(imag);
  }
  point.stability = classify(point.eigenvalues_real, point.eigenvalues_imag);
  point.z = std::move(z);
  return point;
}

}  // namespace

std::vector<FixedPoint> distinct_fixed_points(const PiecewiseLinearNetwork& network,
                                              std::vector<std::vector<double>> points,
                                              double tolerance) {
  std::sort(points.begin(), points.end());
  std::vector<std::vector<double>> kept;
  for (auto& point : points) {
    double size = 1.0;
    for (const double value : point) size = std::max(size, std::abs(value));
    const double radius = kDuplicateDistance * size;
    bool duplicate = false;
    // Sorted by the first coordinate: only kept points with z_0 ≥ point_0 − radius can match.
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
      if ((*it)[0] < point[0] - radius) break;
      double distance = 0.0;
      for (std::size_t r = 0; r < point.size(); ++r) {
        distance = std::max(distance, std::abs((*it)[r] - point[r]));
      }
      if (distance <= radius) {
        duplicate = true;
        break;
      }
    }
    if (!duplicate) kept.push_back(std::move(point));
  }
  std::vector<FixedPoint> result;
  result.reserve(kept.size());
  for (auto& point : kept) result.push_back(describe(network, std::move(point), tolerance));
  return result;
}

FixedPointResult finish(const PiecewiseLinearNetwork& network, const RegionSolver& solver,
                        Tally&& tally, double tolerance) {
  const int rank = network.rank;
  std::vector<std::vector<double>> points;
  points.reserve(tally.points.size());
  std::vector<double> sums(static_cast<std::size_t>(rank * rank + rank));
  const double* z = sums.data() + rank * rank;
  for (auto& raw : tally.points) {
    solver.sums(raw.active.data(), sums.data());
    if (solver.fixed_point(sums.data()) && solver.inside(z, raw.active.data())) {
      points.emplace_back(z, z + rank);
    } else {
      points.push_back(std::move(raw.z));
    }
  }
  FixedPointResult result;
  result.fixed_points = distinct_fixed_points(network, std::move(points), tolerance);
  result.num_vertices = tally.vertices;
  result.num_regions = tally.regions;
  result.num_solves = tally.solves;
  result.num_singular_regions = tally.singular;
  return result;
}

}  // namespace lrsmc::detail
