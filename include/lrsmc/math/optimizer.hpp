// The optimizer step of training (method.md §5.1): PyTorch's Adam and RAdam (β = (0.9, 0.999),
// ε = 1e-8, no weight decay) with global-norm gradient clipping, element by element, written
// once for the host trainer and the device-resident training step. Products are rounded
// (common.hpp), so both give the same bits for the same gradient.
#pragma once

#include <cstdint>

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

constexpr double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;

/// The step-dependent scalars of one step (computed by the trainer from the step count).
struct AdamCoefficients {
  double learning_rate = 0.0;
  double bias1 = 1.0, bias2 = 1.0;  ///< 1 − β₁ᵗ, 1 − β₂ᵗ
  double rectification = 1.0;       ///< RAdam's r_t (1 for Adam)
  bool rectified = true;            ///< false: RAdam's un-adapted warm-up step
};

/// The clip factor of the loss gradient: clip / ‖g‖ when clipping is on (clip > 0) and the
/// norm exceeds it, else 1.
LRSMC_HD double clip_factor(double norm, double clip) {
  return clip > 0 && norm > clip ? clip / norm : 1.0;
}

/// The chunks of the gradient's sum of squares: `chunks` consecutive ranges, each summed in
/// order, then the chunk sums in order (a GPU block sums one chunk per thread).
constexpr int norm_chunks = 512;

LRSMC_HD std::int64_t norm_chunk_size(std::int64_t count) {
  return (count + norm_chunks - 1) / norm_chunks;
}

template <typename RoundedProduct>
LRSMC_HD double chunk_sum_of_squares(const double* values, std::int64_t count, int chunk,
                                     const RoundedProduct& product) {
  const std::int64_t size = norm_chunk_size(count);
  const std::int64_t begin = std::int64_t(chunk) * size;
  const std::int64_t end = begin + size < count ? begin + size : count;
  double sum = 0.0;
  for (std::int64_t i = begin; i < end; ++i) sum += product(values[i], values[i]);
  return sum;
}

/// One Adam / RAdam update of parameter θ with moments (m, v) for the ascent direction
/// d ELBO/dθ: the loss gradient is g = −ascent · clip_factor.
template <typename RoundedProduct>
LRSMC_HD void adam_update(double ascent, double clip_scale, const AdamCoefficients& c,
                          double& parameter, double& first_moment, double& second_moment,
                          const RoundedProduct& product) {
  const double g = product(-ascent, clip_scale);
  first_moment = product(adam_beta1, first_moment) + product(1.0 - adam_beta1, g);
  second_moment = product(adam_beta2, second_moment) + product(product(1.0 - adam_beta2, g), g);
  const double corrected_mean = first_moment / c.bias1;
  if (c.rectified) {
    const double denominator = std::sqrt(second_moment / c.bias2) + adam_epsilon;
    parameter -= product(product(c.learning_rate, c.rectification), corrected_mean) / denominator;
  } else {
    parameter -= product(c.learning_rate, corrected_mean);  // RAdam's un-adapted warm-up steps
  }
}

}  // namespace lrsmc::math
