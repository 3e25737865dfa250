// The CPU sweep of the hyperplane arrangement (method.md §7.2): every line's crossings in order,
// ties ordered by the symbolic perturbation, and the region above each vertex solved (the method
// is described in fixed_points_internal.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "analysis/fixed_points_internal.hpp"

namespace lrsmc::detail {
namespace {

/// |sin| of the angle below which a line and a hyperplane count as parallel (normalised volume).
constexpr double kParallelTolerance = math::arrangement_parallel_tolerance;
/// Relative rounding below which two crossings of a line coincide (a vertex with more than r
/// hyperplanes) or a parallel hyperplane contains the line. Well above rounding errors (~1e-16
/// relative, amplified by the line's conditioning, which the tests divide by), well below any
/// real separation one can expect to resolve.
constexpr double kCoincidentTolerance = math::arrangement_coincident_tolerance;
/// Relative size below which a coefficient of the symbolic perturbation counts as zero.
constexpr double kCoefficientTolerance = math::arrangement_coefficient_tolerance;

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

  /// sweep_arrangement (fixed_points_internal.hpp).
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

  /// sweep_clustered_vertices (fixed_points_internal.hpp).
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

}  // namespace

Tally sweep_arrangement(const RegionSolver& solver, const Level& level) {
  return ArrangementSweep(solver).run(level);
}

Tally sweep_clustered_vertices(const RegionSolver& solver, const Level& level,
                               const std::vector<std::int32_t>& planes, Index num_lines) {
  return ArrangementSweep(solver).run_lines(level, planes, num_lines);
}

}  // namespace lrsmc::detail
