// Internal: launchers of the fixed-point enumeration kernels (kernels/fixed_points.cu, method.md
// §7.2), callable from host C++. Only plain structs, device pointers and cudaStream_t cross this
// header; the per-line maths is include/lrsmc/math/arrangement.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/device_memory.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/arrangement.hpp"

namespace lrsmc::kernels {

/// A region whose fixed point the device accepted: the vertex (line of the batch, hyperplane k)
/// whose region above it holds the point, and the point (rank entries).
struct FixedPointRecord {
  std::int64_t line;
  std::int32_t plane;
  std::int32_t unused;
  double z[math::arrangement_max_rank];
};

/// Integer totals of one sweep launch (integer atomics only: the totals are deterministic).
struct FixedPointCounters {
  unsigned long long vertices;    ///< as FixedPointResult::num_vertices
  unsigned long long regions;     ///< as FixedPointResult::num_regions
  unsigned long long solves;      ///< as FixedPointResult::num_solves
  unsigned long long singular;    ///< as FixedPointResult::num_singular_regions
  unsigned long long records;     ///< accepted fixed points (may exceed record_capacity)
  unsigned long long host_lines;  ///< lines with coincident crossings (vertices left to the CPU)
};

/// One batch of lines of the arrangement. Every pointer is device memory.
struct ArrangementBatch {
  math::ArrangementView view;
  const std::int32_t* lines = nullptr;  ///< num_lines × (dim − 1) hyperplanes, increasing
  std::int64_t num_lines = 0;
  /// Crossings, num_lines segments of view.num_planes entries: position t (+inf where the
  /// hyperplane does not cross the line) and hyperplane index; sorted copies per segment.
  double* keys = nullptr;
  std::int32_t* values = nullptr;
  double* sorted_keys = nullptr;
  std::int32_t* sorted_values = nullptr;
  std::int32_t* num_crossings = nullptr;    ///< num_lines
  const std::int32_t* segment_offsets = nullptr;  ///< num_lines + 1: line·num_planes
  void* sort_scratch = nullptr;
  std::size_t sort_scratch_bytes = 0;
  FixedPointRecord* records = nullptr;  ///< record_capacity
  std::int64_t record_capacity = 0;
  std::int64_t* host_lines = nullptr;   ///< num_lines: batch indices of lines with clusters
  FixedPointCounters* counters = nullptr;
};

/// Builds each line (one block per line) and writes its crossings and their count.
void compute_crossings(const ArrangementBatch& batch, cudaStream_t stream);

/// Scratch bytes of sort_crossings for a batch of this size (cub::DeviceSegmentedSort).
[[nodiscard]] std::size_t sort_crossings_scratch_bytes(std::int64_t num_lines, int num_planes);

/// Sorts each line's crossings by position.
void sort_crossings(const ArrangementBatch& batch, cudaStream_t stream);

/// Sweeps each line (one block per line): a block scan of the activation changes gives the
/// affine piece of every segment, and each vertex whose other hyperplanes have lower indices
/// solves and tests the region above it, except vertices inside a cluster of coincident
/// crossings, whose order needs the symbolic perturbation: their lines are listed in host_lines
/// for the CPU to do those vertices. Adds to `counters` (zero them first) and writes accepted fixed points to
/// `records` in an unspecified order (slots from an integer atomic; the host sorts them).
void sweep_lines(const ArrangementBatch& batch, cudaStream_t stream);

}  // namespace lrsmc::kernels

/// The shared check of kernels/device_memory.hpp (kept as a name for kernels/fixed_points.cu).
#define LRSMC_FIXED_POINTS_CUDA_CHECK(expression) LRSMC_CUDA_CHECK(expression)
