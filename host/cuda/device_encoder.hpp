// Internal: the encoder proposal's factors of a batch on the device (method.md §3.3, §4), the
// CUDA backend's counterpart of model::EncoderFactors. Each convolution tap is one cuBLAS SGEMM
// over a block of trials (the gathered, padded input times the tap's weights), with the
// element-wise kernels of kernels/encoder_launch.hpp around it; the backward pass gives the
// weights' gradients by SGEMM too and the biases' by a product with ones. The blocks of trials,
// the products' shapes and the order of every sum are EncoderFactors<float>'s, so the emulated
// device (whose cuBLAS is Eigen, tests/cuda_emulation) gives its bits; a GPU's cuBLAS sums in
// its own order.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/device_memory.hpp"
#include "lrsmc/backend.hpp"

struct cublasContext;

namespace lrsmc::cuda {

class DeviceEncoder {
 public:
  /// Plans (encoder_plan, filter_plan.hpp: encoder_device_bytes counts its buffers) and
  /// allocates the encoder of `model` (which has one) for `trials` trials whose first
  /// `data_steps` steps it reads; throws InvalidInput when the encoder does not fit those steps,
  /// OutOfMemory when its buffers do not fit the device.
  DeviceEncoder(const Model& model, int trials, int data_steps);
  ~DeviceEncoder();
  DeviceEncoder(const DeviceEncoder&) = delete;
  DeviceEncoder& operator=(const DeviceEncoder&) = delete;

  /// Runs the encoder on the legacy default stream: `parameters` are the model's flat float64
  /// parameters and `observations` the batch's (trials, steps, channels) floats, both on the
  /// device. The factors are ready when the stream reaches them.
  void forward(const double* parameters, const float* observations, int steps);

  /// μ_e and σ_e² = clamp(exp(log-variance), 1e-8, 100), (trials, data_steps, rank) float64 on
  /// the device, after forward.
  [[nodiscard]] const double* mean() const { return mean_.get(); }
  [[nodiscard]] const double* variance() const { return variance_.get(); }

  /// Adds the encoder parameters' gradient, given the factors' adjoints (device, as mean()), to
  /// the encoder's block of `gradient` (every parameter of the model, on the host), block by
  /// block in order as EncoderFactors::add_gradient does. Uses the last forward's values.
  void add_gradient(const double* grad_mean, const double* grad_variance,
                    std::vector<double>& gradient);

 private:
  /// One convolution: its geometry and its taps' float weights (kernel, out, in).
  struct Layer {
    int in = 0, out = 0, kernel = 0, left = 0;
    std::int64_t weight = 0, bias = 0;  // offsets in the model's parameters
    kernels::DeviceBuffer<float> taps;
  };
  /// Where a convolution's input lies for a block: its first row and its trials' stride.
  struct Input {
    const float* data;
    std::int64_t trial_stride;
  };

  void convolve(const Layer& layer, const Input& input, int trials, float* output);
  void convolve_backward(const Layer& layer, const Input& input, int trials,
                         const float* output_gradient, double* weight_gradient,
                         double* bias_gradient, float* input_gradient);
  [[nodiscard]] Input layer_input(std::size_t layer, int first_trial) const;

  EncoderConfig config_;
  int rank_ = 0, channels_ = 0, trials_ = 0, data_steps_ = 0, steps_ = 0;
  std::int64_t offset_ = 0, size_ = 0;  // the encoder's block of the parameters
  std::int64_t log_variance_constant_ = -1;
  std::vector<int> first_trial_;
  std::vector<Layer> hidden_;
  Layer mean_head_, log_variance_head_;
  const double* parameters_ = nullptr;
  const float* observations_ = nullptr;
  // Every row of the batch: each hidden layer's pre-activation and output, the heads' values.
  std::vector<kernels::DeviceBuffer<float>> pre_, activated_;
  kernels::DeviceBuffer<float> head_mean_, head_log_variance_;
  kernels::DeviceBuffer<double> mean_, variance_, slope_;
  // One block's rows: gathered input, spread gradient, the adjoints flowing down, ones.
  kernels::DeviceBuffer<float> gathered_, spread_, adjoint_, below_, mean_adjoint_,
      log_variance_adjoint_, ones_, sums_, tap_gradient_;
  kernels::DeviceBuffer<double> block_gradient_, total_gradient_;
  cublasContext* handle_ = nullptr;  // this thread's, shared (device_encoder.cpp)
};

}  // namespace lrsmc::cuda
