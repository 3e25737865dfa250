// The optimizer on the GPU (method.md §5.1): the global gradient norm and the NaN guard in one
// block (fixed-order sum, deterministic), then one Adam / RAdam step over the flat float64
// parameter vector, element for element the arithmetic of trainer.cpp's optimizer_step; and
// the gather of a batch's trials or windows from device-resident data.
#include <cub/block/block_reduce.cuh>

#include <cmath>

#include "kernels/launch_check.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int norm_block_size = 512;
using NormReduce = cub::BlockReduce<double, norm_block_size>;

struct MaximumOp {
  __device__ double operator()(double a, double b) const { return a > b ? a : b; }
};

__global__ void __launch_bounds__(norm_block_size)
    gradient_norm_kernel(const double* ascent, std::int64_t count, const double* elbo_values,
                         const std::int32_t* failed_steps, int failed_count, double* status) {
  __shared__ typename NormReduce::TempStorage storage;
  double squares = 0.0;
  int bad = 0;
  for (std::int64_t i = threadIdx.x; i < count; i += norm_block_size) {
    const double value = ascent[i];
    squares += value * value;
    if (!isfinite(value)) bad = 1;
  }
  for (int i = threadIdx.x; i < failed_count; i += norm_block_size) {
    if (failed_steps && failed_steps[i] >= 0) bad = 1;
    if (elbo_values && !isfinite(elbo_values[i])) bad = 1;
  }
  const double total = NormReduce(storage).Sum(squares);
  __syncthreads();
  const int any_bad = NormReduce(storage).Reduce(double(bad), MaximumOp()) > 0.0 ? 1 : 0;
  if (threadIdx.x == 0) {
    status[0] = total;
    // Only a non-finite entry, ELBO or failed step skips the step. A sum of squares that
    // overflows to inf from finite entries does not: trainer.cpp's host step applies it (the
    // clip factor clip / inf is 0), and skipping here would silently drop a step the trainer
    // counts as applied.
    status[1] = any_bad ? 1.0 : 0.0;
  }
}

__global__ void optimizer_step_kernel(const OptimizerLaunch p) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.count || p.status[1] != 0.0) return;  // the NaN guard: keep the last good state
  constexpr double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  const double norm = sqrt(p.status[0]);
  double g = -p.ascent[i];
  if (p.gradient_clip > 0 && norm > p.gradient_clip) g *= p.gradient_clip / norm;
  const double first = beta1 * p.first_moment[i] + (1 - beta1) * g;
  const double second = beta2 * p.second_moment[i] + (1 - beta2) * g * g;
  p.first_moment[i] = first;
  p.second_moment[i] = second;
  const double corrected_mean = first / p.bias1;
  if (p.rectified) {
    const double denominator = sqrt(second / p.bias2) + epsilon;
    p.parameters[i] -= p.learning_rate * p.rectification * corrected_mean / denominator;
  } else {
    p.parameters[i] -= p.learning_rate * corrected_mean;
  }
}

__global__ void gather_batch_kernel(const GatherLaunch p) {
  const int row = blockIdx.y;
  const std::int64_t cells = std::int64_t(p.length) * p.channels;
  const std::size_t source =
      (std::size_t(p.trials[row]) * p.data_steps + std::size_t(p.starts[row])) * p.channels;
  const std::size_t target = std::size_t(row) * cells;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < cells;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    p.out_observations[target + e] = p.observations[source + e];
    if (p.log_factorial) p.out_log_factorial[target + e] = p.log_factorial[source + e];
  }
  if (!p.inputs) return;
  const std::int64_t input_cells = std::int64_t(p.length) * p.num_inputs;
  const std::size_t input_source =
      (std::size_t(p.trials[row]) * p.data_steps + std::size_t(p.starts[row])) * p.num_inputs;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < input_cells;
       e += std::int64_t(gridDim.x) * blockDim.x)
    p.out_inputs[std::size_t(row) * input_cells + e] = p.inputs[input_source + e];
}

}  // namespace

void gradient_norm(const double* ascent, std::int64_t count, const double* elbo_values,
                   const std::int32_t* failed_steps, int failed_count, double* status,
                   cudaStream_t stream) {
  gradient_norm_kernel<<<1, norm_block_size, 0, stream>>>(ascent, count, elbo_values,
                                                           failed_steps, failed_count, status);
  check_launch("gradient_norm");
}

void optimizer_step(const OptimizerLaunch& launch, cudaStream_t stream) {
  constexpr int threads = 256;
  const auto blocks = unsigned((launch.count + threads - 1) / threads);
  if (blocks == 0) return;
  optimizer_step_kernel<<<blocks, threads, 0, stream>>>(launch);
  check_launch("optimizer_step");
}

void gather_batch(const GatherLaunch& launch, cudaStream_t stream) {
  if (launch.batch == 0) return;
  constexpr int threads = 256;
  const std::int64_t cells = std::int64_t(launch.length) * launch.channels;
  const unsigned columns = unsigned(std::min<std::int64_t>((cells + threads - 1) / threads, 1024));
  gather_batch_kernel<<<dim3(columns > 0 ? columns : 1, unsigned(launch.batch)), threads, 0, stream>>>(launch);
  check_launch("gather_batch");
}

}  // namespace lrsmc::kernels
