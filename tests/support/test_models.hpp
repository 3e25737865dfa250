// Small random models and batches shared by the test suites.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc::testing {

/// A small configuration (R = 2, N = 6, D = 4 unless given) with the chosen options.
ModelConfig small_config(Nonlinearity nonlinearity, NoiseType noise, Observation observation,
                         Link link, int num_inputs = 0);

/// An encoder of the given kernels and channels, the other settings at their defaults.
EncoderConfig small_encoder(std::vector<int> kernels, std::vector<int> channels);
/// `config` reading out `readout_from`, with a channel per unit for the one-to-one read-outs.
ModelConfig with_readout(ModelConfig config, ReadoutFrom readout_from);

/// The CPU backend in float32, which mirrors the CUDA kernels' arithmetic.
std::unique_ptr<Backend> cpu_float_backend();

/// The CPU backend in float64: the reference of the finite-difference and accuracy checks.
std::unique_ptr<Backend> reference_backend();

/// The GPU comparisons' shape: small_config with one input, R = 3, N = 64, D = 16 (more than
/// one warp of units, rank-specialised kernels).
ModelConfig medium_config(Nonlinearity nonlinearity, NoiseType noise, Observation observation,
                          Link link);

/// Model::initialise plus perturbations that make every parameter matter (non-zero bias,
/// correlated full covariances, moderate noise).
Model random_model(const ModelConfig& config, std::uint64_t seed);
/// A labelled model of the engine comparisons' shape (medium_config: clipped relu, full noise,
/// one input) for each read-out beyond Bᵀz (z_and_v, currents, rates) × Gaussian (identity
/// link) and Poisson (softplus) observations, random_model(…, seed) each.
std::vector<std::pair<std::string, Model>> readout_models(std::uint64_t seed);
/// A labelled model and filter options of the engine comparisons' shape (one input) for the
/// encoder proposal (a small encoder; Poisson, full and diagonal noise) and for t_forward
/// forecast steps under every proposal.
struct EncoderCase {
  std::string label;
  Model model;
  FilterOptions options;
};
std::vector<EncoderCase> encoder_cases();

/// Observations sampled from `model` itself (inputs, if any, are smooth random signals).
SequenceBatch sampled_batch(const Model& model, int num_trials, int num_steps, std::uint64_t seed);

/// `batch` with every `stride`-th observation from `first` missing (NaN, allow_missing).
SequenceBatch with_missing(SequenceBatch batch, std::size_t first, std::size_t stride);

/// The GPU comparisons' case of missing observations: medium_config (clipped relu, full noise;
/// Poisson with softplus, Gaussian with identity), 3 trials × 9 steps, every 7th missing.
std::pair<Model, SequenceBatch> missing_case(Observation observation);

/// Path of ../shared/data (next to the checkout), or "" when it is absent.
std::string shared_data_dir();

/// Runs a shell command; returns its exit status and fills `output` with stdout+stderr.
int run_command(const std::string& command, std::string& output);

/// A fresh empty directory under the system temporary directory.
std::string make_temp_dir(const std::string& prefix);

}  // namespace lrsmc::testing
