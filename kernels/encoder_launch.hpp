// Internal: launchers of the convolutional encoder's element-wise kernels (method.md §4), the
// pieces around the cuBLAS products of host/cuda/device_encoder.cpp: each convolution tap's
// gathered (padded) input, the scatter of its input gradient back, biases, activations, the
// variance clamp and the gradients' float64 accumulation. Row-major (rows, channels) layouts,
// a row being one (trial, step) of a block of consecutive trials. Only pointers, sizes, enums
// and cudaStream_t cross here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "lrsmc/config.hpp"

namespace lrsmc::kernels {

/// One tap's view of a convolution over a block of `trials` trials of `steps` steps: output step
/// s reads input step math::padded_source(mode, s + shift, steps) (shift = tap − left padding),
/// or a zero. The input of trial j starts at input + j · trial_stride (its later steps may be
/// absent from the encoder: trial_stride ≥ steps · channels).
struct EncoderTap {
  int trials = 0, steps = 0, channels = 0, shift = 0;
  std::int64_t trial_stride = 0;
  PaddingMode mode = PaddingMode::zeros;
};

/// taps (kernel, out, in) = float(weight (out, in, kernel)): each tap's weights as one row-major
/// (out, in) matrix.
void encoder_tap_weights(const double* weight, int out, int in, int kernel, float* taps,
                         cudaStream_t stream);

/// output (rows, out) = float(bias) in every row.
void encoder_fill_bias(const double* bias, std::int64_t rows, int out, float* output,
                       cudaStream_t stream);

/// gathered (trials · steps, channels): row (j, s) is the tap's input row of output step s of
/// trial j, zeros where the padding gives a zero.
void encoder_gather(const float* input, const EncoderTap& tap, float* gathered,
                    cudaStream_t stream);

/// result (trials · steps, channels) += spread sent back along the tap: every output row adds
/// its row of `spread` to the input row it read, the rows reaching one input row in step order.
void encoder_scatter_add(const float* spread, const EncoderTap& tap, float* result,
                         cudaStream_t stream);

/// output[i] = φ(pre[i]).
void encoder_activate(const float* pre, std::int64_t count, EncoderActivation activation,
                      float* output, cudaStream_t stream);

/// gradient[i] *= φ'(pre[i]).
void encoder_activation_backward(const float* pre, std::int64_t count,
                                 EncoderActivation activation, float* gradient,
                                 cudaStream_t stream);

/// sum[i] += addend[i].
void encoder_add(const float* addend, std::int64_t count, float* sum, cudaStream_t stream);

/// The factors of `count` cells × `rank`: mean = double(mean_f), and from the log-variance
/// (log_variance_f per cell, or the constant's float value per dimension when log_variance_f is
/// null) the clamped variance and its slope (math::encoder_variance).
void encoder_factors(const float* mean_f, const float* log_variance_f, const double* constant,
                     std::int64_t cells, int rank, double* mean, double* variance, double* slope,
                     cudaStream_t stream);

/// The heads' float adjoints of `count` values: float(grad_mean), float(grad_variance · slope).
void encoder_head_adjoints(const double* grad_mean, const double* grad_variance,
                           const double* slope, std::int64_t count, float* mean_adjoint,
                           float* log_variance_adjoint, cudaStream_t stream);

/// gradient[(o · in + i) · kernel + tap] += double(tap_gradient (out, in)[o, i]).
void encoder_add_tap_gradient(const float* tap_gradient, int out, int in, int kernel, int tap,
                              double* gradient, cudaStream_t stream);

/// total[i] += double(values[i]) for float values, or total[i] += values[i] for doubles.
void encoder_accumulate(const float* values, std::int64_t count, double* total,
                        cudaStream_t stream);
void encoder_accumulate(const double* values, std::int64_t count, double* total,
                        cudaStream_t stream);

/// values[i] = 1 (the ones a bias gradient's product sums rows with).
void encoder_fill_ones(std::int64_t count, float* values, cudaStream_t stream);

}  // namespace lrsmc::kernels
