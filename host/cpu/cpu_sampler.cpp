// Sampling from the generative model on the CPU (method.md §1, §6.1 with a prior start): the
// shared transition and read-out of include/lrsmc/math/, Philox draws of the generative and
// observation streams, Poisson counts by inversion or transformed rejection.
#include <cmath>

#include "cpu/cpu_engine.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cpu {
namespace {

using math::DrawStream;

/// Poisson draw by inversion (λ < 30) or the PTRS transformed rejection of Hörmann (1993),
/// fed by the Philox stream of (trial, step, channel).
double poisson_draw(double rate, std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                    std::uint32_t channel) {
  std::uint32_t index = 0;
  const auto next_uniform = [&]() {
    return math::uniform(seed, trial, step, channel, DrawStream::observation, index++);
  };
  if (rate <= 0) return 0;
  if (rate < 30) {
    double probability = std::exp(-rate), cumulative = probability, u = next_uniform();
    double count = 0;
    while (u > cumulative && count < 1000) {
      count += 1;
      probability *= rate / count;
      cumulative += probability;
    }
    return count;
  }
  const double slam = std::sqrt(rate), loglam = std::log(rate);
  const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b,
               inverse_alpha = 1.1239 + 1.1328 / (b - 3.4), v_r = 0.9277 - 3.6224 / (b - 2);
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const double u = next_uniform() - 0.5, v = next_uniform(), us = 0.5 - std::fabs(u);
    const double k = std::floor((2 * a / us + b) * u + rate + 0.43);
    if (us >= 0.07 && v <= v_r) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (std::log(v) + std::log(inverse_alpha) - std::log(a / (us * us) + b) <=
        -rate + k * loglam - std::lgamma(k + 1))
      return k;
  }
  return std::round(rate);
}

/// λ = g(η) of every channel at latent state z: `currents` are the units' input currents
/// W_u v_t and `input` v_t (both null without inputs); `offsets` is scratch of one per channel.
template <typename Scalar>
void step_rates(const model::HostConstants<Scalar>& constants, const Scalar* z,
                const Scalar* currents, const double* input, Scalar* offsets, double* rates) {
  const math::ModelShape& shape = constants.shape;
  const math::ParticleModel<Scalar> particle_model = constants.particle_model();
  // The read-out's offset at this step: W_u v_t one to one, B_vᵀ v_t with z_and_v.
  const Scalar* offset = nullptr;
  if (currents != nullptr && math::one_to_one(particle_model)) offset = currents;
  if (math::readout_input_rows(shape) > 0) {
    for (int i = 0; i < shape.channels; ++i)
      offsets[i] = math::readout_input_offset(shape, constants.working.data(), input, i);
    offset = offsets;
  }
  for (int i = 0; i < shape.channels; ++i)
    rates[i] = static_cast<double>(
        math::link_response(shape.link, math::readout_response(particle_model, z, offset, i).eta)
            .rate);
}

}  // namespace

template <typename Scalar>
SampleResult sample_trials(const Model& model, int trials, int steps,
                           const std::vector<double>& inputs, std::uint64_t seed, int first_trial,
                           const std::vector<double>& initial_states) {
  const model::HostConstants<Scalar> constants(model, Proposal::bootstrap);
  const math::ModelShape& shape = constants.shape;
  const math::ParticleModel<Scalar> particle_model = constants.particle_model();
  const int R = shape.rank, D = shape.channels, N = shape.hidden, U = shape.inputs;
  SampleResult result;
  result.latents.assign(std::size_t(trials) * steps * R, 0.0);
  result.rates.assign(std::size_t(trials) * steps * D, 0.0);
  result.observations.assign(std::size_t(trials) * steps * D, 0.0);
  std::vector<Scalar> z(static_cast<std::size_t>(R)), mean(static_cast<std::size_t>(R)),
      noise(static_cast<std::size_t>(R)), lanes(static_cast<std::size_t>(R)),
      currents(std::size_t(U > 0 ? N : 0)), previous_currents(currents.size()),
      readout_offsets(static_cast<std::size_t>(D));
  std::vector<double> projection(static_cast<std::size_t>(R));
  for (int trial = 0; trial < trials; ++trial) {
    const auto address = std::uint32_t(first_trial + trial);  // the trial's random-number address
    for (int step = 0; step < steps; ++step) {
      if (U > 0) {
        previous_currents.swap(currents);
        const double* input = inputs.data() + (std::size_t(trial) * steps + step) * U;
        for (int i = 0; i < N; ++i)
          currents[std::size_t(i)] = math::input_current(shape, constants.working.data(), input, i);
      }
      if (step == 0 && !initial_states.empty()) {  // the given state
        for (int r = 0; r < R; ++r)
          z[std::size_t(r)] =
              static_cast<Scalar>(initial_states[std::size_t(trial) * R + std::size_t(r)]);
      } else {
        if (step == 0) {
          math::initial_mean(shape, model.parameters.data(), constants.constants.data(),
                             U > 0 ? currents.data() : nullptr, mean.data(), projection.data());
        } else {
          math::transition_mean(particle_model, z.data(),
                                U > 0 ? previous_currents.data() : nullptr, 1, lanes.data(),
                                mean.data());
        }
        // z = μ + L ξ, the bootstrap proposal's draw, on the generative stream's normals.
        for (int r = 0; r < R; ++r)
          noise[std::size_t(r)] = static_cast<Scalar>(
              math::standard_normal(seed, address, std::uint32_t(step), 0, DrawStream::generative,
                                    std::uint32_t(r)));
        (void)math::propose<Scalar>(false, R, constants.phase(math::phase_of(step)), nullptr,
                                    mean.data(), noise.data(), lanes.data(), z.data());
      }
      const std::size_t row = std::size_t(trial) * steps + step;
      for (int r = 0; r < R; ++r)
        result.latents[row * R + r] = static_cast<double>(z[std::size_t(r)]);
      step_rates(constants, z.data(), U > 0 ? currents.data() : nullptr,
                 U > 0 ? inputs.data() + row * U : nullptr, readout_offsets.data(),
                 result.rates.data() + row * D);
      for (int i = 0; i < D; ++i) {
        const double rate = result.rates[row * D + i];
        if (shape.observation == Observation::gaussian) {
          const double std_dev =
              std::exp(0.5 * static_cast<double>(particle_model.log_variance[i]));
          result.observations[row * D + i] =
              rate + std_dev * math::standard_normal(seed, address, std::uint32_t(step),
                                                     std::uint32_t(i), DrawStream::observation, 0);
        } else {
          result.observations[row * D + i] =
              poisson_draw(rate, seed, address, std::uint32_t(step), std::uint32_t(i));
        }
      }
    }
  }
  return result;
}

template SampleResult sample_trials<float>(const Model&, int, int, const std::vector<double>&,
                                           std::uint64_t, int, const std::vector<double>&);
template SampleResult sample_trials<double>(const Model&, int, int, const std::vector<double>&,
                                            std::uint64_t, int, const std::vector<double>&);

}  // namespace lrsmc::cpu

namespace lrsmc {

std::vector<double> observation_means(const Model& model, int trials, int steps,
                                      const std::vector<double>& latents,
                                      const std::vector<double>& inputs) {
  const ModelConfig& config = model.config;
  const int R = config.rank, D = config.num_channels, N = config.num_hidden, U = config.num_inputs;
  LRSMC_REQUIRE(trials >= 0 && steps >= 0, "observation_means needs trials and steps ≥ 0; got ",
                trials, " and ", steps);
  const std::size_t cells = std::size_t(trials) * std::size_t(steps);
  LRSMC_REQUIRE(latents.size() == cells * std::size_t(R), "the latents have ", latents.size(),
                " values; expected ", cells * std::size_t(R), " (", trials, " trials × ", steps,
                " steps × rank ", R, ")");
  LRSMC_REQUIRE(inputs.size() == cells * std::size_t(U), "the inputs have ", inputs.size(),
                " values; expected ", cells * std::size_t(U), " (", trials, " trials × ", steps,
                " steps × ", U, " inputs)");
  const model::HostConstants<double> constants(model, Proposal::bootstrap);
  std::vector<double> rates(cells * std::size_t(D)), currents(std::size_t(U > 0 ? N : 0)),
      offsets(static_cast<std::size_t>(D));
  for (std::size_t row = 0; row < cells; ++row) {
    const double* input = U > 0 ? inputs.data() + row * std::size_t(U) : nullptr;
    for (int i = 0; U > 0 && i < N; ++i)
      currents[std::size_t(i)] =
          math::input_current(constants.shape, constants.working.data(), input, i);
    cpu::step_rates(constants, latents.data() + row * std::size_t(R),
                    U > 0 ? currents.data() : nullptr, input, offsets.data(),
                    rates.data() + row * std::size_t(D));
  }
  return rates;
}

}  // namespace lrsmc
