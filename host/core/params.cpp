// Parameter layout, initialisation (method.md §1.9) and model files (config JSON + arrays).
#include "lrsmc/params.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/json_input.hpp"

#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc {

ParameterLayout::ParameterLayout(const ModelConfig& config) {
  const std::int64_t rank = config.rank, hidden = config.num_hidden,
                     channels = config.num_channels, inputs = config.num_inputs;
  m = add("m", {hidden, rank});
  n = add("n", {rank, hidden});
  h = add("h", {hidden});
  if (inputs > 0) w_u = add("w_u", {hidden, inputs});
  decay_logit = add("decay_logit", {1});
  if (config.initial_state == InitialState::trainable) z_init = add("z_init", {rank});
  transition_noise = add("transition_noise", config.transition_noise == NoiseType::full
                                                 ? std::vector<std::int64_t>{rank, rank}
                                                 : std::vector<std::int64_t>{rank});
  initial_noise = add("initial_noise", config.initial_noise == NoiseType::full
                                           ? std::vector<std::int64_t>{rank, rank}
                                           : std::vector<std::int64_t>{rank});
  switch (config.readout_from) {
    case ReadoutFrom::z: readout_weight = add("readout_weight", {rank, channels}); break;
    case ReadoutFrom::z_and_v:
      readout_weight = add("readout_weight", {inputs + rank, channels});
      break;
    case ReadoutFrom::currents:
    case ReadoutFrom::rates: readout_gain = add("readout_gain", {channels}); break;
  }
  readout_bias = add("readout_bias", {channels});
  if (config.observation == Observation::gaussian)
    observation_noise = add("observation_noise", {channels});
  if (config.encoder) {
    encoder = total_size_;
    for (EncoderBlock& block : encoder_blocks(*config.encoder, config.num_channels, config.rank))
      add(block.name, std::move(block.shape));
    encoder_size = total_size_ - encoder;
  }
}

std::int64_t ParameterLayout::add(const std::string& name, std::vector<std::int64_t> shape) {
  ParameterBlock block;
  block.name = name;
  block.size = Array::element_count(shape);
  block.shape = std::move(shape);
  block.offset = total_size_;
  total_size_ += block.size;
  blocks_.push_back(block);
  return block.offset;
}

const ParameterBlock& ParameterLayout::block(const std::string& name) const {
  for (const auto& candidate : blocks_)
    if (candidate.name == name) return candidate;
  throw InvalidInput(detail::concat("parameter '", name, "' does not exist in this model"));
}

bool ParameterLayout::has(const std::string& name) const {
  for (const auto& candidate : blocks_)
    if (candidate.name == name) return true;
  return false;
}

namespace {

// Initialisation draws come from their own Philox address (trial = 0xFFFFFFFF), so a model's
// starting point depends only on its seed.
struct InitialisationDraws {
  std::uint64_t seed;
  std::uint32_t counter = 0;
  double uniform_symmetric(double bound) {
    const double u =
        math::uniform(seed, 0xFFFFFFFFu, 0, 0, math::DrawStream::generative, counter++);
    return bound * (2.0 * u - 1.0);
  }
  double normal() {
    return math::standard_normal(seed, 0xFFFFFFFEu, 0, 0, math::DrawStream::generative, counter++);
  }
};

}  // namespace

Model Model::initialise(const ModelConfig& config, std::uint64_t seed) {
  lrsmc::validate(config);
  Model model;
  model.config = config;
  const ParameterLayout layout(config);
  model.parameters.assign(static_cast<std::size_t>(layout.total_size()), 0.0);
  auto* p = model.parameters.data();
  InitialisationDraws draws{seed};
  const int rank = config.rank, hidden = config.num_hidden;
  // n = uniform_init2d(R, N) ⇒ U(±1/√N); m = uniform_init2d(N, R) ⇒ U(±1/√R) (method.md §1.9).
  for (int i = 0; i < rank * hidden; ++i)
    p[layout.n + i] = draws.uniform_symmetric(1.0 / std::sqrt(double(hidden)));
  for (int i = 0; i < hidden * rank; ++i)
    p[layout.m + i] = draws.uniform_symmetric(1.0 / std::sqrt(double(rank)));
  if (config.nonlinearity == Nonlinearity::clipped_relu)
    for (int i = 0; i < hidden; ++i)
      p[layout.h + i] = draws.uniform_symmetric(1.0 / std::sqrt(double(hidden)));
  if (layout.w_u >= 0)
    for (int i = 0; i < hidden * config.num_inputs; ++i)
      p[layout.w_u + i] = draws.uniform_symmetric(1.0 / std::sqrt(double(config.num_inputs)));
  p[layout.decay_logit] = std::log(-std::log(config.init_decay));
  const auto set_noise = [&](std::int64_t offset, NoiseType type, double std_dev) {
    const double log_variance = 2.0 * std::log(std_dev);
    if (type == NoiseType::full) {
      for (int r = 0; r < rank; ++r) p[offset + r * rank + r] = log_variance;
    } else {
      for (int r = 0; r < rank; ++r) p[offset + r] = log_variance;
    }
  };
  set_noise(layout.transition_noise, config.transition_noise, config.init_transition_std);
  set_noise(layout.initial_noise, config.initial_noise, config.init_initial_std);
  // B ~ 𝒩(0, 2/(R + D_v)) with D_v the inputs it reads (z_and_v), gains 1 (one to one).
  if (layout.readout_weight >= 0) {
    const int rows = config.readout_from == ReadoutFrom::z_and_v ? config.num_inputs + rank : rank;
    const double readout_scale = std::sqrt(2.0 / rows);
    for (int i = 0; i < rows * config.num_channels; ++i)
      p[layout.readout_weight + i] = readout_scale * draws.normal();
  }
  if (layout.readout_gain >= 0)
    for (int i = 0; i < config.num_channels; ++i) p[layout.readout_gain + i] = 1.0;
  if (layout.observation_noise >= 0)
    for (int i = 0; i < config.num_channels; ++i)
      p[layout.observation_noise + i] = 2.0 * std::log(config.init_observation_std);
  if (config.encoder) {
    const std::vector<double> encoder =
        initialise_encoder(*config.encoder, config.num_channels, rank, seed);
    std::copy(encoder.begin(), encoder.end(), p + layout.encoder);
  }
  return model;
}

std::vector<double> Model::get(const std::string& name) const {
  const auto block = layout().block(name);
  return {parameters.begin() + block.offset, parameters.begin() + block.offset + block.size};
}

void Model::set(const std::string& name, const std::vector<double>& values) {
  const auto block = layout().block(name);
  LRSMC_REQUIRE(static_cast<std::int64_t>(values.size()) == block.size, "parameter '", name,
                "' has the wrong size; got ", values.size(), ", expected ", block.size);
  std::copy(values.begin(), values.end(), parameters.begin() + block.offset);
}

double Model::decay() const {
  return std::exp(-std::exp(parameters[static_cast<std::size_t>(layout().decay_logit)]));
}

void Model::validate(const std::string& source) const {
  lrsmc::validate(config, source);
  const ParameterLayout parameter_layout(config);
  LRSMC_REQUIRE(static_cast<std::int64_t>(parameters.size()) == parameter_layout.total_size(),
                source, ": parameter buffer has the wrong size; got ", parameters.size(),
                ", expected ", parameter_layout.total_size());
  for (const auto& block : parameter_layout.blocks())
    for (std::int64_t i = 0; i < block.size; ++i) {
      const double value = parameters[static_cast<std::size_t>(block.offset + i)];
      LRSMC_REQUIRE(std::isfinite(value), source, ": parameter '", block.name,
                    "' is not finite at element ", i, "; got ", value);
    }
}

std::string config_to_json(const ModelConfig& config) {
  nlohmann::ordered_json json;
  json["format"] = "lrsmc-model";
  json["version"] = 1;
  json["rank"] = config.rank;
  json["hidden"] = config.num_hidden;
  json["channels"] = config.num_channels;
  json["inputs"] = config.num_inputs;
  json["nonlinearity"] = to_string(config.nonlinearity);
  json["transition_noise"] = to_string(config.transition_noise);
  json["initial_noise"] = to_string(config.initial_noise);
  json["observation"] = to_string(config.observation);
  json["link"] = to_string(config.link);
  json["readout_from"] = to_string(config.readout_from);
  json["initial_state"] = to_string(config.initial_state);
  if (config.encoder) {
    const EncoderConfig& encoder = *config.encoder;
    nlohmann::ordered_json object;
    object["kernels"] = encoder.kernels;
    object["channels"] = encoder.channels;
    object["activation"] = to_string(encoder.activation);
    object["padding"] = to_string(encoder.padding);
    object["padding_mode"] = to_string(encoder.padding_mode);
    object["init_scale"] = encoder.init_scale;
    object["constant_variance"] = encoder.constant_variance;
    json["encoder"] = object;
  }
  return json.dump(2);
}

namespace {

/// A config is a flat object of a dozen fields, a few hundred bytes long.
constexpr std::size_t max_config_bytes = 64 * 1024;

/// The "encoder" object of a config (every field required).
EncoderConfig encoder_from_json(const nlohmann::json& json, const std::string& label) {
  LRSMC_REQUIRE(json.is_object(), label, " must be a JSON object; got ",
                detail::excerpt(json.dump()));
  constexpr std::array<const char*, 7> required{"kernels",      "channels",   "activation",
                                                "padding",      "padding_mode", "init_scale",
                                                "constant_variance"};
  for (const char* key : required)
    LRSMC_REQUIRE(json.contains(key), label, ": field '", key,
                  "' is missing; expected every field of the encoder (see README, 'Model files')");
  EncoderConfig config;
  const auto integers = [&](const nlohmann::json& value, const std::string& key) {
    LRSMC_REQUIRE(value.is_array() && value.size() <= 64, label, ": field '", key,
                  "' must be a list of at most 64 integers; got ", detail::excerpt(value.dump()));
    std::vector<int> out;
    for (const auto& item : value)
      out.push_back(int(detail::bounded_integer(item, label, key, 0, 100000)));
    return out;
  };
  const auto text = [&](const nlohmann::json& value, const std::string& key) {
    LRSMC_REQUIRE(value.is_string(), label, ": field '", key, "' must be a string; got ",
                  detail::excerpt(value.dump()));
    return detail::excerpt(value.get<std::string>());
  };
  for (const auto& [key, value] : json.items()) {
    const std::string field = label + ": field '" + key + "'";
    if (key == "kernels") {
      config.kernels = integers(value, key);
    } else if (key == "channels") {
      config.channels = integers(value, key);
    } else if (key == "activation") {
      config.activation = parse_encoder_activation(text(value, key), field);
    } else if (key == "padding") {
      config.padding = parse_encoder_padding(text(value, key), field);
    } else if (key == "padding_mode") {
      config.padding_mode = parse_padding_mode(text(value, key), field);
    } else if (key == "init_scale") {
      LRSMC_REQUIRE(value.is_number(), field, " must be a number; got ",
                    detail::excerpt(value.dump()));
      config.init_scale = value.get<double>();
    } else if (key == "constant_variance") {
      LRSMC_REQUIRE(value.is_boolean(), field, " must be true or false; got ",
                    detail::excerpt(value.dump()));
      config.constant_variance = value.get<bool>();
    } else {
      throw InvalidInput(
          detail::concat(label, " has an unknown field '", detail::excerpt(key), "'"));
    }
  }
  return config;
}

}  // namespace

ModelConfig config_from_json(const std::string& json_text, const std::string& source) {
  constexpr int max_config_depth = 3;  // the config, its encoder object, the encoder's lists
  const nlohmann::json json =
      detail::parse_bounded_json(json_text, source + ": config", max_config_bytes, max_config_depth);
  LRSMC_REQUIRE(json.is_object(), source, ": config must be a JSON object; got ",
                detail::excerpt(json.dump()));
  constexpr std::array<const char*, 12> required{
      "format",        "version",     "rank", "hidden", "channels", "inputs", "nonlinearity",
      "transition_noise", "initial_noise", "observation", "link", "initial_state"};
  for (const char* key : required)
    LRSMC_REQUIRE(json.contains(key), source, ": config field '", key,
                  "' is missing; expected every field of a model's config (see README, 'Model "
                  "files')");
  ModelConfig config;
  for (const auto& [key, value] : json.items()) {
    const std::string label = source + ": config";
    const auto integer = [&, &key = key, &value = value](std::int64_t minimum,
                                                          std::int64_t maximum) {
      return int(detail::bounded_integer(value, label, key, minimum, maximum));
    };
    const auto text = [&, &key = key, &value = value]() {
      LRSMC_REQUIRE(value.is_string(), source, ": config field '", key,
                    "' must be a string; got ", detail::excerpt(value.dump()));
      return value.get<std::string>();
    };
    const std::string field = source + ": config field '" + key + "'";
    // Counts are read as any 32-bit integer and then checked by validate() below, which names
    // each one's own range.
    constexpr std::int64_t int_min = std::numeric_limits<int>::min();
    constexpr std::int64_t int_max = std::numeric_limits<int>::max();
    if (key == "format") {
      const std::string format = text();
      LRSMC_REQUIRE(format == "lrsmc-model", source, ": config field 'format' is wrong; got '",
                    detail::excerpt(format), "', expected 'lrsmc-model'");
    } else if (key == "version") {
      LRSMC_REQUIRE(value.is_number_integer() && value.get<std::int64_t>() == 1, source,
                    ": config field 'version' is not supported; got ",
                    detail::excerpt(value.dump()), ", expected 1");
    } else if (key == "rank") {
      config.rank = integer(int_min, int_max);
    } else if (key == "hidden") {
      config.num_hidden = integer(int_min, int_max);
    } else if (key == "channels") {
      config.num_channels = integer(int_min, int_max);
    } else if (key == "inputs") {
      config.num_inputs = integer(int_min, int_max);
    } else if (key == "nonlinearity") {
      config.nonlinearity = parse_nonlinearity(detail::excerpt(text()), field);
    } else if (key == "transition_noise") {
      config.transition_noise = parse_noise_type(detail::excerpt(text()), field);
    } else if (key == "initial_noise") {
      config.initial_noise = parse_noise_type(detail::excerpt(text()), field);
    } else if (key == "observation") {
      config.observation = parse_observation(detail::excerpt(text()), field);
    } else if (key == "link") {
      config.link = parse_link(detail::excerpt(text()), field);
    } else if (key == "readout_from") {  // optional: 'z' when absent
      config.readout_from = parse_readout_from(detail::excerpt(text()), field);
    } else if (key == "initial_state") {
      config.initial_state = parse_initial_state(detail::excerpt(text()), field);
    } else if (key == "encoder") {
      config.encoder = encoder_from_json(value, source + ": config field 'encoder'");
    } else {
      throw InvalidInput(detail::concat(source, ": config has an unknown field '",
                                        detail::excerpt(key), "'"));
    }
  }
  validate(config, source);
  return config;
}

void save_model(const std::string& path, const Model& model) {
  model.validate(path);
  std::map<std::string, Array> arrays;
  const ParameterLayout layout = model.layout();
  for (const auto& block : layout.blocks())
    arrays[block.name] = Array(block.shape, model.get(block.name));
  io::write_npz(path, arrays, {{"config", config_to_json(model.config)}},
                io::StoredType::float64);
}

Model load_model(const std::string& path) {
  // The configuration first: it says which entries to read and how large each may be, so
  // nothing else is decoded before it is checked.
  io::NpzSelection config_only;
  config_only.entries = {"config"};
  config_only.max_values = 0;
  config_only.max_text_bytes = 4 * max_config_bytes;  // numpy stores text as UTF-32
  const io::NpzContents header = io::read_npz(path, config_only);
  const auto config_entry = header.strings.find("config");
  LRSMC_REQUIRE(config_entry != header.strings.end(), path,
                ": entry 'config' is missing; expected a JSON text entry (see README, "
                "'Model files')");
  Model model;
  model.config = config_from_json(config_entry->second, path);
  const ParameterLayout layout(model.config);
  // An entry may be larger than its block (the shape check below names the mismatch), but
  // not by more than a model of another size would explain.
  io::NpzSelection parameters;
  std::size_t largest = 0;
  for (const auto& block : layout.blocks()) {
    parameters.entries.push_back(block.name);
    largest = std::max(largest, std::size_t(Array::element_count(block.shape)));
  }
  parameters.max_values = 16 * largest + 4096;
  const io::NpzContents contents = io::read_npz(path, parameters);
  model.parameters.assign(static_cast<std::size_t>(layout.total_size()), 0.0);
  for (const auto& block : layout.blocks()) {
    const auto found = contents.arrays.find(block.name);
    LRSMC_REQUIRE(found != contents.arrays.end(), path, ": entry '", block.name,
                  "' is missing; expected an array of shape ", Array(block.shape).shape_string());
    const Array& stored = found->second;
    LRSMC_REQUIRE(stored.shape == block.shape, path, ": entry '", block.name,
                  "' has the wrong shape; got ", detail::excerpt(stored.shape_string(), 200),
                  ", expected ", Array(block.shape).shape_string(), " for rank ", model.config.rank,
                  ", hidden ", model.config.num_hidden, ", channels ", model.config.num_channels);
    model.set(block.name, stored.data);
  }
  for (const std::string& name : contents.names) {
    if (name == "config" || name.rfind("checkpoint_", 0) == 0) continue;  // a checkpoint's state
    LRSMC_REQUIRE(layout.has(name), path, ": entry '", name,
                  "' is not a parameter of this configuration");
  }
  model.validate(path);
  return model;
}

}  // namespace lrsmc
