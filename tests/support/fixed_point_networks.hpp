// The networks the fixed-point tests run on (tests/test_fixed_points.cpp against brute force,
// tests/test_fixed_points_cuda.cpp against the CPU sweep): random relu / clipped-relu networks
// and hand-built degenerate arrangements.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lrsmc/fixed_points.hpp"

namespace lrsmc::testing {

/// m ~ N(0, 1), n ~ N(0, 9/N), decay in [0.5, 0.9], biases of both signs, optionally a constant
/// current. With `multistable`, the units alternate between positive feedback near the origin
/// (n_i ∝ m_i, low threshold) and negative feedback far from it (n_i ∝ −m_i, high threshold),
/// so the networks have several fixed points to compare.
PiecewiseLinearNetwork random_network(Nonlinearity nonlinearity, int rank, int num_hidden,
                                      std::uint64_t seed, bool with_current = false,
                                      bool multistable = false);

/// R = 2: unit 1 duplicates unit 0 (coincident hyperplanes), unit 2 is parallel to unit 0 with
/// another bias, unit 3 antiparallel to unit 0 on the same hyperplane (relu).
PiecewiseLinearNetwork parallel_hyperplanes(Nonlinearity nonlinearity, std::uint64_t seed);
/// Units 0..4 pass through one point of ℝ^R (more than R hyperplanes), units 5..7 through
/// another (R = 2 or 3, relu).
PiecewiseLinearNetwork concurrent_hyperplanes(int rank, std::uint64_t seed);
/// h = c = 0: every hyperplane through the origin (relu).
PiecewiseLinearNetwork central_hyperplanes(int rank, std::uint64_t seed);
/// Clipped relu with h = 0 for units 0 and 3: both hyperplanes of each coincide.
PiecewiseLinearNetwork clipped_zero_thresholds();
/// R = 2 with every row of m parallel: eight parallel lines, no vertex.
PiecewiseLinearNetwork parallel_rows(std::uint64_t seed);
/// R = 3 clipped relu whose normals span a plane.
PiecewiseLinearNetwork planar_normals(std::uint64_t seed);
/// N = 2 < R = 3, with a constant current.
PiecewiseLinearNetwork fewer_units_than_rank(std::uint64_t seed);
/// F(z) = 0.5 z + relu(z + 1) − relu(z − 1) − relu(1) = 0.5 z + clamp(z, −1, 1): fixed points
/// −2 (stable), 0 (unstable), 2 (stable).
PiecewiseLinearNetwork bistable_relu();

/// Every degenerate network above, labelled, for seeds 0 … seeds − 1.
std::vector<std::pair<std::string, PiecewiseLinearNetwork>> degenerate_networks(int seeds);

}  // namespace lrsmc::testing
