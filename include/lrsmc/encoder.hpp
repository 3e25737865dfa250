// The convolutional encoder of the encoder proposal (method.md §4): a stack of 1-D convolutions
// over time on the observations, with an activation between them, and two heads that give a
// Gaussian factor per latent dimension and time step (mean and log-variance). Forward and the
// hand-written backward on the CPU; each convolution runs as one matrix product per kernel tap
// over the whole batch (Eigen), the layout a strided-batched GEMM takes on the GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/config.hpp"

namespace lrsmc {

/// Throws InvalidInput naming `source`, the field and the value when the encoder cannot run on
/// sequences of `steps` steps with `input_channels` channels (`rank` outputs): no kernels, a
/// kernel below 1, channel counts that do not match the kernels, reflect or circular padding
/// wider than the sequence allows, a non-positive init_scale.
void validate(const EncoderConfig& config, int input_channels, int rank, int steps,
              const std::string& source = "encoder");

/// The channels of an encoder given by its kernels alone: 64 for each convolution before the
/// heads (one fewer than `kernels`; none for no kernels), the width of the paper's encoders.
[[nodiscard]] std::vector<int> default_encoder_channels(std::size_t kernels);

/// One named block of the encoder's flat parameter vector, in the order of `encoder_blocks`.
struct EncoderBlock {
  std::string name;                ///< e.g. "encoder_conv1_weight", "encoder_mean_bias"
  std::vector<std::int64_t> shape;  ///< weights (out channels, in channels, kernel)
  std::size_t offset = 0;
  std::size_t size = 0;
};

/// The encoder's parameters: for each convolution l = 1 … L−1 `encoder_conv<l>_weight`
/// (c_l, c_{l−1}, k_l) and `encoder_conv<l>_bias` (c_l), then `encoder_mean_weight`
/// (R, c_{L−1}, k_L), `encoder_mean_bias` (R), and `encoder_log_variance_weight` and `_bias`
/// of the same shapes, or with constant_variance `encoder_log_variance` (R); c_0 is the input
/// channels.
[[nodiscard]] std::vector<EncoderBlock> encoder_blocks(const EncoderConfig& config,
                                                       int input_channels, int rank);

/// PyTorch's default Conv1d initialisation (weights and biases uniform in ±1/√(fan in), fan in
/// = in channels × kernel) from the given seed, with 2·ln(init_scale) added to the log-variance
/// bias (or set as the constant log-variance).
[[nodiscard]] std::vector<double> initialise_encoder(const EncoderConfig& config,
                                                     int input_channels, int rank,
                                                     std::uint64_t seed);

/// What the encoder gives for a batch: per trial, step and latent dimension, row-major
/// (trials, steps, rank). Intermediate values are kept for the backward pass.
template <typename Scalar>
struct EncoderPass {
  int trials = 0, steps = 0, rank = 0;
  std::vector<Scalar> mean;
  std::vector<Scalar> log_variance;
  /// The input of every convolution (trials, steps, channels) and each hidden layer's
  /// pre-activation, for the backward pass.
  std::vector<std::vector<Scalar>> layer_inputs;
  std::vector<std::vector<Scalar>> pre_activations;
};

/// Runs the encoder on `observations` (trials, steps, input_channels), row-major.
template <typename Scalar>
[[nodiscard]] EncoderPass<Scalar> encoder_forward(const EncoderConfig& config,
                                                  const std::vector<double>& parameters,
                                                  const std::vector<Scalar>& observations,
                                                  int trials, int steps, int input_channels,
                                                  int rank);

/// The gradient of a loss with respect to the encoder's parameters (in the order of
/// `encoder_blocks`), given its gradients with respect to the pass's mean and log-variance,
/// each (trials, steps, rank).
template <typename Scalar>
[[nodiscard]] std::vector<double> encoder_backward(const EncoderConfig& config,
                                                   const std::vector<double>& parameters,
                                                   const EncoderPass<Scalar>& pass,
                                                   const std::vector<Scalar>& mean_gradient,
                                                   const std::vector<Scalar>& log_variance_gradient);

}  // namespace lrsmc
