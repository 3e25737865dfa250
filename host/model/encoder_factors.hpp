// The encoder proposal's factors of a batch, on the host (method.md §3.3, §4): the encoder's
// forward pass over the observations of each trial's steps before its t_forward ones, the
// clamped variances, and the backward pass from the factors' adjoints to the encoder's
// parameters. The CPU engines propose from it; the CUDA backend's device encoder
// (host/cuda/device_encoder.hpp) runs the same blocks in the same order. The trials run in fixed
// blocks of consecutive trials (at most encoder_trial_blocks, each of at least
// encoder_block_rows trial-steps when the batch has them), the blocks in parallel on the calling
// thread's OpenMP threads and their gradients summed in block order, so the bits depend on the
// batch's shape, never on the threads.
#pragma once

#include <cstdint>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc::model {

/// The most blocks of trials the encoder runs in, and the fewest trial-steps a block has when the
/// batch allows (a block's convolutions are products of that many rows: fewer run slower than
/// one product over the whole batch).
constexpr int encoder_trial_blocks = 16;
constexpr int encoder_block_rows = 1024;

/// The first trial of each block of a batch of `trials` trials of `data_steps` encoder steps,
/// then `trials`: as many blocks as encoder_trial_blocks and encoder_block_rows allow, of
/// consecutive trials, as even as the count allows. The device encoder runs the same blocks,
/// so that its products have the CPU's shapes.
[[nodiscard]] std::vector<int> encoder_block_starts(int trials, int data_steps);
/// The number of those blocks; the longest holds ⌈trials / count⌉ trials.
[[nodiscard]] int encoder_block_count(int trials, int data_steps);

template <typename Scalar>
class EncoderFactors {
 public:
  /// Runs the encoder of `model` (which has one) in the working precision Scalar over the first
  /// `data_steps` steps of every trial of `batch`, on `threads` OpenMP threads (0: all); throws
  /// InvalidInput when the encoder does not fit those steps.
  EncoderFactors(const Model& model, const SequenceBatch& batch, int data_steps, int threads);

  /// μ_e and σ_e² = clamp(exp(log-variance), 1e-8, 100), (trials, data_steps, rank) each.
  [[nodiscard]] const std::vector<double>& mean() const { return mean_; }
  [[nodiscard]] const std::vector<double>& variance() const { return variance_; }

  /// Adds the gradient of the encoder's parameters, given the adjoints of the means and of the
  /// variances (trials, data_steps, rank) each, to the encoder's block of `gradient` (every
  /// parameter of the model).
  void add_gradient(const std::vector<double>& grad_mean, const std::vector<double>& grad_variance,
                    std::vector<double>& gradient) const;

 private:
  EncoderConfig config_;
  std::int64_t offset_ = -1;
  std::vector<double> parameters_;
  std::vector<int> first_trial_;  // of each block, and the trial count after the last
  int rank_ = 0, data_steps_ = 0, threads_ = 1;
  std::vector<EncoderPass<Scalar>> passes_;  // per block
  std::vector<double> mean_, variance_, slope_;
};

/// Throws the NumericalError of a step whose product of the prior and the encoder's factor is not
/// positive definite.
[[noreturn]] void throw_product_failure(int trial, int step);

extern template class EncoderFactors<float>;
extern template class EncoderFactors<double>;

}  // namespace lrsmc::model
