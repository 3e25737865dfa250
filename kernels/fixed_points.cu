// Fixed points of piecewise-linear networks on the GPU (method.md §7.2): the
// CPU's sweep along every line of the hyperplane arrangement, one thread block per line. A line's
// crossings are computed per hyperplane, sorted per line with cub::DeviceSegmentedSort, then a
// cub::BlockScan of the activation changes gives every segment's affine piece (M, k) and each
// vertex solves and tests the region above it in parallel. Vertices inside a cluster of
// coincident crossings (degenerate arrangements) are left to the CPU, whose symbolic perturbation
// orders them. The per-line and per-vertex maths is include/lrsmc/math/arrangement.hpp, shared
// with the host.
//
// Determinism: counts are integer atomics; accepted points go to atomically claimed slots (the
// host sorts them); the scan order is fixed by the block size, so a rerun is bitwise identical.
// Numbers: this file is compiled with -fmad=false (CMakeLists.txt) so the crossing positions,
// on which the order along a line and the coincidence test depend, are those of the CPU.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <limits>

#include "kernels/fixed_points_launch.hpp"
#include "kernels/launcher.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int sweep_block_size = 256;

/// The affine piece (M, k) of a segment: rank² + rank numbers, summed element-wise.
template <int Rank>
struct AffinePiece {
  static constexpr int size = Rank * Rank + Rank;
  double value[size];
};

template <int Rank>
struct AddPieces {
  __device__ AffinePiece<Rank> operator()(const AffinePiece<Rank>& a,
                                          const AffinePiece<Rank>& b) const {
    AffinePiece<Rank> sum;
    for (int i = 0; i < AffinePiece<Rank>::size; ++i) sum.value[i] = a.value[i] + b.value[i];
    return sum;
  }
};

/// Carries the running affine piece from one tile of crossings to the next (CUB's block-prefix
/// callback: warp 0 calls it with the tile's aggregate; lane 0's return value is the tile's prefix).
template <int Rank>
struct RunningPiece {
  AffinePiece<Rank> running;
  __device__ AffinePiece<Rank> operator()(const AffinePiece<Rank>& aggregate) {
    const AffinePiece<Rank> before = running;
    running = AddPieces<Rank>{}(running, aggregate);
    return before;
  }
};

__device__ bool on_line(const math::ArrangementLine& line, int count, int plane) {
  for (int j = 0; j < count; ++j) {
    if (line.planes[j] == plane) return true;
  }
  return false;
}

/// Thread 0 builds the line of block `index`; every thread then sees it in `line`.
__device__ bool load_line(const ArrangementBatch& batch, std::int64_t index,
                          math::ArrangementLine& line, int& valid) {
  const int count = batch.view.dim - 1;
  if (threadIdx.x == 0) {
    for (int j = 0; j < count; ++j) line.planes[j] = batch.lines[index * count + j];
    valid = math::build_arrangement_line(batch.view, line) ? 1 : 0;
  }
  __syncthreads();
  return valid != 0;
}

}  // namespace

/// One block per line: each hyperplane's crossing position (+inf when it is on the line, parallel
/// to it, or the line is degenerate) and the number of crossings.
__global__ void compute_crossings_kernel(ArrangementBatch batch) {
  __shared__ math::ArrangementLine line;
  __shared__ int valid;
  __shared__ int num_crossings;
  const std::int64_t index = blockIdx.x;
  if (threadIdx.x == 0) num_crossings = 0;
  const bool usable = load_line(batch, index, line, valid);
  const math::ArrangementView& view = batch.view;
  const int count = view.dim - 1;
  const std::int64_t segment = index * view.num_planes;
  int local = 0;
  for (int p = static_cast<int>(threadIdx.x); p < view.num_planes; p += blockDim.x) {
    double key = std::numeric_limits<double>::infinity();
    if (usable && !on_line(line, count, p)) {
      const math::PlaneOnLine crossing = math::arrangement_plane_on_line(view, line, p);
      if (crossing.crosses) {
        key = crossing.t;
        ++local;
      }
    }
    batch.keys[segment + p] = key;
    batch.values[segment + p] = p;
  }
  if (local > 0) atomicAdd(&num_crossings, local);
  __syncthreads();
  if (threadIdx.x == 0) batch.num_crossings[index] = num_crossings;
}

/// One block per line (launched with sweep_block_size threads): see sweep_lines.
template <int Rank>
__global__ void __launch_bounds__(sweep_block_size) sweep_lines_kernel(ArrangementBatch batch) {
  using Piece = AffinePiece<Rank>;
  using BlockReduce = cub::BlockReduce<Piece, sweep_block_size>;
  using BlockScan = cub::BlockScan<Piece, sweep_block_size>;
  __shared__ union {
    typename BlockReduce::TempStorage reduce;
    typename BlockScan::TempStorage scan;
  } storage;
  __shared__ math::ArrangementLine line;
  __shared__ int valid;
  __shared__ Piece initial;
  __shared__ unsigned long long tally[4];  // vertices, regions, solves, singular

  const std::int64_t index = blockIdx.x;
  const math::ArrangementView& view = batch.view;
  const int count = view.dim - 1;
  const int stride = Piece::size;
  if (threadIdx.x < 4) tally[threadIdx.x] = 0;
  if (!load_line(batch, index, line, valid)) return;
  const std::int64_t segment = index * view.num_planes;
  const double* keys = batch.sorted_keys + segment;
  const std::int32_t* planes = batch.sorted_values + segment;
  const int num_crossings = batch.num_crossings[index];

  // The affine piece of the first segment (t → −∞): every active hyperplane off the line.
  Piece partial;
  for (int i = 0; i < stride; ++i) partial.value[i] = 0.0;
  for (int p = static_cast<int>(threadIdx.x); p < view.num_network; p += blockDim.x) {
    if (on_line(line, count, p)) continue;
    if (math::arrangement_plane_on_line(view, line, p).active) {
      math::arrangement_add_term(view, p, 1.0, partial.value);
    }
  }
  const Piece total = BlockReduce(storage.reduce).Reduce(partial, AddPieces<Rank>{});
  if (threadIdx.x == 0) {
    for (int i = 0; i < stride; ++i) initial.value[i] = view.base[i] + total.value[i];
  }
  __syncthreads();

  RunningPiece<Rank> prefix{initial};
  const int last_on_line = count > 0 ? line.planes[count - 1] : -1;
  unsigned long long vertices = 0, regions = 0, solves = 0, singular = 0;
  bool any_clustered = false;
  for (int tile = 0; tile < num_crossings; tile += sweep_block_size) {
    const int i = tile + static_cast<int>(threadIdx.x);
    Piece change;
    for (int s = 0; s < stride; ++s) change.value[s] = 0.0;
    math::PlaneOnLine crossing;
    int k = -1;
    bool clustered = false;
    if (i < num_crossings) {
      k = planes[i];
      crossing = math::arrangement_plane_on_line(view, line, k);
      math::arrangement_add_term(view, k, crossing.active ? -1.0 : 1.0, change.value);
      // A crossing that coincides with a neighbour belongs to a cluster, whose order needs the
      // symbolic perturbation: its vertex is left to the CPU (the sums past it do not depend on
      // the order within the cluster, so the other vertices stay here).
      if (i > 0) {
        const double sine = math::arrangement_plane_on_line(view, line, planes[i - 1]).sine;
        clustered = math::arrangement_coincident(view, line, keys[i - 1], sine, keys[i],
                                                 crossing.sine);
      }
      if (i + 1 < num_crossings && !clustered) {
        const double sine = math::arrangement_plane_on_line(view, line, planes[i + 1]).sine;
        clustered = math::arrangement_coincident(view, line, keys[i], crossing.sine,
                                                 keys[i + 1], sine);
      }
      any_clustered = any_clustered || clustered;
    }
    Piece before;  // the segment just before crossing i
    BlockScan(storage.scan).ExclusiveScan(change, before, AddPieces<Rank>{}, prefix);
    if (k > last_on_line && !clustered) {
      ++solves;
      const math::ArrangementVertex vertex =
          math::arrangement_vertex(view, line, k, crossing.t, crossing.along);
      const math::VertexOutcome outcome =
          math::arrangement_solve_vertex(view, line, vertex, crossing.active, before.value);
      if (outcome.in_box) {
        ++regions;
        ++solves;
      }
      if (outcome.vertex) ++vertices;
      if (outcome.singular) ++singular;
      if (outcome.accepted) {
        const unsigned long long slot = atomicAdd(&batch.counters->records, 1ULL);
        if (slot < static_cast<unsigned long long>(batch.record_capacity)) {
          FixedPointRecord& record = batch.records[slot];
          record.line = index;
          record.plane = k;
          record.unused = 0;
          for (int r = 0; r < math::arrangement_max_rank; ++r) record.z[r] = outcome.z[r];
        }
      }
    }
    __syncthreads();  // the scan's storage is reused by the next tile
  }
  if (vertices > 0) atomicAdd(&tally[0], vertices);
  if (regions > 0) atomicAdd(&tally[1], regions);
  if (solves > 0) atomicAdd(&tally[2], solves);
  if (singular > 0) atomicAdd(&tally[3], singular);
  const bool line_clustered = __syncthreads_or(any_clustered ? 1 : 0) != 0;
  if (threadIdx.x == 0) {
    if (line_clustered) {
      const unsigned long long slot = atomicAdd(&batch.counters->host_lines, 1ULL);
      batch.host_lines[slot] = index;
    }
    atomicAdd(&batch.counters->vertices, tally[0]);
    atomicAdd(&batch.counters->regions, tally[1]);
    atomicAdd(&batch.counters->solves, tally[2]);
    atomicAdd(&batch.counters->singular, tally[3]);
  }
}

// ------------------------------------------------------------------------------------------
// Launchers

namespace {

void require_batch(const ArrangementBatch& batch) {
  if (batch.num_lines < 1 || batch.num_lines > std::int64_t{2147483647}) {
    throw Error(detail::concat("fixed-point sweep: num_lines is out of range; got ",
                               batch.num_lines, ", expected 1 .. 2^31 - 1"));
  }
}

}  // namespace

void compute_crossings(const ArrangementBatch& batch, cudaStream_t stream) {
  require_batch(batch);
  LaunchShape shape;
  shape.grid = dim3(static_cast<unsigned>(batch.num_lines));
  shape.block = dim3(256);
  launch_kernel("compute_crossings", compute_crossings_kernel, shape, stream, batch);
}

std::size_t sort_crossings_scratch_bytes(std::int64_t num_lines, int num_planes) {
  std::size_t bytes = 0;
  LRSMC_FIXED_POINTS_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      nullptr, bytes, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const std::int32_t*>(nullptr), static_cast<std::int32_t*>(nullptr),
      num_lines * num_planes, num_lines, static_cast<const std::int32_t*>(nullptr),
      static_cast<const std::int32_t*>(nullptr)));
  return bytes;
}

void sort_crossings(const ArrangementBatch& batch, cudaStream_t stream) {
  require_batch(batch);
  std::size_t bytes = batch.sort_scratch_bytes;
  // Stable, as the CPU sweep's sort_crossings: SortPairs may order exactly equal
  // positions (hyperplanes through one point, e.g. b = 0 on a line through the origin) in any
  // order, and which crossing ends a tie group decides, through its sine, whether the next
  // crossing counts as coincident, i.e. whether the GPU or the CPU solves that vertex.
  LRSMC_FIXED_POINTS_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      batch.sort_scratch, bytes, batch.keys, batch.sorted_keys, batch.values, batch.sorted_values,
      batch.num_lines * batch.view.num_planes, batch.num_lines, batch.segment_offsets,
      batch.segment_offsets + 1, stream));
  check_launch("sort_crossings", stream);
}

void sweep_lines(const ArrangementBatch& batch, cudaStream_t stream) {
  require_batch(batch);
  LaunchShape shape;
  shape.grid = dim3(static_cast<unsigned>(batch.num_lines));
  shape.block = dim3(sweep_block_size);
  switch (batch.view.rank) {
    case 1: launch_kernel("sweep_lines", sweep_lines_kernel<1>, shape, stream, batch); break;
    case 2: launch_kernel("sweep_lines", sweep_lines_kernel<2>, shape, stream, batch); break;
    case 3: launch_kernel("sweep_lines", sweep_lines_kernel<3>, shape, stream, batch); break;
    case 4: launch_kernel("sweep_lines", sweep_lines_kernel<4>, shape, stream, batch); break;
    default:
      throw Error(detail::concat("fixed-point sweep: rank is not supported on the GPU; got ",
                                 batch.view.rank, ", expected 1 .. ",
                                 math::arrangement_max_rank));
  }
}

}  // namespace lrsmc::kernels
