// The encoder on the device (host/cuda/device_encoder.cpp: cuBLAS products and the kernels of
// kernels/encoder.cu) against the host's EncoderFactors<float>, which the CPU engines propose
// from: the factors and the encoder's gradient for every padding location × padding mode ×
// activation, with the log-variance head and with a constant log-variance, over one block of
// trials and over several. On the emulated device (whose cuBLAS is Eigen in the CPU encoder's
// form) bit for bit; on a GPU, whose cuBLAS and libm sum and round in their own ways, within the
// project's float32 target of a relative norm of 1e-3. Skips with a message when lrsmc was built
// without CUDA or no GPU answers.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"
#if defined(LRSMC_WITH_CUDA)
#include "cuda/device_encoder_run.hpp"
#include "model/encoder_factors.hpp"
#endif

namespace lrsmc {
namespace {

#if defined(LRSMC_WITH_CUDA)

constexpr const char* no_device =
    "no CUDA device (lrsmc built without CUDA, or no GPU answers): device encoder check skipped";

/// ‖a − b‖ / ‖b‖ (0 when both are zero).
double relative_norm(const std::vector<double>& a, const std::vector<double>& b) {
  double difference = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    difference += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm == 0 ? std::sqrt(difference) : std::sqrt(difference / norm);
}

/// Equal bit for bit on the emulated device; within a relative norm of 1e-3 on a GPU.
void expect_same(const std::vector<double>& device, const std::vector<double>& host,
                 const std::string& label) {
  ASSERT_EQ(device.size(), host.size()) << label;
  if (testing::emulated_device) {
    for (std::size_t i = 0; i < host.size(); ++i)
      ASSERT_EQ(device[i], host[i]) << label << ": first difference at " << i;
  } else {
    EXPECT_LT(relative_norm(device, host), 1e-3) << label;
  }
}

/// A Poisson model of medium_config's shape with the given encoder.
Model encoder_model(const EncoderConfig& encoder) {
  ModelConfig config = testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                              Observation::poisson, Link::softplus);
  config.encoder = encoder;
  config.encoder->init_scale = 0.5;
  return testing::random_model(config, 31);
}

/// The host's and the device's factors and encoder gradients for `data_steps` of each trial's
/// steps, under fixed adjoints of the factors.
void compare(const Model& model, const SequenceBatch& batch, int data_steps,
             const std::string& label) {
  const model::EncoderFactors<float> host(model, batch, data_steps, 1);
  const std::size_t cells = host.mean().size();
  std::vector<double> grad_mean(cells), grad_variance(cells);
  for (std::size_t i = 0; i < cells; ++i) {
    grad_mean[i] = std::sin(0.37 * double(i) + 0.2);
    grad_variance[i] = 0.5 * std::cos(0.23 * double(i));
  }
  std::vector<double> host_gradient(model.parameters.size(), 0.0);
  host.add_gradient(grad_mean, grad_variance, host_gradient);
  const cuda::DeviceEncoderRun device =
      cuda::run_device_encoder(model, batch, data_steps, grad_mean, grad_variance);
  expect_same(device.mean, host.mean(), label + ", means");
  expect_same(device.variance, host.variance(), label + ", variances");
  const std::vector<double>& device_gradient = device.gradient;
  expect_same(device_gradient, host_gradient, label + ", gradient");
}

class CudaEncoder : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << no_device;
  }
};

// Three convolutions (an even kernel among them, so windowed padding is uneven), 3 trials of 14
// steps of which the encoder reads 11 (three forecast steps), one block.
TEST_F(CudaEncoder, MatchesTheHostForEveryPaddingActivationAndHead) {
  for (const EncoderPadding padding :
       {EncoderPadding::causal, EncoderPadding::acausal, EncoderPadding::windowed})
    for (const PaddingMode mode :
         {PaddingMode::zeros, PaddingMode::reflect, PaddingMode::replicate, PaddingMode::circular})
      for (const EncoderActivation activation :
           {EncoderActivation::gelu, EncoderActivation::leaky_relu})
        for (const bool constant_variance : {false, true}) {
          EncoderConfig encoder = testing::small_encoder({5, 4, 3}, {6, 5});
          encoder.padding = padding;
          encoder.padding_mode = mode;
          encoder.activation = activation;
          encoder.constant_variance = constant_variance;
          const Model model = encoder_model(encoder);
          const SequenceBatch batch = testing::sampled_batch(model, 3, 14, 5);
          compare(model, batch, 11,
                  to_string(padding) + ", " + to_string(mode) + ", " + to_string(activation) +
                      (constant_variance ? ", constant variance" : ", variance head"));
        }
}

// 40 trials of 60 steps: 2400 rows, two blocks of trials, whose gradients add in block order.
TEST_F(CudaEncoder, MatchesTheHostOverSeveralBlocks) {
  EncoderConfig encoder = testing::small_encoder({7, 1}, {8});
  encoder.padding = EncoderPadding::windowed;
  encoder.padding_mode = PaddingMode::reflect;
  const Model model = encoder_model(encoder);
  const SequenceBatch batch = testing::sampled_batch(model, 40, 60, 6);
  ASSERT_EQ(model::encoder_block_starts(40, 60).size(), 3u);  // two blocks
  compare(model, batch, 60, "two blocks");
}

// An encoder that does not fit the trials is refused with the host's message.
TEST_F(CudaEncoder, RefusesAnEncoderLongerThanTheTrials) {
  EncoderConfig encoder = testing::small_encoder({9, 1}, {4});
  encoder.padding_mode = PaddingMode::reflect;
  const Model model = encoder_model(encoder);
  try {
    const SequenceBatch batch = testing::sampled_batch(model, 2, 6, 7);
    (void)cuda::run_device_encoder(model, batch, 6, {}, {});
    FAIL() << "a 9-tap reflect kernel over 6 steps was accepted";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("pads 8 steps by reflection"), std::string::npos)
        << error.what();
  }
}

#else

TEST(CudaEncoder, SkippedWithoutCuda) {
  GTEST_SKIP() << "lrsmc built without CUDA: device encoder check skipped";
}

#endif

}  // namespace
}  // namespace lrsmc
