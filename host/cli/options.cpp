// Registration and interpretation of the options shared by the lrsmc subcommands.
#include "cli/options.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "core/system_memory.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::cli {

void group_since(CLI::App& app, std::size_t first, const std::string& name) {
  const std::vector<CLI::Option*> options = app.get_options();
  for (std::size_t i = first; i < options.size(); ++i) options[i]->group(name);
}

void add_data_options(CLI::App& app, DataOptions& options, bool required, bool missing) {
  const std::size_t first = app.get_options().size();
  auto* data = app.add_option("--data", options.path,
                              "Recording: .npy, or .npz with --field naming the entry");
  if (required) data->required();
  app.add_option("--field", options.field, "Entry of an .npz data file (default: the only one, "
                                           "or 'observations' / 'data')");
  app.add_option("--layout", options.layout,
                 "Axis order of the data: trials,time,channels | trials,channels,time | "
                 "time,channels | channels,time (one long recording)")
      ->capture_default_str();
  app.add_option("--inputs", options.inputs_path, "Inputs u (same layout as the data)");
  app.add_option("--inputs-field", options.inputs_field, "Entry of an .npz inputs file");
  if (missing)
    app.add_flag("--allow-missing", options.allow_missing,
                 "NaN observations are missing values, left out of the likelihood (held-out "
                 "channels, dropped entries; the bootstrap proposal) instead of bad input");
  group_since(app, first, "Data");
}

void add_architecture_options(CLI::App& app, ArchitectureOptions& options) {
  const std::size_t first = app.get_options().size();
  app.add_option("--rank", options.rank, "Latent dimension R")->capture_default_str();
  app.add_option("--hidden", options.hidden, "Number of RNN units N")->capture_default_str();
  app.add_option("--nonlinearity", options.nonlinearity, "relu | clipped_relu | tanh | identity")
      ->capture_default_str();
  app.add_option("--transition-noise", options.transition_noise, "full | diag")
      ->capture_default_str();
  app.add_option("--initial-noise", options.initial_noise, "full | diag")->capture_default_str();
  app.add_option("--observation", options.observation, "gaussian | poisson")
      ->capture_default_str();
  app.add_option("--link", options.link,
                 "Read-out nonlinearity: identity | exp | softplus | relu (Poisson default: "
                 "softplus)")
      ->capture_default_str();
  app.add_option("--readout-from", options.readout_from,
                 "What the read-out reads: z | z_and_v (latent state and inputs) | currents | "
                 "rates (each unit one to one: --hidden equal to the channels)")
      ->capture_default_str();
  app.add_option("--initial-state", options.initial_state, "zero | trainable")
      ->capture_default_str();
  app.add_option("--init-decay", options.decay, "Initial decay a")->capture_default_str();
  app.add_option("--init-transition-std", options.transition_std, "Initial transition noise std")
      ->capture_default_str();
  app.add_option("--init-initial-std", options.initial_std, "Initial-state noise std")
      ->capture_default_str();
  app.add_option("--init-observation-std", options.observation_std,
                 "Initial observation noise std")
      ->capture_default_str();
  group_since(app, first, "Architecture");
  const std::size_t encoder_first = app.get_options().size();
  app.add_option("--encoder-kernels", options.encoder_kernels,
                 "Kernel sizes of the encoder's convolutions, the last one the heads' (e.g. "
                 "21,11,1 or 150,11,1)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--encoder-channels", options.encoder_channels,
                 "Channels of the convolutions before the heads, one fewer than kernels "
                 "(default: 64 each)")
      ->delimiter(',');
  app.add_option("--encoder-activation", options.encoder_activation, "gelu | leaky_relu")
      ->capture_default_str();
  app.add_option("--encoder-padding", options.encoder_padding,
                 "causal (past steps only) | acausal (future steps only) | windowed (both sides)")
      ->capture_default_str();
  app.add_option("--encoder-padding-mode", options.encoder_padding_mode,
                 "zeros | reflect | replicate | circular")
      ->capture_default_str();
  app.add_option("--encoder-init-scale", options.encoder_init_scale,
                 "The encoder's initial standard deviation")
      ->capture_default_str();
  app.add_flag("--encoder-constant-variance", options.encoder_constant_variance,
               "One learned variance per latent dimension instead of the log-variance head");
  group_since(app, encoder_first, "Encoder (--proposal encoder)");
}

void add_inference_options(CLI::App& app, InferenceOptions& options) {
  const std::size_t first = app.get_options().size();
  app.add_option("--particles,-k", options.particles, "Particles per trial K")
      ->capture_default_str();
  app.add_option("--proposal", options.proposal,
                 "auto | optimal | bootstrap | encoder (a learned convolutional proposal; "
                 "auto: the model's encoder when it has one, a new one for Poisson data at a "
                 "learning rate up to 2e-3, else optimal for linear-Gaussian read-outs, else "
                 "bootstrap)")
      ->capture_default_str();
  app.add_option("--resampling", options.resampling, "systematic | stratified | multinomial")
      ->capture_default_str();
  app.add_option("--resample-threshold", options.resample_threshold,
                 "Resample when ESS < threshold·K (1: every step, 0: never)")
      ->capture_default_str();
  app.add_option("--t-forward", options.t_forward,
                 "Forecast the last steps of each trial: their particles come from the dynamics "
                 "alone (the encoder does not see them), weighed by their observations")
      ->capture_default_str();
  group_since(app, first, "Particle filter");
}

void add_device_options(CLI::App& app, DeviceOptions& options) {
  const std::size_t first = app.get_options().size();
  app.add_option("--device", options.device, "cpu | cuda | auto (the GPU when there is one)")
      ->capture_default_str();
  app.add_option("--threads", options.threads, "CPU threads (0: all cores)")
      ->capture_default_str();
  app.add_option("--precision", options.precision,
                 "CPU arithmetic: float32 (16 particles per SIMD register; float64 weight and "
                 "gradient sums) | float64 (the reference, about 10x slower) | float32-device "
                 "(the CUDA kernels' order of operations)")
      ->capture_default_str();
  group_since(app, first, "Device");
}

Dataset load_data(const DataOptions& options) {
  LRSMC_REQUIRE(!options.path.empty(), "--data is required");
  return load_dataset(options.path, parse_data_layout(options.layout, "--layout"), options.field,
                      options.inputs_path, options.inputs_field, options.allow_missing);
}

ModelConfig make_config(const ArchitectureOptions& options, int channels, int inputs,
                        bool with_encoder) {
  ModelConfig config;
  config.rank = options.rank;
  config.num_hidden = options.hidden;
  config.num_channels = channels;
  config.num_inputs = inputs;
  config.nonlinearity = parse_nonlinearity(options.nonlinearity, "--nonlinearity");
  config.transition_noise = parse_noise_type(options.transition_noise, "--transition-noise");
  config.initial_noise = parse_noise_type(options.initial_noise, "--initial-noise");
  config.observation = parse_observation(options.observation, "--observation");
  config.link = parse_link(options.link, "--link");
  if (config.observation == Observation::poisson && config.link == Link::identity)
    config.link = Link::softplus;
  config.readout_from = parse_readout_from(options.readout_from, "--readout-from");
  if (config.readout_from == ReadoutFrom::currents || config.readout_from == ReadoutFrom::rates)
    LRSMC_REQUIRE(config.num_hidden == channels, "--readout-from ", options.readout_from,
                  " reads each unit one to one, so --hidden must equal the data's channels; got "
                  "--hidden ",
                  config.num_hidden, " and ", channels, " channels (pass --hidden ", channels, ")");
  config.initial_state = parse_initial_state(options.initial_state, "--initial-state");
  config.init_decay = options.decay;
  config.init_transition_std = options.transition_std;
  config.init_initial_std = options.initial_std;
  config.init_observation_std = options.observation_std;
  if (with_encoder) {
    EncoderConfig encoder;
    encoder.kernels = options.encoder_kernels;
    encoder.channels = options.encoder_channels.empty()
                           ? default_encoder_channels(encoder.kernels.size())
                           : options.encoder_channels;
    encoder.activation = parse_encoder_activation(options.encoder_activation,
                                                  "--encoder-activation");
    encoder.padding = parse_encoder_padding(options.encoder_padding, "--encoder-padding");
    encoder.padding_mode =
        parse_padding_mode(options.encoder_padding_mode, "--encoder-padding-mode");
    encoder.init_scale = options.encoder_init_scale;
    encoder.constant_variance = options.encoder_constant_variance;
    config.encoder = encoder;
  }
  validate(config, "options");
  return config;
}

/// Checks the data against the model's channels (naming the layout and the one that would fit)
/// and prints the readings that look like a mistake (dataset.hpp, data_warnings).
void check_data(const Dataset& data, const ModelConfig& config) {
  require_channels(data, config.num_channels);
  for (const std::string& warning : data_warnings(data, config.observation))
    std::fprintf(stderr, "lrsmc: warning: %s\n", warning.c_str());
}

std::string missing_values_of(const Dataset& data) {
  return data.has_missing() ? data.source + " has missing values" : "";
}

FilterOptions make_filter_options(const InferenceOptions& options, const ModelConfig& config,
                                  const std::string& incomplete) {
  FilterOptions filter;
  filter.num_particles = options.particles;
  filter.proposal = options.proposal == "auto"
                        ? default_proposal(config, incomplete.empty())
                        : parse_proposal(options.proposal, "--proposal");
  if (options.proposal == "auto" && filter.proposal != default_proposal(config))
    std::fprintf(stderr,
                 "lrsmc: %s: proposal auto is %s (the %s proposal needs every observation)\n",
                 incomplete.c_str(), to_string(filter.proposal).c_str(),
                 to_string(default_proposal(config)).c_str());
  filter.resampling = parse_resampling(options.resampling, "--resampling");
  filter.resample_threshold = options.resample_threshold;
  filter.t_forward = options.t_forward;
  validate(filter, config, "options");
  return filter;
}

std::unique_ptr<Backend> make_device_backend(const DeviceOptions& options,
                                             const ModelConfig& config,
                                             const FilterOptions& filter) {
  BackendOptions backend_options;
  backend_options.num_threads = options.threads;
  backend_options.cpu_precision = parse_cpu_precision(options.precision, "--precision");
  backend_options.communicator = options.communicator;
  std::string note;
  auto backend = make_backend_for(parse_backend_kind(options.device, "--device"), backend_options,
                                  config, filter, &note);
  if (!note.empty()) std::fprintf(stderr, "lrsmc: %s\n", note.c_str());
  return backend;
}

CLI::Option* add_seed_option(CLI::App& app, std::uint64_t& seed, const std::string& description) {
  const CLI::Validator decimal_seed(
      [](std::string& text) -> std::string {
        const bool digits = !text.empty() && text.size() <= 20 &&
                            text.find_first_not_of("0123456789") == std::string::npos;
        // 2^64 - 1 has 20 digits; a 20-digit text above it does not fit.
        if (digits && (text.size() < 20 || text <= "18446744073709551615")) return "";
        return "expected an integer from 0 to 18446744073709551615; got '" +
               lrsmc::detail::excerpt(text) + "'";
      },
      "SEED");
  return app.add_option("--seed", seed, description)->check(decimal_seed)->capture_default_str();
}

void require_fits_in_memory(double bytes, const std::string& what) {
  const double memory = detail::physical_memory_bytes();
  LRSMC_REQUIRE(memory <= 0 || bytes <= memory, what, " needs about ", bytes / double(1 << 30),
                " GiB; expected at most this machine's ", memory / double(1 << 30),
                " GiB of memory (ask for fewer)");
}

namespace {

/// Whether `a` and `b` name one file: the same device and inode when both exist, else the same
/// absolute path with symbolic links, "." and ".." resolved. A character device such as
/// /dev/null is never a conflict: what is written into it is not stored.
bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_character_file(a, error)) return false;
  if (fs::exists(a, error) && fs::exists(b, error)) {
    const bool equivalent = fs::equivalent(a, b, error);
    if (!error) return equivalent;
  }
  const fs::path resolved_a = fs::weakly_canonical(fs::absolute(a, error), error);
  const fs::path resolved_b = fs::weakly_canonical(fs::absolute(b, error), error);
  return !error && resolved_a == resolved_b;
}

}  // namespace

void require_distinct_paths(const std::vector<NamedPath>& inputs,
                            const std::vector<NamedPath>& outputs) {
  for (std::size_t o = 0; o < outputs.size(); ++o) {
    const NamedPath& output = outputs[o];
    if (output.path.empty()) continue;
    for (const NamedPath& input : inputs)
      LRSMC_REQUIRE(input.path.empty() || !same_file(output.path, input.path), output.option,
                    " '", output.path, "' is the same file as ", input.option, " '", input.path,
                    "'; expected a different path (writing it would destroy the input)");
    for (std::size_t other = 0; other < o; ++other)
      LRSMC_REQUIRE(outputs[other].path.empty() || !same_file(output.path, outputs[other].path),
                    output.option, " '", output.path, "' is the same file as ",
                    outputs[other].option, " '", outputs[other].path,
                    "'; expected a different path for each output");
  }
}

void require_writable_outputs(const std::vector<NamedPath>& outputs) {
  for (const NamedPath& output : outputs) {
    if (output.path.empty()) continue;
    const std::string problem = io::output_problem(output.path);
    LRSMC_REQUIRE(problem.empty(), output.option, " '", output.path, "': ", problem);
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long total = std::lround(seconds);
  char text[32];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%ldh %02ldm %02lds", total / 3600, total / 60 % 60, total % 60);
  else if (total >= 60)
    std::snprintf(text, sizeof text, "%ldm %02lds", total / 60, total % 60);
  else
    std::snprintf(text, sizeof text, "%lds", total);
  return text;
}

}  // namespace lrsmc::cli
