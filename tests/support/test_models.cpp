// Shared helpers of the test suites: small random models, sampled batches, paths, commands.
#include "support/test_models.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <cstdio>
#include <utility>
#include <filesystem>
#include <random>

#include "lrsmc/math/philox.hpp"

namespace lrsmc::testing {

EncoderConfig small_encoder(std::vector<int> kernels, std::vector<int> channels) {
  EncoderConfig encoder;
  encoder.kernels = std::move(kernels);
  encoder.channels = std::move(channels);
  return encoder;
}

ModelConfig with_readout(ModelConfig config, ReadoutFrom readout_from) {
  config.readout_from = readout_from;
  if (readout_from == ReadoutFrom::currents || readout_from == ReadoutFrom::rates)
    config.num_channels = config.num_hidden;
  return config;
}

ModelConfig small_config(Nonlinearity nonlinearity, NoiseType noise, Observation observation,
                         Link link, int num_inputs) {
  ModelConfig config;
  config.rank = 2;
  config.num_hidden = 6;
  config.num_channels = 4;
  config.num_inputs = num_inputs;
  config.nonlinearity = nonlinearity;
  config.transition_noise = noise;
  config.initial_noise = noise;
  config.observation = observation;
  config.link = link;
  config.init_transition_std = 0.3;
  config.init_initial_std = 0.8;
  config.init_observation_std = 0.5;
  return config;
}

std::unique_ptr<Backend> reference_backend() {
  BackendOptions options;
  options.cpu_precision = CpuPrecision::float64;
  return make_backend(BackendKind::cpu, options);
}

std::unique_ptr<Backend> cpu_float_backend() {
  BackendOptions options;
  options.cpu_precision = CpuPrecision::device_float32;
  return make_backend(BackendKind::cpu, options);
}

ModelConfig medium_config(Nonlinearity nonlinearity, NoiseType noise, Observation observation,
                          Link link) {
  ModelConfig config = small_config(nonlinearity, noise, observation, link, 1);
  config.num_hidden = 64;
  config.rank = 3;
  config.num_channels = 16;
  return config;
}

Model random_model(const ModelConfig& config, std::uint64_t seed) {
  Model model = Model::initialise(config, seed);
  std::mt19937_64 generator(seed * 7919 + 13);
  std::normal_distribution<double> normal(0.0, 1.0);
  const ParameterLayout layout(config);
  auto* p = model.parameters.data();
  for (int i = 0; i < config.num_hidden; ++i) p[layout.h + i] = 0.3 * normal(generator);
  // Larger loadings so that the nonlinearity's kinks are crossed.
  for (int i = 0; i < config.num_hidden * config.rank; ++i) {
    p[layout.m + i] *= 1.5;
    p[layout.n + i] *= 1.5;
  }
  if (layout.z_init >= 0)
    for (int r = 0; r < config.rank; ++r) p[layout.z_init + r] = 0.2 * normal(generator);
  const auto perturb_noise = [&](std::int64_t offset, NoiseType type) {
    const int rank = config.rank;
    if (type == NoiseType::full) {
      for (int r = 0; r < rank; ++r)
        for (int s = 0; s < r; ++s) p[offset + r * rank + s] = 0.1 * normal(generator);
      for (int r = 0; r < rank; ++r) p[offset + r * rank + r] += 0.2 * normal(generator);
    } else {
      for (int r = 0; r < rank; ++r) p[offset + r] += 0.2 * normal(generator);
    }
  };
  perturb_noise(layout.transition_noise, config.transition_noise);
  perturb_noise(layout.initial_noise, config.initial_noise);
  for (int i = 0; i < config.num_channels; ++i) {
    p[layout.readout_bias + i] = 0.2 * normal(generator);
    if (layout.observation_noise >= 0) p[layout.observation_noise + i] += 0.2 * normal(generator);
  }
  // One-to-one gains away from their initial 1.
  if (layout.readout_gain >= 0)
    for (int i = 0; i < config.num_channels; ++i)
      p[layout.readout_gain + i] = 1.0 + 0.3 * normal(generator);
  if (config.observation == Observation::poisson) {
    // Moderate rates: scale the read-out down and lift the bias.
    const std::int64_t weights =
        layout.readout_weight >= 0 ? layout.block("readout_weight").size : 0;
    for (std::int64_t i = 0; i < weights; ++i) p[layout.readout_weight + i] *= 0.5;
    if (layout.readout_gain >= 0)
      for (int i = 0; i < config.num_channels; ++i) p[layout.readout_gain + i] *= 0.5;
    for (int i = 0; i < config.num_channels; ++i) p[layout.readout_bias + i] += 0.7;
  }
  p[layout.decay_logit] = std::log(-std::log(0.8));
  return model;
}

std::vector<std::pair<std::string, Model>> readout_models(std::uint64_t seed) {
  std::vector<std::pair<std::string, Model>> models;
  for (const ReadoutFrom readout_from :
       {ReadoutFrom::z_and_v, ReadoutFrom::currents, ReadoutFrom::rates})
    for (const Observation observation : {Observation::gaussian, Observation::poisson}) {
      const Link link = observation == Observation::poisson ? Link::softplus : Link::identity;
      models.emplace_back(
          to_string(readout_from) + ", " + to_string(observation),
          random_model(with_readout(medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                  observation, link),
                                    readout_from),
                       seed));
    }
  return models;
}

std::vector<EncoderCase> encoder_cases() {
  std::vector<EncoderCase> cases;
  const auto add = [&cases](Observation observation, NoiseType noise, Proposal proposal,
                            int t_forward) {
    ModelConfig config = medium_config(
        Nonlinearity::clipped_relu, noise, observation,
        observation == Observation::poisson ? Link::softplus : Link::identity);
    config.encoder = small_encoder({5, 3}, {6});
    config.encoder->init_scale = 0.5;
    FilterOptions options;
    options.proposal = proposal;
    options.t_forward = t_forward;
    cases.push_back({to_string(proposal) + ", " + to_string(observation) + ", " +
                         to_string(noise) + " noise, t_forward " + std::to_string(t_forward),
                     random_model(config, 12), options});
  };
  add(Observation::poisson, NoiseType::full, Proposal::encoder, 0);
  add(Observation::poisson, NoiseType::diag, Proposal::encoder, 0);
  add(Observation::poisson, NoiseType::full, Proposal::encoder, 3);
  add(Observation::poisson, NoiseType::full, Proposal::bootstrap, 3);
  add(Observation::gaussian, NoiseType::full, Proposal::optimal, 3);
  return cases;
}

SequenceBatch sampled_batch(const Model& model, int num_trials, int num_steps, std::uint64_t seed) {
  SequenceBatch batch;
  batch.num_trials = num_trials;
  batch.num_steps = num_steps;
  batch.num_channels = model.config.num_channels;
  batch.num_inputs = model.config.num_inputs;
  for (int trial = 0; trial < num_trials; ++trial)
    for (int step = 0; step < num_steps; ++step)
      for (int j = 0; j < batch.num_inputs; ++j)
        batch.inputs.push_back(std::sin(0.3 * step + 1.7 * j + trial) +
                               0.3 * math::standard_normal(seed, std::uint32_t(trial),
                                                           std::uint32_t(step), std::uint32_t(j),
                                                           math::DrawStream::generative, 7));
  auto backend = make_backend(BackendKind::cpu);
  batch.observations = backend->sample(model, num_trials, num_steps, batch.inputs, seed).observations;
  return batch;
}

SequenceBatch with_missing(SequenceBatch batch, std::size_t first, std::size_t stride) {
  for (std::size_t i = first; i < batch.observations.size(); i += stride)
    batch.observations[i] = std::numeric_limits<double>::quiet_NaN();
  batch.allow_missing = true;
  return batch;
}

std::pair<Model, SequenceBatch> missing_case(Observation observation) {
  const Link link = observation == Observation::poisson ? Link::softplus : Link::identity;
  Model model = random_model(
      medium_config(Nonlinearity::clipped_relu, NoiseType::full, observation, link), 6);
  SequenceBatch batch = with_missing(sampled_batch(model, 3, 9, 2), 0, 7);
  return {std::move(model), std::move(batch)};
}

std::string shared_data_dir() {
  const std::filesystem::path candidate =
      std::filesystem::path(LRSMC_SOURCE_DIR).parent_path() / "shared" / "data";
  return std::filesystem::is_directory(candidate) ? candidate.string() : std::string();
}

int run_command(const std::string& command, std::string& output) {
  output.clear();
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buffer{};
  std::size_t count = 0;
  while ((count = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), count);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string make_temp_dir(const std::string& prefix) {
  static int counter = 0;
  std::random_device device;
  const auto path = std::filesystem::temp_directory_path() /
                    (prefix + "-" + std::to_string(device()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(path);
  return path.string();
}

}  // namespace lrsmc::testing
