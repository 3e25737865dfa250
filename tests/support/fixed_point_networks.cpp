#include "support/fixed_point_networks.hpp"

#include <cmath>
#include <random>

namespace lrsmc::testing {

PiecewiseLinearNetwork random_network(Nonlinearity nonlinearity, int rank, int num_hidden,
                                      std::uint64_t seed, bool with_current, bool multistable) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  PiecewiseLinearNetwork net;
  net.rank = rank;
  net.num_hidden = num_hidden;
  net.nonlinearity = nonlinearity;
  net.decay = 0.5 + 0.4 * uniform(engine);
  const double n_scale = 3.0 / std::sqrt(static_cast<double>(num_hidden));
  constexpr double alignment = 3.0;
  for (int i = 0; i < num_hidden * rank; ++i) net.m.push_back(normal(engine));
  net.n.resize(static_cast<std::size_t>(rank * num_hidden));
  for (int r = 0; r < rank; ++r) {
    for (int i = 0; i < num_hidden; ++i) {
      const double feedback = !multistable ? 0.0 : i % 2 == 0 ? alignment : -alignment;
      net.n[static_cast<std::size_t>(r * num_hidden + i)] =
          n_scale * (feedback * net.m[static_cast<std::size_t>(i * rank + r)] + normal(engine));
    }
  }
  for (int i = 0; i < num_hidden; ++i) {
    double bias = nonlinearity == Nonlinearity::clipped_relu ? 2.0 * uniform(engine) - 1.0
                                                             : 0.5 * normal(engine);
    if (multistable && nonlinearity != Nonlinearity::clipped_relu) {
      bias = i % 2 == 0 ? -0.2 * std::abs(bias) : 1.0 + 2.0 * std::abs(bias);
    }
    net.h.push_back(bias);
  }
  if (with_current) {
    for (int i = 0; i < num_hidden; ++i) net.constant_current.push_back(0.3 * normal(engine));
  }
  return net;
}

PiecewiseLinearNetwork parallel_hyperplanes(Nonlinearity nonlinearity, std::uint64_t seed) {
  const int num_hidden = nonlinearity == Nonlinearity::relu ? 10 : 7;
  auto net = random_network(nonlinearity, 2, num_hidden, 40 + seed);
  for (int r = 0; r < 2; ++r) {
    net.m[static_cast<std::size_t>(2 + r)] = net.m[static_cast<std::size_t>(r)];
    net.m[static_cast<std::size_t>(4 + r)] = 2.0 * net.m[static_cast<std::size_t>(r)];
    net.m[static_cast<std::size_t>(6 + r)] = -net.m[static_cast<std::size_t>(r)];
  }
  net.h[1] = net.h[0];
  net.h[2] = net.h[0] + 0.7;
  if (nonlinearity == Nonlinearity::relu) net.h[3] = -net.h[0];
  return net;
}

PiecewiseLinearNetwork concurrent_hyperplanes(int rank, std::uint64_t seed) {
  auto net = random_network(Nonlinearity::relu, rank, 10, 70 + seed);
  const std::vector<double> p = {0.3, -0.2, 0.1};
  const std::vector<double> q = {-0.4, 0.5, 0.2};
  for (int i = 0; i < 8; ++i) {
    const auto& point = i < 5 ? p : q;
    double value = 0.0;
    for (int r = 0; r < rank; ++r) {
      value += net.m[static_cast<std::size_t>(i * rank + r)] * point[static_cast<std::size_t>(r)];
    }
    net.h[static_cast<std::size_t>(i)] = value;
  }
  return net;
}

PiecewiseLinearNetwork central_hyperplanes(int rank, std::uint64_t seed) {
  auto net = random_network(Nonlinearity::relu, rank, 9, 90 + seed);
  for (double& bias : net.h) bias = 0.0;
  return net;
}

PiecewiseLinearNetwork clipped_zero_thresholds() {
  auto net = random_network(Nonlinearity::clipped_relu, 2, 7, 95);
  net.h[0] = 0.0;
  net.h[3] = 0.0;
  return net;
}

PiecewiseLinearNetwork parallel_rows(std::uint64_t seed) {
  auto net = random_network(Nonlinearity::relu, 2, 8, 120 + seed);
  for (int i = 0; i < 8; ++i) {
    net.m[static_cast<std::size_t>(2 * i + 1)] = -0.5 * net.m[static_cast<std::size_t>(2 * i)];
  }
  return net;
}

PiecewiseLinearNetwork planar_normals(std::uint64_t seed) {
  auto net = random_network(Nonlinearity::clipped_relu, 3, 6, 130 + seed);
  for (int i = 0; i < 6; ++i) {
    net.m[static_cast<std::size_t>(3 * i + 2)] =
        net.m[static_cast<std::size_t>(3 * i)] - 2.0 * net.m[static_cast<std::size_t>(3 * i + 1)];
  }
  return net;
}

PiecewiseLinearNetwork fewer_units_than_rank(std::uint64_t seed) {
  return random_network(Nonlinearity::relu, 3, 2, 140 + seed, true);
}

PiecewiseLinearNetwork bistable_relu() {
  PiecewiseLinearNetwork net;
  net.rank = 1;
  net.num_hidden = 3;
  net.decay = 0.5;
  net.nonlinearity = Nonlinearity::relu;
  net.m = {1.0, 1.0, 0.0};  // the third unit sees nothing: a constant relu(0 − (−1)) = 1
  net.h = {-1.0, 1.0, -1.0};
  net.n = {1.0, -1.0, -1.0};
  return net;
}

std::vector<std::pair<std::string, PiecewiseLinearNetwork>> degenerate_networks(int seeds) {
  std::vector<std::pair<std::string, PiecewiseLinearNetwork>> cases;
  for (std::uint64_t seed = 0; seed < static_cast<std::uint64_t>(seeds); ++seed) {
    const std::string suffix = " seed " + std::to_string(seed);
    for (const Nonlinearity nonlinearity : {Nonlinearity::relu, Nonlinearity::clipped_relu}) {
      cases.emplace_back("parallel " + to_string(nonlinearity) + suffix,
                         parallel_hyperplanes(nonlinearity, seed));
    }
    for (int rank = 2; rank <= 3; ++rank) {
      const std::string dims = " R=" + std::to_string(rank);
      cases.emplace_back("concurrent" + dims + suffix, concurrent_hyperplanes(rank, seed));
      cases.emplace_back("central" + dims + suffix, central_hyperplanes(rank, seed));
    }
    cases.emplace_back("parallel rows" + suffix, parallel_rows(seed));
    cases.emplace_back("rank-2 normals" + suffix, planar_normals(seed));
    cases.emplace_back("N < R" + suffix, fewer_units_than_rank(seed));
  }
  cases.emplace_back("clipped h = 0", clipped_zero_thresholds());
  cases.emplace_back("bistable 1-D", bistable_relu());
  return cases;
}

}  // namespace lrsmc::testing
