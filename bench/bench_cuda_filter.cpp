// CUDA forward-filter throughput (particle-steps per second) against particles per trial
// K ∈ {10, 100, 1000, 10^4, 10^5} for the paper's EEG shape (64 channels, rank 3, 512
// clipped-relu units, optimal proposal, 10 trials × 50 steps), in the automatic regime and in
// each forced regime (design.md, "GPU work shape"). Each iteration is one Backend::filter call
// timed on the wall clock end to end in the steady state: one upload of the parameters and the
// data, the per-call constants built on the device, the CUDA graph's capture and instantiation
// (many-particle regime), the kernels, and the download of the ELBO. Device memory is not
// allocated in the timed calls: the backend keeps its workspace between calls, and the untimed
// warm-up call allocated it. The floor beside each figure is the model's arithmetic over the
// fp32 rate measured on this device by kernels/peak_fp32.cu (independent FMA chains), so it is
// a lower bound on the kernels' time, not an estimate of it. Without a device every case
// reports an error and nothing runs.
#include <benchmark/benchmark.h>

#include <cmath>

#include "lrsmc/backend.hpp"
#include "lrsmc/params.hpp"
#ifdef LRSMC_WITH_CUDA
#include "kernels/peak_fp32.hpp"
#endif

namespace {

constexpr int trials = 10, steps = 50;

lrsmc::SequenceBatch eeg_shaped_batch() {
  lrsmc::SequenceBatch batch;
  batch.num_trials = trials;
  batch.num_steps = steps;
  batch.num_channels = 64;
  batch.observations.resize(std::size_t(trials) * steps * 64);
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    batch.observations[i] = std::sin(0.37 * double(i)) + 0.1 * std::cos(1.3 * double(i));
  return batch;
}

/// Floating-point operations of one particle-step as the kernels compute it: the transition
/// m z and n φ (4NR) and the read-out Bᵀz (2RD); the optimal proposal's G (x − b) is computed
/// once per step for all particles. Nonlinearities, exp/log and the O(R²) terms are not
/// counted, so the floor derived from it is a lower bound. For the EEG shape: 6144 + 384 = 6528.
double flop_per_particle_step(const lrsmc::ModelConfig& config) {
  const double N = config.num_hidden, R = config.rank, D = config.num_channels;
  return 4 * N * R + 2 * R * D;
}

/// The device's measured fp32 rate (flop/s), once per process; 0 without CUDA.
double measured_fp32_rate() {
#ifdef LRSMC_WITH_CUDA
  static const double rate = lrsmc::kernels::measure_fp32_flops(0);
  return rate;
#else
  return 0.0;
#endif
}

void BM_CudaForward(benchmark::State& state, lrsmc::CudaFilterRegime regime) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int particles = int(state.range(0));
  const lrsmc::ModelConfig config;  // the EEG shape: R = 3, N = 512, D = 64, clipped relu
  const auto model = lrsmc::Model::initialise(config, 1);
  const auto batch = eeg_shaped_batch();
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  options.proposal = lrsmc::Proposal::optimal;
  lrsmc::BackendOptions backend_options;
  backend_options.cuda_filter_regime = regime;
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cuda, backend_options);
  std::uint64_t seed = 0;
  // Warm-up: allocates the backend's device workspace (and loads the kernels) outside the timing.
  benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
  for (auto _ : state) benchmark::DoNotOptimize(backend->filter(model, batch, options, seed++).elbo);
  const double particle_steps = double(particles) * trials * steps;
  const double flop = flop_per_particle_step(config);
  const double rate = measured_fp32_rate();
  state.counters["particle_steps_per_second"] =
      benchmark::Counter(particle_steps, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["flop_per_particle_step"] = flop;
  state.counters["fp32_tflops_measured"] = rate * 1e-12;
  // The floor: this call's arithmetic at the measured rate, and the throughput it allows.
  state.counters["floor_ms"] = rate > 0 ? particle_steps * flop / rate * 1e3 : 0.0;
  state.counters["ceiling_particle_steps_per_second"] = rate > 0 ? rate / flop : 0.0;
}

void particle_counts(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgName("particles");
  for (const int particles : {10, 100, 1000, 10'000, 100'000}) benchmark->Arg(particles);
  benchmark->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_CudaForward, automatic, lrsmc::CudaFilterRegime::automatic)
    ->Apply(particle_counts);
BENCHMARK_CAPTURE(BM_CudaForward, block_per_trial, lrsmc::CudaFilterRegime::block_per_trial)
    ->Apply(particle_counts);
BENCHMARK_CAPTURE(BM_CudaForward, many_particles, lrsmc::CudaFilterRegime::many_particles)
    ->Apply(particle_counts);

}  // namespace

BENCHMARK_MAIN();
