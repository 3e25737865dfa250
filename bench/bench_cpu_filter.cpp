// CPU backend throughput: forward filter (particle-steps per second) and one training step
// (forward + backward) for the paper's EEG shape (64 channels, rank 3, 512 clipped-relu units,
// optimal proposal, 10 trials × 50 steps), each CPU engine at 1 and 2 threads, and one long
// recording filtered on 1 and 2 threads. Results: bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/params.hpp"

namespace {

lrsmc::SequenceBatch eeg_shaped_batch(int trials, int steps) {
  lrsmc::SequenceBatch batch;
  batch.num_trials = trials;
  batch.num_steps = steps;
  batch.num_channels = 64;
  batch.observations.resize(std::size_t(trials) * steps * 64);
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    batch.observations[i] = std::sin(0.37 * double(i)) + 0.1 * std::cos(1.3 * double(i));
  return batch;
}

lrsmc::Model eeg_model() {
  lrsmc::ModelConfig config;  // defaults: the EEG setting
  return lrsmc::Model::initialise(config, 1);
}

void BM_CpuForward(benchmark::State& state) {
  const int particles = int(state.range(0));
  const auto model = eeg_model();
  const auto batch = eeg_shaped_batch(10, 50);
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu);
  std::uint64_t seed = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
  state.counters["particle_steps_per_second"] = benchmark::Counter(
      double(particles) * 10 * 50, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CpuForward)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_CpuTrainingStep(benchmark::State& state) {
  const int particles = int(state.range(0));
  const auto model = eeg_model();
  const auto batch = eeg_shaped_batch(10, 50);
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu);
  std::uint64_t seed = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(backend->elbo_gradient(model, batch, options, seed++).elbo);
  state.counters["particle_steps_per_second"] = benchmark::Counter(
      double(particles) * 10 * 50, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CpuTrainingStep)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// One step of an engine at a fixed thread count, for bench/cpu_vs_pytorch.py: arguments
/// (particles, threads, engine, forward + backward) with engine 0 = float64 (the reference),
/// 1 = float32 in the kernels' order, 2 = packed float32 (the default).
void BM_CpuEngineStep(benchmark::State& state) {
  const int particles = int(state.range(0));
  lrsmc::BackendOptions backend_options;
  backend_options.num_threads = int(state.range(1));
  constexpr lrsmc::CpuPrecision engines[] = {lrsmc::CpuPrecision::float64,
                                             lrsmc::CpuPrecision::device_float32,
                                             lrsmc::CpuPrecision::packed_float32};
  backend_options.cpu_precision = engines[state.range(2)];
  const bool backward = state.range(3) != 0;
  const auto model = eeg_model();
  const auto batch = eeg_shaped_batch(10, 50);
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu, backend_options);
  std::uint64_t seed = 0;
  for (auto _ : state) {
    if (backward) {
      benchmark::DoNotOptimize(backend->elbo_gradient(model, batch, options, seed++).elbo);
    } else {
      benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
    }
  }
}
BENCHMARK(BM_CpuEngineStep)
    ->ArgsProduct({{10, 100, 1000, 10000}, {1, 2}, {0, 1, 2}, {0, 1}})
    ->ArgNames({"particles", "threads", "engine", "backward"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// Filtering one long recording (the EEG's 9640 steps as one trial, K = 1000) with the default
/// engine on 1 or 2 threads: with a single trial the threads share each step's particle blocks.
void BM_CpuLongRecording(benchmark::State& state) {
  lrsmc::BackendOptions backend_options;
  backend_options.num_threads = int(state.range(0));
  const auto model = eeg_model();
  const auto batch = eeg_shaped_batch(1, 9640);
  lrsmc::FilterOptions options;
  options.num_particles = 1000;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu, backend_options);
  std::uint64_t seed = 0;
  for (auto _ : state)
    benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
  state.counters["particle_steps_per_second"] =
      benchmark::Counter(1000.0 * 9640, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CpuLongRecording)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("threads")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
