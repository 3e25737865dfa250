// The fixed points of a piecewise-linear network by the arrangement sweep (method.md §7.2), on the
// CPU or with the lines swept by the CUDA enumeration: what the line-parallel sweep needs, and its
// results merged with the CPU's sweep of the lines it leaves.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "analysis/arrangement_sweep.hpp"
#include "analysis/fixed_points_internal.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/arrangement.hpp"

namespace lrsmc::detail {
namespace {

ArrangementData arrangement_data(const Level& level, const Hyperplanes& planes,
                                 const RegionSolver& solver, double tolerance) {
  ArrangementData data;
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
Tally merge_line_sweep(const ArrangementData& data, const Level& level,
                       const RegionSolver& solver, LineSweepResult&& swept) {
  Tally tally =
      sweep_clustered_vertices(solver, level, swept.host_lines, swept.num_host_lines);
  tally.vertices += swept.vertices;
  tally.regions += swept.regions;
  tally.solves += swept.solves;
  tally.singular += swept.singular;
  const math::ArrangementView view = data.view();
  const int count = data.dim - 1;
  for (SweptFixedPoint& point : swept.points) {
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
  // No hyperplane in the essential space (identity, or every normal zero): one region, solved
  // on the host whatever the engine.
  if (engine == SweepEngine::cpu || level.dim == 0) {
    Tally tally = sweep_arrangement(solver, level);
    return finish(network, solver, std::move(tally), options.tolerance);
  }
  const ArrangementData data = arrangement_data(level, planes, solver, options.tolerance);
  // Engine cuda: without CUDA compiled in it threw above.
  LineSweepResult swept;
#if defined(LRSMC_WITH_CUDA)
  swept = sweep_lines_cuda(data);
#endif
  const Index num_host_lines = swept.num_host_lines;
  Tally tally = merge_line_sweep(data, level, solver, std::move(swept));
  FixedPointResult result = finish(network, solver, std::move(tally), options.tolerance);
  result.device = BackendKind::cuda;
  result.num_host_lines = num_host_lines;
  return result;
}

}  // namespace lrsmc::detail
