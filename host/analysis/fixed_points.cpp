// Fixed points of low-rank RNNs (method.md §7): the entry points of the hyperplane-arrangement
// algorithm of §7.2 (arrangement_sweep.cpp), the exhaustive enumeration of activation patterns,
// the damped Newton search that also covers tanh, and the validation of their inputs.
#include "lrsmc/fixed_points.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "analysis/arrangement_sweep.hpp"
#include "analysis/fixed_points_internal.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/arrangement.hpp"

namespace lrsmc {
namespace detail {
namespace {

void require_size(const std::string& source, const char* field, const std::vector<double>& values,
                  Index expected, const char* constraint) {
  LRSMC_REQUIRE(static_cast<Index>(values.size()) == expected, source, ": '", field,
                "' has the wrong size; got ", values.size(), ", expected ", constraint, " = ",
                expected);
}

void require_finite(const std::string& source, const char* field,
                    const std::vector<double>& values) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    LRSMC_REQUIRE(std::isfinite(values[i]), source, ": '", field, "' has a non-finite value; got ",
                  values[i], " at index ", i, ", expected finite values");
  }
}

}  // namespace

void validate_network(const PiecewiseLinearNetwork& network, const std::string& source) {
  LRSMC_REQUIRE(network.rank >= 1, source, ": rank is out of range; got ", network.rank,
                ", expected >= 1");
  LRSMC_REQUIRE(network.num_hidden >= 1, source, ": num_hidden is out of range; got ",
                network.num_hidden, ", expected >= 1");
  const int kind = static_cast<int>(network.nonlinearity);
  LRSMC_REQUIRE(kind >= 0 && kind <= static_cast<int>(Nonlinearity::identity), source,
                ": nonlinearity is not a known value; got ", kind,
                ", expected relu, clipped_relu, tanh or identity");
  LRSMC_REQUIRE(std::isfinite(network.decay), source, ": decay is not finite; got ",
                network.decay, ", expected a finite value");
  const Index num_hidden = network.num_hidden;
  const Index rank = network.rank;
  require_size(source, "m", network.m, num_hidden * rank, "num_hidden*rank (row-major N x R)");
  require_size(source, "n", network.n, rank * num_hidden, "rank*num_hidden (row-major R x N)");
  require_size(source, "h", network.h, num_hidden, "num_hidden");
  LRSMC_REQUIRE(network.constant_current.empty() ||
                    static_cast<Index>(network.constant_current.size()) == num_hidden,
                source, ": 'constant_current' has the wrong size; got ",
                network.constant_current.size(), ", expected 0 (no input) or num_hidden = ",
                num_hidden);
  require_finite(source, "m", network.m);
  require_finite(source, "n", network.n);
  require_finite(source, "h", network.h);
  require_finite(source, "constant_current", network.constant_current);
}

void validate_options(const FixedPointOptions& options, const std::string& source) {
  LRSMC_REQUIRE(std::isfinite(options.tolerance) && options.tolerance >= 0.0, source,
                ": tolerance is out of range; got ", options.tolerance,
                ", expected a finite value >= 0");
}

void require_piecewise_linear(const PiecewiseLinearNetwork& network, const std::string& source) {
  LRSMC_REQUIRE(network.nonlinearity != Nonlinearity::tanh, source,
                ": nonlinearity tanh is not piecewise linear; got tanh, expected relu, "
                "clipped_relu or identity (use find_fixed_points_numerical, the numerical "
                "Newton search, for tanh)");
}

}  // namespace detail

namespace {

using detail::build_hyperplanes;
using detail::current;
using detail::distinct_fixed_points;
using detail::finish;
using detail::Hyperplanes;
using detail::Index;
using detail::record_failure;
using detail::RegionSolver;
using detail::require_piecewise_linear;
using detail::Tally;
using detail::uniform01;
using detail::validate_network;
using detail::validate_options;

constexpr int kMaxBruteForceRelu = 20;
constexpr int kMaxBruteForceClipped = 13;

}  // namespace

std::string to_string(Stability value) {
  switch (value) {
    case Stability::stable_node:
      return "stable_node";
    case Stability::stable_spiral:
      return "stable_spiral";
    case Stability::saddle:
      return "saddle";
    case Stability::unstable_node:
      return "unstable_node";
    case Stability::unstable_spiral:
      return "unstable_spiral";
    case Stability::non_hyperbolic:
      return "non_hyperbolic";
  }
  return "unknown";
}

// ------------------------------------------------------------------------------------------
// Public entry points

double count_candidate_regions(const PiecewiseLinearNetwork& network) {
  const double num_planes = network.nonlinearity == Nonlinearity::relu ? network.num_hidden
                            : network.nonlinearity == Nonlinearity::clipped_relu
                                ? 2.0 * network.num_hidden
                                : 0.0;
  double total = 0.0;
  double binomial = 1.0;  // C(P, k)
  for (int k = 0; k <= network.rank && k <= num_planes; ++k) {
    total += binomial;
    binomial *= (num_planes - k) / (k + 1.0);
  }
  return total;
}

BackendKind choose_fixed_point_device(const PiecewiseLinearNetwork& network,
                                      const FixedPointOptions& options) {
  if (options.device != BackendKind::automatic) return options.device;
  const bool piecewise = network.nonlinearity == Nonlinearity::relu ||
                         network.nonlinearity == Nonlinearity::clipped_relu;
  if (!piecewise || network.rank > math::arrangement_max_rank ||
      count_candidate_regions(network) < fixed_points_cuda_min_regions) {
    return BackendKind::cpu;
  }
  return cuda_available() ? BackendKind::cuda : BackendKind::cpu;
}

FixedPointResult find_fixed_points(const PiecewiseLinearNetwork& network,
                                   const FixedPointOptions& options) {
  const std::string source = "find_fixed_points";
  const int device = static_cast<int>(options.device);
  LRSMC_REQUIRE(device >= 0 && device <= static_cast<int>(BackendKind::automatic), source,
                ": device is not a known value; got ", device, ", expected cpu, cuda or auto");
  const bool cuda = choose_fixed_point_device(network, options) == BackendKind::cuda;
  return detail::find_fixed_points_with(
      network, options, cuda ? detail::SweepEngine::cuda : detail::SweepEngine::cpu);
}

FixedPointResult find_fixed_points_brute_force(const PiecewiseLinearNetwork& network,
                                               const FixedPointOptions& options) {
  const std::string source = "find_fixed_points_brute_force";
  validate_network(network, source);
  validate_options(options, source);
  require_piecewise_linear(network, source);
  const int num_hidden = network.num_hidden;
  const bool clipped = network.nonlinearity == Nonlinearity::clipped_relu;
  if (network.nonlinearity == Nonlinearity::relu) {
    LRSMC_REQUIRE(num_hidden <= kMaxBruteForceRelu, source,
                  ": num_hidden is too large for exhaustive enumeration; got ", num_hidden,
                  ", expected <= ", kMaxBruteForceRelu, " for relu (2^N patterns); use find_fixed_points");
  }
  if (clipped) {
    LRSMC_REQUIRE(num_hidden <= kMaxBruteForceClipped, source,
                  ": num_hidden is too large for exhaustive enumeration; got ", num_hidden,
                  ", expected <= ", kMaxBruteForceClipped,
                  " for clipped_relu (3^N patterns); use find_fixed_points");
  }
  const Hyperplanes planes = build_hyperplanes(network);
  const RegionSolver solver(planes, options.tolerance);
  const int rank = network.rank;
  const int states = network.nonlinearity == Nonlinearity::identity ? 1 : (clipped ? 3 : 2);
  const int units = network.nonlinearity == Nonlinearity::identity ? 0 : num_hidden;
  Index num_patterns = 1;
  for (int unit = 0; unit < units; ++unit) num_patterns *= states;

  Tally total;
  std::exception_ptr failure;
  LRSMC_FIXED_POINTS_PRAGMA("omp parallel")
  {
    Tally tally;
    std::vector<std::uint8_t> active;
    std::vector<double> sums;
    bool ready = false;
    try {
      active.assign(static_cast<std::size_t>(planes.count()), 0);
      sums.resize(static_cast<std::size_t>(rank * rank + rank));
      ready = true;
    } catch (...) {
      record_failure(failure);
    }
    LRSMC_FIXED_POINTS_PRAGMA("omp for schedule(static)")
    for (Index pattern = 0; pattern < num_patterns; ++pattern) {
      if (!ready) continue;
      Index code = pattern;
      for (int unit = 0; unit < units; ++unit) {
        const int state = static_cast<int>(code % states);
        code /= states;
        if (!clipped) {
          active[static_cast<std::size_t>(unit)] = static_cast<std::uint8_t>(state);
          continue;
        }
        // Plane 2u has θ = −h, plane 2u+1 has θ = 0; the ramp activates the lower one.
        const bool first_is_low = network.h[static_cast<std::size_t>(unit)] > 0.0;
        const auto low = static_cast<std::size_t>(2 * unit + (first_is_low ? 0 : 1));
        const auto high = static_cast<std::size_t>(2 * unit + (first_is_low ? 1 : 0));
        active[low] = state >= 1 ? 1 : 0;
        active[high] = state >= 2 ? 1 : 0;
      }
      try {
        solver.sums(active.data(), sums.data());
        solver.solve(sums.data(), active.data(), tally);
      } catch (...) {
        record_failure(failure);
      }
    }
    LRSMC_FIXED_POINTS_PRAGMA("omp critical(lrsmc_fixed_points_merge)")
    total.merge(std::move(tally));
  }
  if (failure) std::rethrow_exception(failure);
  return finish(network, solver, std::move(total), options.tolerance);
}

FixedPointResult find_fixed_points_numerical(const PiecewiseLinearNetwork& network,
                                             int num_starts, std::uint64_t seed) {
  const std::string source = "find_fixed_points_numerical";
  validate_network(network, source);
  LRSMC_REQUIRE(num_starts >= 1, source, ": num_starts is out of range; got ", num_starts,
                ", expected >= 1");
  const int rank = network.rank;
  const int num_hidden = network.num_hidden;
  const double decay = network.decay;

  // Box half-widths from |z_r| = |Σ_i n_ri φ_i| / |1 − a| at a fixed point.
  std::vector<double> half_width(static_cast<std::size_t>(rank), 0.0);
  const double denominator = std::max(std::abs(1.0 - decay), 1e-3);
  for (int r = 0; r < rank; ++r) {
    double bound = 0.0;
    for (int unit = 0; unit < num_hidden; ++unit) {
      const double bias = network.h[static_cast<std::size_t>(unit)];
      double amplitude = 1.0;
      switch (network.nonlinearity) {
        case Nonlinearity::tanh:
          amplitude = 1.0;
          break;
        case Nonlinearity::clipped_relu:
          amplitude = std::abs(bias);
          break;
        case Nonlinearity::relu:
        case Nonlinearity::identity:
          amplitude = 1.0 + std::abs(current(network, unit)) + std::abs(bias);
          break;
      }
      bound += std::abs(network.n[static_cast<std::size_t>(r) * num_hidden + unit]) * amplitude;
    }
    half_width[static_cast<std::size_t>(r)] = std::max(bound / denominator, 1e-6);
  }

  Eigen::VectorXd x(num_hidden);
  Eigen::VectorXd phi(num_hidden);
  Eigen::VectorXd slope(num_hidden);
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(
      network.m.data(), num_hidden, rank);
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> n(
      network.n.data(), rank, num_hidden);
  Eigen::VectorXd c = Eigen::VectorXd::Zero(num_hidden);
  for (int unit = 0; unit < num_hidden; ++unit) c(unit) = current(network, unit);
  const Eigen::Map<const Eigen::VectorXd> h(network.h.data(), num_hidden);

  // G(z) = F(z) − z and, optionally, its Jacobian (a − 1)I + n diag(φ') m.
  const auto evaluate = [&](const Eigen::VectorXd& z, Eigen::VectorXd& residual,
                            Eigen::MatrixXd* jacobian) {
    x = m * z + c;
    for (int unit = 0; unit < num_hidden; ++unit) {
      const double value = x(unit);
      const double bias = h(unit);
      switch (network.nonlinearity) {
        case Nonlinearity::relu:
          phi(unit) = std::max(value - bias, 0.0);
          slope(unit) = value - bias > 0.0 ? 1.0 : 0.0;
          break;
        case Nonlinearity::clipped_relu:
          phi(unit) = std::max(value + bias, 0.0) - std::max(value, 0.0);
          slope(unit) = (value + bias > 0.0 ? 1.0 : 0.0) - (value > 0.0 ? 1.0 : 0.0);
          break;
        case Nonlinearity::tanh: {
          const double t = std::tanh(value - bias);
          phi(unit) = t;
          slope(unit) = 1.0 - t * t;
          break;
        }
        case Nonlinearity::identity:
          phi(unit) = value - bias;
          slope(unit) = 1.0;
          break;
      }
    }
    residual = (decay - 1.0) * z + n * phi;
    if (jacobian != nullptr) {
      *jacobian = (decay - 1.0) * Eigen::MatrixXd::Identity(rank, rank) +
                  n * slope.asDiagonal() * m;
    }
  };

  FixedPointResult result;
  std::vector<std::vector<double>> found;
  std::uint64_t state = seed;
  Eigen::VectorXd z(rank);
  Eigen::VectorXd trial(rank);
  Eigen::VectorXd residual(rank);
  Eigen::VectorXd trial_residual(rank);
  Eigen::MatrixXd jacobian(rank, rank);
  constexpr int kMaxIterations = 100;
  for (int start = 0; start < num_starts; ++start) {
    for (int r = 0; r < rank; ++r) {
      z(r) = (2.0 * uniform01(state) - 1.0) * half_width[static_cast<std::size_t>(r)];
    }
    evaluate(z, residual, &jacobian);
    double error = residual.lpNorm<Eigen::Infinity>();
    for (int iteration = 0; iteration < kMaxIterations; ++iteration) {
      if (error <= 1e-13 * (1.0 + z.lpNorm<Eigen::Infinity>())) break;
      Eigen::FullPivLU<Eigen::MatrixXd> lu(jacobian);
      ++result.num_solves;
      if (!lu.isInvertible()) break;
      const Eigen::VectorXd step = -lu.solve(residual);
      // Backtracking on ‖G‖: piecewise-linear maps make full steps overshoot kinks.
      double scale = 1.0;
      bool improved = false;
      while (scale >= 1e-8) {
        trial = z + scale * step;
        evaluate(trial, trial_residual, nullptr);
        const double trial_error = trial_residual.lpNorm<Eigen::Infinity>();
        if (trial_error < (1.0 - 1e-4 * scale) * error) {
          z = trial;
          error = trial_error;
          improved = true;
          break;
        }
        scale *= 0.5;
      }
      if (!improved) break;
      evaluate(z, residual, &jacobian);
    }
    if (error <= 1e-9 * (1.0 + z.lpNorm<Eigen::Infinity>())) {
      found.emplace_back(z.data(), z.data() + rank);
    }
  }
  result.fixed_points = distinct_fixed_points(network, std::move(found), 1e-9);
  return result;
}

}  // namespace lrsmc
