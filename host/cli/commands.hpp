// The larger lrsmc subcommands: fit, filter, fixed-points and demo.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/options.hpp"
#include "lrsmc/trainer.hpp"

namespace lrsmc::cli {

struct FitOptions {
  DataOptions data;
  ArchitectureOptions architecture;
  InferenceOptions inference;
  DeviceOptions device;
  std::string preset;     ///< eeg | spikes | small: sets the options not given explicitly
  std::string init_path;  ///< start from this model file instead of a fresh initialisation
  std::string out = "model.npz";
  TrainingOptions training;
  std::string optimizer = "radam";
  std::string keep = "last";  ///< last | best: which epoch's model --out receives
  std::string checkpoint;
  bool resume = false;
  bool quiet = false;
  /// auto | on | off: under MPI, each process reads only its share of the trials
  std::string shard = "auto";
  CLI::App* app = nullptr;  ///< to tell which options were given explicitly
};
void add_training_options(CLI::App& app, FitOptions& options);
int run_fit(FitOptions& options, const ProgressCallback& progress);

struct FilterCommandOptions {
  std::string model_path;
  DataOptions data;
  InferenceOptions inference;
  DeviceOptions device;
  std::uint64_t seed = 0;
  std::string latents_path = "latents.npy";
  std::string elbo_path = "elbo.npy";
  std::string particles_path;
  bool smooth = false;           ///< --out-latents holds the smoothed means (FFBSi)
  int trajectories = 100;        ///< backward-simulation draws per trial
  std::string trajectories_path;  ///< optional (trials, trajectories, steps, rank) .npy
  bool quiet = false;
};
int run_filter(const FilterCommandOptions& options);

struct FixedPointCommandOptions {
  std::string model_path;
  std::vector<double> input;  ///< constant input u (num_inputs values)
  std::string json_path = "fixed_points.json";
  std::string npy_path = "fixed_points.npy";
  int numerical_starts = 0;   ///< > 0: numerical search (any nonlinearity, e.g. tanh)
  std::uint64_t seed = 0;
  std::string device = "auto";  ///< cpu | cuda | auto: where the exact method sweeps
  double max_regions = 1e10;    ///< the exact method refuses a larger arrangement
  bool quiet = false;
};
/// The posterior start of `lrsmc sample --init posterior`: one state per trial of the
/// recording `data.path`, drawn from the posterior at step `step` (−1: the last) by backward
/// simulation (one trajectory) through the filter's `particles` particles (proposal auto) on
/// `backend`; at the last step this is the filtering posterior.
[[nodiscard]] std::vector<double> posterior_states(Backend& backend, const Model& model,
                                                   const DataOptions& data, int particles,
                                                   int step, std::uint64_t seed, int* trials);

void add_fixed_point_options(CLI::App& app, FixedPointCommandOptions& options);
int run_fixed_points(const FixedPointCommandOptions& options);

struct DemoOptions {
  std::string out_dir = "demo_output";
  int epochs = 500;
  int hidden = 20;
  int particles = 16;
  int eval_particles = 1000;
  std::uint64_t seed = 1;
  DeviceOptions device;
  bool quiet = false;
};
void add_demo_options(CLI::App& app, DemoOptions& options);
int run_demo(const DemoOptions& options, const ProgressCallback& progress);

}  // namespace lrsmc::cli
