// Fixed points of low-rank RNNs (method.md §7): the hyperplane-arrangement algorithm of §7.2 made
// exact for degenerate arrangements, exhaustive enumeration of activation patterns, and a damped
// Newton search that also covers tanh.
//
// How the arrangement algorithm finds every region (the decisions behind the code below).
//
// * Hyperplanes. A unit contributes σ·relu(g_p(z)) per hyperplane p, g_p(z) = m_u·z + c_u − θ_p:
//   relu has one (θ = h, σ = +1), clipped_relu two (θ = −h, σ = +1 and θ = 0, σ = −1, since
//   φ = relu(X + h) − relu(X)). In a region with activations d_p ∈ {0, 1},
//   F(z) = a z + M z + k with M = Σ d_p σ_p n_u m_uᵀ and k = Σ d_p σ_p n_u (c_u − θ_p), so the
//   region's fixed point solves ((a − 1)I + M) z = −k (method.md §7.1, §7.5).
// * Essential space. Normals are projected onto their span (dimension r ≤ R); the arrangement is
//   enumerated there, where every region is a pointed polyhedron. Hyperplanes whose normal is
//   zero are constant and stay in the bookkeeping with a fixed sign.
// * Simulation of simplicity. Offsets are perturbed symbolically, b_p → b_p + ε_p with
//   ε_0 ≫ ε_1 ≫ … > 0. The perturbed arrangement is simple (exactly r hyperplanes through each
//   vertex, one vertex per independent r-subset), its regions include every region of the real
//   arrangement, and the extra ones are slivers of zero width. Whenever a hyperplane passes
//   through a point within tolerance, its side is the sign of the leading ε-term, so coincident
//   hyperplanes, concurrent hyperplanes and exact ties along a sweep are all decided
//   consistently, with no enumeration of sign vectors.
// * Lowest vertex. With a fixed generic direction g, every region bounded below along g has a
//   unique lowest vertex v, and among the 2^r regions around v exactly one lies above it: the one
//   whose sign on each hyperplane s through v is the sign of λ_s, where g = Σ λ_s w_s. So a region
//   is emitted exactly once, by its lowest vertex. The 2r faces of a bounding box are added as
//   hyperplanes (essential_level), so every region that meets the box is bounded there and has
//   a lowest vertex; dimension 0 (no hyperplane) is one region.
// * Sweeps. Vertices are visited by sweeping each line of the arrangement (the intersection of
//   r − 1 independent hyperplanes): crossings are sorted along the line (ties by the ε-order), and
//   the activation pattern and the sums M, k are updated by one hyperplane per crossing. A vertex
//   is handled on the line of its r − 1 lowest-index hyperplanes. So a region costs O(R²) to set
//   up plus an R×R solve, and the membership test stops at the first hyperplane on the wrong side.
#include "lrsmc/fixed_points.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "analysis/arrangement_sweep.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/arrangement.hpp"

#if defined(_OPENMP)
#define LRSMC_FIXED_POINTS_PRAGMA(text) _Pragma(text)
#else
#define LRSMC_FIXED_POINTS_PRAGMA(text)
#endif

namespace lrsmc {

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

namespace {

using Index = std::int64_t;

/// |sin| of the angle below which a line and a hyperplane count as parallel (normalised volume).
constexpr double kParallelTolerance = math::arrangement_parallel_tolerance;
/// Relative rounding below which two crossings of a line coincide (a vertex with more than r
/// hyperplanes) or a parallel hyperplane contains the line. Well above rounding errors (~1e-16
/// relative, amplified by the line's conditioning, which the tests divide by), well below any
/// real separation one can expect to resolve.
constexpr double kCoincidentTolerance = math::arrangement_coincident_tolerance;
/// Relative size below which a coefficient of the symbolic perturbation counts as zero.
constexpr double kCoefficientTolerance = math::arrangement_coefficient_tolerance;
/// Pivot, relative to the largest entry, below which a region's system counts as singular.
constexpr double kSingularTolerance = math::arrangement_singular_tolerance;
/// Fixed points closer than this (relative, max-norm) are one.
constexpr double kDuplicateDistance = 1e-7;
/// |λ| within this of 1 is non-hyperbolic.
constexpr double kUnitCircleTolerance = 1e-9;
/// Angle (and relative offset) within which hyperplanes are snapped onto exact degeneracy.
constexpr double kSnapTolerance = 1e-9;
/// Half-width of the search box relative to the largest distance of a hyperplane from the origin.
constexpr double kBoxScale = 1e6;
constexpr int kMaxBruteForceRelu = 20;
constexpr int kMaxBruteForceClipped = 13;

// ------------------------------------------------------------------------------------------
// Validation

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

double current(const PiecewiseLinearNetwork& network, int unit) {
  return network.constant_current.empty() ? 0.0
                                          : network.constant_current[static_cast<std::size_t>(unit)];
}

// ------------------------------------------------------------------------------------------
// Small dense linear algebra

double dot(const double* x, const double* y, int size) { return math::arrangement_dot(x, y, size); }

double norm2(const double* x, int size) { return math::arrangement_norm2(x, size); }

/// Deterministic pseudo-random numbers (splitmix64), identical on every platform.
std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t value = (state += 0x9E3779B97F4A7C15ULL);
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

double uniform01(std::uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

/// A fixed generic unit direction in `dim` dimensions (the same for every call with the same
/// `salt`): uniform in the cube, normalised (genericity, not uniformity on the sphere, matters).
std::vector<double> generic_direction(int dim, std::uint64_t salt = 0) {
  std::uint64_t state = 0x5EEDF00DULL + static_cast<std::uint64_t>(dim) * 7919ULL + salt * 104729ULL;
  std::vector<double> direction(static_cast<std::size_t>(dim));
  for (;;) {
    for (double& value : direction) value = 2.0 * uniform01(state) - 1.0;
    const double length = norm2(direction.data(), dim);
    if (length > 0.1) {
      for (double& value : direction) value /= length;
      return direction;
    }
  }
}

// ------------------------------------------------------------------------------------------
// Hyperplanes of the network

/// Every hyperplane p of the network: g_p(z) = normal_p·z + offset_p, contributing
/// sign_p · n_unit · relu(g_p(z)) to F. Identity units have none and live in base_*.
struct Hyperplanes {
  int rank = 0;
  double decay = 0.0;
  std::vector<int> unit;
  std::vector<double> normal;       // p*R, m_unit
  std::vector<double> offset;       // c_unit − θ_p
  std::vector<double> abs_sum;      // ‖m_unit‖₁
  // An affine piece is stored as R*R + R numbers: M (row-major) then k.
  std::vector<double> term;  // per hyperplane: sign·n_unit m_unitᵀ, sign·n_unit·offset_p
  std::vector<double> base;  // contributions present everywhere (identity units)

  int num_network = 0;  // hyperplanes of units; any after them bound the search box (no term)

  [[nodiscard]] int count() const { return static_cast<int>(unit.size()); }
  [[nodiscard]] int stride() const { return rank * rank + rank; }
};

Hyperplanes build_hyperplanes(const PiecewiseLinearNetwork& network) {
  const int rank = network.rank;
  const int num_hidden = network.num_hidden;
  Hyperplanes planes;
  planes.rank = rank;
  planes.decay = network.decay;
  planes.base.assign(static_cast<std::size_t>(rank * rank + rank), 0.0);
  const auto add = [&](int unit, double theta, double sign) {
    const double offset = current(network, unit) - theta;
    const double* m_row = &network.m[static_cast<std::size_t>(unit) * rank];
    planes.unit.push_back(unit);
    planes.offset.push_back(offset);
    double abs_sum = 0.0;
    for (int r = 0; r < rank; ++r) {
      planes.normal.push_back(m_row[r]);
      abs_sum += std::abs(m_row[r]);
    }
    planes.abs_sum.push_back(abs_sum);
    for (int r = 0; r < rank; ++r) {
      const double n_value = sign * network.n[static_cast<std::size_t>(r) * num_hidden + unit];
      for (int s = 0; s < rank; ++s) planes.term.push_back(n_value * m_row[s]);
    }
    for (int r = 0; r < rank; ++r) {
      planes.term.push_back(sign * network.n[static_cast<std::size_t>(r) * num_hidden + unit] *
                                   offset);
    }
  };
  for (int unit = 0; unit < num_hidden; ++unit) {
    const double bias = network.h[static_cast<std::size_t>(unit)];
    switch (network.nonlinearity) {
      case Nonlinearity::relu:
        add(unit, bias, 1.0);
        break;
      case Nonlinearity::clipped_relu:
        add(unit, -bias, 1.0);
        add(unit, 0.0, -1.0);
        break;
      case Nonlinearity::identity:
        for (int r = 0; r < rank; ++r) {
          const double n_value = network.n[static_cast<std::size_t>(r) * num_hidden + unit];
          for (int s = 0; s < rank; ++s) {
            planes.base[static_cast<std::size_t>(r * rank + s)] +=
                n_value * network.m[static_cast<std::size_t>(unit) * rank + s];
          }
          planes.base[static_cast<std::size_t>(rank * rank + r)] += n_value * (current(network, unit) - bias);
        }
        break;
      case Nonlinearity::tanh:
        break;
    }
  }
  planes.num_network = planes.count();
  return planes;
}

/// A raw solution: the region's fixed point and its activations (kept to recompute it from scratch).
struct RawFixedPoint {
  std::vector<double> z;
  std::vector<std::uint8_t> active;
};

/// Per-thread counters and results.
struct Tally {
  Index vertices = 0;
  Index regions = 0;
  Index solves = 0;
  Index singular = 0;
  std::vector<RawFixedPoint> points;

  void merge(Tally&& other) {
    vertices += other.vertices;
    regions += other.regions;
    solves += other.solves;
    singular += other.singular;
    for (auto& point : other.points) points.push_back(std::move(point));
  }
};

/// Keeps the first exception thrown inside a parallel region, to rethrow after it.
void record_failure(std::exception_ptr& failure) {
  LRSMC_FIXED_POINTS_PRAGMA("omp critical(lrsmc_fixed_points_failure)")
  {
    if (!failure) failure = std::current_exception();
  }
}

/// Region solver shared by the arrangement sweep and the brute force.
class RegionSolver {
 public:
  RegionSolver(const Hyperplanes& planes, double tolerance)
      : planes_(planes), tolerance_(tolerance), order_(static_cast<std::size_t>(planes.num_network)) {
    // Test hyperplanes in a fixed shuffled order: a region's fixed point usually violates many
    // hyperplanes, and shuffling keeps structured networks (sorted units) from testing the
    // satisfied ones first.
    std::iota(order_.begin(), order_.end(), 0);
    std::uint64_t state = 0xF1C5ED0ULL;
    for (std::size_t i = order_.size(); i > 1; --i) {
      const std::size_t j = static_cast<std::size_t>(splitmix64(state) % i);
      std::swap(order_[i - 1], order_[j]);
    }
  }

  [[nodiscard]] const Hyperplanes& planes() const { return planes_; }
  /// The order in which the membership test visits the network's hyperplanes.
  [[nodiscard]] const std::vector<int>& order() const { return order_; }

  /// Solves the region's fixed-point equation ((a − 1)I + M) z = −k in place: on success z is at
  /// sums + R*R. False when the system is numerically singular.
  bool fixed_point(double* sums) const {
    const int rank = planes_.rank;
    double* matrix = sums;
    double* vector = sums + rank * rank;
    for (int r = 0; r < rank; ++r) {
      matrix[r * rank + r] += planes_.decay - 1.0;
      vector[r] = -vector[r];
    }
    // Cramer's rule for R ≤ 3, partial pivoting above: the function the CUDA sweep runs.
    return math::arrangement_solve(rank, matrix, vector, kSingularTolerance);
  }

  /// Fixed point of the region with activations `active` and affine piece `sums` = (M, k); kept
  /// in `tally` when it lies in the closed region. `sums` is overwritten.
  void solve(double* sums, const std::uint8_t* active, Tally& tally) const {
    const int rank = planes_.rank;
    ++tally.regions;
    ++tally.solves;
    if (!fixed_point(sums)) {
      ++tally.singular;
      return;
    }
    const double* z = sums + rank * rank;
    if (!inside(z, active)) return;
    RawFixedPoint point;
    point.z.assign(z, z + rank);
    point.active.assign(active, active + planes_.count());
    tally.points.push_back(std::move(point));
  }

  /// Whether z lies in the closed region `active` (within tolerance).
  [[nodiscard]] bool inside(const double* z, const std::uint8_t* active) const {
    const int rank = planes_.rank;
    double z_max = 0.0;
    for (int r = 0; r < rank; ++r) z_max = std::max(z_max, std::abs(z[r]));
    for (const int p : order_) {
      const double* normal = &planes_.normal[static_cast<std::size_t>(p) * rank];
      const double offset = planes_.offset[static_cast<std::size_t>(p)];
      const double value = dot(normal, z, rank) + offset;
      const double slack =
          tolerance_ * (1.0 + std::abs(offset) + planes_.abs_sum[static_cast<std::size_t>(p)] * z_max);
      if (active[p] != 0 ? value < -slack : value > slack) return false;
    }
    return true;
  }

  /// The affine piece (M, k) of a region from scratch, in hyperplane order.
  void sums(const std::uint8_t* active, double* sums) const {
    std::copy(planes_.base.begin(), planes_.base.end(), sums);
    for (int p = 0; p < planes_.count(); ++p) {
      if (active[p] != 0) add_term(p, 1.0, sums);
    }
  }

  /// sums += weight · (term of hyperplane `plane`); box hyperplanes have none.
  void add_term(int plane, double weight, double* sums) const {
    if (plane >= planes_.num_network) return;
    const int stride = planes_.stride();
    const double* term = &planes_.term[static_cast<std::size_t>(plane) * stride];
    for (int i = 0; i < stride; ++i) sums[i] += weight * term[i];
  }

 private:
  const Hyperplanes& planes_;
  double tolerance_;
  std::vector<int> order_;
};

// ------------------------------------------------------------------------------------------
// Arrangement enumeration

/// The arrangement in the essential space ℝ^dim: hyperplane p is {y : w_p·y = b_p}. Indices are
/// those of Hyperplanes (they order the ε-perturbation); the last 2·dim hyperplanes bound the box.
struct Level {
  int dim = 0;
  int num_network = 0;       // hyperplanes of units; the rest are box faces
  double box = 0.0;          // half-width B of the box |y_j| ≤ B
  double distance = 0.0;     // largest distance of a hyperplane from the origin
  std::vector<double> w;     // p*dim
  std::vector<double> b;     // p
  std::vector<double> norm;  // ‖w_p‖

  [[nodiscard]] int count() const { return static_cast<int>(norm.size()); }
};

/// A line of the arrangement: y(t) = y0 + t·u, the intersection of the hyperplanes `planes`.
struct Line {
  std::vector<int> planes;         // dim − 1 independent hyperplanes, increasing
  std::vector<double> u;           // dim, unit direction
  std::vector<double> y0;          // dim, the point of the line closest to the origin
  double y0_norm = 0.0;
  std::vector<double> pinv;        // dim × (dim−1): W_Pᵀ(W_P W_Pᵀ)⁻¹; column j is ∂y0/∂b_{P_j}
  std::vector<double> pinv_norm;   // dim − 1
  double volume = 1.0;             // |det| of the normalised normals of P (1 for a single one)
};

struct Crossing {
  double t;  // position along the line
  int plane;
};

/// Per-thread working memory of a sweep.
struct Scratch {
  std::vector<std::uint8_t> active;
  std::vector<double> sine;       // per crossing hyperplane: (w·u)/‖w‖
  std::vector<double> along;      // per crossing hyperplane: w·u
  std::vector<Crossing> crossings;
  std::vector<Crossing> sort_buffer;
  std::vector<double> alpha;  // per crossing in a cluster: dim−1 perturbation coefficients, then β
  std::vector<int> cluster_order;
  std::vector<Crossing> cluster_copy;
  std::vector<std::uint8_t> clustered;  // per sorted crossing: part of a cluster
  std::vector<double> state_sums;  // affine piece of the current segment of the line
  std::vector<double> sums;        // affine piece of a candidate region
  std::vector<double> g_pinv;      // pinvᵀ g
  std::vector<double> basis;       // Gram–Schmidt of the line's normals
  std::vector<double> lower;       // W_P = lower · basis
  std::vector<double> inverse;     // lower⁻¹

  Scratch(int num_planes, int rank)
      : active(static_cast<std::size_t>(num_planes), 0),
        sine(static_cast<std::size_t>(num_planes), 0.0),
        along(static_cast<std::size_t>(num_planes), 0.0),
        state_sums(static_cast<std::size_t>(rank * rank + rank)),
        sums(static_cast<std::size_t>(rank * rank + rank)) {}
};

/// Builds the line through the hyperplanes `line.planes` (already set); false when their normals
/// are numerically dependent. W_P = lower·basis by modified Gram–Schmidt, so
/// pinv = basisᵀ·lower⁻¹ without squaring the condition number.
bool build_line(const Level& level, Line& line, Scratch& scratch) {
  const int dim = level.dim;
  const int count = dim - 1;
  const auto size = [](int value) { return static_cast<std::size_t>(std::max(value, 0)); };
  line.u.assign(size(dim), 0.0);
  line.y0.assign(size(dim), 0.0);
  line.y0_norm = 0.0;
  line.pinv.assign(size(dim * count), 0.0);
  line.pinv_norm.assign(size(count), 0.0);
  line.volume = 1.0;
  std::vector<double>& basis = scratch.basis;
  std::vector<double>& lower = scratch.lower;
  basis.assign(size(count * dim), 0.0);
  lower.assign(size(count * count), 0.0);
  for (int j = 0; j < count; ++j) {
    const int p = line.planes[static_cast<std::size_t>(j)];
    const double* w = &level.w[static_cast<std::size_t>(p) * dim];
    double* q = &basis[static_cast<std::size_t>(j * dim)];
    std::copy(w, w + dim, q);
    for (int i = 0; i < j; ++i) {
      const double* previous = &basis[static_cast<std::size_t>(i * dim)];
      const double coefficient = dot(q, previous, dim);
      lower[static_cast<std::size_t>(j * count + i)] = coefficient;
      for (int k = 0; k < dim; ++k) q[k] -= coefficient * previous[k];
    }
    const double length = norm2(q, dim);
    const double scale = level.norm[static_cast<std::size_t>(p)];
    if (!(scale > 0.0) || !(length > kParallelTolerance * scale)) return false;
    lower[static_cast<std::size_t>(j * count + j)] = length;
    line.volume *= length / scale;
    for (int k = 0; k < dim; ++k) q[k] /= length;
  }
  if (!(line.volume > kParallelTolerance)) return false;
  // Direction: the coordinate axis with the largest component orthogonal to the normals.
  double best = -1.0;
  int best_axis = 0;
  for (int axis = 0; axis < dim; ++axis) {
    double squared = 1.0;
    for (int i = 0; i < count; ++i) {
      const double component = basis[static_cast<std::size_t>(i * dim + axis)];
      squared -= component * component;
    }
    if (squared > best) {
      best = squared;
      best_axis = axis;
    }
  }
  line.u[static_cast<std::size_t>(best_axis)] = 1.0;
  for (int i = 0; i < count; ++i) {
    const double* q = &basis[static_cast<std::size_t>(i * dim)];
    const double projection = q[best_axis];
    for (int k = 0; k < dim; ++k) line.u[static_cast<std::size_t>(k)] -= projection * q[k];
  }
  const double u_length = norm2(line.u.data(), dim);
  for (double& value : line.u) value /= u_length;
  if (count == 0) return true;
  // lower⁻¹ by forward substitution, then pinv = basisᵀ·lower⁻¹ and y0 = pinv·b_P.
  std::vector<double>& inverse = scratch.inverse;
  inverse.assign(size(count * count), 0.0);
  for (int column = 0; column < count; ++column) {
    for (int i = column; i < count; ++i) {
      double sum = i == column ? 1.0 : 0.0;
      for (int k = column; k < i; ++k) {
        sum -= lower[static_cast<std::size_t>(i * count + k)] *
               inverse[static_cast<std::size_t>(k * count + column)];
      }
      inverse[static_cast<std::size_t>(i * count + column)] =
          sum / lower[static_cast<std::size_t>(i * count + i)];
    }
  }
  for (int k = 0; k < dim; ++k) {
    for (int j = 0; j < count; ++j) {
      double sum = 0.0;
      for (int i = j; i < count; ++i) {
        sum += basis[static_cast<std::size_t>(i * dim + k)] *
               inverse[static_cast<std::size_t>(i * count + j)];
      }
      line.pinv[static_cast<std::size_t>(k * count + j)] = sum;
    }
  }
  for (int j = 0; j < count; ++j) {
    double squared = 0.0;
    const double b = level.b[static_cast<std::size_t>(line.planes[static_cast<std::size_t>(j)])];
    for (int k = 0; k < dim; ++k) {
      const double value = line.pinv[static_cast<std::size_t>(k * count + j)];
      squared += value * value;
      line.y0[static_cast<std::size_t>(k)] += value * b;
    }
    line.pinv_norm[static_cast<std::size_t>(j)] = std::sqrt(squared);
  }
  line.y0_norm = norm2(line.y0.data(), dim);
  return true;
}

/// ∂(w_k·y0)/∂b_{P_j}: the coefficient of ε_{P_j} in w_k·y0(ε).
double perturbation_coefficient(const Level& level, const Line& line, int plane, int j) {
  const int dim = level.dim;
  const int count = dim - 1;
  const double* w = &level.w[static_cast<std::size_t>(plane) * dim];
  double sum = 0.0;
  for (int k = 0; k < dim; ++k) sum += w[k] * line.pinv[static_cast<std::size_t>(k * count + j)];
  return sum;
}

/// Sorts crossings by t: LSD radix sort on the order-preserving integer image of the doubles
/// (8 passes of 8 bits, skipping passes where every key shares the byte), about twice as fast as
/// std::sort for the hundreds to thousands of crossings of a line.
/// Stable, with −0.0 and +0.0 equal, as the CUDA sweep's cub::DeviceSegmentedSort::
/// StableSortPairs: equal positions (hyperplanes through one point; t = −0.0 where w·u < 0) keep
/// their hyperplane order, so that both engines end a tie group with the same crossing and agree
/// on which neighbours are coincident.
void sort_crossings(std::vector<Crossing>& crossings, std::vector<Crossing>& buffer) {
  const std::size_t size = crossings.size();
  if (size < 64) {
    std::stable_sort(crossings.begin(), crossings.end(),
                     [](const Crossing& a, const Crossing& b) { return a.t < b.t; });
    return;
  }
  const auto key = [](double value) {
    if (value == 0.0) value = 0.0;  // −0.0 sorts as +0.0
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof bits);
    return (bits >> 63) != 0 ? ~bits : bits | (std::uint64_t{1} << 63);
  };
  buffer.resize(size);
  std::size_t counts[8][256] = {};
  for (const Crossing& crossing : crossings) {
    const std::uint64_t k = key(crossing.t);
    for (int pass = 0; pass < 8; ++pass) ++counts[pass][(k >> (8 * pass)) & 0xFF];
  }
  Crossing* source = crossings.data();
  Crossing* target = buffer.data();
  for (int pass = 0; pass < 8; ++pass) {
    std::size_t* count = counts[pass];
    if (count[(key(source[0].t) >> (8 * pass)) & 0xFF] == size) continue;  // one bucket
    std::size_t offset = 0;
    for (int bucket = 0; bucket < 256; ++bucket) {
      const std::size_t bucket_size = count[bucket];
      count[bucket] = offset;
      offset += bucket_size;
    }
    for (std::size_t i = 0; i < size; ++i) {
      target[count[(key(source[i].t) >> (8 * pass)) & 0xFF]++] = source[i];
    }
    std::swap(source, target);
  }
  if (source != crossings.data()) std::copy(source, source + size, crossings.data());
}

class ArrangementSweep {
 public:
  explicit ArrangementSweep(const RegionSolver& solver) : solver_(solver) {}

  /// Enumerates every region of `level` that meets the box into a tally.
  Tally run(const Level& level) {
    Tally total;
    const int dim = level.dim;
    const int num_planes = level.count();
    const int rank = solver_.planes().rank;
    if (dim == 0) {
      // One region: every hyperplane is constant (zero normal); an exact zero offset is the
      // ε-perturbation's inactive side.
      Scratch scratch(num_planes, rank);
      for (int p = 0; p < num_planes; ++p) {
        scratch.active[static_cast<std::size_t>(p)] = level.b[static_cast<std::size_t>(p)] < 0.0 ? 1 : 0;
      }
      solver_.sums(scratch.active.data(), scratch.sums.data());
      solver_.solve(scratch.sums.data(), scratch.active.data(), total);
      return total;
    }
    const std::vector<double> direction = generic_direction(dim);
    const int num_first = dim == 1 ? 1 : num_planes;
    // Small arrangements run serially: a parallel region costs more than they do.
    double work = static_cast<double>(num_first) * static_cast<double>(num_planes);
    for (int extra = 2; extra < dim; ++extra) work *= static_cast<double>(num_planes);
    const bool parallel = work > 2e5;
    return over_lines(level, num_first, parallel,
                      [&](Index first, Line& line, Scratch& scratch, Tally& tally) {
                        if (dim == 1) {
                          if (build_line(level, line, scratch)) {
                            sweep(level, line, direction, scratch, tally);
                          }
                        } else {
                          line.planes[0] = static_cast<int>(first);
                          choose_rest(level, line, 1, static_cast<int>(first) + 1, direction,
                                      scratch, tally);
                        }
                      });
  }

  /// Sweeps only the vertices inside clusters of coincident crossings on the given lines of
  /// `level` (dim − 1 increasing hyperplanes each, `num_lines` of them; dim = 1 has the one line
  /// through nothing): the part of those lines the CUDA sweep leaves to the CPU, whose order
  /// needs the symbolic perturbation. The CUDA sweep did every other vertex of them.
  Tally run_lines(const Level& level, const std::vector<std::int32_t>& planes, Index num_lines) {
    const int count = level.dim - 1;
    const std::vector<double> direction = generic_direction(level.dim);
    return over_lines(level, num_lines, num_lines > 1,
                      [&](Index index, Line& line, Scratch& scratch, Tally& tally) {
                        for (int j = 0; j < count; ++j) {
                          line.planes[static_cast<std::size_t>(j)] =
                              planes[static_cast<std::size_t>(index * count + j)];
                        }
                        if (build_line(level, line, scratch)) {
                          sweep(level, line, direction, scratch, tally, /*clusters_only=*/true);
                        }
                      });
  }

 private:
  /// Runs body(item, line, scratch, tally) for item = 0 … num_items − 1 over OpenMP threads (when
  /// `parallel`), each with its own working memory, and merges the threads' tallies.
  template <typename Body>
  Tally over_lines(const Level& level, Index num_items, bool parallel, const Body& body) {
    Tally total;
    const int num_planes = level.count();
    const int rank = solver_.planes().rank;
    std::exception_ptr failure;
    LRSMC_FIXED_POINTS_PRAGMA("omp parallel if(parallel)")
    {
      Tally tally;
      // Exceptions (allocation failures) must be caught by the thread and construct that threw.
      std::unique_ptr<Scratch> scratch;
      Line line;
      try {
        scratch = std::make_unique<Scratch>(num_planes, rank);
        line.planes.resize(static_cast<std::size_t>(level.dim - 1));
      } catch (...) {
        record_failure(failure);
      }
      LRSMC_FIXED_POINTS_PRAGMA("omp for schedule(dynamic, 1) nowait")
      for (Index item = 0; item < num_items; ++item) {
        if (!scratch) continue;
        try {
          body(item, line, *scratch, tally);
        } catch (...) {
          record_failure(failure);
        }
      }
      LRSMC_FIXED_POINTS_PRAGMA("omp critical(lrsmc_fixed_points_merge)")
      total.merge(std::move(tally));
    }
    if (failure) std::rethrow_exception(failure);
    return total;
  }

 private:
  /// Chooses hyperplanes line.planes[position..] from `start` on (increasing).
  void choose_rest(const Level& level, Line& line, int position, int start,
                   const std::vector<double>& direction, Scratch& scratch, Tally& tally) {
    const int dim = level.dim;
    if (position == dim - 1) {
      if (build_line(level, line, scratch)) sweep(level, line, direction, scratch, tally);
      return;
    }
    for (int p = start; p < level.count(); ++p) {
      line.planes[static_cast<std::size_t>(position)] = p;
      choose_rest(level, line, position + 1, p + 1, direction, scratch, tally);
    }
  }

  /// Sign of a hyperplane parallel to the line: its residual at the line or, when the line lies
  /// in it, the ε-perturbation g_k = Σ_j c_j ε_{P_j} − ε_k (the lowest index with a non-zero
  /// coefficient decides).
  static bool parallel_sign(const Level& level, const Line& line, int plane) {
    const int dim = level.dim;
    const double* w = &level.w[static_cast<std::size_t>(plane) * dim];
    const double b = level.b[static_cast<std::size_t>(plane)];
    const double residual = dot(w, line.y0.data(), dim) - b;
    const double scale = level.norm[static_cast<std::size_t>(plane)] * line.y0_norm + std::abs(b);
    if (std::abs(residual) > kCoincidentTolerance * scale / line.volume) return residual > 0.0;
    for (int j = 0; j < dim - 1; ++j) {
      if (line.planes[static_cast<std::size_t>(j)] > plane) break;
      const double coefficient = perturbation_coefficient(level, line, plane, j);
      const double coefficient_scale =
          level.norm[static_cast<std::size_t>(plane)] * line.pinv_norm[static_cast<std::size_t>(j)];
      if (std::abs(coefficient) > kCoefficientTolerance * coefficient_scale) return coefficient > 0.0;
    }
    return false;
  }

  /// Orders crossings at one point (more than r hyperplanes through a vertex) by their
  /// ε-perturbed positions t(ε) = t + Σ_j α_j ε_{P_j} + β ε_k, α_j = −(w_k·pinv_j)/(w_k·u),
  /// β = 1/(w_k·u): the lowest index with differing coefficients decides.
  void order_cluster(const Level& level, const Line& line, std::size_t begin, std::size_t end,
                     Scratch& scratch) const {
    const int count = level.dim - 1;
    const std::size_t size = end - begin;
    const std::size_t stride = static_cast<std::size_t>(count + 1);
    scratch.alpha.assign(size * stride, 0.0);
    for (std::size_t i = 0; i < size; ++i) {
      const Crossing& crossing = scratch.crossings[begin + i];
      const double wu = scratch.along[static_cast<std::size_t>(crossing.plane)];
      for (int j = 0; j < count; ++j) {
        scratch.alpha[i * stride + static_cast<std::size_t>(j)] =
            -perturbation_coefficient(level, line, crossing.plane, j) / wu;
      }
      scratch.alpha[i * stride + static_cast<std::size_t>(count)] = 1.0 / wu;
    }
    scratch.cluster_order.resize(size);
    std::iota(scratch.cluster_order.begin(), scratch.cluster_order.end(), 0);
    const auto before = [&](int left, int right) {
      if (left == right) return false;
      const Crossing& a = scratch.crossings[begin + static_cast<std::size_t>(left)];
      const Crossing& b = scratch.crossings[begin + static_cast<std::size_t>(right)];
      const double* alpha_a = &scratch.alpha[static_cast<std::size_t>(left) * stride];
      const double* alpha_b = &scratch.alpha[static_cast<std::size_t>(right) * stride];
      const int lowest = std::min(a.plane, b.plane);
      for (int j = 0; j < count; ++j) {
        if (line.planes[static_cast<std::size_t>(j)] > lowest) break;
        const double difference = alpha_a[j] - alpha_b[j];
        const double scale = line.pinv_norm[static_cast<std::size_t>(j)] *
                             (1.0 / std::abs(scratch.sine[static_cast<std::size_t>(a.plane)]) +
                              1.0 / std::abs(scratch.sine[static_cast<std::size_t>(b.plane)]));
        if (std::abs(difference) > kCoefficientTolerance * scale) return difference < 0.0;
      }
      // Leading term ε_lowest: coefficient β_a (if a is lowest) or −β_b.
      return a.plane < b.plane ? alpha_a[count] < 0.0 : alpha_b[count] > 0.0;
    };
    // stable_sort stays memory-safe even if a tolerance made the order inconsistent.
    std::stable_sort(scratch.cluster_order.begin(), scratch.cluster_order.end(), before);
    scratch.cluster_copy.assign(scratch.crossings.begin() + static_cast<std::ptrdiff_t>(begin),
                                scratch.crossings.begin() + static_cast<std::ptrdiff_t>(end));
    for (std::size_t i = 0; i < size; ++i) {
      scratch.crossings[begin + i] =
          scratch.cluster_copy[static_cast<std::size_t>(scratch.cluster_order[i])];
    }
  }

  /// Sweeps one line: visits its crossings in order, maintaining the activations of every
  /// hyperplane not through the line and the affine piece (M, k) of the current segment; at each
  /// vertex whose other hyperplanes have lower indices, solves the region above it along g when
  /// that region lies in the box. With `clusters_only`, only vertices inside clusters of
  /// coincident crossings are solved (and counted).
  void sweep(const Level& level, const Line& line, const std::vector<double>& direction,
             Scratch& scratch, Tally& tally, bool clusters_only = false) const {
    const int dim = level.dim;
    const int count = dim - 1;
    const int num_planes = level.count();
    const int num_network = level.num_network;
    const Hyperplanes& planes = solver_.planes();
    std::copy(planes.base.begin(), planes.base.end(), scratch.state_sums.begin());
    scratch.crossings.clear();
    std::size_t next_on_line = 0;
    for (int p = 0; p < num_planes; ++p) {
      if (next_on_line < line.planes.size() && line.planes[next_on_line] == p) {
        ++next_on_line;
        continue;
      }
      const double* w = &level.w[static_cast<std::size_t>(p) * dim];
      const double w_norm = level.norm[static_cast<std::size_t>(p)];
      const double wu = dot(w, line.u.data(), dim);
      bool active = false;
      if (w_norm > 0.0 && std::abs(wu) / w_norm * line.volume > kParallelTolerance) {
        const double b = level.b[static_cast<std::size_t>(p)];
        const double t = (b - dot(w, line.y0.data(), dim)) / wu;
        scratch.crossings.push_back({t, p});
        scratch.sine[static_cast<std::size_t>(p)] = wu / w_norm;
        scratch.along[static_cast<std::size_t>(p)] = wu;
        active = wu < 0.0;  // g_p → −∞·sign(w·u) as t → −∞
      } else {
        active = parallel_sign(level, line, p);
      }
      scratch.active[static_cast<std::size_t>(p)] = active ? 1 : 0;
      if (active) solver_.add_term(p, 1.0, scratch.state_sums.data());
    }
    auto& crossings = scratch.crossings;
    sort_crossings(crossings, scratch.sort_buffer);
    if (clusters_only) scratch.clustered.assign(crossings.size(), 0);
    // Crossings at one point (more than r hyperplanes through a vertex). The test
    // |Δt|·|sin_a|·|sin_b|·volume ≤ tolerance·(‖v‖ + D) compares the normalised determinant of
    // the r + 1 hyperplanes (the distance of one from the vertex of the others, times their
    // volume), which is the same on every line through the point, so all lines agree on which
    // vertices coincide. D is the largest distance of a hyperplane from the origin.
    for (std::size_t first = 0; first < crossings.size();) {
      std::size_t last = first + 1;
      while (last < crossings.size()) {
        const Crossing& a = crossings[last - 1];
        const Crossing& b = crossings[last];
        const double determinant = (b.t - a.t) * std::abs(scratch.sine[static_cast<std::size_t>(a.plane)]) *
                                   std::abs(scratch.sine[static_cast<std::size_t>(b.plane)]) * line.volume;
        const double t_max = std::max(std::abs(a.t), std::abs(b.t));
        const double position = std::sqrt(line.y0_norm * line.y0_norm + t_max * t_max);
        if (determinant > kCoincidentTolerance * (position + level.distance)) break;
        ++last;
      }
      if (last - first > 1) {
        order_cluster(level, line, first, last, scratch);
        if (clusters_only) {
          std::fill(scratch.clustered.begin() + static_cast<std::ptrdiff_t>(first),
                    scratch.clustered.begin() + static_cast<std::ptrdiff_t>(last), 1);
        }
      }
      first = last;
    }

    const int last_on_line = count > 0 ? line.planes[static_cast<std::size_t>(count - 1)] : -1;
    const bool network_line = last_on_line < num_network;
    // The lowest-vertex rule needs g = Σ_{s∈S} λ_s w_s. Dotting with u (⊥ w_P) gives
    // λ_k = (g·u)/(w_k·u); the rest lies in span(w_P): λ_P = pinvᵀ(g − λ_k w_k).
    const double g_along = dot(direction.data(), line.u.data(), dim);
    scratch.g_pinv.assign(static_cast<std::size_t>(std::max(count, 0)), 0.0);
    for (int j = 0; j < count; ++j) {
      for (int i = 0; i < dim; ++i) {
        scratch.g_pinv[static_cast<std::size_t>(j)] +=
            direction[static_cast<std::size_t>(i)] * line.pinv[static_cast<std::size_t>(i * count + j)];
      }
    }
    double* sums = scratch.sums.data();
    double* state_sums = scratch.state_sums.data();
    std::uint8_t* active = scratch.active.data();
    const std::size_t stride = scratch.state_sums.size();
    for (std::size_t index = 0; index < crossings.size(); ++index) {
      const int k = crossings[index].plane;
      const bool was_active = active[k] != 0;
      if (k > last_on_line && (!clusters_only || scratch.clustered[index] != 0)) {
        // Vertex S = P ∪ {k}: the region above it along g.
        const double lambda_k = g_along / scratch.along[static_cast<std::size_t>(k)];
        for (int j = 0; j < count; ++j) {
          const double lambda_j = scratch.g_pinv[static_cast<std::size_t>(j)] -
                                  lambda_k * perturbation_coefficient(level, line, k, j);
          active[line.planes[static_cast<std::size_t>(j)]] = lambda_j > 0.0 ? 1 : 0;
        }
        active[k] = lambda_k > 0.0 ? 1 : 0;
        // In the box iff no box face is active (outside).
        bool inside_box = true;
        for (int p = num_network; p < num_planes && inside_box; ++p) {
          if (active[p] != 0) inside_box = false;
        }
        ++tally.solves;
        // A vertex of the network's own hyperplanes counts when it lies in the box (no face
        // passes through it, so the faces' states are those of the walk).
        if (inside_box && network_line && k < num_network) ++tally.vertices;
        if (inside_box) {
          std::copy(state_sums, state_sums + stride, sums);
          if (was_active) solver_.add_term(k, -1.0, sums);
          for (int j = 0; j < count; ++j) {
            const int plane = line.planes[static_cast<std::size_t>(j)];
            if (active[plane] != 0) solver_.add_term(plane, 1.0, sums);
          }
          if (active[k] != 0) solver_.add_term(k, 1.0, sums);
          solver_.solve(sums, active, tally);
        }
      }
      active[k] = was_active ? 0 : 1;
      solver_.add_term(k, was_active ? -1.0 : 1.0, state_sums);
    }
  }

  const RegionSolver& solver_;
};

/// Snaps nearly degenerate hyperplanes onto exactly degenerate ones: normals parallel within
/// `snap` radians become parallel (the lowest index gives the direction), and parallel hyperplanes
/// whose offsets agree within snap·(distance + |offset|) coincide. The symbolic perturbation then
/// treats them exactly; otherwise their far-off or nearly coincident crossings could not be
/// ordered consistently in double precision. Only the enumeration uses the snapped hyperplanes:
/// regions are solved and tested with the network's own, so the snap can lose only regions
/// thinner than snap·distance, whose fixed points lie within tolerance of a neighbour's boundary.
void snap_near_degenerate(Level& level, double snap) {
  const int dim = level.dim;
  const int count = level.num_network;
  if (dim < 1 || count == 0) return;
  double largest = 0.0;
  for (int p = 0; p < count; ++p) largest = std::max(largest, level.norm[static_cast<std::size_t>(p)]);
  const auto valid = [&](int p) { return level.norm[static_cast<std::size_t>(p)] > 1e-6 * largest; };
  std::vector<double> unit(static_cast<std::size_t>(count * dim), 0.0);
  for (int p = 0; p < count; ++p) {
    if (!valid(p)) continue;
    for (int j = 0; j < dim; ++j) {
      unit[static_cast<std::size_t>(p * dim + j)] =
          level.w[static_cast<std::size_t>(p * dim + j)] / level.norm[static_cast<std::size_t>(p)];
    }
  }
  std::vector<int> parent(static_cast<std::size_t>(count));
  std::iota(parent.begin(), parent.end(), 0);
  const auto find = [&](int p) {
    while (parent[static_cast<std::size_t>(p)] != p) {
      parent[static_cast<std::size_t>(p)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(p)])];
      p = parent[static_cast<std::size_t>(p)];
    }
    return p;
  };
  if (dim >= 2) {
    // Near-parallel pairs: ±unit directions sorted by a generic projection; a pair within `snap`
    // has projections within `snap` for one choice of signs.
    const std::vector<double> axis = generic_direction(dim, 1);
    struct Entry {
      double key;
      int plane;
      double sign;
    };
    std::vector<Entry> entries;
    for (int p = 0; p < count; ++p) {
      if (!valid(p)) continue;
      const double key = dot(&unit[static_cast<std::size_t>(p * dim)], axis.data(), dim);
      entries.push_back({key, p, 1.0});
      entries.push_back({-key, p, -1.0});
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.key < b.key; });
    for (std::size_t i = 0; i < entries.size(); ++i) {
      for (std::size_t j = i + 1; j < entries.size() && entries[j].key - entries[i].key <= snap; ++j) {
        const int a = entries[i].plane;
        const int b = entries[j].plane;
        if (a == b) continue;
        double squared = 0.0;
        for (int k = 0; k < dim; ++k) {
          const double difference = entries[i].sign * unit[static_cast<std::size_t>(a * dim + k)] -
                                    entries[j].sign * unit[static_cast<std::size_t>(b * dim + k)];
          squared += difference * difference;
        }
        if (squared <= snap * snap) {
          const int root_a = find(a);
          const int root_b = find(b);
          parent[static_cast<std::size_t>(std::max(root_a, root_b))] = std::min(root_a, root_b);
        }
      }
    }
  } else {
    for (int p = 0; p < count; ++p) {
      if (valid(p)) parent[static_cast<std::size_t>(p)] = -1;  // marked: one group in 1-D
    }
    int root = -1;
    for (int p = 0; p < count; ++p) {
      if (parent[static_cast<std::size_t>(p)] != -1) continue;
      if (root < 0) root = p;
      parent[static_cast<std::size_t>(p)] = root;
    }
  }
  // Groups: copy the root's direction, then merge offsets along it.
  std::vector<std::vector<int>> groups(static_cast<std::size_t>(count));
  for (int p = 0; p < count; ++p) {
    if (valid(p)) groups[static_cast<std::size_t>(find(p))].push_back(p);
  }
  std::vector<std::pair<double, int>> offsets;
  for (int root = 0; root < count; ++root) {
    const std::vector<int>& members = groups[static_cast<std::size_t>(root)];
    if (members.size() < 2) continue;
    const double* direction = &unit[static_cast<std::size_t>(root * dim)];
    offsets.clear();
    for (const int p : members) {
      double* w = &level.w[static_cast<std::size_t>(p * dim)];
      const double norm = level.norm[static_cast<std::size_t>(p)];
      const double sign = dot(w, direction, dim) >= 0.0 ? 1.0 : -1.0;
      if (p != root) {
        for (int k = 0; k < dim; ++k) w[k] = sign * norm * direction[k];
      }
      // The hyperplane is {direction·y = sign·b/‖w‖}.
      offsets.emplace_back(sign * level.b[static_cast<std::size_t>(p)] / norm, p);
    }
    std::sort(offsets.begin(), offsets.end());
    for (std::size_t first = 0; first < offsets.size();) {
      std::size_t last = first + 1;
      while (last < offsets.size() &&
             offsets[last].first - offsets[last - 1].first <=
                 snap * (level.distance + std::abs(offsets[last].first))) {
        ++last;
      }
      if (last - first > 1) {
        // The lowest index keeps its offset; the others move onto it.
        std::size_t keep = first;
        for (std::size_t i = first; i < last; ++i) {
          if (offsets[i].second < offsets[keep].second) keep = i;
        }
        for (std::size_t i = first; i < last; ++i) {
          const int p = offsets[i].second;
          const double* w = &level.w[static_cast<std::size_t>(p * dim)];
          const double sign = dot(w, direction, dim) >= 0.0 ? 1.0 : -1.0;
          if (i != keep) level.b[static_cast<std::size_t>(p)] = sign * level.norm[static_cast<std::size_t>(p)] * offsets[keep].first;
        }
      }
      first = last;
    }
  }
}

/// The top level: hyperplanes in the span of the normals (dimension r = rank of m), then the 2r
/// faces of the box |y_j| ≤ B, appended to `planes` as hyperplanes without a term.
///
/// Why a box: every region meeting it is bounded there, so it has a lowest vertex in the box, and
/// no vertex far away is ever needed. Nearly parallel hyperplanes meet very far out, where their
/// crossing positions cannot be resolved in double precision; the regions they bound are still
/// found through their part inside the box. B = 10⁶ times the largest distance of a hyperplane
/// from the origin (hyperplanes with a normal below 10⁻⁶ of the largest excluded), so only
/// regions lying entirely beyond that are skipped.
Level essential_level(const PiecewiseLinearNetwork& network, Hyperplanes& planes) {
  const int rank = network.rank;
  const int num_network = planes.count();
  Level level;
  level.num_network = num_network;
  if (num_network == 0) return level;
  Eigen::MatrixXd normals(num_network, rank);
  for (int p = 0; p < num_network; ++p) {
    for (int r = 0; r < rank; ++r) normals(p, r) = planes.normal[static_cast<std::size_t>(p * rank + r)];
  }
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(normals, Eigen::ComputeThinV);
  const Eigen::VectorXd& singular = svd.singularValues();
  int dim = 0;
  for (Eigen::Index i = 0; i < singular.size(); ++i) {
    if (singular(i) > kSingularTolerance * singular(0)) ++dim;
  }
  level.dim = dim;
  const int num_planes = num_network + 2 * dim;
  level.b.assign(static_cast<std::size_t>(num_planes), 0.0);
  level.norm.assign(static_cast<std::size_t>(num_planes), 0.0);
  level.w.assign(static_cast<std::size_t>(num_planes) * static_cast<std::size_t>(dim), 0.0);
  double largest_norm = 0.0;
  for (int p = 0; p < num_network; ++p) {
    level.b[static_cast<std::size_t>(p)] = -planes.offset[static_cast<std::size_t>(p)];
    for (int j = 0; j < dim; ++j) {
      // Full rank keeps the original coordinates (no rounding from a rotation).
      level.w[static_cast<std::size_t>(p * dim + j)] =
          dim == rank ? normals(p, j) : normals.row(p).dot(svd.matrixV().col(j));
    }
    level.norm[static_cast<std::size_t>(p)] = norm2(&level.w[static_cast<std::size_t>(p * dim)], dim);
    largest_norm = std::max(largest_norm, level.norm[static_cast<std::size_t>(p)]);
  }
  if (dim == 0) return level;
  double distance = 0.0;
  for (int p = 0; p < num_network; ++p) {
    const double norm = level.norm[static_cast<std::size_t>(p)];
    if (norm > 1e-6 * largest_norm) {
      distance = std::max(distance, std::abs(level.b[static_cast<std::size_t>(p)]) / norm);
    }
  }
  level.distance = distance;
  snap_near_degenerate(level, kSnapTolerance);
  // An irrational factor keeps the faces off hyperplanes of hand-made networks.
  level.box = kBoxScale * (distance > 0.0 ? distance : 1.0) * 1.0471975511965976;
  for (int j = 0; j < dim; ++j) {
    for (const double sign : {1.0, -1.0}) {
      const auto p = static_cast<std::size_t>(level.count() - 2 * dim + 2 * j + (sign > 0.0 ? 0 : 1));
      level.w[p * static_cast<std::size_t>(dim) + static_cast<std::size_t>(j)] = sign;
      level.b[p] = level.box;
      level.norm[p] = 1.0;
      // The face has no term and is not a unit: zero normal and term in Hyperplanes.
      planes.unit.push_back(-1);
      planes.offset.push_back(0.0);
      planes.abs_sum.push_back(0.0);
      for (int r = 0; r < rank; ++r) planes.normal.push_back(0.0);
      for (int i = 0; i < planes.stride(); ++i) planes.term.push_back(0.0);
    }
  }
  return level;
}

// ------------------------------------------------------------------------------------------
// Results

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

/// Sorts, merges duplicates and describes the fixed points.
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

/// Recomputes each raw fixed point from its activations in a fixed order (so the result does
/// not depend on the order in which a sweep accumulated M and k), then merges duplicates.
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

// ------------------------------------------------------------------------------------------
// The line-parallel sweep (CUDA): what it needs, and its results back

detail::ArrangementData arrangement_data(const Level& level, const Hyperplanes& planes,
                                         const RegionSolver& solver, double tolerance) {
  detail::ArrangementData data;
  data.rank = planes.rank;
  data.dim = level.dim;
  data.num_planes = level.count();
  data.num_network = level.num_network;
  data.decay = planes.decay;
  data.tolerance = tolerance;
  data.distance = level.distance;
  data.w = level.w;
  data.b = level.b;
  data.norm = level.norm;
  const auto network_part = [&](const std::vector<double>& values, int per_plane) {
    return std::vector<double>(values.begin(),
                               values.begin() + static_cast<std::ptrdiff_t>(level.num_network) * per_plane);
  };
  data.normal = network_part(planes.normal, planes.rank);
  data.offset = network_part(planes.offset, 1);
  data.abs_sum = network_part(planes.abs_sum, 1);
  data.term = network_part(planes.term, planes.stride());
  data.base = planes.base;
  data.direction = generic_direction(level.dim);
  data.order.assign(solver.order().begin(), solver.order().end());
  return data;
}

/// Merges a line-parallel sweep into a tally: its counts, the CPU's sweep of the lines it left,
/// and its fixed points with their regions' activations (every hyperplane's side in the region
/// above the vertex, recomputed here with the same maths).
Tally merge_line_sweep(const detail::ArrangementData& data, const Level& level,
                       ArrangementSweep& sweep, detail::LineSweepResult&& swept) {
  Tally tally = sweep.run_lines(level, swept.host_lines, swept.num_host_lines);
  tally.vertices += swept.vertices;
  tally.regions += swept.regions;
  tally.solves += swept.solves;
  tally.singular += swept.singular;
  const math::ArrangementView view = data.view();
  const int count = data.dim - 1;
  for (detail::SweptFixedPoint& point : swept.points) {
    math::ArrangementLine line;
    for (int j = 0; j < count; ++j) line.planes[j] = point.line[static_cast<std::size_t>(j)];
    LRSMC_ASSERT(math::build_arrangement_line(view, line));
    const math::PlaneOnLine crossing = math::arrangement_plane_on_line(view, line, point.plane);
    LRSMC_ASSERT(crossing.crosses);
    const math::ArrangementVertex vertex =
        math::arrangement_vertex(view, line, point.plane, crossing.t, crossing.along);
    RawFixedPoint raw;
    raw.active.resize(static_cast<std::size_t>(data.num_planes));
    for (int p = 0; p < data.num_planes; ++p) {
      raw.active[static_cast<std::size_t>(p)] =
          math::arrangement_vertex_active(view, line, vertex, p) ? 1 : 0;
    }
    raw.z = std::move(point.z);
    tally.points.push_back(std::move(raw));
  }
  return tally;
}

}  // namespace

namespace detail {

FixedPointResult find_fixed_points_with(const PiecewiseLinearNetwork& network,
                                        const FixedPointOptions& options, SweepEngine engine) {
  const std::string source = "find_fixed_points";
  validate_network(network, source);
  validate_options(options, source);
  require_piecewise_linear(network, source);
  if (engine == SweepEngine::cuda) {
    LRSMC_REQUIRE(network.rank <= math::arrangement_max_rank, source,
                  ": rank is too large for the CUDA sweep; got ", network.rank, ", expected <= ",
                  math::arrangement_max_rank, " (use device cpu)");
#if defined(LRSMC_WITH_CUDA)
    if (!cuda_available()) {
      throw Error(source + ": device cuda is not available: no CUDA device answers "
                           "(cudaGetDeviceCount found none); use device cpu or auto");
    }
#else
    throw Error(source + ": device cuda is not available: lrsmc was built without CUDA; rebuild "
                         "with -DLRSMC_ENABLE_CUDA=ON, or use device cpu or auto");
#endif
  }
  Hyperplanes planes = build_hyperplanes(network);
  const Level level = essential_level(network, planes);
  const RegionSolver solver(planes, options.tolerance);
  ArrangementSweep sweep(solver);
  // No hyperplane in the essential space (identity, or every normal zero): one region, solved
  // on the host whatever the engine.
  if (engine == SweepEngine::cpu || level.dim == 0) {
    Tally tally = sweep.run(level);
    return finish(network, solver, std::move(tally), options.tolerance);
  }
  const ArrangementData data = arrangement_data(level, planes, solver, options.tolerance);
  // Engine cuda: without CUDA compiled in it threw above.
  LineSweepResult swept;
#if defined(LRSMC_WITH_CUDA)
  swept = sweep_lines_cuda(data);
#endif
  const Index num_host_lines = swept.num_host_lines;
  Tally tally = merge_line_sweep(data, level, sweep, std::move(swept));
  FixedPointResult result = finish(network, solver, std::move(tally), options.tolerance);
  result.device = BackendKind::cuda;
  result.num_host_lines = num_host_lines;
  return result;
}

}  // namespace detail

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
