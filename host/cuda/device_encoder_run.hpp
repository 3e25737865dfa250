// Internal, CUDA-free: one run of the device encoder (device_encoder.hpp) from and to host
// memory, for the tests that compare it with the host's EncoderFactors.
#pragma once

#include <vector>

#include "lrsmc/backend.hpp"

namespace lrsmc::cuda {

/// The device encoder's factors of the first `data_steps` steps of every trial of `batch`, and
/// the encoder's gradient (every parameter of the model, zero outside the encoder) given the
/// factors' adjoints (trials, data_steps, rank) each.
struct DeviceEncoderRun {
  std::vector<double> mean, variance, gradient;
};
[[nodiscard]] DeviceEncoderRun run_device_encoder(const Model& model, const SequenceBatch& batch,
                                                  int data_steps,
                                                  const std::vector<double>& grad_mean,
                                                  const std::vector<double>& grad_variance);

}  // namespace lrsmc::cuda
