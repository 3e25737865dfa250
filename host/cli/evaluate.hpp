// lrsmc evaluate: the paper's measures of a fitted model on a recording (lrsmc/evaluation.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "cli/options.hpp"

namespace lrsmc::cli {

struct EvaluateCommandOptions {
  std::string model_path;
  DataOptions data;
  DeviceOptions device;
  int particles = 1000;
  std::string proposal = "auto";
  int trajectories = 20;
  int repeats = 1;
  int burn_in = 0;
  int max_steps = 10000;
  int hann_window = 0;
  double spectrum_smoothing = 20.0;
  std::int64_t frequency_cutoff = 10000;
  int stsp_samples = 1000;
  double bin_seconds = 1.0;
  std::vector<int> held_out_channels;
  int forward_steps = 0;
  std::string conditions_path;  ///< .npy of one integer label per trial
  std::string behaviour_path;   ///< .npy (trials, steps, dims)
  std::uint64_t seed = 0;
  std::string json_path = "evaluation.json";
};
void add_evaluate_options(CLI::App& app, EvaluateCommandOptions& options);
int run_evaluate(const EvaluateCommandOptions& options);

}  // namespace lrsmc::cli
