// Fixed-point analysis time against the number of units N (method.md §7): the
// polynomial hyperplane-arrangement algorithm for R = 1, 2, 3 and, for small N, exhaustive
// enumeration of the 2^N activation patterns beside it. bench/fit_exponent.py fits the growth
// exponent from the JSON output. BM_FixedPointsArrangementCuda runs the same networks on a CUDA
// device up to larger N, and is skipped without one. Results: bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "lrsmc/backend.hpp"
#include "lrsmc/fixed_points.hpp"

namespace {

/// A random relu network: m ~ N(0, 1), n ~ N(0, 9/N), biases N(0, 0.25), decay 0.8. Its
/// hyperplanes are in general position, so the arrangement has the full Σ_{k≤R} C(N, k) regions;
/// the time depends on N and R, hardly on how many fixed points there are.
lrsmc::PiecewiseLinearNetwork random_relu(int rank, int num_hidden, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  lrsmc::PiecewiseLinearNetwork net;
  net.rank = rank;
  net.num_hidden = num_hidden;
  net.decay = 0.8;
  net.nonlinearity = lrsmc::Nonlinearity::relu;
  const double n_scale = 3.0 / std::sqrt(double(num_hidden));
  for (int i = 0; i < num_hidden * rank; ++i) net.m.push_back(normal(engine));
  for (int i = 0; i < rank * num_hidden; ++i) net.n.push_back(n_scale * normal(engine));
  for (int i = 0; i < num_hidden; ++i) net.h.push_back(0.5 * normal(engine));
  return net;
}

void report(benchmark::State& state, const lrsmc::FixedPointResult& result) {
  state.counters["N"] = double(state.range(1));
  state.counters["R"] = double(state.range(0));
  state.counters["regions"] = double(result.num_regions);
  state.counters["fixed_points"] = double(result.fixed_points.size());
}

lrsmc::FixedPointOptions on(lrsmc::BackendKind device) {
  lrsmc::FixedPointOptions options;
  options.device = device;
  return options;
}

void BM_FixedPointsArrangement(benchmark::State& state) {
  const auto net = random_relu(int(state.range(0)), int(state.range(1)), 42);
  lrsmc::FixedPointResult result;
  for (auto _ : state) {
    result = lrsmc::find_fixed_points(net, on(lrsmc::BackendKind::cpu));
    benchmark::DoNotOptimize(result.fixed_points.data());
  }
  report(state, result);
}

/// The whole call on the GPU (uploads, every batch of lines, downloads, the host's finishing),
/// timed on the wall clock: that is what a user waits for, and the host part is not negligible.
void BM_FixedPointsArrangementCuda(benchmark::State& state) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device (lrsmc built without CUDA, or none answers)");
    return;
  }
  const auto net = random_relu(int(state.range(0)), int(state.range(1)), 42);
  (void)lrsmc::find_fixed_points(net, on(lrsmc::BackendKind::cuda));  // context, first launches
  lrsmc::FixedPointResult result;
  for (auto _ : state) {
    result = lrsmc::find_fixed_points(net, on(lrsmc::BackendKind::cuda));
    benchmark::DoNotOptimize(result.fixed_points.data());
  }
  report(state, result);
  state.counters["host_lines"] = double(result.num_host_lines);
}

void BM_FixedPointsBruteForce(benchmark::State& state) {
  const auto net = random_relu(int(state.range(0)), int(state.range(1)), 42);
  lrsmc::FixedPointResult result;
  for (auto _ : state) {
    result = lrsmc::find_fixed_points_brute_force(net);
    benchmark::DoNotOptimize(result.fixed_points.data());
  }
  report(state, result);
}

void arrangement_sizes(benchmark::internal::Benchmark* bench) {
  for (const int n : {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}) bench->Args({1, n});
  for (const int n : {64, 128, 256, 512, 1024, 2048, 4096}) bench->Args({2, n});
  for (const int n : {16, 32, 64, 128, 256, 512, 1024}) bench->Args({3, n});
  // Small N beside the brute force.
  for (const int rank : {1, 2, 3}) {
    for (const int n : {8, 12, 16, 20}) bench->Args({rank, n});
  }
}

void cuda_sizes(benchmark::internal::Benchmark* bench) {
  for (const int n : {1024, 4096, 16384, 65536, 262144}) bench->Args({1, n});
  for (const int n : {256, 512, 1024, 2048, 4096, 8192, 16384}) bench->Args({2, n});
  for (const int n : {64, 128, 256, 512, 1024, 2048}) bench->Args({3, n});
}

void brute_force_sizes(benchmark::internal::Benchmark* bench) {
  for (const int rank : {1, 2, 3}) {
    for (const int n : {8, 12, 16, 20}) bench->Args({rank, n});
  }
}

BENCHMARK(BM_FixedPointsArrangement)
    ->Apply(arrangement_sizes)
    ->ArgNames({"R", "N"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FixedPointsArrangementCuda)
    ->Apply(cuda_sizes)
    ->ArgNames({"R", "N"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FixedPointsBruteForce)
    ->Apply(brute_force_sizes)
    ->ArgNames({"R", "N"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
