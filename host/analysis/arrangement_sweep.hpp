// Internal: the line-parallel sweep of the hyperplane arrangement (method.md §7.2) that the CUDA
// fixed-point enumeration runs (host/cuda/fixed_points_sweep.cpp, kernels/fixed_points.cu), and
// what host/analysis/arrangement_sweep.cpp exchanges with it.
#pragma once

#include <cstdint>
#include <vector>

#include "lrsmc/fixed_points.hpp"
#include "lrsmc/math/arrangement.hpp"

namespace lrsmc::detail {

/// Host copy of everything math::ArrangementView points to (see there for shapes).
struct ArrangementData {
  int rank = 0;
  int dim = 0;
  int num_planes = 0;
  int num_network = 0;
  double decay = 0.0;
  double tolerance = 0.0;
  double distance = 0.0;
  std::vector<double> w, b, norm, normal, offset, abs_sum, term, base, direction;
  std::vector<std::int32_t> order;

  /// A view of these vectors (valid while *this lives and is not resized).
  [[nodiscard]] math::ArrangementView view() const {
    math::ArrangementView result;
    result.rank = rank;
    result.dim = dim;
    result.num_planes = num_planes;
    result.num_network = num_network;
    result.decay = decay;
    result.tolerance = tolerance;
    result.distance = distance;
    result.w = w.data();
    result.b = b.data();
    result.norm = norm.data();
    result.normal = normal.data();
    result.offset = offset.data();
    result.abs_sum = abs_sum.data();
    result.term = term.data();
    result.base = base.data();
    result.order = order.data();
    result.direction = direction.data();
    return result;
  }
};

/// A fixed point accepted in the region above the vertex where hyperplane `plane` crosses `line`.
struct SweptFixedPoint {
  std::vector<std::int32_t> line;  ///< dim − 1 hyperplanes
  std::int32_t plane = 0;
  std::vector<double> z;           ///< rank
};

/// The sweep of every vertex except those inside clusters of coincident crossings (a vertex with
/// more than dim hyperplanes needs the symbolic-perturbation order of the CPU), whose lines are
/// listed in host_lines.
struct LineSweepResult {
  std::int64_t vertices = 0;
  std::int64_t regions = 0;
  std::int64_t solves = 0;
  std::int64_t singular = 0;
  std::vector<SweptFixedPoint> points;  ///< in no particular order
  std::int64_t num_host_lines = 0;
  std::vector<std::int32_t> host_lines;  ///< num_host_lines × (dim − 1), increasing lines
};

/// Advances `planes` (an increasing subset of [0, num_planes)) to the next subset of its size in
/// lexicographic order; false after the last. The lines of the arrangement are these subsets.
inline bool next_line(std::vector<std::int32_t>& planes, int num_planes) {
  const int count = static_cast<int>(planes.size());
  for (int i = count - 1; i >= 0; --i) {
    if (planes[static_cast<std::size_t>(i)] < num_planes - count + i) {
      ++planes[static_cast<std::size_t>(i)];
      for (int j = i + 1; j < count; ++j) {
        planes[static_cast<std::size_t>(j)] = planes[static_cast<std::size_t>(j - 1)] + 1;
      }
      return true;
    }
  }
  return false;
}

#if defined(LRSMC_WITH_CUDA)
/// Runs the sweep on the current CUDA device (host/cuda/fixed_points_sweep.cpp). Requires
/// 1 ≤ dim ≤ rank ≤ math::arrangement_max_rank. Throws CudaError / OutOfMemory.
[[nodiscard]] LineSweepResult sweep_lines_cuda(const ArrangementData& data);
#endif

/// Who sweeps the lines in find_fixed_points_with.
enum class SweepEngine {
  cpu,   ///< the CPU sweep (find_fixed_points with device cpu)
  cuda,  ///< sweep_lines_cuda, degenerate lines on the CPU
};

/// find_fixed_points with the line sweep run by `engine` (no device dispatch). Throws as
/// find_fixed_points; cuda also throws InvalidInput for rank > arrangement_max_rank, and Error
/// when no CUDA device answers or CUDA is not compiled in.
[[nodiscard]] FixedPointResult find_fixed_points_with(const PiecewiseLinearNetwork& network,
                                                      const FixedPointOptions& options,
                                                      SweepEngine engine);

}  // namespace lrsmc::detail
