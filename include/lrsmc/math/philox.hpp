// Philox4x32-10 counter-based generator (Salmon et al. 2011), written once for host and device
// so that both backends draw the same numbers (design.md, "Random numbers"). Pinned by the
// Random123 known-answer vectors in tests/test_philox.cpp.
#pragma once

#include <cstdint>

#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

struct PhiloxCounter {
  std::uint32_t word[4];
};

LRSMC_HD void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& high,
                             std::uint32_t& low) {
  const std::uint64_t product = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  high = static_cast<std::uint32_t>(product >> 32);
  low = static_cast<std::uint32_t>(product);
}

/// Ten rounds of Philox4x32 on `counter` with the 64-bit key (key0, key1).
LRSMC_HD PhiloxCounter philox4x32_10(PhiloxCounter counter, std::uint32_t key0,
                                     std::uint32_t key1) {
  constexpr std::uint32_t multiplier0 = 0xD2511F53u, multiplier1 = 0xCD9E8D57u;
  constexpr std::uint32_t weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    std::uint32_t high0, low0, high1, low1;
    philox_mulhilo(multiplier0, counter.word[0], high0, low0);
    philox_mulhilo(multiplier1, counter.word[2], high1, low1);
    counter =
        PhiloxCounter{{high1 ^ counter.word[1] ^ key0, low1, high0 ^ counter.word[3] ^ key1, low0}};
    key0 += weyl0;
    key1 += weyl1;
  }
  return counter;
}

/// What a draw is for; part of its address so streams never overlap.
enum class DrawStream : std::uint32_t {
  proposal_noise = 0,  ///< standard normals ξ of the proposal, per particle
  resampling = 1,      ///< uniforms of the resampler
  generative = 2,      ///< latent noise when simulating from the model
  observation = 3,     ///< observation noise / Poisson counts when simulating
  smoothing = 4,       ///< uniforms of the backward-simulation smoother, per trajectory
  evaluation = 5,      ///< draws of the metrics (the points at which D_stsp is estimated)
};

/// Address of a block of four 32-bit draws: (seed, trial, step, particle, stream, block).
/// A call produces four uniforms; the normals of one particle at one step are blocks 0, 1, …
LRSMC_HD PhiloxCounter philox_block(std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                                    std::uint32_t particle, DrawStream stream,
                                    std::uint32_t block) {
  const PhiloxCounter counter{
      {particle, step, trial, (static_cast<std::uint32_t>(stream) << 24) | block}};
  return philox4x32_10(counter, static_cast<std::uint32_t>(seed),
                       static_cast<std::uint32_t>(seed >> 32));
}

/// Maps 32 random bits to a double in the open interval (0, 1).
LRSMC_HD double uniform_open(std::uint32_t bits) {
  return (static_cast<double>(bits) + 0.5) * 2.3283064365386962890625e-10;  // 2^-32
}

/// Normal number `index` (mod 4) of a Philox block in double: Box–Muller on the uniform pair
/// (2j, 2j+1) with j = (index mod 4)/2, cosine branch for even, sine for odd index.
LRSMC_HD double standard_normal_double(const PhiloxCounter& bits, std::uint32_t index) {
  const std::uint32_t pair = (index % 4u) / 2u;
  const double u1 = uniform_open(bits.word[2 * pair]);
  const double u2 = uniform_open(bits.word[2 * pair + 1]);
  const double radius = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586476925286766559 * u2;
  return (index % 2u == 0u) ? radius * std::cos(angle) : radius * std::sin(angle);
}

/// Standard normal number `index` of (seed, trial, step, particle, stream), in double: number
/// index mod 4 of block index/4 (standard_normals gives the float engines' float draws).
LRSMC_HD double standard_normal(std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                                std::uint32_t particle, DrawStream stream, std::uint32_t index) {
  return standard_normal_double(philox_block(seed, trial, step, particle, stream, index / 4u),
                                index);
}

/// Uniform number `index` in (0, 1) of the given address.
LRSMC_HD double uniform(std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                        std::uint32_t particle, DrawStream stream, std::uint32_t index) {
  const PhiloxCounter bits = philox_block(seed, trial, step, particle, stream, index / 4u);
  return uniform_open(bits.word[index % 4u]);
}

/// Maps the top 24 of 32 random bits to a float in the open interval (0, 1), exactly.
LRSMC_HD float uniform_open_float(std::uint32_t bits) {
  return (static_cast<float>(bits >> 8) + 0.5f) * 5.9604644775390625e-8f;  // 2^-24
}

/// The float counterpart of standard_normal, computed in float from the same Philox bits (the
/// float engines' per-particle arithmetic is float): Box–Muller on uniform_open_float.
LRSMC_HD float standard_normal_float(const PhiloxCounter& bits, std::uint32_t index) {
  const std::uint32_t pair = (index % 4u) / 2u;
  const float u1 = uniform_open_float(bits.word[2 * pair]);
  const float u2 = uniform_open_float(bits.word[2 * pair + 1]);
  const float radius = std::sqrt(-2.0f * std::log(u1));
  const float angle = 6.2831853071795864769f * u2;
  return (index % 2u == 0u) ? radius * std::cos(angle) : radius * std::sin(angle);
}

/// Standard normals 0 … count − 1 of (seed, trial, step, particle, stream) in the working
/// precision: standard_normal for double, standard_normal_float for float; each Philox block
/// is computed once for its four numbers.
template <typename Scalar>
LRSMC_HD void standard_normals(std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                               std::uint32_t particle, DrawStream stream, int count, Scalar* out) {
  PhiloxCounter bits{};
  for (int index = 0; index < count; ++index) {
    const std::uint32_t i = static_cast<std::uint32_t>(index);
    if (i % 4u == 0u) bits = philox_block(seed, trial, step, particle, stream, i / 4u);
    if constexpr (sizeof(Scalar) == sizeof(float)) {
      out[index] = standard_normal_float(bits, i);
    } else {
      out[index] = standard_normal_double(bits, i);
    }
  }
}

}  // namespace lrsmc::math
