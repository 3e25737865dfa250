// CUDA forward-filter throughput (particle-steps per second) against particles per trial K for
// the paper's EEG shape (64 channels, rank 3, 512 clipped-relu units, optimal proposal,
// 10 trials × 50 steps). Timed end to end per call (constants, copies and the launch) with the
// wall clock after a device synchronisation. Without a device every case reports an error.
#include <benchmark/benchmark.h>

#include <cmath>

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

void BM_CudaForward(benchmark::State& state) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int particles = int(state.range(0));
  const auto model = lrsmc::Model::initialise(lrsmc::ModelConfig{}, 1);
  const auto batch = eeg_shaped_batch(10, 50);
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cuda);
  std::uint64_t seed = 0;
  benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
  state.counters["particle_steps_per_second"] = benchmark::Counter(
      double(particles) * 10 * 50, benchmark::Counter::kIsIterationInvariantRate);
  // ≈ 4NR (transition) + 2RD (read-out) + R·D (gain) flops per particle-step.
  state.counters["flop_per_particle_step"] = 4.0 * 512 * 3 + 3.0 * 3 * 64;
}
BENCHMARK(BM_CudaForward)
    ->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Arg(100000)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
