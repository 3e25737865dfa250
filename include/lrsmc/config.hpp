// Model and inference configuration: the options of method.md §1 (model) and §3 (inference),
// with string spellings equal to the command line's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lrsmc {

/// Unit nonlinearity φ(X; h), method.md §1.2.
enum class Nonlinearity { relu, clipped_relu, tanh, identity };
/// Noise covariance parameterisation, method.md §1.6: full Cholesky (chol_embed) or diagonal.
enum class NoiseType { full, diag };
/// Observation likelihood, method.md §1.7.
enum class Observation { gaussian, poisson };
/// Output nonlinearity g(η) of the read-out, method.md §1.7.
enum class Link { identity, exp, softplus, relu };
/// What the read-out reads, method.md §1.7: the latent state (η = Bᵀz + b), the inputs and the
/// latent state (η = Bᵀ[v; z] + b, v before z), or each unit one to one (channels = hidden
/// units) through a per-unit gain g and bias b: its current (η_i = g_i X_i + b_i) or its rate
/// (η_i = g_i φ(X_i; h_i) + b_i), with X = m z + W_u v at the observation's step.
enum class ReadoutFrom { z, z_and_v, currents, rates };
/// Proposal of the particle filter, method.md §3.2 (bootstrap), §3.3 (encoder: the model's
/// convolutional encoder, for any read-out) and §3.4 (optimal, linear-Gaussian read-outs).
enum class Proposal { bootstrap, optimal, encoder };
/// Resampling scheme, method.md §3.5.
enum class Resampling { systematic, stratified, multinomial };
/// Mean of the initial state, method.md §1.5.
enum class InitialState { zero, trainable };
/// Activation between the encoder's convolutions, method.md §4: GELU (exact erf form) or
/// LeakyReLU with slope 0.1.
enum class EncoderActivation { gelu, leaky_relu };
/// Where an encoder convolution pads its input, method.md §4.
enum class EncoderPadding { causal, acausal, windowed };
/// What the padding holds (PyTorch F.pad modes): zeros, the mirror image without repeating the
/// edge, the edge value, or the other end of the sequence.
enum class PaddingMode { zeros, reflect, replicate, circular };

/// The convolutional encoder of the encoder proposal, method.md §4 (lrsmc/encoder.hpp).
struct EncoderConfig {
  /// Kernel sizes k_1 … k_L of the convolutions; the last one is the heads'. The paper's
  /// spike-count runs use 21,11,1 (N = 40), 150,11,1 (hippocampus) and 14,4,2 (macaque).
  std::vector<int> kernels = {21, 11, 1};
  /// Output channels c_1 … c_{L−1} of the convolutions before the heads (one fewer than kernels).
  std::vector<int> channels = {64, 64};
  EncoderActivation activation = EncoderActivation::gelu;
  EncoderPadding padding = EncoderPadding::causal;
  PaddingMode padding_mode = PaddingMode::zeros;
  /// The encoder's initial standard deviation: the log-variance head's bias starts at
  /// 2·ln(init_scale) (method.md §4).
  double init_scale = 0.1;
  /// A log-variance per latent dimension, constant over time, instead of the log-variance head.
  bool constant_variance = false;
};

/// Architecture and initialisation of a model. Defaults are the paper's EEG setting.
struct ModelConfig {
  int rank = 3;            ///< R, latent dimension
  int num_hidden = 512;    ///< N, RNN units
  int num_channels = 64;   ///< D, observed channels
  int num_inputs = 0;      ///< D_u, input dimension (0: autonomous)
  Nonlinearity nonlinearity = Nonlinearity::clipped_relu;
  NoiseType transition_noise = NoiseType::full;
  NoiseType initial_noise = NoiseType::full;
  Observation observation = Observation::gaussian;
  Link link = Link::identity;
  ReadoutFrom readout_from = ReadoutFrom::z;
  InitialState initial_state = InitialState::trainable;
  // Initialisation (method.md §1.9); not used once a model has parameters.
  double init_decay = 0.9;
  double init_transition_std = 0.1;
  double init_initial_std = 1.0;
  double init_observation_std = 0.1;
  /// The encoder of the encoder proposal, trained with the model and stored in its file;
  /// absent for models filtered with the bootstrap or optimal proposal only.
  std::optional<EncoderConfig> encoder;
};

/// Options of one particle-filter run.
struct FilterOptions {
  int num_particles = 10;
  Proposal proposal = Proposal::optimal;
  Resampling resampling = Resampling::systematic;
  /// Resample when the effective sample size falls below threshold·K. 1 (default) resamples
  /// after every step as the reference does; 0 never resamples (weights accumulate).
  double resample_threshold = 1.0;
  /// The last t_forward steps of each trial are a forecast (method.md §3.3, t_forward): their
  /// particles are drawn from the transition alone, whatever the proposal, and weighed by their
  /// observations, which the encoder does not see.
  int t_forward = 0;
};

[[nodiscard]] std::string to_string(Nonlinearity value);
[[nodiscard]] std::string to_string(NoiseType value);
[[nodiscard]] std::string to_string(Observation value);
[[nodiscard]] std::string to_string(Link value);
[[nodiscard]] std::string to_string(ReadoutFrom value);
[[nodiscard]] std::string to_string(Proposal value);
[[nodiscard]] std::string to_string(Resampling value);
[[nodiscard]] std::string to_string(InitialState value);
[[nodiscard]] std::string to_string(EncoderActivation value);
[[nodiscard]] std::string to_string(EncoderPadding value);
[[nodiscard]] std::string to_string(PaddingMode value);

/// Parsers accept the to_string spellings and throw InvalidInput naming `field` otherwise.
[[nodiscard]] Nonlinearity parse_nonlinearity(const std::string& text, const std::string& field = "nonlinearity");
[[nodiscard]] NoiseType parse_noise_type(const std::string& text, const std::string& field = "noise");
[[nodiscard]] Observation parse_observation(const std::string& text, const std::string& field = "observation");
[[nodiscard]] Link parse_link(const std::string& text, const std::string& field = "link");
[[nodiscard]] ReadoutFrom parse_readout_from(const std::string& text,
                                             const std::string& field = "readout_from");
[[nodiscard]] Proposal parse_proposal(const std::string& text, const std::string& field = "proposal");
[[nodiscard]] Resampling parse_resampling(const std::string& text, const std::string& field = "resampling");
[[nodiscard]] InitialState parse_initial_state(const std::string& text, const std::string& field = "initial_state");
[[nodiscard]] EncoderActivation parse_encoder_activation(const std::string& text,
                                                         const std::string& field = "encoder_activation");
[[nodiscard]] EncoderPadding parse_encoder_padding(const std::string& text,
                                                   const std::string& field = "encoder_padding");
[[nodiscard]] PaddingMode parse_padding_mode(const std::string& text,
                                             const std::string& field = "encoder_padding_mode");

/// The proposal "auto" stands for: the encoder proposal when the model has an encoder, the optimal
/// proposal for a linear-Gaussian read-out of the latent state, the bootstrap proposal otherwise.
[[nodiscard]] Proposal default_proposal(const ModelConfig& config);
/// The same for data where not `every_observation` is present (missing values, held-out
/// channels): the bootstrap proposal, since the optimal and encoder proposals need them all.
[[nodiscard]] Proposal default_proposal(const ModelConfig& config, bool every_observation);

/// Throws InvalidInput when a field is out of range or options are incompatible.
void validate(const ModelConfig& config, const std::string& source = "model config");
void validate(const FilterOptions& options, const ModelConfig& config,
              const std::string& source = "filter options");

}  // namespace lrsmc
