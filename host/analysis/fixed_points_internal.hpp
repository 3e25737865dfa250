// Internal: what the fixed-point sources of host/analysis/ share (method.md §7.1, §7.2): the
// network's hyperplanes and their arrangement in the essential space (hyperplanes.cpp), the region
// solver and a sweep's tally, the CPU sweep (cpu_sweep.cpp) and the finishing of results.
//
// How the arrangement algorithm finds every region (the decisions behind the code in the files
// named above).
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
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "lrsmc/fixed_points.hpp"
#include "lrsmc/math/arrangement.hpp"

#if defined(_OPENMP)
#define LRSMC_FIXED_POINTS_PRAGMA(text) _Pragma(text)
#else
#define LRSMC_FIXED_POINTS_PRAGMA(text)
#endif

namespace lrsmc::detail {

using Index = std::int64_t;

/// Pivot, relative to the largest entry, below which a region's system counts as singular.
constexpr double kSingularTolerance = math::arrangement_singular_tolerance;

// ------------------------------------------------------------------------------------------
// Validation (fixed_points.cpp): each throws InvalidInput whose message starts with `source`

/// Sizes, finiteness and the nonlinearity of `network`.
void validate_network(const PiecewiseLinearNetwork& network, const std::string& source);
/// A finite tolerance >= 0.
void validate_options(const FixedPointOptions& options, const std::string& source);
/// A piecewise-linear nonlinearity (not tanh).
void require_piecewise_linear(const PiecewiseLinearNetwork& network, const std::string& source);

/// The constant input current of `unit` (0 without input).
inline double current(const PiecewiseLinearNetwork& network, int unit) {
  return network.constant_current.empty() ? 0.0
                                          : network.constant_current[static_cast<std::size_t>(unit)];
}

// ------------------------------------------------------------------------------------------
// Small dense linear algebra

inline double dot(const double* x, const double* y, int size) { return math::arrangement_dot(x, y, size); }

inline double norm2(const double* x, int size) { return math::arrangement_norm2(x, size); }

/// Deterministic pseudo-random numbers (splitmix64), identical on every platform.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t value = (state += 0x9E3779B97F4A7C15ULL);
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

inline double uniform01(std::uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

/// A fixed generic unit direction in `dim` dimensions (the same for every call with the same
/// `salt`): uniform in the cube, normalised (genericity, not uniformity on the sphere, matters).
[[nodiscard]] std::vector<double> generic_direction(int dim, std::uint64_t salt = 0);

// ------------------------------------------------------------------------------------------
// Hyperplanes of the network and their arrangement (hyperplanes.cpp)

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

[[nodiscard]] Hyperplanes build_hyperplanes(const PiecewiseLinearNetwork& network);

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

/// The top level: hyperplanes in the span of the normals (dimension r = rank of m), then the 2r
/// faces of the box |y_j| ≤ B, appended to `planes` as hyperplanes without a term.
///
/// Why a box: every region meeting it is bounded there, so it has a lowest vertex in the box, and
/// no vertex far away is ever needed. Nearly parallel hyperplanes meet very far out, where their
/// crossing positions cannot be resolved in double precision; the regions they bound are still
/// found through their part inside the box. B = 10⁶ times the largest distance of a hyperplane
/// from the origin (hyperplanes with a normal below 10⁻⁶ of the largest excluded), so only
/// regions lying entirely beyond that are skipped.
[[nodiscard]] Level essential_level(const PiecewiseLinearNetwork& network, Hyperplanes& planes);

// ------------------------------------------------------------------------------------------
// Regions

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
inline void record_failure(std::exception_ptr& failure) {
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
// The CPU sweep (cpu_sweep.cpp)

/// Enumerates every region of `level` that meets the box into a tally: every line of the
/// arrangement swept, over OpenMP threads when the arrangement is large.
[[nodiscard]] Tally sweep_arrangement(const RegionSolver& solver, const Level& level);

/// Sweeps only the vertices inside clusters of coincident crossings on the given lines of
/// `level` (dim − 1 increasing hyperplanes each, `num_lines` of them; dim = 1 has the one line
/// through nothing): the part of those lines the CUDA sweep leaves to the CPU, whose order
/// needs the symbolic perturbation. The CUDA sweep did every other vertex of them.
[[nodiscard]] Tally sweep_clustered_vertices(const RegionSolver& solver, const Level& level,
                                             const std::vector<std::int32_t>& planes,
                                             Index num_lines);

// ------------------------------------------------------------------------------------------
// Results (fixed_point_results.cpp)

/// Sorts, merges duplicates and describes the fixed points.
[[nodiscard]] std::vector<FixedPoint> distinct_fixed_points(
    const PiecewiseLinearNetwork& network, std::vector<std::vector<double>> points,
    double tolerance);

/// Recomputes each raw fixed point from its activations in a fixed order (so the result does
/// not depend on the order in which a sweep accumulated M and k), then merges duplicates.
[[nodiscard]] FixedPointResult finish(const PiecewiseLinearNetwork& network,
                                      const RegionSolver& solver, Tally&& tally, double tolerance);

}  // namespace lrsmc::detail
