// String spellings, parsers and validation of the configuration enums and structs.
#include "lrsmc/config.hpp"

#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc {
namespace {

template <typename Enum, std::size_t Count>
Enum parse_enum(const std::string& text, const std::string& field,
                const std::array<std::pair<const char*, Enum>, Count>& choices) {
  std::string expected;
  for (const auto& [spelling, value] : choices) {
    if (text == spelling) return value;
    expected += (expected.empty() ? "" : ", ") + std::string(spelling);
  }
  throw InvalidInput(detail::concat(field, " is not recognised; got '", text, "', expected one of ",
                                    expected));
}

constexpr std::array<std::pair<const char*, Nonlinearity>, 4> nonlinearity_names{{
    {"relu", Nonlinearity::relu}, {"clipped_relu", Nonlinearity::clipped_relu},
    {"tanh", Nonlinearity::tanh}, {"identity", Nonlinearity::identity}}};
constexpr std::array<std::pair<const char*, NoiseType>, 2> noise_names{{
    {"full", NoiseType::full}, {"diag", NoiseType::diag}}};
constexpr std::array<std::pair<const char*, Observation>, 2> observation_names{{
    {"gaussian", Observation::gaussian}, {"poisson", Observation::poisson}}};
constexpr std::array<std::pair<const char*, Link>, 4> link_names{{
    {"identity", Link::identity}, {"exp", Link::exp}, {"softplus", Link::softplus},
    {"relu", Link::relu}}};
constexpr std::array<std::pair<const char*, ReadoutFrom>, 4> readout_from_names{{
    {"z", ReadoutFrom::z}, {"z_and_v", ReadoutFrom::z_and_v}, {"currents", ReadoutFrom::currents},
    {"rates", ReadoutFrom::rates}}};
constexpr std::array<std::pair<const char*, Proposal>, 3> proposal_names{{
    {"bootstrap", Proposal::bootstrap}, {"optimal", Proposal::optimal},
    {"encoder", Proposal::encoder}}};
constexpr std::array<std::pair<const char*, Resampling>, 3> resampling_names{{
    {"systematic", Resampling::systematic}, {"stratified", Resampling::stratified},
    {"multinomial", Resampling::multinomial}}};
constexpr std::array<std::pair<const char*, InitialState>, 2> initial_state_names{{
    {"zero", InitialState::zero}, {"trainable", InitialState::trainable}}};

constexpr std::array<std::pair<const char*, EncoderActivation>, 2> activation_names{{
    {"gelu", EncoderActivation::gelu}, {"leaky_relu", EncoderActivation::leaky_relu}}};
constexpr std::array<std::pair<const char*, EncoderPadding>, 3> padding_names{{
    {"causal", EncoderPadding::causal}, {"acausal", EncoderPadding::acausal},
    {"windowed", EncoderPadding::windowed}}};
constexpr std::array<std::pair<const char*, PaddingMode>, 4> padding_mode_names{{
    {"zeros", PaddingMode::zeros}, {"reflect", PaddingMode::reflect},
    {"replicate", PaddingMode::replicate}, {"circular", PaddingMode::circular}}};

template <typename Enum, std::size_t Count>
std::string name_of(Enum value, const std::array<std::pair<const char*, Enum>, Count>& choices) {
  for (const auto& [spelling, candidate] : choices)
    if (candidate == value) return spelling;
  return "unknown";
}

}  // namespace

std::string to_string(Nonlinearity value) { return name_of(value, nonlinearity_names); }
std::string to_string(NoiseType value) { return name_of(value, noise_names); }
std::string to_string(Observation value) { return name_of(value, observation_names); }
std::string to_string(Link value) { return name_of(value, link_names); }
std::string to_string(ReadoutFrom value) { return name_of(value, readout_from_names); }
std::string to_string(Proposal value) { return name_of(value, proposal_names); }
std::string to_string(Resampling value) { return name_of(value, resampling_names); }
std::string to_string(InitialState value) { return name_of(value, initial_state_names); }
std::string to_string(EncoderActivation value) { return name_of(value, activation_names); }
std::string to_string(EncoderPadding value) { return name_of(value, padding_names); }
std::string to_string(PaddingMode value) { return name_of(value, padding_mode_names); }

Nonlinearity parse_nonlinearity(const std::string& text, const std::string& field) {
  return parse_enum(text, field, nonlinearity_names);
}
NoiseType parse_noise_type(const std::string& text, const std::string& field) {
  return parse_enum(text, field, noise_names);
}
Observation parse_observation(const std::string& text, const std::string& field) {
  return parse_enum(text, field, observation_names);
}
Link parse_link(const std::string& text, const std::string& field) {
  return parse_enum(text, field, link_names);
}
ReadoutFrom parse_readout_from(const std::string& text, const std::string& field) {
  return parse_enum(text, field, readout_from_names);
}
Proposal parse_proposal(const std::string& text, const std::string& field) {
  return parse_enum(text, field, proposal_names);
}
Resampling parse_resampling(const std::string& text, const std::string& field) {
  return parse_enum(text, field, resampling_names);
}
EncoderActivation parse_encoder_activation(const std::string& text, const std::string& field) {
  return parse_enum(text, field, activation_names);
}
EncoderPadding parse_encoder_padding(const std::string& text, const std::string& field) {
  return parse_enum(text, field, padding_names);
}
PaddingMode parse_padding_mode(const std::string& text, const std::string& field) {
  return parse_enum(text, field, padding_mode_names);
}
InitialState parse_initial_state(const std::string& text, const std::string& field) {
  return parse_enum(text, field, initial_state_names);
}

void validate(const ModelConfig& config, const std::string& source) {
  LRSMC_REQUIRE(config.rank >= 1 && config.rank <= 64, source, ": rank is out of range; got ",
                config.rank, ", expected 1 to 64");
  LRSMC_REQUIRE(config.num_hidden >= 1 && config.num_hidden <= 1 << 20, source,
                ": hidden (number of units) is out of range; got ", config.num_hidden,
                ", expected 1 to 1048576");
  LRSMC_REQUIRE(config.num_channels >= 1 && config.num_channels <= 1 << 20, source,
                ": channels is out of range; got ", config.num_channels,
                ", expected 1 to 1048576");
  LRSMC_REQUIRE(config.num_inputs >= 0 && config.num_inputs <= 1 << 16, source,
                ": inputs is out of range; got ", config.num_inputs, ", expected 0 to 65536");
  LRSMC_REQUIRE(config.init_decay > 0.0 && config.init_decay < 1.0, source,
                ": init_decay must lie in (0, 1); got ", config.init_decay);
  LRSMC_REQUIRE(config.init_transition_std > 0.0 && std::isfinite(config.init_transition_std),
                source, ": init_transition_std must be positive; got ", config.init_transition_std);
  LRSMC_REQUIRE(config.init_initial_std > 0.0 && std::isfinite(config.init_initial_std), source,
                ": init_initial_std must be positive; got ", config.init_initial_std);
  LRSMC_REQUIRE(config.init_observation_std > 0.0 && std::isfinite(config.init_observation_std),
                source, ": init_observation_std must be positive; got ",
                config.init_observation_std);
  if (config.observation == Observation::poisson) {
    LRSMC_REQUIRE(config.link != Link::identity, source,
                  ": link 'identity' cannot give Poisson rates; got link identity with poisson "
                  "observations, expected exp, softplus or relu");
  }
  if (config.readout_from == ReadoutFrom::currents || config.readout_from == ReadoutFrom::rates) {
    LRSMC_REQUIRE(config.num_channels == config.num_hidden, source, ": readout_from '",
                  to_string(config.readout_from),
                  "' reads each unit one to one, so channels must equal hidden; got channels ",
                  config.num_channels, " and hidden ", config.num_hidden);
  }
  if (config.readout_from == ReadoutFrom::z_and_v) {
    LRSMC_REQUIRE(config.num_inputs > 0, source,
                  ": readout_from 'z_and_v' reads the inputs, so the model needs inputs; got "
                  "inputs 0 (use readout_from 'z')");
  }
  // The trial length is checked when the encoder meets data (the filter, the trainer).
  if (config.encoder)
    validate(*config.encoder, config.num_channels, config.rank, std::numeric_limits<int>::max(),
             source);
}

Proposal default_proposal(const ModelConfig& config) {
  if (config.encoder) return Proposal::encoder;
  return config.observation == Observation::gaussian && config.link == Link::identity &&
                 config.readout_from == ReadoutFrom::z
             ? Proposal::optimal
             : Proposal::bootstrap;
}

Proposal default_proposal(const ModelConfig& config, bool every_observation) {
  return every_observation ? default_proposal(config) : Proposal::bootstrap;
}

void validate(const FilterOptions& options, const ModelConfig& config, const std::string& source) {
  LRSMC_REQUIRE(options.num_particles >= 1, source, ": particles must be at least 1; got ",
                options.num_particles);
  LRSMC_REQUIRE(options.num_particles <= 100'000'000, source,
                ": particles is absurdly large; got ", options.num_particles,
                ", expected at most 100000000");
  LRSMC_REQUIRE(std::isfinite(options.resample_threshold) && options.resample_threshold >= 0.0 &&
                    options.resample_threshold <= 1.0,
                source, ": resample threshold must lie in [0, 1]; got ",
                options.resample_threshold);
  if (options.proposal == Proposal::optimal) {
    LRSMC_REQUIRE(config.observation == Observation::gaussian && config.link == Link::identity,
                  source,
                  ": the optimal proposal needs a linear-Gaussian read-out; got observation ",
                  to_string(config.observation), " with link ", to_string(config.link),
                  ", expected gaussian with link identity (use --proposal bootstrap)");
    LRSMC_REQUIRE(config.readout_from == ReadoutFrom::z, source,
                  ": the optimal proposal needs a read-out of the latent state alone; got "
                  "readout_from '",
                  to_string(config.readout_from), "', expected 'z' (use --proposal bootstrap)");
  }
  LRSMC_REQUIRE(options.t_forward >= 0 && options.t_forward <= 100'000'000, source,
                ": t_forward is out of range; got ", options.t_forward, ", expected 0 or more");
  if (options.proposal == Proposal::encoder) {
    LRSMC_REQUIRE(config.encoder.has_value(), source,
                  ": the encoder proposal needs a model with an encoder; got a model without one "
                  "(fit with --proposal encoder to train one, or use --proposal bootstrap)");
  }
}

}  // namespace lrsmc
