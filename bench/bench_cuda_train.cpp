// One CUDA training step (forward filter with stored paths, backward sweep, RAdam update on the
// device) for the paper's EEG shape (64 channels, rank 3, 512 clipped-relu units, optimal
// proposal): 10 trials × 50 steps at K = 10 … 10^4, and 64 trials × 100 steps at K = 10^3 and
// 10^4 (the reference's figures on an H100: 320 ms at 10 × 50 × 10, 0.9 s at 64 × 100 × 1000,
// out of 80 GB at 64 × 100 × 10^4). Wall clock per step over many steps of one device-resident
// session: each step uploads its rows, runs on the device and downloads its outcome.
// Counter device_bytes: what the session holds on the device after its first step (free
// memory before minus after, cudaMemGetInfo): data, parameters, moments and every workspace,
// which is the training's peak (nothing is allocated inside a step). Then one gradient of the
// encoder proposal (BM_CudaEncoderGradient), and the device encoder's pass alone at the
// hippocampus shape (BM_CudaEncoderPass). Without a device every case reports an error.
#include <benchmark/benchmark.h>

#include <cmath>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/params.hpp"
#include "core/training_session.hpp"
#if defined(LRSMC_WITH_CUDA)
#include "cuda/device_encoder_run.hpp"
#endif

namespace {

lrsmc::Dataset eeg_shaped_trials(int trials, int steps) {
  lrsmc::Dataset data;
  data.source = "bench";
  data.num_trials = trials;
  data.num_steps = steps;
  data.num_channels = 64;
  data.observations.resize(std::size_t(trials) * steps * 64);
  for (std::size_t i = 0; i < data.observations.size(); ++i)
    data.observations[i] = std::sin(0.37 * double(i)) + 0.1 * std::cos(1.3 * double(i));
  return data;
}

void BM_CudaTrainingStep(benchmark::State& state) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int particles = int(state.range(0)), trials = int(state.range(1)),
            steps = int(state.range(2));
  const auto model = lrsmc::Model::initialise(lrsmc::ModelConfig{}, 1);
  const lrsmc::Dataset data = eeg_shaped_trials(trials, steps);
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cuda);
  const std::int64_t free_before = backend->memory_available();
  lrsmc::TrainingSetup setup;
  setup.train = &data;
  setup.config = model.config;
  setup.filter.num_particles = particles;
  setup.filter.proposal = lrsmc::Proposal::optimal;
  setup.max_batch_trials = trials;
  setup.batch_steps = steps;
  setup.parameters = model.parameters;
  setup.first_moment.assign(model.parameters.size(), 0.0);
  setup.second_moment.assign(model.parameters.size(), 0.0);
  auto session = backend->start_training(setup);
  if (!session) {
    state.SkipWithError("the CUDA backend offers no training session");
    return;
  }
  std::vector<int> rows(static_cast<std::size_t>(trials)), starts(rows.size(), 0);
  for (int trial = 0; trial < trials; ++trial) rows[std::size_t(trial)] = trial;
  lrsmc::math::AdamCoefficients coefficients;
  coefficients.learning_rate = 1e-6;  // small steps: the model stays where it started
  coefficients.rectified = false;
  std::uint64_t seed = 0;
  auto outcome = session->step(rows, starts, seed++, coefficients);  // warm-up, allocations
  if (!outcome.failure.empty()) {
    state.SkipWithError(outcome.failure.c_str());
    return;
  }
  const std::int64_t held = free_before - backend->memory_available();
  for (auto _ : state) {
    outcome = session->step(rows, starts, seed++, coefficients);
    benchmark::DoNotOptimize(outcome.elbo);
  }
  std::vector<double> parameters, first, second;
  session->read_state(parameters, first, second);  // waits for the last step
  state.counters["device_bytes"] = double(held);
  // The reference's step time on an H100 where one is known (PyTorch, milliseconds).
  if (particles == 10 && trials == 10 && steps == 50) state.counters["reference_ms"] = 320;
  if (particles == 1000 && trials == 64 && steps == 100) state.counters["reference_ms"] = 900;
  state.counters["particle_steps_per_second"] = benchmark::Counter(
      double(particles) * trials * steps, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaTrainingStep)
    ->ArgNames({"particles", "trials", "steps"})
    ->Args({10, 10, 50})
    ->Args({100, 10, 50})
    ->Args({1000, 10, 50})
    ->Args({10000, 10, 50})
    ->Args({1000, 64, 100})
    ->Args({10000, 64, 100})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// One gradient of the encoder proposal through the CUDA backend (Backend::elbo_gradient, as the
/// host training loop calls it): the encoder's forward and backward passes (cuBLAS), the
/// particles, the per-step products and the reverse sweep, all on the device. The Poisson teacher's
/// student (40 channels, rank 2, 40 relu units, kernels 21,11,1 with 64,64 channels; batches of
/// 10 trials × 200 steps) at K = 64 (its training setting) and 1000 (its evaluation).
void BM_CudaEncoderGradient(benchmark::State& state) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int particles = int(state.range(0)), trials = 10, steps = 200;
  lrsmc::ModelConfig config;
  config.rank = 2;
  config.num_hidden = 40;
  config.num_channels = 40;
  config.nonlinearity = lrsmc::Nonlinearity::relu;
  config.transition_noise = config.initial_noise = lrsmc::NoiseType::diag;
  config.observation = lrsmc::Observation::poisson;
  config.link = lrsmc::Link::softplus;
  config.encoder = lrsmc::EncoderConfig{};  // kernels 21,11,1; channels 64,64
  const auto model = lrsmc::Model::initialise(config, 1);
  auto backend = lrsmc::make_backend(lrsmc::BackendKind::cuda);
  const lrsmc::SequenceBatch batch = [&] {
    lrsmc::SequenceBatch drawn;
    drawn.num_trials = trials;
    drawn.num_steps = steps;
    drawn.num_channels = config.num_channels;
    drawn.observations = backend->sample(model, trials, steps, {}, 3).observations;
    return drawn;
  }();
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  options.proposal = lrsmc::Proposal::encoder;
  std::uint64_t seed = 0;
  (void)backend->elbo_gradient(model, batch, options, seed++);  // warm-up
  for (auto _ : state) {
    const auto result = backend->elbo_gradient(model, batch, options, seed++);
    benchmark::DoNotOptimize(result.elbo);
  }
  state.counters["particle_steps_per_second"] = benchmark::Counter(
      double(particles) * trials * steps, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaEncoderGradient)
    ->ArgNames({"particles"})
    ->Arg(64)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

#if defined(LRSMC_WITH_CUDA)
/// The device encoder's forward and backward pass alone (host/cuda/device_encoder.cpp) at the
/// hippocampus shape of the paper (21 neurons; kernels 150,11,1 with 64,64 channels, causal
/// zero padding, GELU; batches of 64 trials × 500 steps; rank 3), the shape bench_encoder times
/// on the CPU. Each iteration includes uploading the parameters and observations and
/// downloading the factors and the gradient (cuda::run_device_encoder).
void BM_CudaEncoderPass(benchmark::State& state) {
  if (!lrsmc::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int trials = 64, steps = 500;
  lrsmc::ModelConfig config;
  config.rank = 3;
  config.num_hidden = 64;
  config.num_channels = 21;
  config.observation = lrsmc::Observation::poisson;
  config.link = lrsmc::Link::softplus;
  config.encoder = lrsmc::EncoderConfig{};
  config.encoder->kernels = {150, 11, 1};
  const auto model = lrsmc::Model::initialise(config, 1);
  lrsmc::SequenceBatch batch;
  batch.num_trials = trials;
  batch.num_steps = steps;
  batch.num_channels = config.num_channels;
  batch.observations.resize(std::size_t(trials) * steps * config.num_channels);
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    batch.observations[i] = double((i * 7919) % 5);  // counts 0 to 4
  const std::size_t cells = std::size_t(trials) * steps * config.rank;
  std::vector<double> grad_mean(cells), grad_variance(cells);
  for (std::size_t i = 0; i < cells; ++i) {
    grad_mean[i] = std::sin(0.37 * double(i));
    grad_variance[i] = 0.1 * std::cos(0.23 * double(i));
  }
  (void)lrsmc::cuda::run_device_encoder(model, batch, steps, grad_mean, grad_variance);  // warm-up
  for (auto _ : state) {
    const auto run = lrsmc::cuda::run_device_encoder(model, batch, steps, grad_mean, grad_variance);
    benchmark::DoNotOptimize(run.gradient.data());
  }
  state.counters["trial_steps_per_second"] =
      benchmark::Counter(double(trials) * steps, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaEncoderPass)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
