// The optimizer on the GPU (method.md §5.1): the global gradient norm and the NaN guard in one
// block, then one Adam / RAdam step over the flat float64 parameter vector — the order of sums
// and the update of include/lrsmc/math/optimizer.hpp, which the host trainer runs too — and the
// gather of a batch's trials or windows from device-resident data.
#include <algorithm>
#include <cmath>

#include "kernels/launcher.hpp"
#include "kernels/particle_step.cuh"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/optimizer.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int norm_block_size = math::norm_chunks;

__global__ void __launch_bounds__(norm_block_size)
    gradient_norm_kernel(const double* ascent, std::int64_t count, const double* elbo_values,
                         const std::int32_t* failed_steps, int failed_count,
                         const double* constants_status, double* status) {
  __shared__ double chunk_sums[norm_block_size];
  __shared__ int bad[norm_block_size];
  const int thread = int(threadIdx.x);
  chunk_sums[thread] = math::chunk_sum_of_squares(ascent, count, thread, DeviceRoundedProduct());
  int flag = 0;
  for (std::int64_t i = thread; i < count; i += norm_block_size)
    if (!isfinite(ascent[i])) flag = 1;
  for (int i = thread; i < failed_count; i += norm_block_size) {
    if (failed_steps && failed_steps[i] >= 0) flag = 1;
    if (elbo_values && !isfinite(elbo_values[i])) flag = 1;
  }
  if (thread == 0 && constants_status && *constants_status != 0.0) flag = 1;
  bad[thread] = flag;
  __syncthreads();
  if (thread != 0) return;
  double total = 0.0;
  int any_bad = 0;
  for (int chunk = 0; chunk < norm_block_size; ++chunk) {
    total += chunk_sums[chunk];
    any_bad |= bad[chunk];
  }
  status[0] = total;
  status[2] = constants_status ? *constants_status : 0.0;
  // Only a non-finite entry, ELBO or failed step skips the step. A sum of squares that
  // overflows to inf from finite entries does not: the host trainer applies it (the clip factor
  // clip / inf is 0), and skipping here would silently drop a step the trainer counts as applied.
  status[1] = any_bad ? 1.0 : 0.0;
}

__global__ void optimizer_step_kernel(const OptimizerLaunch p) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.count || p.status[1] != 0.0) return;     // the NaN guard: keep the last good state
  if (p.evaluated) p.evaluated[i] = p.parameters[i];  // where this step's gradient was taken
  const double clip_scale = math::clip_factor(sqrt(p.status[0]), p.gradient_clip);
  math::adam_update(p.ascent[i], clip_scale, p.coefficients, p.parameters[i], p.first_moment[i],
                    p.second_moment[i], DeviceRoundedProduct());
}

/// Grid (columns, min(batch, 65535)): rows strided over the grid's second dimension.
__global__ void gather_batch_kernel(const GatherLaunch p) {
  for (int row = int(blockIdx.y); row < p.batch; row += int(gridDim.y)) {
    const int trial = p.trials[row];
    const std::int64_t cells = std::int64_t(p.length) * p.channels;
    const std::size_t source =
        (std::size_t(trial - p.observed_first) * p.data_steps + std::size_t(p.starts[row])) *
        p.channels;
    const std::size_t target = std::size_t(row) * cells;
    const bool observed = trial >= p.observed_first && trial < p.observed_last;
    for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
         observed && e < cells; e += std::int64_t(gridDim.x) * blockDim.x) {
      p.out_observations[target + e] = p.observations[source + e];
      if (p.log_factorial) p.out_log_factorial[target + e] = p.log_factorial[source + e];
    }
    if (!p.inputs) continue;
    const std::int64_t input_cells = std::int64_t(p.length) * p.num_inputs;
    const std::size_t input_source =
        (std::size_t(trial) * p.data_steps + std::size_t(p.starts[row])) * p.num_inputs;
    for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < input_cells;
         e += std::int64_t(gridDim.x) * blockDim.x)
      p.out_inputs[std::size_t(row) * input_cells + e] = p.inputs[input_source + e];
  }
}

}  // namespace

void gradient_norm(const double* ascent, std::int64_t count, const double* elbo_values,
                   const std::int32_t* failed_steps, int failed_count,
                   const double* constants_status, double* status, cudaStream_t stream) {
  LaunchShape shape;
  shape.block = dim3(norm_block_size);
  launch_kernel("gradient_norm", gradient_norm_kernel, shape, stream, ascent, count, elbo_values,
                failed_steps, failed_count, constants_status, status);
}

void optimizer_step(const OptimizerLaunch& launch, cudaStream_t stream) {
  constexpr int threads = 256;
  LaunchShape shape;
  shape.grid = dim3(unsigned((launch.count + threads - 1) / threads));
  shape.block = dim3(threads);
  if (shape.grid.x == 0) return;
  launch_kernel("optimizer_step", optimizer_step_kernel, shape, stream, launch);
}

void gather_batch(const GatherLaunch& launch, cudaStream_t stream) {
  if (launch.batch == 0) return;
  constexpr int threads = 256;
  const std::int64_t cells = std::int64_t(launch.length) * launch.channels;
  const unsigned columns = unsigned(std::min<std::int64_t>((cells + threads - 1) / threads, 1024));
  LaunchShape shape;
  shape.grid = dim3(columns > 0 ? columns : 1, unsigned(std::min(launch.batch, 65535)));
  shape.block = dim3(threads);
  launch_kernel("gather_batch", gather_batch_kernel, shape, stream, launch);
}

}  // namespace lrsmc::kernels
