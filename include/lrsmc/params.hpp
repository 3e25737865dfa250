// Trainable parameters: one flat float64 buffer with named views (offsets), method.md §1.
// The optimizer updates the flat buffer in one pass; a model file stores each view as an array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/config.hpp"

namespace lrsmc {

/// One named parameter array inside the flat buffer.
struct ParameterBlock {
  std::string name;                 ///< file name of the array, e.g. "m"
  std::vector<std::int64_t> shape;  ///< shape as stored (row-major)
  std::int64_t offset = 0;          ///< first element in the flat buffer
  std::int64_t size = 0;            ///< number of elements
};

/// Offsets of every parameter for a configuration. Layouts (row-major):
///   m (N, R)              left loadings: X = m z + w_u u
///   n (R, N)              right loadings: μ = a z + n φ(X)
///   h (N)                 neuron bias
///   w_u (N, D_u)          input weights (absent when D_u = 0)
///   decay_logit (1)       θ_a with a = exp(−exp(θ_a))
///   z_init (R)            initial-state mean (only when initial_state = trainable)
///   transition_noise      (R, R) chol_embed parameter for full, (R) log-variances for diag
///   initial_noise         the same for the initial state
///   readout_weight (R, D) η = readout_weightᵀ z + readout_bias (readout_from z);
///                         (D_u + R, D), η = readout_weightᵀ [v; z] + readout_bias, the
///                         first D_u rows acting on the inputs (z_and_v); absent one to one
///   readout_gain (D)      η_i = g_i X_i + b_i or g_i φ(X_i; h_i) + b_i (currents, rates)
///   readout_bias (D)
///   observation_noise (D) log-variances (Gaussian observations only)
///   encoder_…             the encoder's blocks (lrsmc/encoder.hpp, encoder_blocks), when the
///                         model has an encoder
class ParameterLayout {
 public:
  explicit ParameterLayout(const ModelConfig& config);

  [[nodiscard]] const std::vector<ParameterBlock>& blocks() const { return blocks_; }
  /// The block called `name`; throws InvalidInput when the configuration has none.
  [[nodiscard]] const ParameterBlock& block(const std::string& name) const;
  [[nodiscard]] bool has(const std::string& name) const;
  [[nodiscard]] std::int64_t total_size() const { return total_size_; }

  // Offsets for the hot loops (−1 when absent).
  std::int64_t m = -1, n = -1, h = -1, w_u = -1, decay_logit = -1, z_init = -1,
               transition_noise = -1, initial_noise = -1, readout_weight = -1,
               readout_gain = -1, readout_bias = -1, observation_noise = -1;
  /// The encoder's blocks, contiguous in encoder_blocks order (−1 and 0 without an encoder).
  std::int64_t encoder = -1, encoder_size = 0;

 private:
  std::int64_t add(const std::string& name, std::vector<std::int64_t> shape);
  std::vector<ParameterBlock> blocks_;
  std::int64_t total_size_ = 0;
};

/// A model: its configuration and its parameters in ParameterLayout(config) order.
struct Model {
  ModelConfig config;
  std::vector<double> parameters;

  /// Initialisation of method.md §1.9, reproducible from `seed`.
  [[nodiscard]] static Model initialise(const ModelConfig& config, std::uint64_t seed);

  [[nodiscard]] ParameterLayout layout() const { return ParameterLayout(config); }
  /// Copy of one named block.
  [[nodiscard]] std::vector<double> get(const std::string& name) const;
  /// Overwrites one named block; throws InvalidInput on a size mismatch.
  void set(const std::string& name, const std::vector<double>& values);
  /// a = exp(−exp(θ_a)).
  [[nodiscard]] double decay() const;
  /// Throws InvalidInput when the buffer size is wrong or a value is not finite.
  void validate(const std::string& source = "model") const;
};

/// Writes a model file: an .npz holding every parameter block (float64) and a text entry
/// "config" with the configuration as JSON. Atomic (temporary file, then rename).
void save_model(const std::string& path, const Model& model);
/// Reads a model file written by save_model or by numpy (see README, "Model files").
/// Throws IoError or InvalidInput naming the file, the entry and the value.
[[nodiscard]] Model load_model(const std::string& path);

/// JSON text of a configuration, and back (unknown keys are rejected, missing keys default).
[[nodiscard]] std::string config_to_json(const ModelConfig& config);
[[nodiscard]] ModelConfig config_from_json(const std::string& json_text, const std::string& source);

}  // namespace lrsmc
