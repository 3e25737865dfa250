// The convolutional encoder's element-wise kernels (kernels/encoder_launch.hpp): grid-stride
// loops over a layout's elements, each writing its own element, with the scalar maths of
// include/lrsmc/math/encoder.hpp (padding, activations, the variance clamp) that the CPU
// encoder calls too.
#include <algorithm>

#include "kernels/encoder_launch.hpp"
#include "kernels/launcher.hpp"
#include "lrsmc/math/encoder.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int block_size = 256;

/// Grid of grid-stride blocks for `count` elements (at most 4096 blocks).
LaunchShape elementwise(std::int64_t count) {
  LaunchShape shape;
  shape.grid = dim3(unsigned(std::max<std::int64_t>(
      1, std::min<std::int64_t>((count + block_size - 1) / block_size, 4096))));
  shape.block = dim3(block_size);
  return shape;
}

#define LRSMC_GRID_STRIDE(index, count)                                                       \
  for (std::int64_t index = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < (count); \
       index += std::int64_t(gridDim.x) * blockDim.x)

__global__ void tap_weights_kernel(const double* weight, int out, int in, int kernel,
                                   float* taps) {
  const std::int64_t count = std::int64_t(kernel) * out * in;
  LRSMC_GRID_STRIDE(e, count) {
    const std::int64_t tap = e / (std::int64_t(out) * in), oi = e % (std::int64_t(out) * in);
    taps[e] = static_cast<float>(weight[oi * kernel + tap]);
  }
}

__global__ void fill_bias_kernel(const double* bias, std::int64_t rows, int out, float* output) {
  LRSMC_GRID_STRIDE(e, rows * out) { output[e] = static_cast<float>(bias[e % out]); }
}

__global__ void gather_kernel(const float* input, const EncoderTap tap, float* gathered) {
  const std::int64_t count = std::int64_t(tap.trials) * tap.steps * tap.channels;
  LRSMC_GRID_STRIDE(e, count) {
    const std::int64_t row = e / tap.channels;
    const int channel = int(e % tap.channels), step = int(row % tap.steps);
    const std::int64_t trial = row / tap.steps;
    const int source = math::padded_source(tap.mode, step + tap.shift, tap.steps);
    gathered[e] = source < 0 ? 0.f
                             : input[trial * tap.trial_stride + std::int64_t(source) * tap.channels +
                                     channel];
  }
}

/// Output step s reads padded position s + shift. The steps whose position maps to input step
/// `source`, in increasing order: those in the left padding (position < 0), the one at the
/// position itself, those in the right padding (position ≥ steps).
__global__ void scatter_add_kernel(const float* spread, const EncoderTap tap, float* result) {
  const std::int64_t count = std::int64_t(tap.trials) * tap.steps * tap.channels;
  const int steps = tap.steps, shift = tap.shift;
  LRSMC_GRID_STRIDE(e, count) {
    const std::int64_t row = e / tap.channels;
    const int channel = int(e % tap.channels), source = int(row % steps);
    const float* trial = spread + (row - source) * tap.channels + channel;
    float sum = result[e];
    // Zero padding sends nothing back from the padded positions.
    const bool padded = tap.mode != PaddingMode::zeros;
    const int left_end = padded ? std::min(steps, -shift) : 0;  // steps with position < 0
    for (int step = 0; step < left_end; ++step)
      if (math::padded_source(tap.mode, step + shift, steps) == source)
        sum += trial[std::int64_t(step) * tap.channels];
    const int inside = source - shift;  // position == source
    if (inside >= 0 && inside < steps) sum += trial[std::int64_t(inside) * tap.channels];
    for (int step = padded ? std::max(0, steps - shift) : steps; step < steps; ++step)
      if (math::padded_source(tap.mode, step + shift, steps) == source)
        sum += trial[std::int64_t(step) * tap.channels];
    result[e] = sum;
  }
}

__global__ void activate_kernel(const float* pre, std::int64_t count,
                                EncoderActivation activation, float* output) {
  LRSMC_GRID_STRIDE(e, count) { output[e] = math::activate(activation, pre[e]).value; }
}

__global__ void activation_backward_kernel(const float* pre, std::int64_t count,
                                           EncoderActivation activation, float* gradient) {
  LRSMC_GRID_STRIDE(e, count) { gradient[e] *= math::activate(activation, pre[e]).slope; }
}

__global__ void add_kernel(const float* addend, std::int64_t count, float* sum) {
  LRSMC_GRID_STRIDE(e, count) { sum[e] += addend[e]; }
}

__global__ void factors_kernel(const float* mean_f, const float* log_variance_f,
                               const double* constant, std::int64_t count, int rank, double* mean,
                               double* variance, double* slope) {
  LRSMC_GRID_STRIDE(e, count) {
    mean[e] = double(mean_f[e]);
    const float log_variance =
        log_variance_f != nullptr ? log_variance_f[e] : static_cast<float>(constant[e % rank]);
    const math::Activated<double> clamped = math::encoder_variance(double(log_variance));
    variance[e] = clamped.value;
    slope[e] = clamped.slope;
  }
}

__global__ void head_adjoints_kernel(const double* grad_mean, const double* grad_variance,
                                     const double* slope, std::int64_t count, float* mean_adjoint,
                                     float* log_variance_adjoint) {
  LRSMC_GRID_STRIDE(e, count) {
    mean_adjoint[e] = static_cast<float>(grad_mean[e]);
    log_variance_adjoint[e] = static_cast<float>(grad_variance[e] * slope[e]);
  }
}

__global__ void add_tap_gradient_kernel(const float* tap_gradient, int out, int in, int kernel,
                                        int tap, double* gradient) {
  LRSMC_GRID_STRIDE(e, std::int64_t(out) * in) {
    gradient[e * kernel + tap] += double(tap_gradient[e]);
  }
}

template <typename Value>
__global__ void accumulate_kernel(const Value* values, std::int64_t count, double* total) {
  LRSMC_GRID_STRIDE(e, count) { total[e] += double(values[e]); }
}

__global__ void fill_ones_kernel(std::int64_t count, float* values) {
  LRSMC_GRID_STRIDE(e, count) { values[e] = 1.f; }
}

#undef LRSMC_GRID_STRIDE

}  // namespace

void encoder_tap_weights(const double* weight, int out, int in, int kernel, float* taps,
                         cudaStream_t stream) {
  launch_kernel("encoder_tap_weights", tap_weights_kernel,
                elementwise(std::int64_t(kernel) * out * in), stream, weight, out, in, kernel,
                taps);
}

void encoder_fill_bias(const double* bias, std::int64_t rows, int out, float* output,
                       cudaStream_t stream) {
  launch_kernel("encoder_fill_bias", fill_bias_kernel, elementwise(rows * out), stream, bias, rows,
                out, output);
}

void encoder_gather(const float* input, const EncoderTap& tap, float* gathered,
                    cudaStream_t stream) {
  launch_kernel("encoder_gather", gather_kernel,
                elementwise(std::int64_t(tap.trials) * tap.steps * tap.channels), stream, input,
                tap, gathered);
}

void encoder_scatter_add(const float* spread, const EncoderTap& tap, float* result,
                         cudaStream_t stream) {
  launch_kernel("encoder_scatter_add", scatter_add_kernel,
                elementwise(std::int64_t(tap.trials) * tap.steps * tap.channels), stream, spread,
                tap, result);
}

void encoder_activate(const float* pre, std::int64_t count, EncoderActivation activation,
                      float* output, cudaStream_t stream) {
  launch_kernel("encoder_activate", activate_kernel, elementwise(count), stream, pre, count,
                activation, output);
}

void encoder_activation_backward(const float* pre, std::int64_t count,
                                 EncoderActivation activation, float* gradient,
                                 cudaStream_t stream) {
  launch_kernel("encoder_activation_backward", activation_backward_kernel, elementwise(count),
                stream, pre, count, activation, gradient);
}

void encoder_add(const float* addend, std::int64_t count, float* sum, cudaStream_t stream) {
  launch_kernel("encoder_add", add_kernel, elementwise(count), stream, addend, count, sum);
}

void encoder_factors(const float* mean_f, const float* log_variance_f, const double* constant,
                     std::int64_t cells, int rank, double* mean, double* variance, double* slope,
                     cudaStream_t stream) {
  const std::int64_t count = cells * rank;
  launch_kernel("encoder_factors", factors_kernel, elementwise(count), stream, mean_f,
                log_variance_f, constant, count, rank, mean, variance, slope);
}

void encoder_head_adjoints(const double* grad_mean, const double* grad_variance,
                           const double* slope, std::int64_t count, float* mean_adjoint,
                           float* log_variance_adjoint, cudaStream_t stream) {
  launch_kernel("encoder_head_adjoints", head_adjoints_kernel, elementwise(count), stream,
                grad_mean, grad_variance, slope, count, mean_adjoint, log_variance_adjoint);
}

void encoder_add_tap_gradient(const float* tap_gradient, int out, int in, int kernel, int tap,
                              double* gradient, cudaStream_t stream) {
  launch_kernel("encoder_add_tap_gradient", add_tap_gradient_kernel,
                elementwise(std::int64_t(out) * in), stream, tap_gradient, out, in, kernel, tap,
                gradient);
}

void encoder_accumulate(const float* values, std::int64_t count, double* total,
                        cudaStream_t stream) {
  launch_kernel("encoder_accumulate", accumulate_kernel<float>, elementwise(count), stream,
                values, count, total);
}

void encoder_accumulate(const double* values, std::int64_t count, double* total,
                        cudaStream_t stream) {
  launch_kernel("encoder_accumulate", accumulate_kernel<double>, elementwise(count), stream,
                values, count, total);
}

void encoder_fill_ones(std::int64_t count, float* values, cudaStream_t stream) {
  launch_kernel("encoder_fill_ones", fill_ones_kernel, elementwise(count), stream, count, values);
}

}  // namespace lrsmc::kernels
