// The per-call constants on the GPU (include/lrsmc/math/model_constants.hpp): the float64
// constants and their float working copy, the input currents and initial means of a batch,
// and the once-per-call adjoints that finish a gradient — the functions the CPU engines call
// on the host, run by small kernels so that a call's parameters never travel through the host.
#include <cmath>

#include "kernels/launch.hpp"
#include "kernels/launcher.hpp"
#include "kernels/particle_step.cuh"
#include "kernels/training_launch.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "lrsmc/math/model_constants.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int block_size = 256;

/// One block: thread 0 builds the float64 constants, then every thread fills its share of the
/// float copy.
__global__ void __launch_bounds__(block_size)
    build_constants_kernel(const DeviceModel model, double* scratch) {
  if (threadIdx.x == 0)
    (void)math::build_constants(model.shape, model.parameters, model.constants, scratch);
  __syncthreads();
  math::fill_particle_constants(model.shape, model.parameters, model.constants, model.working,
                                int(threadIdx.x), block_size);
}

/// Grid-stride over (row, step, unit) and, with `offsets`, (row, step, channel): the currents
/// c = W_u u (math::input_current) and the read-out's offsets o = B_vᵀ u
/// (math::readout_input_offset).
__global__ void input_terms_kernel(const DeviceModel model, const double* inputs, int rows,
                                   int steps, float* currents, float* offsets) {
  const std::int64_t hidden = model.shape.hidden,
                     width = hidden + (offsets != nullptr ? model.shape.channels : 0),
                     count = std::int64_t(rows) * steps * width;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t cell = e / width, j = e % width;
    const double* input = inputs + cell * model.shape.inputs;
    if (j < hidden)
      currents[cell * hidden + j] = math::input_current(model.shape, model.working, input, int(j));
    else
      offsets[cell * model.shape.channels + (j - hidden)] =
          math::readout_input_offset(model.shape, model.working, input, int(j - hidden));
  }
}

/// Grid-stride over cells: the encoder proposal's product of each cell (encoder_products).
__global__ void encoder_products_kernel(const DeviceModel model, const double* mean,
                                        const double* variance, int cells, int data_steps,
                                        double* products, float* records, std::uint8_t* status,
                                        double* scratch) {
  const int R = model.shape.rank;
  const math::ConstantsLayout layout(model.shape);
  const int thread = int(blockIdx.x) * blockDim.x + int(threadIdx.x);
  double* own_scratch = scratch + std::size_t(thread) * math::encoder_step_scratch_size(R);
  for (int cell = thread; cell < cells; cell += int(gridDim.x) * blockDim.x) {
    double* values = products + std::size_t(cell) * encoder_product_doubles(R);
    const math::GaussianProduct product{values,         values + R * R,     values + 2 * R * R,
                                        values + 3 * R * R, values + 4 * R * R, values + 5 * R * R};
    double gain_term[max_rank];
    const bool positive = math::encoder_step_constants(
        R, model.constants + layout.factor[math::phase_of(cell % data_steps)],
        mean + std::size_t(cell) * R, variance + std::size_t(cell) * R, product, gain_term,
        own_scratch);
    status[cell] = positive ? 0 : 1;
    float* record = records + std::size_t(cell) * encoder_cell_floats(R);
    if (!positive) {  // the product stopped half way: nothing of it is meaningful
      for (int i = 0; i < encoder_cell_floats(R); ++i) record[i] = 0.f;
      continue;
    }
    for (int i = 0; i < R * R; ++i) {
      record[i] = float(product.alpha[i]);
      record[R * R + i] = float(product.proposal_factor[i]);
    }
    for (int r = 0; r < R; ++r) record[2 * R * R + r] = float(gain_term[r]);
    record[2 * R * R + R] = float(*product.proposal_log_det);
  }
}

/// One thread per row: μ_0 = z_init + P_m c_0 (math::initial_mean).
__global__ void initial_mean_kernel(const DeviceModel model, int rows, int steps,
                                    const float* currents, float* initial_mean) {
  const int row = int(blockIdx.x) * blockDim.x + int(threadIdx.x);
  if (row >= rows) return;
  double projection[max_rank];
  const float* first =
      currents ? currents + std::size_t(row) * steps * model.shape.hidden : nullptr;
  math::initial_mean(model.shape, model.parameters, model.constants, first,
                     initial_mean + std::size_t(row) * model.shape.rank, projection);
}

/// One block: thread 0 runs math::finish_gradient on the summed row; with inputs, the threads
/// then take one trial's projection adjoint each, and then one hidden unit each, adding the
/// trials' terms in trial order.
__global__ void __launch_bounds__(block_size)
    finish_gradient_kernel(const DeviceModel model, const double* totals, const double* rows,
                           int trials, int steps, const float* currents, const double* inputs,
                           double* gradient, double* scratch) {
  const math::ModelShape& shape = model.shape;
  if (threadIdx.x == 0)
    math::finish_gradient(shape, model.parameters, model.constants, totals, gradient, scratch);
  if (shape.inputs == 0) return;
  const math::GradientSlots slots(shape.parameters.total, shape.rank, shape.channels);
  const int R = shape.rank, N = shape.hidden, U = shape.inputs;
  double* adjoints = scratch + math::constants_scratch_size(R, shape.channels);  // (trials, 2R)
  for (int trial = threadIdx.x; trial < trials; trial += block_size) {
    double* projection = adjoints + std::size_t(trial) * 2 * R;
    math::initial_mean_adjoint(shape, model.parameters, model.constants,
                               currents + std::size_t(trial) * steps * N,
                               rows + std::size_t(trial) * slots.row_size + slots.initial_mean,
                               projection, projection + R);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < N; i += block_size)
    for (int trial = 0; trial < trials; ++trial) {
      const double* projection = adjoints + std::size_t(trial) * 2 * R;
      math::add_initial_mean_unit_gradient(
          shape, model.parameters, currents + std::size_t(trial) * steps * N,
          inputs + std::size_t(trial) * steps * U, projection, projection + R, i,
          gradient + shape.parameters.m + std::int64_t(i) * R,
          gradient + shape.parameters.w_u + std::int64_t(i) * U, DeviceRoundedProduct());
    }
}

}  // namespace

void build_constants(const DeviceModel& model, double* scratch, cudaStream_t stream) {
  LaunchShape shape;
  shape.block = dim3(block_size);
  launch_kernel("build_constants", build_constants_kernel, shape, stream, model, scratch);
}

void input_terms(const DeviceModel& model, const double* inputs, int rows, int steps,
                 float* currents, float* readout_offsets, float* initial_mean,
                 cudaStream_t stream) {
  if (inputs != nullptr) {
    const std::int64_t count =
        std::int64_t(rows) * steps *
        (model.shape.hidden + (readout_offsets != nullptr ? model.shape.channels : 0));
    LaunchShape shape;
    shape.grid =
        dim3(unsigned(std::min<std::int64_t>((count + block_size - 1) / block_size, 4096)));
    shape.block = dim3(block_size);
    launch_kernel("input_terms", input_terms_kernel, shape, stream, model, inputs, rows, steps,
                  currents, readout_offsets);
  }
  LaunchShape shape;
  shape.grid = dim3(unsigned((rows + 63) / 64));
  shape.block = dim3(64);
  launch_kernel("initial_mean", initial_mean_kernel, shape, stream, model, rows, steps,
                inputs != nullptr ? static_cast<const float*>(currents) : nullptr, initial_mean);
}

void encoder_products(const DeviceModel& model, const double* mean, const double* variance,
                      int cells, int data_steps, double* products, float* records,
                      std::uint8_t* status, double* scratch, cudaStream_t stream) {
  if (cells == 0) return;
  LaunchShape shape;
  shape.grid = dim3(unsigned(encoder_products_threads(cells) / block_size));
  shape.block = dim3(block_size);
  launch_kernel("encoder_products", encoder_products_kernel, shape, stream, model, mean, variance,
                cells, data_steps, products, records, status, scratch);
}

void finish_gradient(const DeviceModel& model, const double* totals, const double* rows, int trials,
                     int steps, const float* currents, const double* inputs, double* gradient,
                     double* scratch, cudaStream_t stream) {
  LaunchShape shape;
  shape.block = dim3(block_size);
  launch_kernel("finish_gradient", finish_gradient_kernel, shape, stream, model, totals, rows,
                trials, steps, currents, inputs, gradient, scratch);
}

}  // namespace lrsmc::kernels
