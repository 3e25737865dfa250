// The float64 accumulators of one trial's reverse sweep, for every engine: the flat parameter
// gradient (lrsmc::ParameterLayout's order) followed by named slots for the adjoints that are
// finished once per call (model_constants.hpp, finish_gradient). Engines sum the rows of a
// batch's trials in trial order, then finish the sum.
#pragma once

#include <cstdint>

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// Offsets of the named slots in a row whose parameter part has `parameters` entries. [0] is the
/// initial step's phase (prior Σ_z0), [1] the later steps' (Σ_z).
struct GradientSlots {
  std::int64_t factor[2] = {};           ///< dL (rank × rank, lower): the noise factor
  std::int64_t proposal_factor[2] = {};  ///< dL_q (rank × rank, lower), optimal proposal
  std::int64_t mean_product[2] = {};     ///< Σ dμ_q μᵀ (rank × rank), optimal proposal
  std::int64_t decay = 0;                ///< Σ dμ · z_{t−1}
  std::int64_t initial_mean = 0;         ///< Σ dμ_0 (rank)
  std::int64_t gain[2] = {};             ///< Σ_t (Σ_k dμ_q)(x_t − b)ᵀ (rank × channels)
  std::int64_t gain_sum[2] = {};         ///< Σ dμ_q (rank)
  std::int64_t row_size = 0;             ///< values per row: parameters and slots

  LRSMC_HD GradientSlots(std::int64_t parameters, int rank, int channels) {
    const std::int64_t square = std::int64_t(rank) * rank;
    std::int64_t next = parameters;
    const auto take = [&next](std::int64_t count) {
      const std::int64_t offset = next;
      next += count;
      return offset;
    };
    for (int phase = 0; phase < 2; ++phase) factor[phase] = take(square);
    for (int phase = 0; phase < 2; ++phase) proposal_factor[phase] = take(square);
    for (int phase = 0; phase < 2; ++phase) mean_product[phase] = take(square);
    decay = take(1);
    initial_mean = take(rank);
    for (int phase = 0; phase < 2; ++phase) gain[phase] = take(std::int64_t(rank) * channels);
    for (int phase = 0; phase < 2; ++phase) gain_sum[phase] = take(rank);
    row_size = next;
  }
};

}  // namespace lrsmc::math
