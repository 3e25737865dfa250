// Resampling positions and ancestor search, method.md §3.5. Cumulative weights are float64 and
// normalised by their last value; positions are built from the index, (U + k)/K, never by
// repeated addition (Murray, Lee & Jacob 2016).
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc::math {

/// Position of particle k in [0, 1) for the given scheme. Systematic uses one uniform per
/// (trial, step); stratified and multinomial one per particle.
LRSMC_HD double resampling_position(Resampling scheme, std::uint64_t seed, std::uint32_t trial,
                                    std::uint32_t step, std::uint32_t particle,
                                    std::uint32_t num_particles) {
  switch (scheme) {
    case Resampling::systematic:
      return (uniform(seed, trial, step, 0, DrawStream::resampling, 0) + particle) / num_particles;
    case Resampling::stratified:
      return (uniform(seed, trial, step, particle, DrawStream::resampling, 0) + particle) /
             num_particles;
    case Resampling::multinomial: break;
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

}  // namespace lrsmc::math
