// lrsmc sweep: see cli/sweep.hpp.
#include "cli/sweep.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::cli {

void add_sweep_options(CLI::App& app, SweepOptions& options) {
  app.add_option("--out-dir", options.out_dir,
                 "Folder of the runs (run-000/ …, each with model.npz, its history and log.txt) "
                 "and of sweep.csv")
      ->capture_default_str();
  app.add_option("--seeds", options.seeds, "Seeds 0 … N−1 for every setting")
      ->capture_default_str();
  // One value per occurrence: the fit options after -- are not taken for more values.
  app.add_option("--seed-list", options.seed_list, "These seeds instead of --seeds, e.g. 3,7,11")
      ->delimiter(',')
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--vary", options.vary,
                 "A fit option and its values, e.g. --vary lr=1e-3,3e-3 (repeat for a grid)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--task", options.task,
                 "Run only this run (0-based), e.g. --task $SLURM_ARRAY_TASK_ID in a job array");
  app.add_option("--jobs,-j", options.jobs, "Runs at once (each its own process)")
      ->capture_default_str();
  app.add_flag("--merge", options.merge,
               "Run nothing: collect the runs already in --out-dir into sweep.csv");
  app.footer(
      "The fit options follow --, e.g.\n"
      "  lrsmc sweep --seeds 5 --vary lr=1e-3,3e-3 --out-dir runs -- --data X.npy --held-out 0.2\n"
      "sweep sets --seed and --out of each run, and --split-seed 0 unless given, so that every\n"
      "run holds out the same trials; the other fit options are the same for all.");
}

namespace {

struct Run {
  int index = 0;
  std::uint64_t seed = 0;
  std::vector<std::pair<std::string, std::string>> settings;  ///< option name (no dashes), value
  std::string dir;
};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) parts.push_back(part);
  return parts;
}

/// The runs: every combination of the --vary values (the first option slowest), each with every
/// seed.
std::vector<Run> plan(const SweepOptions& options) {
  LRSMC_REQUIRE(options.seed_list.empty() || options.seeds == 1,
                "--seeds and --seed-list cannot both be given");
  LRSMC_REQUIRE(options.seeds >= 1 && options.seeds <= 100000, "--seeds must be 1 to 100000; got ",
                options.seeds);
  std::vector<std::uint64_t> seeds = options.seed_list;
  if (seeds.empty())
    for (int s = 0; s < options.seeds; ++s) seeds.push_back(std::uint64_t(s));
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
  for (const std::string& entry : options.vary) {
    const auto equals = entry.find('=');
    LRSMC_REQUIRE(equals != std::string::npos && equals > 0 && equals + 1 < entry.size(),
                  "--vary is not NAME=V1,V2,…; got '", entry, "'");
    std::string name = entry.substr(0, equals);
    while (!name.empty() && name[0] == '-') name.erase(0, 1);
    LRSMC_REQUIRE(!name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                  }),
                  "--vary names a fit option in lower case, e.g. lr; got '", name, "'");
    for (const char* reserved : {"seed", "out", "o", "checkpoint", "resume", "quiet", "q"})
      LRSMC_REQUIRE(name != reserved, "--vary ", name, ": sweep sets --seed and --out of each "
                    "run and keeps its checkpoints beside them; vary another option");
    for (const auto& [other, values] : grid)
      LRSMC_REQUIRE(other != name, "--vary ", name, " is given twice");
    const std::vector<std::string> values = split(entry.substr(equals + 1), ',');
    for (const std::string& value : values)
      LRSMC_REQUIRE(!value.empty(), "--vary ", name, " has an empty value in '", entry, "'");
    grid.emplace_back(name, values);
  }
  std::size_t combinations = 1;
  for (const auto& [name, values] : grid) combinations *= values.size();
  LRSMC_REQUIRE(combinations * seeds.size() <= 100000, "the sweep has ",
                combinations * seeds.size(), " runs; at most 100000");
  std::vector<Run> runs;
  for (std::size_t c = 0; c < combinations; ++c) {
    std::vector<std::pair<std::string, std::string>> settings;
    std::size_t rest = c;
    for (auto g = grid.rbegin(); g != grid.rend(); ++g) {
      settings.insert(settings.begin(), {g->first, g->second[rest % g->second.size()]});
      rest /= g->second.size();
    }
    for (const std::uint64_t seed : seeds) {
      Run run;
      run.index = int(runs.size());
      run.seed = seed;
      run.settings = settings;
      char name[32];
      std::snprintf(name, sizeof name, "run-%03d", run.index);
      run.dir = (std::filesystem::path(options.out_dir) / name).string();
      runs.push_back(run);
    }
  }
  return runs;
}

/// The fit options after --; refuses those sweep sets itself and those --vary sets.
void check_fit_arguments(const std::vector<std::string>& arguments, const SweepOptions& options) {
  LRSMC_REQUIRE(!arguments.empty(), "sweep needs the fit options after --, e.g. -- --data X.npy");
  for (const std::string& argument : arguments) {
    const std::string name = argument.substr(0, argument.find('='));
    for (const char* reserved : {"--seed", "--out", "-o", "--checkpoint", "--resume"})
      LRSMC_REQUIRE(name != reserved, "the fit options after -- give ", name,
                    "; sweep sets --seed and --out of each run (checkpoints go beside its model)");
    for (const std::string& entry : options.vary)
      LRSMC_REQUIRE(name != "--" + entry.substr(0, entry.find('=')), "the fit options after -- give ",
                    name, ", which --vary sets");
  }
}

/// Starts `lrsmc fit` for `run` with its output in run.dir/log.txt; returns its process id.
pid_t launch(const Run& run, const std::vector<std::string>& fit_arguments) {
  std::filesystem::create_directories(run.dir);
  std::vector<std::string> arguments{std::filesystem::read_symlink("/proc/self/exe").string(), "fit"};
  arguments.insert(arguments.end(), fit_arguments.begin(), fit_arguments.end());
  for (const auto& [name, value] : run.settings) {
    arguments.push_back("--" + name);
    arguments.push_back(value);
  }
  arguments.insert(arguments.end(), {"--seed", std::to_string(run.seed), "--out",
                                     (std::filesystem::path(run.dir) / "model.npz").string(), "-q"});
  // One held-out split for every run, so that their held-out ELBOs compare.
  const bool split_given =
      std::any_of(arguments.begin(), arguments.end(), [](const std::string& argument) {
        return argument.rfind("--split-seed", 0) == 0;
      });
  if (!split_given) arguments.insert(arguments.end(), {"--split-seed", "0"});
  const std::string log = (std::filesystem::path(run.dir) / "log.txt").string();
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = fork();
  LRSMC_REQUIRE(pid >= 0, "sweep: cannot start run ", run.index, " (fork failed)");
  if (pid == 0) {
    const int file = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (file >= 0) {
      ::dup2(file, 1);
      ::dup2(file, 2);
      ::close(file);
    }
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

struct Outcome {
  std::string status = "not run";
  int epochs = 0;
  double train_elbo = std::numeric_limits<double>::quiet_NaN();
  double held_out_elbo = std::numeric_limits<double>::quiet_NaN();       ///< the last evaluated
  double best_held_out_elbo = std::numeric_limits<double>::quiet_NaN();
  double seconds = std::numeric_limits<double>::quiet_NaN();
};

/// What run.dir holds: the model and its history (epoch, train, held-out, lr, seconds).
Outcome outcome_of(const Run& run) {
  Outcome outcome;
  const std::filesystem::path dir(run.dir);
  std::error_code error;
  if (!std::filesystem::exists(dir / "model.npz", error)) {
    outcome.status = std::filesystem::exists(dir / "log.txt", error) ? "failed" : "not run";
    return outcome;
  }
  outcome.status = "done";
  std::ifstream history(dir / "model.npz.history.csv");
  std::string line;
  std::getline(history, line);  // header
  while (std::getline(history, line)) {
    const std::vector<std::string> fields = split(line, ',');
    if (fields.size() < 5) continue;
    outcome.epochs = std::stoi(fields[0]);
    outcome.train_elbo = std::stod(fields[1]);
    if (!fields[2].empty()) {
      outcome.held_out_elbo = std::stod(fields[2]);
      if (!(outcome.best_held_out_elbo >= outcome.held_out_elbo))
        outcome.best_held_out_elbo = outcome.held_out_elbo;
    }
    outcome.seconds = std::stod(fields[4]);
  }
  return outcome;
}

std::string number(double value) {
  if (std::isnan(value)) return "";
  char text[40];
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

}  // namespace

int run_sweep(const SweepOptions& options) {
  const std::vector<Run> runs = plan(options);
  LRSMC_REQUIRE(options.task >= -1 && options.task < int(runs.size()), "--task is out of range; got ",
                options.task, ", expected 0 to ", runs.size() - 1, " (the sweep has ", runs.size(),
                " runs)");
  LRSMC_REQUIRE(options.jobs >= 1 && options.jobs <= 1024, "--jobs must be 1 to 1024; got ",
                options.jobs);
  if (!options.merge) {
    check_fit_arguments(options.fit_arguments, options);
    std::vector<const Run*> chosen;
    for (const Run& run : runs)
      if (options.task < 0 || run.index == options.task) chosen.push_back(&run);
    std::map<pid_t, const Run*> running;
    std::size_t next = 0;
    int failures = 0;
    while (next < chosen.size() || !running.empty()) {
      while (next < chosen.size() && int(running.size()) < options.jobs) {
        std::printf("sweep: run %d (seed %llu", chosen[next]->index,
                    static_cast<unsigned long long>(chosen[next]->seed));
        for (const auto& [name, value] : chosen[next]->settings)
          std::printf(", --%s %s", name.c_str(), value.c_str());
        std::printf(") in %s\n", chosen[next]->dir.c_str());
        std::fflush(stdout);
        running[launch(*chosen[next], options.fit_arguments)] = chosen[next];
        ++next;
      }
      int status = 0;
      const pid_t done = ::waitpid(-1, &status, 0);
      if (done < 0) break;
      const auto found = running.find(done);
      if (found == running.end()) continue;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ++failures;
        std::fprintf(stderr, "lrsmc: sweep: run %d failed (exit %d); see %s/log.txt\n",
                     found->second->index, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                     found->second->dir.c_str());
      }
      running.erase(found);
    }
    if (options.task >= 0) return failures == 0 ? 0 : 1;
  }

  // The table of every run, best held-out ELBO first.
  std::vector<std::pair<const Run*, Outcome>> rows;
  for (const Run& run : runs) rows.emplace_back(&run, outcome_of(run));
  std::string csv = "run,seed";
  for (const auto& [name, value] : runs.front().settings) csv += "," + name;
  csv += ",status,epochs,train_elbo,held_out_elbo,best_held_out_elbo,seconds,model\n";
  int incomplete = 0;
  for (const auto& [run, outcome] : rows) {
    csv += std::to_string(run->index) + "," + std::to_string(run->seed);
    for (const auto& [name, value] : run->settings) csv += "," + value;
    csv += "," + outcome.status + "," + std::to_string(outcome.epochs) + "," +
           number(outcome.train_elbo) + "," + number(outcome.held_out_elbo) + "," +
           number(outcome.best_held_out_elbo) + "," + number(outcome.seconds) + "," +
           (outcome.status == "done" ? (std::filesystem::path(run->dir) / "model.npz").string()
                                     : "") +
           "\n";
    if (outcome.status != "done") ++incomplete;
  }
  std::filesystem::create_directories(options.out_dir);
  const std::string table = (std::filesystem::path(options.out_dir) / "sweep.csv").string();
  io::write_text_file(table, csv);
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    const double x = a.second.best_held_out_elbo, y = b.second.best_held_out_elbo;
    if (std::isnan(y)) return !std::isnan(x);
    return !std::isnan(x) && x > y;
  });
  std::printf("%-5s %-8s", "run", "seed");
  for (const auto& [name, value] : runs.front().settings) std::printf(" %-12s", name.c_str());
  std::printf(" %-8s %12s %12s\n", "status", "held-out", "train");
  for (const auto& [run, outcome] : rows) {
    std::printf("%-5d %-8llu", run->index, static_cast<unsigned long long>(run->seed));
    for (const auto& [name, value] : run->settings) std::printf(" %-12s", value.c_str());
    std::printf(" %-8s %12s %12s\n", outcome.status.c_str(),
                number(outcome.best_held_out_elbo).c_str(), number(outcome.train_elbo).c_str());
  }
  std::printf("wrote %s (%zu runs, %d not done)\n", table.c_str(), runs.size(), incomplete);
  return incomplete == 0 ? 0 : 1;
}

}  // namespace lrsmc::cli
