// The scalar pieces of the convolutional encoder (method.md §4) that every engine must compute
// alike: the padding of a convolution's input, the activations and their derivatives, and the
// clamp of the encoder's variance (method.md §3.3).
#pragma once

#include <cmath>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// Steps of padding before and after a sequence for a convolution of `kernel` taps.
struct PadWidths {
  int left;
  int right;
};

/// causal (k−1, 0): the output at t sees t−k+1 … t; acausal (0, k−1): t … t+k−1; windowed
/// (⌊k/2⌋, ⌊(k−1)/2⌋): centred. Every location pads k−1 steps in all, so a convolution keeps the
/// sequence's length. For even k the windowed widths are the reference's; for odd k the
/// reference pads (⌊k/2⌋, ⌊k/2⌋ − 1) and shortens the sequence by one step, which lrsmc does not
/// (an encoder must give one factor per time step).
LRSMC_HD PadWidths pad_widths(EncoderPadding padding, int kernel) {
  switch (padding) {
    case EncoderPadding::causal: return {kernel - 1, 0};
    case EncoderPadding::acausal: return {0, kernel - 1};
    case EncoderPadding::windowed: break;
  }
  return {kernel / 2, (kernel - 1) / 2};
}

/// The input step that padded position `step` holds (step < 0 before the sequence, ≥ length
/// after it), or −1 for a zero. reflect mirrors without repeating the edge (−1 → 1), replicate
/// repeats the edge, circular wraps around. Valid for |overhang| < length with reflect and
/// ≤ length with circular (the encoder's validation guarantees both).
LRSMC_HD int padded_source(PaddingMode mode, int step, int length) {
  if (step >= 0 && step < length) return step;
  switch (mode) {
    case PaddingMode::zeros: return -1;
    case PaddingMode::reflect: return step < 0 ? -step : 2 * (length - 1) - step;
    case PaddingMode::replicate: return step < 0 ? 0 : length - 1;
    case PaddingMode::circular: break;
  }
  return step < 0 ? step + length : step - length;
}

/// An activation's value and derivative.
template <typename Scalar>
struct Activated {
  Scalar value;
  Scalar slope;
};

/// GELU in its exact form x·Φ(x), Φ(x) = ½(1 + erf(x/√2)), slope Φ(x) + x·φ(x); LeakyReLU with
/// negative slope 0.1 (slope 1 at 0, as PyTorch's backward).
template <typename Scalar>
LRSMC_HD Activated<Scalar> activate(EncoderActivation activation, Scalar x) {
  if (activation == EncoderActivation::leaky_relu)
    return x >= Scalar(0) ? Activated<Scalar>{x, Scalar(1)}
                          : Activated<Scalar>{Scalar(0.1) * x, Scalar(0.1)};
  constexpr double inverse_sqrt_two = 0.70710678118654752440084436210485;
  constexpr double inverse_sqrt_two_pi = 0.39894228040143267793994605993438;
  const Scalar cdf = Scalar(0.5) * (Scalar(1) + std::erf(x * Scalar(inverse_sqrt_two)));
  const Scalar density = Scalar(inverse_sqrt_two_pi) * std::exp(Scalar(-0.5) * x * x);
  return {x * cdf, cdf + x * density};
}

/// The encoder's variance σ_e² = clamp(exp(log-variance), 1e-8, 100) (method.md §3.3) and its
/// derivative with respect to the log-variance (0 where the clamp holds).
template <typename Scalar>
LRSMC_HD Activated<Scalar> encoder_variance(Scalar log_variance) {
  const Scalar variance = std::exp(log_variance);
  if (variance < Scalar(1e-8)) return {Scalar(1e-8), Scalar(0)};
  if (variance > Scalar(100)) return {Scalar(100), Scalar(0)};
  return {variance, variance};
}

}  // namespace lrsmc::math
