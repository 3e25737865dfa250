// The built-in demonstration: a rank-2 teacher RNN whose latent dynamics is a noisy limit
// cycle (an oscillator), observed through 20 Gaussian channels.
#pragma once

#include <cstdint>

#include "lrsmc/params.hpp"

namespace lrsmc {

/// Teacher: N = 20 relu units with loadings m_i = (cos θ_i, sin θ_i), θ_i evenly spaced,
/// bias h_i = −1 (units fire for m_i·z > −1), n_i = (c/N) R_ψ m_i. Near the origin the map is
/// a z + (c/2) R_ψ z, an expanding spiral; far from it half the units are silent and the gain
/// halves, a contracting spiral, so trajectories settle on a limit cycle. Transition noise std
/// 0.05, initial std 1, read-out B ~ N(0, 1) into 20 channels with noise std 0.1.
[[nodiscard]] Model oscillator_teacher(std::uint64_t seed = 7);

}  // namespace lrsmc
