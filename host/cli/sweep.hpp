// lrsmc sweep: independent fits over seeds and a grid of fit options, one process each (or one
// Slurm array task each), and one table of their results.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace lrsmc::cli {

struct SweepOptions {
  std::string out_dir = "sweep";
  int seeds = 1;                    ///< seeds 0 … seeds − 1 (or seed_list)
  std::vector<std::uint64_t> seed_list;
  std::vector<std::string> vary;    ///< "name=v1,v2,…": a fit option and its values
  int task = -1;                    ///< run only this run (a Slurm array task), −1: all
  int jobs = 1;                     ///< runs at once
  bool merge = false;               ///< only collect the results of the runs already done
  std::vector<std::string> fit_arguments;  ///< the fit options after --
};
void add_sweep_options(CLI::App& app, SweepOptions& options);
int run_sweep(const SweepOptions& options);

}  // namespace lrsmc::cli
