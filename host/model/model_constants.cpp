// Host side of the per-call constants; see model_constants.hpp.
#include "model/model_constants.hpp"

#include "lrsmc/errors.hpp"

namespace lrsmc::model {

math::ModelShape model_shape(const ModelConfig& config, Proposal proposal) {
  const ParameterLayout layout(config);
  math::ModelShape shape;
  shape.rank = config.rank;
  shape.hidden = config.num_hidden;
  shape.channels = config.num_channels;
  shape.inputs = config.num_inputs;
  shape.nonlinearity = config.nonlinearity;
  shape.observation = config.observation;
  shape.link = config.link;
  shape.readout_from = config.readout_from;
  shape.noise[0] = config.initial_noise;
  shape.noise[1] = config.transition_noise;
  shape.optimal = proposal == Proposal::optimal;
  math::ParameterOffsets& offsets = shape.parameters;
  offsets.m = layout.m;
  offsets.n = layout.n;
  offsets.h = layout.h;
  offsets.w_u = layout.w_u;
  offsets.decay_logit = layout.decay_logit;
  offsets.z_init = layout.z_init;
  offsets.transition_noise = layout.transition_noise;
  offsets.initial_noise = layout.initial_noise;
  offsets.readout_weight = layout.readout_weight;
  offsets.readout_gain = layout.readout_gain;
  offsets.readout_bias = layout.readout_bias;
  offsets.observation_noise = layout.observation_noise;
  offsets.total = layout.encoder >= 0 ? layout.encoder : layout.total_size();
  return shape;
}

std::string constants_error(int status) {
  switch (status) {
    case math::proposal_not_positive_definite:
      return "optimal proposal: the posterior covariance is not positive definite (noise "
             "parameters have diverged)";
    case math::loadings_degenerate:
      return "initial state: mᵀm is singular, so the input's projection onto the latent space "
             "is undefined (the loadings m have collapsed)";
    default:
      break;
  }
  return detail::concat("model constants: build failed with status ", status);
}

template <typename Scalar>
HostConstants<Scalar>::HostConstants(const Model& model, Proposal proposal)
    : shape(model_shape(model.config, proposal)) {
  const math::ConstantsLayout layout(shape);
  constants.assign(std::size_t(layout.size), 0.0);
  std::vector<double> scratch(
      std::size_t(math::constants_scratch_size(shape.rank, shape.channels)));
  const int status =
      math::build_constants(shape, model.parameters.data(), constants.data(), scratch.data());
  if (status != math::constants_ok) throw NumericalError(constants_error(status));
  working.assign(std::size_t(math::ParticleConstantsLayout(shape).size), Scalar(0));
  math::fill_particle_constants(shape, model.parameters.data(), constants.data(), working.data(), 0,
                                1);
}

template struct HostConstants<float>;
template struct HostConstants<double>;

}  // namespace lrsmc::model
