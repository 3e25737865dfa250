// Tests of the CUDA fixed-point enumeration (method.md §7.2): on random and degenerate relu and
// clipped-relu networks the GPU sweep gives the CPU's fixed points, patterns, stability and counts
// (skipped without a device, run by the emulation build); the device dispatch and its errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/arrangement_sweep.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/fixed_points.hpp"
#include "lrsmc/params.hpp"
#include "support/fixed_point_networks.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

using testing::random_network;

/// Identical results: counts, and every fixed point's position (to rounding), pattern,
/// boundary flag and stability, in the same (sorted) order.
void expect_same_result(const FixedPointResult& expected, const FixedPointResult& got,
                        const std::string& label) {
  EXPECT_EQ(expected.num_vertices, got.num_vertices) << label;
  EXPECT_EQ(expected.num_regions, got.num_regions) << label;
  EXPECT_EQ(expected.num_solves, got.num_solves) << label;
  EXPECT_EQ(expected.num_singular_regions, got.num_singular_regions) << label;
  ASSERT_EQ(expected.fixed_points.size(), got.fixed_points.size()) << label;
  for (std::size_t i = 0; i < expected.fixed_points.size(); ++i) {
    const FixedPoint& want = expected.fixed_points[i];
    const FixedPoint& have = got.fixed_points[i];
    ASSERT_EQ(want.z.size(), have.z.size()) << label;
    for (std::size_t r = 0; r < want.z.size(); ++r) {
      EXPECT_NEAR(want.z[r], have.z[r], 1e-12 * (1.0 + std::abs(want.z[r])))
          << label << ": fixed point " << i << " coordinate " << r;
    }
    EXPECT_EQ(want.pattern, have.pattern) << label << ": fixed point " << i;
    EXPECT_EQ(want.on_boundary, have.on_boundary) << label << ": fixed point " << i;
    EXPECT_EQ(want.stability, have.stability) << label << ": fixed point " << i;
  }
}

struct RandomCase {
  Nonlinearity nonlinearity;
  int rank;
  int num_hidden;
  bool large = false;
};

std::vector<RandomCase> random_cases(bool large) {
  std::vector<RandomCase> cases;
  for (const Nonlinearity nonlinearity : {Nonlinearity::relu, Nonlinearity::clipped_relu}) {
    const int scale = nonlinearity == Nonlinearity::relu ? 2 : 1;
    for (const int n : {3, 8, 16}) cases.push_back({nonlinearity, 1, scale * n});
    for (const int n : {4, 12, 40}) cases.push_back({nonlinearity, 2, scale * n});
    for (const int n : {3, 8, 16}) cases.push_back({nonlinearity, 3, scale * n});
    if (large) {
      cases.push_back({nonlinearity, 1, scale * 3000, true});
      cases.push_back({nonlinearity, 2, scale * 400, true});
      cases.push_back({nonlinearity, 3, scale * 60, true});
    }
  }
  cases.push_back({Nonlinearity::relu, 4, 9});
  return cases;
}

std::string describe(const RandomCase& c, std::uint64_t seed) {
  return to_string(c.nonlinearity) + " R=" + std::to_string(c.rank) + " N=" +
         std::to_string(c.num_hidden) + " seed " + std::to_string(seed);
}

FixedPointOptions on(BackendKind device) {
  FixedPointOptions options;
  options.device = device;
  return options;
}

// ------------------------------------------------------------------------------------------
// The lines of the arrangement (no GPU needed)

TEST(FixedPointsLineSweep, NextLineEnumeratesSubsetsInOrder) {
  std::vector<std::int32_t> planes = {0, 1};
  std::vector<std::vector<std::int32_t>> seen = {planes};
  while (detail::next_line(planes, 4)) seen.push_back(planes);
  const std::vector<std::vector<std::int32_t>> expected = {{0, 1}, {0, 2}, {0, 3},
                                                           {1, 2}, {1, 3}, {2, 3}};
  EXPECT_EQ(seen, expected);
  std::vector<std::int32_t> none;
  EXPECT_FALSE(detail::next_line(none, 5));  // dim 1: the one line through no hyperplane
}

// ------------------------------------------------------------------------------------------
// Device dispatch (no GPU needed)

TEST(FixedPointsCudaDispatch, CountsCandidateRegions) {
  PiecewiseLinearNetwork net = random_network(Nonlinearity::relu, 2, 60, 1);
  EXPECT_DOUBLE_EQ(count_candidate_regions(net), 1831.0);  // 1 + 60 + C(60, 2)
  net = random_network(Nonlinearity::clipped_relu, 2, 5, 1);
  EXPECT_DOUBLE_EQ(count_candidate_regions(net), 56.0);  // 2N = 10 hyperplanes
  net = random_network(Nonlinearity::relu, 3, 2, 1);
  EXPECT_DOUBLE_EQ(count_candidate_regions(net), 4.0);  // N < R: 2^N
  net.nonlinearity = Nonlinearity::tanh;  // no hyperplanes: one region
  EXPECT_DOUBLE_EQ(count_candidate_regions(net), 1.0);
}

TEST(FixedPointsCudaDispatch, AutoPicksTheCpuForSmallProblemsOrWithoutAGpu) {
  const PiecewiseLinearNetwork small = random_network(Nonlinearity::relu, 2, 60, 1);
  EXPECT_EQ(choose_fixed_point_device(small, {}), BackendKind::cpu);
  EXPECT_EQ(choose_fixed_point_device(small, on(BackendKind::cpu)), BackendKind::cpu);
  EXPECT_EQ(choose_fixed_point_device(small, on(BackendKind::cuda)), BackendKind::cuda);
  // 1 + 5000 + C(5000, 2) ≈ 1.25·10^7 candidate regions: above the threshold.
  PiecewiseLinearNetwork large = random_network(Nonlinearity::relu, 2, 5000, 2);
  ASSERT_GT(count_candidate_regions(large), fixed_points_cuda_min_regions);
  EXPECT_EQ(choose_fixed_point_device(large, {}),
            cuda_available() ? BackendKind::cuda : BackendKind::cpu);
  large.nonlinearity = Nonlinearity::tanh;  // not piecewise linear: never the GPU
  EXPECT_EQ(choose_fixed_point_device(large, {}), BackendKind::cpu);

  const FixedPointResult result = find_fixed_points(small);
  EXPECT_EQ(result.device, BackendKind::cpu);
  EXPECT_EQ(result.num_host_lines, 0);
  EXPECT_EQ(find_fixed_points(small, on(BackendKind::cpu)).fixed_points.size(),
            result.fixed_points.size());
}

TEST(FixedPointsCudaDispatch, CudaWithoutADeviceThrowsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device answers; the error path needs none";
  const PiecewiseLinearNetwork net = random_network(Nonlinearity::relu, 2, 12, 3);
  try {
    (void)find_fixed_points(net, on(BackendKind::cuda));
    FAIL() << "expected lrsmc::Error";
  } catch (const InvalidInput&) {
    FAIL() << "expected lrsmc::Error, not InvalidInput";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("find_fixed_points: device cuda is not available"), std::string::npos)
        << message;
#if defined(LRSMC_WITH_CUDA)
    EXPECT_NE(message.find("no CUDA device answers"), std::string::npos) << message;
#else
    EXPECT_NE(message.find("rebuild with -DLRSMC_ENABLE_CUDA=ON"), std::string::npos) << message;
#endif
  }
  // The same network on the CPU (and with auto) still works.
  EXPECT_EQ(find_fixed_points(net, on(BackendKind::automatic)).device, BackendKind::cpu);
}

TEST(FixedPointsCudaDispatch, CudaRejectsRanksAboveFourAndTanh) {
  const PiecewiseLinearNetwork wide = random_network(Nonlinearity::relu, 5, 6, 4);
  try {
    (void)find_fixed_points(wide, on(BackendKind::cuda));
    FAIL() << "expected InvalidInput";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("rank is too large for the CUDA sweep; got 5"),
              std::string::npos)
        << error.what();
  }
  EXPECT_EQ(choose_fixed_point_device(wide, {}), BackendKind::cpu);
  PiecewiseLinearNetwork smooth = random_network(Nonlinearity::relu, 2, 6, 4);
  smooth.nonlinearity = Nonlinearity::tanh;
  try {
    (void)find_fixed_points(smooth, on(BackendKind::cuda));
    FAIL() << "expected InvalidInput";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("tanh is not piecewise linear"), std::string::npos)
        << error.what();
  }
}

TEST(FixedPointsCudaDispatch, CommandLineTakesTheDevice) {
  const std::string folder = testing::make_temp_dir("lrsmc-fixed-points-cuda");
  const std::string model = folder + "/teacher.npz";
  save_model(model, oscillator_teacher());
  const std::string command = std::string(LRSMC_CLI_PATH) + " fixed-points " + model +
                              " --out-json " + folder + "/fp.json --out-npy " + folder +
                              "/fp.npy --device ";
  const auto json = [&] {
    std::ifstream stream(folder + "/fp.json");
    std::stringstream buffer;
    buffer << stream.rdbuf();
    return buffer.str();
  };
  std::string output;
  EXPECT_EQ(testing::run_command(command + "cpu", output), 0) << output;
  EXPECT_NE(json().find("\"device\": \"cpu\""), std::string::npos) << json();
  EXPECT_EQ(testing::run_command(command + "gpu", output), 2) << output;
  EXPECT_NE(output.find("--device is not recognised; got 'gpu'"), std::string::npos) << output;
  if (cuda_available()) {
    EXPECT_EQ(testing::run_command(command + "cuda", output), 0) << output;
    EXPECT_NE(json().find("\"device\": \"cuda\""), std::string::npos) << json();
  } else {
    EXPECT_EQ(testing::run_command(command + "cuda", output), 1) << output;
    EXPECT_NE(output.find("lrsmc: error: find_fixed_points: device cuda is not available"),
              std::string::npos)
        << output;
  }
  std::filesystem::remove_all(folder);
}

// ------------------------------------------------------------------------------------------
// The GPU (skipped without one)

class FixedPointsCuda : public ::testing::Test {
 protected:
  void SetUp() override {
#if !defined(LRSMC_WITH_CUDA)
    GTEST_SKIP() << "no CUDA device (lrsmc was built without CUDA)";
#else
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount found none)";
#endif
  }
};

TEST_F(FixedPointsCuda, MatchesCpuOnRandomNetworks) {
  std::size_t total = 0;
  for (const RandomCase& c : random_cases(true)) {
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
      const auto net = random_network(c.nonlinearity, c.rank, c.num_hidden, 17 * seed + 5,
                                      seed == 1, /*multistable=*/true);
      const std::string label = describe(c, seed);
      const FixedPointResult cpu = find_fixed_points(net, on(BackendKind::cpu));
      const FixedPointResult gpu = find_fixed_points(net, on(BackendKind::cuda));
      EXPECT_EQ(gpu.device, BackendKind::cuda) << label;
      expect_same_result(cpu, gpu, label);
      if (c.large) continue;
      if (c.nonlinearity == Nonlinearity::relu) {
        EXPECT_EQ(gpu.num_host_lines, 0) << label << ": general position, all on the GPU";
      } else if (seed != 1 && c.num_hidden > c.rank) {
        // Without input every hyperplane {m_i·z = 0} of clipped relu passes through the origin.
        EXPECT_GT(gpu.num_host_lines, 0) << label;
      }
      total += cpu.fixed_points.size();
    }
  }
  EXPECT_GE(total, 60u) << "the random networks should have several fixed points";
}

TEST_F(FixedPointsCuda, MatchesCpuOnDegenerateNetworks) {
  std::int64_t host_lines = 0;
  for (const auto& [label, net] : testing::degenerate_networks(3)) {
    const FixedPointResult cpu = find_fixed_points(net, on(BackendKind::cpu));
    const FixedPointResult gpu = find_fixed_points(net, on(BackendKind::cuda));
    expect_same_result(cpu, gpu, label);
    host_lines += gpu.num_host_lines;
  }
  // Concurrent and coincident hyperplanes put coincident crossings on some lines.
  EXPECT_GT(host_lines, 0);
}

TEST_F(FixedPointsCuda, RepeatedRunsAreIdenticalAndAutoUsesTheGpuWhenLarge) {
  const auto net = random_network(Nonlinearity::relu, 2, 5000, 11);
  const FixedPointResult first = find_fixed_points(net);
  EXPECT_EQ(first.device, BackendKind::cuda);
  EXPECT_EQ(first.num_regions, 1 + 5000 + 5000 * 4999 / 2);
  const FixedPointResult second = find_fixed_points(net, on(BackendKind::cuda));
  expect_same_result(first, second, "repeat");
  for (std::size_t i = 0; i < first.fixed_points.size(); ++i) {
    EXPECT_EQ(first.fixed_points[i].z, second.fixed_points[i].z);  // bitwise
  }
}

}  // namespace
}  // namespace lrsmc
