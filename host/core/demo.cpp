// The built-in oscillator teacher of the demo (see include/lrsmc/demo.hpp).
#include "lrsmc/demo.hpp"

#include <cmath>

#include "lrsmc/math/philox.hpp"

namespace lrsmc {

Model oscillator_teacher(std::uint64_t seed) {
  ModelConfig config;
  config.rank = 2;
  config.num_hidden = 20;
  config.num_channels = 20;
  config.nonlinearity = Nonlinearity::relu;
  config.transition_noise = NoiseType::full;
  config.initial_noise = NoiseType::full;
  config.initial_state = InitialState::trainable;
  Model model = Model::initialise(config, seed);
  const ParameterLayout layout(config);
  double* p = model.parameters.data();
  const int hidden = config.num_hidden;
  const double pi = 3.14159265358979323846;
  const double gain = 0.4, rotation = 0.8, decay = 0.9;
  for (int i = 0; i < hidden; ++i) {
    const double angle = 2 * pi * i / hidden;
    p[layout.m + i * 2 + 0] = std::cos(angle);
    p[layout.m + i * 2 + 1] = std::sin(angle);
    p[layout.h + i] = -1.0;
    // n_i = (c/N) R_ψ m_i
    p[layout.n + 0 * hidden + i] = gain / hidden * std::cos(angle + rotation);
    p[layout.n + 1 * hidden + i] = gain / hidden * std::sin(angle + rotation);
  }
  p[layout.decay_logit] = std::log(-std::log(decay));
  for (int r = 0; r < 2; ++r) {
    p[layout.z_init + r] = 0.0;
    p[layout.transition_noise + r * 2 + r] = 2 * std::log(0.05);
    p[layout.transition_noise + r * 2 + (1 - r)] = 0.0;
    p[layout.initial_noise + r * 2 + r] = 2 * std::log(1.0);
    p[layout.initial_noise + r * 2 + (1 - r)] = 0.0;
  }
  for (int i = 0; i < 2 * config.num_channels; ++i)
    p[layout.readout_weight + i] =
        math::standard_normal(seed, 0xDE30u, 0, 0, math::DrawStream::generative, std::uint32_t(i));
  for (int i = 0; i < config.num_channels; ++i) {
    p[layout.readout_bias + i] = 0.0;
    p[layout.observation_noise + i] = 2 * std::log(0.1);
  }
  return model;
}

}  // namespace lrsmc
