// Tests of the fixed-point finders (method.md §7): the arrangement algorithm against exhaustive
// enumeration on random and degenerate networks, hand-built networks with known fixed points and
// stability, the Newton search (tanh), and input validation.
#include "lrsmc/fixed_points.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/errors.hpp"
#include "support/fixed_point_networks.hpp"

namespace lrsmc {
namespace {

using testing::bistable_relu;
using testing::random_network;

/// F(z) = a z + n φ(m z + c; h), written independently of the library (method.md §1.1-1.2).
std::vector<double> latent_map(const PiecewiseLinearNetwork& net, const std::vector<double>& z) {
  const int rank = net.rank;
  const int num_hidden = net.num_hidden;
  std::vector<double> out(static_cast<std::size_t>(rank));
  for (int r = 0; r < rank; ++r) out[static_cast<std::size_t>(r)] = net.decay * z[static_cast<std::size_t>(r)];
  for (int i = 0; i < num_hidden; ++i) {
    double x = net.constant_current.empty() ? 0.0 : net.constant_current[static_cast<std::size_t>(i)];
    for (int r = 0; r < rank; ++r) {
      x += net.m[static_cast<std::size_t>(i * rank + r)] * z[static_cast<std::size_t>(r)];
    }
    const double h = net.h[static_cast<std::size_t>(i)];
    double phi = 0.0;
    switch (net.nonlinearity) {
      case Nonlinearity::relu:
        phi = std::max(x - h, 0.0);
        break;
      case Nonlinearity::clipped_relu:
        phi = std::max(x + h, 0.0) - std::max(x, 0.0);
        break;
      case Nonlinearity::tanh:
        phi = std::tanh(x - h);
        break;
      case Nonlinearity::identity:
        phi = x - h;
        break;
    }
    for (int r = 0; r < rank; ++r) {
      out[static_cast<std::size_t>(r)] += net.n[static_cast<std::size_t>(r * num_hidden + i)] * phi;
    }
  }
  return out;
}

double max_norm(const std::vector<double>& x) {
  double value = 0.0;
  for (const double entry : x) value = std::max(value, std::abs(entry));
  return value;
}

/// Every reported point satisfies F(z) = z.
void expect_fixed(const PiecewiseLinearNetwork& net, const FixedPointResult& result) {
  for (const FixedPoint& point : result.fixed_points) {
    ASSERT_EQ(static_cast<int>(point.z.size()), net.rank);
    const std::vector<double> image = latent_map(net, point.z);
    double residual = 0.0;
    for (int r = 0; r < net.rank; ++r) {
      residual = std::max(residual, std::abs(image[static_cast<std::size_t>(r)] -
                                             point.z[static_cast<std::size_t>(r)]));
    }
    EXPECT_LE(residual, 1e-8 * (1.0 + max_norm(point.z)))
        << "F(z) != z at z[0] = " << point.z[0];
  }
}

/// The two results hold the same fixed points (matched by position to 1e-6).
void expect_same_points(const FixedPointResult& expected, const FixedPointResult& got,
                        const std::string& label) {
  ASSERT_EQ(expected.fixed_points.size(), got.fixed_points.size()) << label;
  std::vector<bool> used(got.fixed_points.size(), false);
  for (const FixedPoint& want : expected.fixed_points) {
    bool matched = false;
    for (std::size_t j = 0; j < got.fixed_points.size() && !matched; ++j) {
      if (used[j]) continue;
      double distance = 0.0;
      for (std::size_t r = 0; r < want.z.size(); ++r) {
        distance = std::max(distance, std::abs(want.z[r] - got.fixed_points[j].z[r]));
      }
      if (distance <= 1e-6 * (1.0 + max_norm(want.z))) {
        used[j] = true;
        matched = true;
        EXPECT_EQ(want.pattern, got.fixed_points[j].pattern) << label;
        EXPECT_EQ(want.stability, got.fixed_points[j].stability) << label;
      }
    }
    EXPECT_TRUE(matched) << label << ": no match for the fixed point with z[0] = " << want.z[0];
  }
}

void expect_matches_brute_force(const PiecewiseLinearNetwork& net, const std::string& label,
                                std::size_t* count = nullptr) {
  const FixedPointResult fast = find_fixed_points(net);
  const FixedPointResult slow = find_fixed_points_brute_force(net);
  expect_same_points(slow, fast, label);
  expect_fixed(net, fast);
  EXPECT_EQ(fast.num_singular_regions, 0) << label;
  if (count != nullptr) *count += fast.fixed_points.size();
}

TEST(FixedPoints, RandomReluMatchesBruteForce) {
  std::size_t total = 0;
  for (int rank = 1; rank <= 3; ++rank) {
    for (const int num_hidden : {4, 8, 12, 16}) {
      for (std::uint64_t seed = 0; seed < 5; ++seed) {
        const auto net = random_network(Nonlinearity::relu, rank, num_hidden, 100 * seed + 7,
                                        seed % 2 == 1, true);
        expect_matches_brute_force(net, "relu R=" + std::to_string(rank) + " N=" +
                                            std::to_string(num_hidden) + " seed " +
                                            std::to_string(seed),
                                   &total);
      }
    }
  }
  EXPECT_GE(total, 100u) << "random networks should have several fixed points each";
}

TEST(FixedPoints, RandomClippedReluMatchesBruteForce) {
  std::size_t total = 0;
  for (int rank = 1; rank <= 3; ++rank) {
    for (const int num_hidden : {3, 6, 8}) {
      for (std::uint64_t seed = 0; seed < 4; ++seed) {
        const auto net = random_network(Nonlinearity::clipped_relu, rank, num_hidden,
                                        1000 + 31 * seed, seed % 2 == 0, true);
        expect_matches_brute_force(net, "clipped R=" + std::to_string(rank) + " N=" +
                                            std::to_string(num_hidden) + " seed " +
                                            std::to_string(seed),
                                   &total);
      }
    }
  }
  EXPECT_GE(total, 72u) << "random networks should have several fixed points each";
}

TEST(FixedPoints, GeneralPositionCounts) {
  // N relu hyperplanes in general position in ℝ^R: C(N, R) vertices, Σ_{k≤R} C(N, k) regions
  // (method.md §7.2: 1770 vertices and 1831 regions for N = 60, R = 2).
  const auto net2 = random_network(Nonlinearity::relu, 2, 60, 5);
  const FixedPointResult result2 = find_fixed_points(net2);
  EXPECT_EQ(result2.num_vertices, 1770);
  EXPECT_EQ(result2.num_regions, 1831);
  // One region solve per region, plus the vertex visits of the sweep (box faces included).
  EXPECT_GE(result2.num_solves, 1770 + 1831);
  EXPECT_LE(result2.num_solves, 2 * (1770 + 1831));

  const auto net3 = random_network(Nonlinearity::relu, 3, 10, 6);
  const FixedPointResult result3 = find_fixed_points(net3);
  EXPECT_EQ(result3.num_vertices, 120);
  EXPECT_EQ(result3.num_regions, 1 + 10 + 45 + 120);

  // Clipped relu: 2N hyperplanes in N parallel pairs (a pair never meets).
  const auto clipped = random_network(Nonlinearity::clipped_relu, 2, 5, 7);
  const FixedPointResult result_clipped = find_fixed_points(clipped);
  EXPECT_EQ(result_clipped.num_vertices, 45 - 5);
  EXPECT_EQ(result_clipped.num_regions, 1 + 10 + 40);
}

TEST(FixedPoints, BistableReluHasThreeKnownFixedPoints) {
  for (const bool as_current : {false, true}) {
    PiecewiseLinearNetwork net = bistable_relu();
    if (as_current) {  // the same map with the biases given as a constant input current
      net.constant_current = {1.0, -1.0, 1.0};
      net.h = {0.0, 0.0, 0.0};
    }
    for (const FixedPointResult& result :
         {find_fixed_points(net), find_fixed_points_brute_force(net)}) {
      ASSERT_EQ(result.fixed_points.size(), 3u);
      const double expected[] = {-2.0, 0.0, 2.0};
      const Stability stability[] = {Stability::stable_node, Stability::unstable_node,
                                     Stability::stable_node};
      const std::vector<std::int8_t> patterns[] = {{0, 0, 1}, {1, 0, 1}, {1, 1, 1}};
      for (int i = 0; i < 3; ++i) {
        const FixedPoint& point = result.fixed_points[static_cast<std::size_t>(i)];
        EXPECT_NEAR(point.z[0], expected[i], 1e-12);
        EXPECT_EQ(point.stability, stability[i]);
        EXPECT_EQ(point.pattern, patterns[i]);
        EXPECT_FALSE(point.on_boundary);
        EXPECT_NEAR(point.eigenvalues_real[0], i == 1 ? 1.5 : 0.5, 1e-12);
      }
    }
  }
}

TEST(FixedPoints, ParallelAndCoincidentHyperplanes) {
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    for (const Nonlinearity nonlinearity : {Nonlinearity::relu, Nonlinearity::clipped_relu}) {
      // Coincident, parallel and antiparallel hyperplanes.
      const auto net = testing::parallel_hyperplanes(nonlinearity, seed);
      expect_matches_brute_force(net, "parallel seed " + std::to_string(seed));
    }
  }
}

TEST(FixedPoints, MoreThanRankHyperplanesThroughAPoint) {
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    for (int rank = 2; rank <= 3; ++rank) {
      // Five hyperplanes through one point of ℝ^R, three through another.
      const auto net = testing::concurrent_hyperplanes(rank, seed);
      expect_matches_brute_force(net, "concurrent R=" + std::to_string(rank) + " seed " +
                                          std::to_string(seed));
    }
  }
}

TEST(FixedPoints, EveryHyperplaneThroughTheOrigin) {
  // h = c = 0: one vertex where all N hyperplanes meet, and the origin is a fixed point on every
  // hyperplane at once; it must be reported exactly once.
  for (std::uint64_t seed = 0; seed < 3; ++seed) {
    for (int rank = 2; rank <= 3; ++rank) {
      const auto net = testing::central_hyperplanes(rank, seed);
      const FixedPointResult result = find_fixed_points(net);
      expect_matches_brute_force(net, "central R=" + std::to_string(rank));
      int at_origin = 0;
      for (const FixedPoint& point : result.fixed_points) {
        if (max_norm(point.z) < 1e-9) {
          ++at_origin;
          EXPECT_TRUE(point.on_boundary);
        }
      }
      EXPECT_EQ(at_origin, 1);
    }
  }
  // Clipped relu with h = 0 for some units: both of their hyperplanes coincide.
  expect_matches_brute_force(testing::clipped_zero_thresholds(), "clipped h = 0");
}

TEST(FixedPoints, NormalsSpanningFewerDimensions) {
  for (std::uint64_t seed = 0; seed < 4; ++seed) {
    // All rows of m parallel (R = 2): no vertex in the plane, only parallel lines.
    const auto net = testing::parallel_rows(seed);
    expect_matches_brute_force(net, "parallel rows seed " + std::to_string(seed));
    const FixedPointResult result = find_fixed_points(net);
    EXPECT_EQ(result.num_regions, 9);  // 8 parallel lines cut the plane into 9 strips

    // R = 3 with normals in a plane.
    expect_matches_brute_force(testing::planar_normals(seed),
                               "rank-2 normals seed " + std::to_string(seed));

    // Fewer units than dimensions.
    expect_matches_brute_force(testing::fewer_units_than_rank(seed), "N < R seed " + std::to_string(seed));
  }
}

TEST(FixedPoints, FixedPointOnABoundaryIsReportedOnce) {
  // z' = 0.5 z + (0.5, 0) + (0.3, 0.2)·relu(z_0 − 1): the fixed point (1, 0) lies on the kink of
  // unit 0 and solves the affine systems of both sides.
  PiecewiseLinearNetwork net;
  net.rank = 2;
  net.num_hidden = 2;
  net.decay = 0.5;
  net.nonlinearity = Nonlinearity::relu;
  net.m = {1.0, 0.0, 0.0, 0.0};
  net.h = {1.0, 0.0};
  net.constant_current = {0.0, 0.5};  // unit 1: relu(0.5) = 0.5, a constant
  net.n = {0.3, 1.0, 0.2, 0.0};
  for (const FixedPointResult& result :
       {find_fixed_points(net), find_fixed_points_brute_force(net)}) {
    ASSERT_EQ(result.fixed_points.size(), 1u);
    const FixedPoint& point = result.fixed_points[0];
    EXPECT_NEAR(point.z[0], 1.0, 1e-12);
    EXPECT_NEAR(point.z[1], 0.0, 1e-12);
    EXPECT_TRUE(point.on_boundary);
    EXPECT_EQ(point.pattern, (std::vector<std::int8_t>{0, 1}));  // the lower side of the kink
    expect_fixed(net, result);
  }
}

/// Units 0, 1 active around the origin with the Jacobian a·I + coupling; unit 2 (m = 0) supplies
/// the constant that makes the origin a fixed point.
PiecewiseLinearNetwork origin_fixed_point(const std::vector<double>& coupling) {
  PiecewiseLinearNetwork net;
  net.rank = 2;
  net.num_hidden = 3;
  net.decay = 0.5;
  net.nonlinearity = Nonlinearity::relu;
  net.m = {1.0, 0.0, 0.0, 1.0, 0.0, 0.0};
  net.h = {-1.0, -1.0, -1.0};
  // n is 2×3 row-major; columns 0, 1 are the coupling, column 2 cancels coupling·(1, 1).
  net.n = {coupling[0], coupling[1], -(coupling[0] + coupling[1]),
           coupling[2], coupling[3], -(coupling[2] + coupling[3])};
  return net;
}

const FixedPoint* find_point(const FixedPointResult& result, double z0, double z1) {
  for (const FixedPoint& point : result.fixed_points) {
    if (std::abs(point.z[0] - z0) < 1e-9 && std::abs(point.z[1] - z1) < 1e-9) return &point;
  }
  return nullptr;
}

TEST(FixedPoints, StabilityLabels) {
  // Rotation-like Jacobian [[0.5, −0.5], [0.5, 0.5]]: eigenvalues 0.5 ± 0.5i, |λ| ≈ 0.707.
  const auto spiral = origin_fixed_point({0.0, -0.5, 0.5, 0.0});
  const FixedPointResult spiral_result = find_fixed_points(spiral);
  expect_fixed(spiral, spiral_result);
  const FixedPoint* point = find_point(spiral_result, 0.0, 0.0);
  ASSERT_NE(point, nullptr);
  EXPECT_EQ(point->stability, Stability::stable_spiral);
  EXPECT_NEAR(point->eigenvalues_real[0], 0.5, 1e-12);
  EXPECT_NEAR(point->eigenvalues_real[1], 0.5, 1e-12);
  EXPECT_NEAR(std::abs(point->eigenvalues_imag[0]), 0.5, 1e-12);
  EXPECT_NEAR(point->eigenvalues_imag[0], -point->eigenvalues_imag[1], 1e-12);

  // Jacobian diag(0.5, 1.5): a saddle.
  const auto saddle = origin_fixed_point({0.0, 0.0, 0.0, 1.0});
  const FixedPointResult saddle_result = find_fixed_points(saddle);
  point = find_point(saddle_result, 0.0, 0.0);
  ASSERT_NE(point, nullptr);
  EXPECT_EQ(point->stability, Stability::saddle);
  EXPECT_NEAR(point->eigenvalues_real[0], 1.5, 1e-12);
  EXPECT_NEAR(point->eigenvalues_real[1], 0.5, 1e-12);

  // Jacobian [[1.5, −1], [1, 1.5]]: an unstable spiral; diag(1, 0.5) is non-hyperbolic.
  const auto unstable = origin_fixed_point({1.0, -1.0, 1.0, 1.0});
  const FixedPointResult unstable_result = find_fixed_points(unstable);
  point = find_point(unstable_result, 0.0, 0.0);
  ASSERT_NE(point, nullptr);
  EXPECT_EQ(point->stability, Stability::unstable_spiral);

  EXPECT_EQ(to_string(Stability::stable_node), "stable_node");
  EXPECT_EQ(to_string(Stability::stable_spiral), "stable_spiral");
  EXPECT_EQ(to_string(Stability::saddle), "saddle");
  EXPECT_EQ(to_string(Stability::unstable_node), "unstable_node");
  EXPECT_EQ(to_string(Stability::unstable_spiral), "unstable_spiral");
  EXPECT_EQ(to_string(Stability::non_hyperbolic), "non_hyperbolic");
}

TEST(FixedPoints, IdentityIsOneAffineSystem) {
  auto net = random_network(Nonlinearity::identity, 3, 5, 11, true);
  const FixedPointResult result = find_fixed_points(net);
  ASSERT_EQ(result.fixed_points.size(), 1u);
  EXPECT_EQ(result.num_regions, 1);
  EXPECT_TRUE(result.fixed_points[0].pattern.empty());
  expect_fixed(net, result);
  expect_same_points(find_fixed_points_brute_force(net), result, "identity");

  // a·I + n m = I: every point of a line is fixed or none is; singular, nothing reported.
  PiecewiseLinearNetwork singular;
  singular.rank = 1;
  singular.num_hidden = 1;
  singular.decay = 0.5;
  singular.nonlinearity = Nonlinearity::identity;
  singular.m = {1.0};
  singular.n = {0.5};
  singular.h = {0.0};
  const FixedPointResult none = find_fixed_points(singular);
  EXPECT_TRUE(none.fixed_points.empty());
  EXPECT_EQ(none.num_singular_regions, 1);
}

TEST(FixedPoints, ResultIsDeterministic) {
  const auto net = random_network(Nonlinearity::relu, 2, 40, 3, true);
  const FixedPointResult first = find_fixed_points(net);
  const FixedPointResult second = find_fixed_points(net);
  ASSERT_EQ(first.fixed_points.size(), second.fixed_points.size());
  for (std::size_t i = 0; i < first.fixed_points.size(); ++i) {
    EXPECT_EQ(first.fixed_points[i].z, second.fixed_points[i].z);
  }
  for (std::size_t i = 1; i < first.fixed_points.size(); ++i) {
    EXPECT_LT(first.fixed_points[i - 1].z, first.fixed_points[i].z);
  }
}

/// z' = 0.5 z + 2 tanh(z): fixed points 0 and ±z* with z* = 4 tanh(z*).
PiecewiseLinearNetwork bistable_tanh() {
  PiecewiseLinearNetwork net;
  net.rank = 1;
  net.num_hidden = 1;
  net.decay = 0.5;
  net.nonlinearity = Nonlinearity::tanh;
  net.m = {1.0};
  net.n = {2.0};
  net.h = {0.0};
  return net;
}

TEST(FixedPoints, TanhNeedsTheNumericalSearch) {
  const auto net = bistable_tanh();
  try {
    (void)find_fixed_points(net);
    FAIL() << "expected InvalidInput";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("numerical"), std::string::npos) << error.what();
  }
  EXPECT_THROW((void)find_fixed_points_brute_force(net), InvalidInput);

  const FixedPointResult result = find_fixed_points_numerical(net, 50, 1);
  ASSERT_EQ(result.fixed_points.size(), 3u);
  double outer = 4.0;
  for (int i = 0; i < 60; ++i) outer = 4.0 * std::tanh(outer);
  EXPECT_NEAR(result.fixed_points[0].z[0], -outer, 1e-9);
  EXPECT_NEAR(result.fixed_points[1].z[0], 0.0, 1e-9);
  EXPECT_NEAR(result.fixed_points[2].z[0], outer, 1e-9);
  EXPECT_EQ(result.fixed_points[0].stability, Stability::stable_node);
  EXPECT_EQ(result.fixed_points[1].stability, Stability::unstable_node);
  EXPECT_NEAR(result.fixed_points[1].eigenvalues_real[0], 2.5, 1e-9);
  EXPECT_TRUE(result.fixed_points[0].pattern.empty());
  expect_fixed(net, result);
  EXPECT_GT(result.num_solves, 0);
}

TEST(FixedPoints, NumericalSearchAgreesOnPiecewiseLinearNetworks) {
  const auto bistable = bistable_relu();
  expect_same_points(find_fixed_points(bistable), find_fixed_points_numerical(bistable, 100, 3),
                     "numerical bistable relu");
  // Every fixed point found by Newton is one of the exact ones.
  const auto net = random_network(Nonlinearity::clipped_relu, 2, 20, 17);
  const FixedPointResult exact = find_fixed_points(net);
  const FixedPointResult newton = find_fixed_points_numerical(net, 200, 5);
  EXPECT_GE(newton.fixed_points.size(), 1u);
  for (const FixedPoint& point : newton.fixed_points) {
    EXPECT_NE(find_point(exact, point.z[0], point.z[1]), nullptr) << point.z[0];
  }
}

void expect_invalid(const PiecewiseLinearNetwork& net, const std::string& fragment) {
  try {
    (void)find_fixed_points(net);
    FAIL() << "expected InvalidInput containing '" << fragment << "'";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

TEST(FixedPoints, RejectsBadInput) {
  const auto good = random_network(Nonlinearity::relu, 2, 4, 1);
  auto net = good;
  net.rank = 0;
  expect_invalid(net, "rank is out of range; got 0");
  net = good;
  net.num_hidden = 0;
  expect_invalid(net, "num_hidden is out of range; got 0");
  net = good;
  net.m.pop_back();
  expect_invalid(net, "'m' has the wrong size; got 7");
  net = good;
  net.n.push_back(0.0);
  expect_invalid(net, "'n' has the wrong size; got 9");
  net = good;
  net.constant_current = {1.0};
  expect_invalid(net, "'constant_current' has the wrong size; got 1");
  net = good;
  net.h[2] = std::nan("");
  expect_invalid(net, "'h' has a non-finite value; got nan at index 2");
  net = good;
  net.decay = INFINITY;
  expect_invalid(net, "decay is not finite");
  FixedPointOptions options;
  options.tolerance = -1.0;
  EXPECT_THROW((void)find_fixed_points(good, options), InvalidInput);
  EXPECT_THROW((void)find_fixed_points_numerical(good, 0, 1), InvalidInput);
  EXPECT_THROW((void)find_fixed_points_brute_force(random_network(Nonlinearity::relu, 1, 21, 1)),
               InvalidInput);
  EXPECT_THROW(
      (void)find_fixed_points_brute_force(random_network(Nonlinearity::clipped_relu, 1, 14, 1)),
      InvalidInput);
}

}  // namespace
}  // namespace lrsmc
