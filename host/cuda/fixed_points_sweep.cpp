// Host side of the CUDA fixed-point enumeration (method.md §7.2, kernels/fixed_points.cu): device
// copies of the arrangement, the lines in batches (crossings, segmented sort, sweep), and the
// accepted fixed points and the lines left to the CPU copied back.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "analysis/arrangement_sweep.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/fixed_points_launch.hpp"

namespace lrsmc::detail {
namespace {

using kernels::DeviceBuffer;
using kernels::download;

/// Crossing slots per batch of lines: 2^25 slots of (double, int32), twice (the sort's output),
/// about 0.8 GB; a batch holds at least one line.
constexpr std::int64_t kBatchSlots = std::int64_t{1} << 25;
/// Accepted fixed points a sweep launch may write before the host enlarges the buffer and reruns.
constexpr std::int64_t kInitialRecords = std::int64_t{1} << 14;

/// C(n, k) for the small k of a line (k ≤ 3), saturating far above any batch count.
std::int64_t binomial(std::int64_t n, int k) {
  if (k < 0 || n < k) return 0;
  double value = 1.0;
  for (int i = 0; i < k; ++i) value *= static_cast<double>(n - i) / (i + 1.0);
  return value > 9e18 ? std::int64_t{9000000000000000000} : static_cast<std::int64_t>(value + 0.5);
}

}  // namespace

LineSweepResult sweep_lines_cuda(const ArrangementData& data) {
  LRSMC_ASSERT(data.dim >= 1 && data.dim <= data.rank && data.rank <= math::arrangement_max_rank);
  const int count = data.dim - 1;
  const int num_planes = data.num_planes;
  const cudaStream_t stream = nullptr;  // the legacy default stream: copies synchronise with it

  // The arrangement, on the device.
  const DeviceBuffer<double> w(data.w), b(data.b), norm(data.norm), normal(data.normal),
      offset(data.offset), abs_sum(data.abs_sum), term(data.term), base(data.base),
      direction(data.direction);
  const DeviceBuffer<std::int32_t> order(data.order);
  kernels::ArrangementBatch batch;
  batch.view = data.view();
  batch.view.w = w.get();
  batch.view.b = b.get();
  batch.view.norm = norm.get();
  batch.view.normal = normal.get();
  batch.view.offset = offset.get();
  batch.view.abs_sum = abs_sum.get();
  batch.view.term = term.get();
  batch.view.base = base.get();
  batch.view.order = order.get();
  batch.view.direction = direction.get();

  // Working memory for the largest batch.
  const std::int64_t total_lines = count == 0 ? 1 : binomial(num_planes, count);
  const std::int64_t max_lines =
      std::max<std::int64_t>(1, std::min(total_lines, kBatchSlots / num_planes));
  const auto slots = static_cast<std::size_t>(max_lines * num_planes);
  DeviceBuffer<double> keys(slots), sorted_keys(slots);
  DeviceBuffer<std::int32_t> values(slots), sorted_values(slots);
  DeviceBuffer<std::int32_t> num_crossings(static_cast<std::size_t>(max_lines));
  std::vector<std::int32_t> host_offsets(static_cast<std::size_t>(max_lines + 1));
  for (std::int64_t line = 0; line <= max_lines; ++line) {
    host_offsets[static_cast<std::size_t>(line)] = static_cast<std::int32_t>(line * num_planes);
  }
  const DeviceBuffer<std::int32_t> offsets(host_offsets);
  const std::size_t scratch_bytes = kernels::sort_crossings_scratch_bytes(max_lines, num_planes);
  DeviceBuffer<unsigned char> scratch(std::max<std::size_t>(scratch_bytes, 1));
  DeviceBuffer<kernels::FixedPointRecord> records(static_cast<std::size_t>(kInitialRecords));
  DeviceBuffer<std::int64_t> host_lines(static_cast<std::size_t>(max_lines));
  DeviceBuffer<kernels::FixedPointCounters> counters(1);
  DeviceBuffer<std::int32_t> lines(static_cast<std::size_t>(std::max<std::int64_t>(max_lines * count, 1)));

  batch.lines = lines.get();
  batch.keys = keys.get();
  batch.values = values.get();
  batch.sorted_keys = sorted_keys.get();
  batch.sorted_values = sorted_values.get();
  batch.num_crossings = num_crossings.get();
  batch.segment_offsets = offsets.get();
  batch.sort_scratch = scratch.get();
  batch.sort_scratch_bytes = scratch_bytes;
  batch.host_lines = host_lines.get();
  batch.counters = counters.get();

  LineSweepResult result;
  std::vector<std::int32_t> planes(static_cast<std::size_t>(count));
  std::iota(planes.begin(), planes.end(), 0);
  std::vector<std::int32_t> batch_lines;
  bool more = true;
  while (more) {
    // The next lines in lexicographic order (the CPU's order; any order gives the same result).
    batch_lines.clear();
    std::int64_t num_lines = 0;
    while (more && num_lines < max_lines) {
      batch_lines.insert(batch_lines.end(), planes.begin(), planes.end());
      ++num_lines;
      more = next_line(planes, num_planes);
    }
    if (count > 0) {
      LRSMC_CUDA_CHECK(cudaMemcpy(lines.get(), batch_lines.data(),
                                  batch_lines.size() * sizeof(std::int32_t),
                                  cudaMemcpyHostToDevice));
    }
    batch.num_lines = num_lines;
    kernels::compute_crossings(batch, stream);
    kernels::sort_crossings(batch, stream);
    kernels::FixedPointCounters totals{};
    for (;;) {
      batch.records = records.get();
      batch.record_capacity = static_cast<std::int64_t>(records.size());
      LRSMC_CUDA_CHECK(
          cudaMemsetAsync(counters.get(), 0, sizeof(kernels::FixedPointCounters), stream));
      kernels::sweep_lines(batch, stream);
      totals = download(counters.get(), 1)[0];
      if (totals.records <= records.size()) break;
      records.allocate(static_cast<std::size_t>(2 * totals.records));  // and sweep again
    }
    result.vertices += static_cast<std::int64_t>(totals.vertices);
    result.regions += static_cast<std::int64_t>(totals.regions);
    result.solves += static_cast<std::int64_t>(totals.solves);
    result.singular += static_cast<std::int64_t>(totals.singular);
    for (const kernels::FixedPointRecord& record :
         download(records.get(), static_cast<std::size_t>(totals.records))) {
      SweptFixedPoint point;
      const auto first = batch_lines.begin() + static_cast<std::ptrdiff_t>(record.line * count);
      point.line.assign(first, first + count);
      point.plane = record.plane;
      point.z.assign(record.z, record.z + data.rank);
      result.points.push_back(std::move(point));
    }
    std::vector<std::int64_t> left = download(host_lines.get(), static_cast<std::size_t>(totals.host_lines));
    std::sort(left.begin(), left.end());
    for (const std::int64_t line : left) {
      const auto first = batch_lines.begin() + static_cast<std::ptrdiff_t>(line * count);
      result.host_lines.insert(result.host_lines.end(), first, first + count);
      ++result.num_host_lines;
    }
  }
  return result;
}

}  // namespace lrsmc::detail
