// Options shared by the lrsmc subcommands and their registration on CLI11 apps.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/distributed.hpp"
#include "lrsmc/trainer.hpp"

namespace lrsmc::cli {

/// Where data come from.
struct DataOptions {
  std::string path;
  std::string field;
  std::string layout = "trials,time,channels";
  std::string inputs_path;
  std::string inputs_field;
  bool allow_missing = false;  ///< NaN observations are missing values instead of bad input
};

/// Model architecture for `fit` without --init (defaults: the paper's EEG setting).
struct ArchitectureOptions {
  int rank = 3;
  int hidden = 512;
  std::string nonlinearity = "clipped_relu";
  std::string transition_noise = "full";
  std::string initial_noise = "full";
  std::string observation = "gaussian";
  std::string link = "identity";
  std::string readout_from = "z";
  std::string initial_state = "trainable";
  double decay = 0.9;
  double transition_std = 0.1;
  double initial_std = 1.0;
  double observation_std = 0.1;
  // The encoder of the encoder proposal (lrsmc/config.hpp, EncoderConfig), added when the
  // proposal is "encoder".
  std::vector<int> encoder_kernels = {21, 11, 1};
  std::vector<int> encoder_channels;  ///< empty: 64 for every convolution before the heads
  std::string encoder_activation = "gelu";
  std::string encoder_padding = "causal";
  std::string encoder_padding_mode = "zeros";
  double encoder_init_scale = 0.1;
  bool encoder_constant_variance = false;
};

/// Particle-filter options.
struct InferenceOptions {
  int particles = 10;
  std::string proposal = "auto";  ///< optimal for linear-Gaussian read-outs, else bootstrap
  std::string resampling = "systematic";
  double resample_threshold = 1.0;
  int t_forward = 0;
};

struct DeviceOptions {
  std::string device = "auto";
  int threads = 0;
  std::string precision = "float32";
  /// The MPI processes that share the trials (lrsmc fit under mpirun), or null.
  std::shared_ptr<Communicator> communicator;
};

/// Puts the options added to `app` since it had `first` options under the help heading `name`.
void group_since(CLI::App& app, std::size_t first, const std::string& name);
/// `missing`: the command takes --allow-missing (it can leave NaN observations out).
void add_data_options(CLI::App& app, DataOptions& options, bool required, bool missing = true);
void add_architecture_options(CLI::App& app, ArchitectureOptions& options);
void add_inference_options(CLI::App& app, InferenceOptions& options);
void add_device_options(CLI::App& app, DeviceOptions& options);

[[nodiscard]] Dataset load_data(const DataOptions& options);
/// A new model's configuration; `with_encoder`: it has an encoder (the --encoder-* options).
[[nodiscard]] ModelConfig make_config(const ArchitectureOptions& options, int channels, int inputs,
                                      bool with_encoder);
/// Checks the data against the model's channels (naming the layout and the one that would fit)
/// and prints the readings that look like a mistake (dataset.hpp, data_warnings).
void check_data(const Dataset& data, const ModelConfig& config);
/// `incomplete`: why not every observation is present ("" when all are); "auto" is then
/// default_proposal(config, false), and a change of proposal is said on stderr.
[[nodiscard]] FilterOptions make_filter_options(const InferenceOptions& options,
                                                const ModelConfig& config,
                                                const std::string& incomplete = "");
/// make_filter_options's `incomplete` for a recording: "<source> has missing values" or "".
[[nodiscard]] std::string missing_values_of(const Dataset& data);
/// The backend of --device for this model; "auto" falls back to the CPU, saying so on stderr,
/// where the GPU cannot run it (Backend::cannot_run).
[[nodiscard]] std::unique_ptr<Backend> make_device_backend(const DeviceOptions& options,
                                                           const ModelConfig& config,
                                                           const FilterOptions& filter);

/// A seed option: a decimal integer from 0 to 2^64 - 1 (CLI11 alone would take "-1" as 2^64 - 1).
CLI::Option* add_seed_option(CLI::App& app, std::uint64_t& seed, const std::string& description);

/// Refuses a sampled output whose `bytes` exceed the machine's physical memory, naming `what`
/// and the options that size it, before anything is allocated.
void require_fits_in_memory(double bytes, const std::string& what);

/// An option's name and the file it names.
struct NamedPath {
  std::string option;
  std::string path;
};

/// Refuses, before any work, an output that is the same file as an input or as another output
/// (compared by file identity where the file exists, by the resolved path where it does not),
/// naming both options; empty paths are ignored.
void require_distinct_paths(const std::vector<NamedPath>& inputs,
                            const std::vector<NamedPath>& outputs);

/// Refuses, before any work, outputs that cannot be written: a folder that does not exist or is
/// not writable, or a path that is a folder. Empty paths are ignored.
void require_writable_outputs(const std::vector<NamedPath>& outputs);

/// "1h 02m 03s", "4m 05s" or "12s".
[[nodiscard]] std::string format_duration(double seconds);

}  // namespace lrsmc::cli
