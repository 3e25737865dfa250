// The convolutional encoder's forward and backward pass on the CPU (one training step's encoder
// work) for the paper's hippocampus shape (kernels 150,11,1 with 64,64 channels, 21 neurons,
// a batch of 64 sequences of 500 steps) and the Steinmetz shape (kernels 21,11,1 with 64,64
// channels, 734 neurons, a batch of 16 trials of 40 steps), rank 3, in float and double; and
// the same in float as the engines run it (model::EncoderFactors: at most 16 blocks of trials
// on 1 or 2 threads, the gradient summed in block order). Results: bench/RESULTS.md.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "lrsmc/encoder.hpp"
#include "model/encoder_factors.hpp"

namespace {

struct Shape {
  std::vector<int> kernels, channels;
  int neurons, trials, steps;
};

const Shape shapes[] = {
    {{150, 11, 1}, {64, 64}, 21, 64, 500},  // hippocampus (hc2)
    {{21, 11, 1}, {64, 64}, 734, 16, 40},   // Steinmetz session 01
};

template <typename Scalar>
void BM_EncoderForwardBackward(benchmark::State& state) {
  const Shape& shape = shapes[state.range(0)];
  lrsmc::EncoderConfig config;
  config.kernels = shape.kernels;
  config.channels = shape.channels;
  const int rank = 3;
  const std::vector<double> parameters =
      lrsmc::initialise_encoder(config, shape.neurons, rank, 1);
  std::vector<Scalar> counts(std::size_t(shape.trials) * std::size_t(shape.steps) *
                             std::size_t(shape.neurons));
  for (std::size_t i = 0; i < counts.size(); ++i)
    counts[i] = Scalar(std::floor(2.5 + 2.5 * std::sin(0.37 * double(i))));
  const std::size_t outputs = std::size_t(shape.trials) * std::size_t(shape.steps) * rank;
  const std::vector<Scalar> mean_gradient(outputs, Scalar(0.01)),
      log_variance_gradient(outputs, Scalar(-0.02));
  for (auto _ : state) {
    const auto pass = lrsmc::encoder_forward(config, parameters, counts, shape.trials,
                                             shape.steps, shape.neurons, rank);
    const auto gradient =
        lrsmc::encoder_backward(config, parameters, pass, mean_gradient, log_variance_gradient);
    benchmark::DoNotOptimize(gradient.data());
  }
  // Forward: Σ_layers 2·C_in·C_out·k per output row and step; backward twice that.
  double flops = 0;
  int in = shape.neurons;
  for (std::size_t layer = 0; layer < shape.kernels.size(); ++layer) {
    const int out = layer < shape.channels.size() ? shape.channels[layer] : 2 * rank;
    flops += 2.0 * in * out * shape.kernels[layer];
    in = out;
  }
  flops *= 3.0 * shape.trials * shape.steps;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_TEMPLATE(BM_EncoderForwardBackward, float)
    ->ArgName("shape")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_EncoderForwardBackward, double)
    ->ArgName("shape")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// The engines' encoder pass (forward and backward) through model::EncoderFactors in float on
/// `threads` threads.
void BM_EncoderFactors(benchmark::State& state) {
  const Shape& shape = shapes[state.range(0)];
  const int threads = int(state.range(1));
  lrsmc::ModelConfig config;
  config.rank = 3;
  config.num_hidden = 8;
  config.num_channels = shape.neurons;
  config.observation = lrsmc::Observation::poisson;
  config.link = lrsmc::Link::softplus;
  config.encoder = lrsmc::EncoderConfig{};
  config.encoder->kernels = shape.kernels;
  config.encoder->channels = shape.channels;
  const lrsmc::Model model = lrsmc::Model::initialise(config, 1);
  lrsmc::SequenceBatch batch;
  batch.num_trials = shape.trials;
  batch.num_steps = shape.steps;
  batch.num_channels = shape.neurons;
  batch.observations.resize(std::size_t(shape.trials) * std::size_t(shape.steps) *
                            std::size_t(shape.neurons));
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    batch.observations[i] = std::floor(2.5 + 2.5 * std::sin(0.37 * double(i)));
  const std::size_t outputs = std::size_t(shape.trials) * std::size_t(shape.steps) * 3;
  const std::vector<double> mean_gradient(outputs, 0.01), variance_gradient(outputs, -0.02);
  std::vector<double> gradient(model.parameters.size(), 0.0);
  for (auto _ : state) {
    const lrsmc::model::EncoderFactors<float> factors(model, batch, shape.steps, threads);
    factors.add_gradient(mean_gradient, variance_gradient, gradient);
    benchmark::DoNotOptimize(gradient.data());
  }
}
BENCHMARK(BM_EncoderFactors)
    ->ArgNames({"shape", "threads"})
    ->Args({0, 1})
    ->Args({0, 2})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
