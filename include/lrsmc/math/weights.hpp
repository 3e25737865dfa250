// Weights of one step of the particle filter, for every engine (method.md §2, §3.5; design.md,
// "Resampling precision"): the log-evidence increment c_t = logsumexp_k(log W̄_{t−1} + log w_t),
// the normalised weights, the effective sample size and the resampling decision, the
// normalised cumulative weights the resampler searches, and the adjoint of c_t. All float64.
//
// Particles are reduced in tiles of weight_tile consecutive particles (a GPU block each): a tile
// keeps its maximum m_b, s_b = Σ exp(x − m_b) with the running sums as its local cumulative
// weights, q_b = Σ exp(2(x − m_b)) and Σ exp(x − m_b) z. The tiles are then combined in order
// by combine_tiles. Within a tile every engine sums in particle order (the CPU sequentially, the
// kernels with CUB block primitives, which the emulated device runs in thread order and a GPU as
// trees); across tiles the order is sequential everywhere, with products that are never fused
// into additions (common.hpp), so that c_t, the cumulative weights and their last value of
// exactly 1 are the same on every engine given the same tiles.
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc::math {

/// Particles per tile (the threads of one GPU block in the weight reductions).
constexpr int weight_tile = 256;

LRSMC_HD constexpr int weight_tiles(int num_particles) {
  return (num_particles + weight_tile - 1) / weight_tile;
}

/// The shift of a tile's exponentials: its maximum, or 0 when that is not finite (a tile of
/// zero weights, −inf, contributes nothing; an infinite or NaN maximum fails the step in
/// combine_tiles).
LRSMC_HD double tile_shift(double maximum) { return std::isfinite(maximum) ? maximum : 0.0; }

/// A particle's terms in its tile's sums: exp(x − shift) and exp(2 (x − shift)).
LRSMC_HD double tile_weight(double increment, double shift) { return std::exp(increment - shift); }
LRSMC_HD double tile_square(double increment, double shift) {
  return std::exp(2.0 * (increment - shift));
}

/// What combine_tiles computes of a step.
struct StepWeights {
  bool failed = false;     ///< every log-weight is ±inf or NaN: the step has no increment
  double maximum = 0.0;    ///< M = max_b m_b (the failure's value when failed)
  double increment = 0.0;  ///< c_t = M + log Σ_b std::exp(m_b − M) s_b
  double squares = 0.0;    ///< Σ_k W_k² = Σ_b std::exp(2 (m_b − c_t)) q_b
  double total = 0.0;  ///< Σ_b std::exp(m_b − c_t) s_b: the last unnormalised cumulative weight
};

/// Combines the tiles of a step, in tile order. `tile_maximum`, `tile_total` (s_b) and
/// `tile_squares` (q_b) hold one value per tile; writes each tile's scale exp(m_b − c_t) and
/// the cumulative weight before it (`tile_scale`, `tile_start`). With `tile_mean` (tiles × rank,
/// Σ exp(x − m_b) z) and `mean` (rank) also the filtered mean Σ_k W_k z_k.
template <typename RoundedProduct>
LRSMC_HD StepWeights combine_tiles(int tiles, const double* tile_maximum, const double* tile_total,
                                   const double* tile_squares, const double* tile_mean, int rank,
                                   double* tile_scale, double* tile_start, double* mean,
                                   const RoundedProduct& product) {
  StepWeights weights;
  double maximum = tile_maximum[0];
  for (int b = 1; b < tiles; ++b) maximum = maximum_ignoring_nan(maximum, tile_maximum[b]);
  weights.maximum = maximum;
  if (!std::isfinite(maximum)) {
    weights.failed = true;
    return weights;
  }
  double sum = 0.0;
  for (int b = 0; b < tiles; ++b)
    sum += product(std::exp(tile_maximum[b] - maximum), tile_total[b]);
  const double increment = maximum + std::log(sum);
  weights.increment = increment;
  double running = 0.0, squares = 0.0;
  for (int b = 0; b < tiles; ++b) {
    const double scale = std::exp(tile_maximum[b] - increment);
    tile_scale[b] = scale;
    tile_start[b] = running;
    running += product(scale, tile_total[b]);
    squares += product(std::exp(2.0 * (tile_maximum[b] - increment)), tile_squares[b]);
  }
  weights.total = running;
  weights.squares = squares;
  if (tile_mean != nullptr) {
    for (int r = 0; r < rank; ++r) {
      double value = 0.0;
      for (int b = 0; b < tiles; ++b) value += product(tile_scale[b], tile_mean[b * rank + r]);
      mean[r] = value;
    }
  }
  return weights;
}

/// Resample when the effective sample size 1/Σ W² falls below threshold · K; a threshold of 1
/// resamples after every step, 0 never (method.md, "lrsmc decisions").
LRSMC_HD bool should_resample(double threshold, double squares, int num_particles) {
  return threshold >= 1.0 || (threshold > 0.0 && 1.0 / squares < threshold * num_particles);
}

/// The normalised cumulative weight of a particle whose tile-local cumulative weight is
/// `local`: (start_b + scale_b · local) / total. The last particle's is exactly 1 (its local
/// value is s_b, and total was summed with the same products).
template <typename RoundedProduct>
LRSMC_HD double normalised_cumulative(double start, double scale, double local, double total,
                                      const RoundedProduct& product) {
  return (start + product(scale, local)) / total;
}

/// Position of particle k in [0, 1) for the given scheme. Systematic uses one uniform per
/// (trial, step); stratified and multinomial one per particle. Built from the index,
/// (U + k)/K, never by repeated addition (Murray, Lee & Jacob 2016).
LRSMC_HD double resampling_position(Resampling scheme, std::uint64_t seed, std::uint32_t trial,
                                    std::uint32_t step, std::uint32_t particle,
                                    std::uint32_t num_particles) {
  switch (scheme) {
    case Resampling::systematic:
      return (uniform(seed, trial, step, 0, DrawStream::resampling, 0) + particle) / num_particles;
    case Resampling::stratified:
      return (uniform(seed, trial, step, particle, DrawStream::resampling, 0) + particle) /
             num_particles;
    case Resampling::multinomial:
      break;
  }
  return uniform(seed, trial, step, particle, DrawStream::resampling, 0);
}

/// Smallest j with cumulative[j] ≥ position (left bisection); cumulative is non-decreasing
/// with last entry 1.
LRSMC_HD std::int32_t lower_bound_index(const double* cumulative, std::int32_t count,
                                        double position) {
  std::int32_t low = 0, high = count - 1;
  while (low < high) {
    const std::int32_t middle = low + (high - low) / 2;
    if (cumulative[middle] >= position) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low;
}

/// dℓ/dc_t of the objective ℓ = (1/B) Σ_b (1/T) Σ_t c_t (method.md §2), the same for every
/// trial and step.
LRSMC_HD double increment_adjoint(int trials, int steps) { return 1.0 / (double(trials) * steps); }

/// Adjoint of a_t^k = log W̄_{t−1}^k + log w_t^k, given dℓ/dc_t (`grad_increment`), W_t^k =
/// exp(normalised) and, when the step did not resample, the adjoint of the carried normalised
/// weights log W̄_t = a_t − c_t (`grad_carried` for this particle, `carried_total` = Σ_k of it).
template <typename RoundedProduct>
LRSMC_HD double log_weight_adjoint(double normalised, double grad_increment, bool resampled,
                                   double grad_carried, double carried_total,
                                   const RoundedProduct& product) {
  const double softmax = std::exp(normalised);
  double value = product(softmax, grad_increment);
  if (!resampled) value += grad_carried - product(softmax, carried_total);
  return value;
}

}  // namespace lrsmc::math
