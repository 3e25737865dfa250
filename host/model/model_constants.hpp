// Host side of the per-call constants (include/lrsmc/math/model_constants.hpp): a model's shape
// for the shared maths, the constants built on the host for the CPU engines, and the message of
// a failed build, shared by both backends.
#pragma once

#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/math/model_constants.hpp"

namespace lrsmc::model {

/// The shape the shared maths read (sizes, kinds, parameter offsets) of a configuration, with
/// the optimal proposal's constants when `proposal` is optimal.
[[nodiscard]] math::ModelShape model_shape(const ModelConfig& config, Proposal proposal);

/// The NumericalError message of a failed constants build (math::ConstantsStatus).
[[nodiscard]] std::string constants_error(int status);

/// Constants of one call built on the host: float64 constants and the working-precision copy.
/// Throws NumericalError when the build fails.
template <typename Scalar>
struct HostConstants {
  math::ModelShape shape;
  std::vector<double> constants;
  std::vector<Scalar> working;

  HostConstants(const Model& model, Proposal proposal);
  [[nodiscard]] math::ParticleModel<Scalar> particle_model() const {
    return math::particle_model(shape, working.data());
  }
  [[nodiscard]] math::PhaseConstants<Scalar> phase(int phase) const {
    return math::phase_constants(shape, working.data(), phase);
  }
};

}  // namespace lrsmc::model
