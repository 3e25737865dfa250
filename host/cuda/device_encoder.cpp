// The encoder proposal's factors on the device; see device_encoder.hpp.
#include "cuda/device_encoder.hpp"
#include "cuda/device_encoder_run.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "cuda/device_gradient.hpp"
#include "cuda/filter_plan.hpp"
#include "cuda/loaded_library.hpp"
#include "kernels/encoder_launch.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/encoder.hpp"

namespace lrsmc::cuda {
namespace {

/// The cuBLAS calls the encoder makes. On a GPU cuBLAS is loaded when the encoder first runs, so
/// that lrsmc runs everything else where cuBLAS is absent; the emulated device links its own.
struct CublasCalls {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

const CublasCalls& cublas() {
#if defined(LRSMC_CUDA_EMULATION)
  static const CublasCalls calls{&cublasCreate_v2, &cublasDestroy_v2, &cublasSetStream_v2,
                                 &cublasSgemm_v2, &cublasGetStatusString};
#else
  static const CublasCalls calls = [] {
    LoadedLibrary library("libcublas.so." + std::to_string(CUBLAS_VER_MAJOR));
    CublasCalls loaded;
    library.find(loaded.create, "cublasCreate_v2");
    library.find(loaded.destroy, "cublasDestroy_v2");
    library.find(loaded.set_stream, "cublasSetStream_v2");
    library.find(loaded.sgemm, "cublasSgemm_v2");
    library.find(loaded.status_string, "cublasGetStatusString");
    if (!library.missing().empty())
      throw CudaError(detail::concat("the encoder on the GPU needs cuBLAS, and ", library.missing(),
                                     "; use --device cpu, or the bootstrap proposal"));
    return loaded;
  }();
#endif
  return calls;
}

void check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw CudaError(detail::concat(call, " failed: ", cublas().status_string(status)));
}

/// C = op(A) op(B) (+ C when accumulate), column-major, in float.
void gemm(cublasHandle_t handle, bool transpose_a, bool transpose_b, int m, int n, int k,
          const float* A, int lda, const float* B, int ldb, bool accumulate, float* C, int ldc) {
  const float one = 1.f, beta = accumulate ? 1.f : 0.f;
  check(cublas().sgemm(handle, transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                       transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, A, lda, B, ldb,
                       &beta, C, ldc),
        "cublasSgemm (encoder)");
}

/// This thread's cuBLAS handle on the current device, on the legacy default stream, kept for
/// the thread's life: creating one costs milliseconds and the encoder runs in every gradient.
cublasHandle_t shared_handle() {
  struct Handles {
    std::map<int, cublasHandle_t> by_device;
    ~Handles() {
      for (const auto& entry : by_device) (void)cublas().destroy(entry.second);
    }
  };
  thread_local Handles handles;
  int device = 0;
  LRSMC_CUDA_CHECK(cudaGetDevice(&device));
  const auto found = handles.by_device.find(device);
  if (found != handles.by_device.end()) return found->second;
  cublasHandle_t handle = nullptr;
  check(cublas().create(&handle), "cublasCreate");
  const cublasStatus_t bound = cublas().set_stream(handle, nullptr);
  if (bound != CUBLAS_STATUS_SUCCESS) {
    (void)cublas().destroy(handle);
    check(bound, "cublasSetStream");
  }
  handles.by_device.emplace(device, handle);
  return handle;
}

}  // namespace

DeviceEncoder::DeviceEncoder(const Model& model, int trials, int data_steps)
    : config_(*model.config.encoder),
      rank_(model.config.rank),
      channels_(model.config.num_channels),
      trials_(trials),
      data_steps_(data_steps) {
  validate(config_, channels_, rank_, data_steps, "encoder proposal");
  const ParameterLayout layout(model.config);
  offset_ = layout.encoder;
  size_ = layout.encoder_size;
  const EncoderPlan plan = encoder_plan(model.config, trials, data_steps);
  first_trial_ = plan.first_trial;
  // The parameter blocks in encoder_blocks' order.
  const std::vector<EncoderBlock> blocks = encoder_blocks(config_, channels_, rank_);
  const auto offset_of = [&](const std::string& name) {
    for (const EncoderBlock& block : blocks)
      if (block.name == name) return offset_ + std::int64_t(block.offset);
    LRSMC_ASSERT(false);
    return std::int64_t(-1);
  };
  const auto make_layer = [&](const std::string& prefix, int in, int out, int kernel) {
    Layer layer;
    layer.in = in;
    layer.out = out;
    layer.kernel = kernel;
    layer.left = math::pad_widths(config_.padding, kernel).left;
    layer.weight = offset_of(prefix + "_weight");
    layer.bias = offset_of(prefix + "_bias");
    layer.taps.allocate(std::size_t(kernel) * std::size_t(out) * std::size_t(in));
    return layer;
  };
  int in = channels_;
  for (std::size_t l = 0; l < config_.channels.size(); ++l) {
    hidden_.push_back(make_layer("encoder_conv" + std::to_string(l + 1), in,
                                 config_.channels[l], config_.kernels[l]));
    in = config_.channels[l];
    pre_.emplace_back(std::size_t(plan.rows) * std::size_t(in));
    activated_.emplace_back(std::size_t(plan.rows) * std::size_t(in));
  }
  mean_head_ = make_layer("encoder_mean", in, rank_, config_.kernels.back());
  if (config_.constant_variance)
    log_variance_constant_ = offset_of("encoder_log_variance");
  else
    log_variance_head_ = make_layer("encoder_log_variance", in, rank_, config_.kernels.back());
  const std::size_t rows = std::size_t(plan.rows), block = std::size_t(plan.block_rows),
                    R = std::size_t(rank_);
  head_mean_.allocate(rows * R);
  if (!config_.constant_variance) head_log_variance_.allocate(rows * R);
  mean_.allocate(rows * R);
  variance_.allocate(rows * R);
  slope_.allocate(rows * R);
  gathered_.allocate(block * std::size_t(plan.widest_input));
  spread_.allocate(block * std::size_t(plan.widest_input));
  adjoint_.allocate(block * std::size_t(plan.widest_hidden));
  below_.allocate(block * std::size_t(plan.widest_hidden));
  mean_adjoint_.allocate(block * R);
  log_variance_adjoint_.allocate(block * R);
  ones_.allocate(block);
  sums_.allocate(std::size_t(plan.widest_out));
  tap_gradient_.allocate(std::size_t(plan.largest_tap));
  block_gradient_.allocate(std::size_t(size_));
  total_gradient_.allocate(std::size_t(size_));
  kernels::encoder_fill_ones(plan.block_rows, ones_.get(), nullptr);
  handle_ = shared_handle();
}

DeviceEncoder::~DeviceEncoder() = default;

DeviceEncoder::Input DeviceEncoder::layer_input(std::size_t layer, int first_trial) const {
  if (layer == 0)
    return {observations_ + std::int64_t(first_trial) * steps_ * channels_,
            std::int64_t(steps_) * channels_};
  const int width = hidden_[layer - 1].out;
  return {activated_[layer - 1].get() + std::int64_t(first_trial) * data_steps_ * width,
          std::int64_t(data_steps_) * width};
}

void DeviceEncoder::convolve(const Layer& layer, const Input& input, int trials, float* output) {
  const std::int64_t rows = std::int64_t(trials) * data_steps_;
  kernels::encoder_fill_bias(parameters_ + layer.bias, rows, layer.out, output, nullptr);
  for (int tap = 0; tap < layer.kernel; ++tap) {
    kernels::EncoderTap geometry{trials, data_steps_, layer.in, tap - layer.left,
                                 input.trial_stride, config_.padding_mode};
    kernels::encoder_gather(input.data, geometry, gathered_.get(), nullptr);
    // output (rows × out, row-major) += gathered (rows × in) · W_tapᵀ.
    gemm(handle_, true, false, layer.out, int(rows), layer.in,
         layer.taps.get() + std::int64_t(tap) * layer.out * layer.in, layer.in, gathered_.get(),
         layer.in, true, output, layer.out);
  }
}

void DeviceEncoder::convolve_backward(const Layer& layer, const Input& input, int trials,
                                      const float* output_gradient, double* weight_gradient,
                                      double* bias_gradient, float* input_gradient) {
  const std::int64_t rows = std::int64_t(trials) * data_steps_;
  // The bias: ones (1 × rows) · output_gradient (rows × out).
  gemm(handle_, false, false, layer.out, 1, int(rows), output_gradient, layer.out, ones_.get(),
       int(rows), false, sums_.get(), layer.out);
  kernels::encoder_accumulate(sums_.get(), layer.out, bias_gradient, nullptr);
  if (input_gradient != nullptr)
    LRSMC_CUDA_CHECK(cudaMemset(input_gradient, 0, std::size_t(rows) * layer.in * sizeof(float)));
  for (int tap = 0; tap < layer.kernel; ++tap) {
    const kernels::EncoderTap geometry{trials, data_steps_, layer.in, tap - layer.left,
                                       input.trial_stride, config_.padding_mode};
    kernels::encoder_gather(input.data, geometry, gathered_.get(), nullptr);
    // The tap's weights: output_gradientᵀ (out × rows) · gathered (rows × in).
    gemm(handle_, false, true, layer.in, layer.out, int(rows), gathered_.get(), layer.in,
         output_gradient, layer.out, false, tap_gradient_.get(), layer.in);
    kernels::encoder_add_tap_gradient(tap_gradient_.get(), layer.out, layer.in, layer.kernel, tap,
                                      weight_gradient, nullptr);
    if (input_gradient == nullptr) continue;
    // Sent back along the tap: output_gradient (rows × out) · W_tap (out × in).
    gemm(handle_, false, false, layer.in, int(rows), layer.out,
         layer.taps.get() + std::int64_t(tap) * layer.out * layer.in, layer.in, output_gradient,
         layer.out, false, spread_.get(), layer.in);
    kernels::encoder_scatter_add(spread_.get(), geometry, input_gradient, nullptr);
  }
}

void DeviceEncoder::forward(const double* parameters, const float* observations, int steps) {
  LRSMC_REQUIRE(steps >= data_steps_, "encoder proposal: ", steps,
                " steps per trial, fewer than the encoder's ", data_steps_);
  parameters_ = parameters;
  observations_ = observations;
  steps_ = steps;
  std::vector<Layer*> layers;
  for (Layer& layer : hidden_) layers.push_back(&layer);
  layers.push_back(&mean_head_);
  if (!config_.constant_variance) layers.push_back(&log_variance_head_);
  for (Layer* layer : layers)
    kernels::encoder_tap_weights(parameters + layer->weight, layer->out, layer->in, layer->kernel,
                                 layer->taps.get(), nullptr);
  const int R = rank_;
  for (std::size_t b = 0; b + 1 < first_trial_.size(); ++b) {
    const int first = first_trial_[b], count = first_trial_[b + 1] - first;
    const std::int64_t row0 = std::int64_t(first) * data_steps_,
                       rows = std::int64_t(count) * data_steps_;
    for (std::size_t l = 0; l < hidden_.size(); ++l) {
      const int out = hidden_[l].out;
      float* pre = pre_[l].get() + row0 * out;
      convolve(hidden_[l], layer_input(l, first), count, pre);
      kernels::encoder_activate(pre, rows * out, config_.activation,
                                activated_[l].get() + row0 * out, nullptr);
    }
    const Input head_input = layer_input(hidden_.size(), first);
    convolve(mean_head_, head_input, count, head_mean_.get() + row0 * R);
    if (!config_.constant_variance)
      convolve(log_variance_head_, head_input, count, head_log_variance_.get() + row0 * R);
  }
  kernels::encoder_factors(head_mean_.get(), head_log_variance_.get(),
                           config_.constant_variance ? parameters + log_variance_constant_ : nullptr,
                           std::int64_t(trials_) * data_steps_, R, mean_.get(), variance_.get(),
                           slope_.get(), nullptr);
}

void DeviceEncoder::add_gradient(const double* grad_mean, const double* grad_variance,
                                 std::vector<double>& gradient) {
  LRSMC_ASSERT(parameters_ != nullptr);
  const int R = rank_;
  // The total starts from the gradient's encoder block, to which each block adds in order.
  total_gradient_.upload(
      std::vector<double>(gradient.begin() + offset_, gradient.begin() + offset_ + size_));
  double* block = block_gradient_.get();
  const auto local = [&](std::int64_t parameter) { return block + (parameter - offset_); };
  for (std::size_t b = 0; b + 1 < first_trial_.size(); ++b) {
    const int first = first_trial_[b], count = first_trial_[b + 1] - first;
    const std::int64_t row0 = std::int64_t(first) * data_steps_,
                       rows = std::int64_t(count) * data_steps_;
    LRSMC_CUDA_CHECK(cudaMemset(block, 0, std::size_t(size_) * sizeof(double)));
    kernels::encoder_head_adjoints(grad_mean + row0 * R, grad_variance + row0 * R,
                                   slope_.get() + row0 * R, rows * R, mean_adjoint_.get(),
                                   log_variance_adjoint_.get(), nullptr);
    const Input head_input = layer_input(hidden_.size(), first);
    const bool below = !hidden_.empty();  // whether the heads' input needs a gradient
    convolve_backward(mean_head_, head_input, count, mean_adjoint_.get(), local(mean_head_.weight),
                      local(mean_head_.bias), below ? adjoint_.get() : nullptr);
    if (config_.constant_variance) {
      gemm(handle_, false, false, R, 1, int(rows), log_variance_adjoint_.get(), R, ones_.get(),
           int(rows), false, sums_.get(), R);
      kernels::encoder_accumulate(sums_.get(), R, local(log_variance_constant_), nullptr);
    } else {
      convolve_backward(log_variance_head_, head_input, count, log_variance_adjoint_.get(),
                        local(log_variance_head_.weight), local(log_variance_head_.bias),
                        below ? below_.get() : nullptr);
      if (below)
        kernels::encoder_add(below_.get(), rows * mean_head_.in, adjoint_.get(), nullptr);
    }
    for (std::size_t l = hidden_.size(); l-- > 0;) {
      const Layer& layer = hidden_[l];
      // Through the activation: the output's adjoint times the slope at the pre-activation.
      kernels::encoder_activation_backward(pre_[l].get() + row0 * layer.out, rows * layer.out,
                                           config_.activation, adjoint_.get(), nullptr);
      convolve_backward(layer, layer_input(l, first), count, adjoint_.get(), local(layer.weight),
                        local(layer.bias), l > 0 ? below_.get() : nullptr);
      if (l > 0) std::swap(adjoint_, below_);
    }
    kernels::encoder_accumulate(static_cast<const double*>(block), size_, total_gradient_.get(),
                                nullptr);
  }
  const std::vector<double> total = total_gradient_.download();
  std::copy(total.begin(), total.end(), gradient.begin() + offset_);
}

DeviceEncoderRun run_device_encoder(const Model& model, const SequenceBatch& batch,
                                    int data_steps, const std::vector<double>& grad_mean,
                                    const std::vector<double>& grad_variance) {
  DeviceEncoder encoder(model, batch.num_trials, data_steps);
  const kernels::DeviceBuffer<double> parameters(model.parameters);
  const kernels::DeviceBuffer<float> observations(
      to_float(batch.observations.data(), batch.observations.size()));
  encoder.forward(parameters.get(), observations.get(), batch.num_steps);
  const std::size_t cells = std::size_t(batch.num_trials) * data_steps * model.config.rank;
  LRSMC_REQUIRE(grad_mean.size() == cells && grad_variance.size() == cells,
                "device encoder: adjoints of ", grad_mean.size(), " and ", grad_variance.size(),
                " values; expected ", cells, " each");
  DeviceEncoderRun run;
  run.mean = kernels::download(encoder.mean(), cells);
  run.variance = kernels::download(encoder.variance(), cells);
  const kernels::DeviceBuffer<double> device_grad_mean(grad_mean), device_grad_variance(grad_variance);
  run.gradient.assign(model.parameters.size(), 0.0);
  encoder.add_gradient(device_grad_mean.get(), device_grad_variance.get(), run.gradient);
  return run;
}

}  // namespace lrsmc::cuda
