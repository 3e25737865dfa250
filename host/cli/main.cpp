// The lrsmc command line: simulate, fit, filter, sample, evaluate, sweep, fixed-points and demo. Errors print
// "lrsmc: error: …" and exit 2 for bad input or usage, 1 for anything else.
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <new>

#include "cli/commands.hpp"
#include "cli/evaluate.hpp"
#include "cli/sweep.hpp"
#include "cli/options.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::cli {
namespace {

volatile std::sig_atomic_t interrupted = 0;

/// Ends the process now: the temporary files of outputs being written are removed, so no
/// partial output is left, and the exit status says which signal ended it (128 + signal).
void stop_now(int signal_number) {
  lrsmc::io::remove_unfinished_outputs();
  constexpr char message[] = "\nlrsmc: interrupted; no output written by this step\n";
  static_cast<void>(::write(STDERR_FILENO, message, sizeof message - 1));
  ::_exit(128 + signal_number);
}

/// fit and demo: the first Ctrl-C stops after the current epoch (the model and a checkpoint are
/// saved); a second one stops at once.
void on_interrupt(int signal_number) {
  if (interrupted != 0) stop_now(signal_number);
  interrupted = 1;
}

/// Every command stops at once on SIGTERM, and every command but fit and demo on SIGINT. fit
/// and demo also stop after the epoch on SIGUSR1, which mpirun forwards to every process (it
/// ends them at once on SIGINT).
void install_signal_handlers(bool stops_after_epoch) {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_handler = stop_now;
  sigaction(SIGTERM, &action, nullptr);
  if (stops_after_epoch) action.sa_handler = on_interrupt;
  sigaction(SIGINT, &action, nullptr);
  if (stops_after_epoch) sigaction(SIGUSR1, &action, nullptr);
}

/// Where errors are reported: stderr, or for the processes of an MPI launch other than process
/// 0 (whose stdout and stderr are silenced) a copy of their original stderr.
FILE* error_stream = stderr;

/// One line per epoch; on a terminal the line is rewritten in place.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool quiet) : quiet_(quiet), terminal_(isatty(fileno(stderr)) != 0) {}
  bool operator()(const EpochReport& report) {
    if (quiet_) return interrupted == 0;
    char line[256];
    char held_out[48] = "";
    if (std::isfinite(report.held_out_elbo))
      std::snprintf(held_out, sizeof held_out, " | held-out %.4f", report.held_out_elbo);
    std::snprintf(line, sizeof line, "epoch %d/%d | elbo %.4f%s | lr %.2e | %s elapsed | %s left",
                  report.epoch, report.epochs, report.train_elbo, held_out, report.learning_rate,
                  format_duration(report.elapsed_seconds).c_str(),
                  format_duration(report.remaining_seconds).c_str());
    const bool last = report.epoch == report.epochs;
    // Off a terminal, print about 50 lines per run (always the first and the last epoch).
    const int every = std::max(1, report.epochs / 50);
    if (terminal_) {
      std::fprintf(stderr, "\r\033[K%s%s", line, last ? "\n" : "");
    } else if (report.epoch == 1 || last || report.epoch % every == 0) {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
    if (interrupted && terminal_) std::fprintf(stderr, "\n");
    return interrupted == 0;
  }

 private:
  bool quiet_, terminal_;
};

/// The arrays of a draw, written as float32; a value that float32 cannot hold (the draw of a
/// model whose dynamics diverge) is refused, naming where it first appears, instead of written as
/// Inf.
std::map<std::string, Array> sample_arrays(const SampleResult& samples, int trials, int steps,
                                           const ModelConfig& config, const std::string& model) {
  const auto require_finite = [&](const std::vector<double>& values, int width, const char* name) {
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (std::isfinite(values[i]) && std::fabs(values[i]) <= std::numeric_limits<float>::max())
        continue;
      const std::size_t row = i / std::size_t(width);
      throw NumericalError(detail::concat(
          model, ": the draw diverges: ", name, " at trial ", row / std::size_t(steps), ", step ",
          row % std::size_t(steps), " is ", values[i],
          " (beyond float32); this model's dynamics grow without bound; nothing written"));
    }
  };
  require_finite(samples.latents, config.rank, "latents");
  require_finite(samples.rates, config.num_channels, "rates");
  require_finite(samples.observations, config.num_channels, "observations");
  const std::int64_t t = trials, s = steps;
  return {{"latents", Array({t, s, config.rank}, samples.latents)},
          {"rates", Array({t, s, config.num_channels}, samples.rates)},
          {"observations", Array({t, s, config.num_channels}, samples.observations)}};
}

/// Writes drawn sequences: float32, and Poisson counts as int32.
void write_samples(const std::string& out, const SampleResult& samples, int trials, int steps,
                   const ModelConfig& config, const std::string& model) {
  std::map<std::string, io::StoredType> types;
  if (config.observation == Observation::poisson) {
    for (std::size_t i = 0; i < samples.observations.size(); ++i) {
      const double count = samples.observations[i];
      if (count <= double(std::numeric_limits<std::int32_t>::max())) continue;
      const std::size_t row = i / std::size_t(config.num_channels);
      throw NumericalError(detail::concat(
          model, ": the draw diverges: a count at trial ", row / std::size_t(steps), ", step ",
          row % std::size_t(steps), " is ", count,
          " (beyond int32); this model's rates grow without bound; nothing written"));
    }
    types["observations"] = io::StoredType::int32;
  }
  io::write_npz(out, sample_arrays(samples, trials, steps, config, model), {},
                io::StoredType::float32, types);
}

std::vector<double> read_inputs(const std::string& path, const std::string& field, int trials,
                                int steps, const ModelConfig& config) {
  if (config.num_inputs == 0) {
    LRSMC_REQUIRE(path.empty(), path, ": the model has no inputs; got an inputs file");
    return {};
  }
  LRSMC_REQUIRE(!path.empty(), "--inputs is required: the model takes ", config.num_inputs,
                " input(s); expected a (trials, steps, inputs) array");
  const Dataset inputs = load_dataset(path, DataLayout::trials_time_channels, field);
  LRSMC_REQUIRE(inputs.num_trials == trials && inputs.num_steps == steps &&
                    inputs.num_channels == config.num_inputs,
                path, ": inputs have shape (", inputs.num_trials, ", ", inputs.num_steps, ", ",
                inputs.num_channels, "); expected (", trials, ", ", steps, ", ", config.num_inputs,
                ")");
  return inputs.observations;
}

/// Refuses counts out of range, and a draw larger than memory, before anything is allocated.
void require_sample_size(int trials, int steps, int burn_in, const ModelConfig& config) {
  LRSMC_REQUIRE(trials >= 1, "--trials must be at least 1; got ", trials);
  LRSMC_REQUIRE(steps >= 1, "--steps must be at least 1; got ", steps);
  LRSMC_REQUIRE(burn_in >= 0, "--burn-in must be ≥ 0; got ", burn_in);
  const std::int64_t total = std::int64_t(steps) + burn_in;
  LRSMC_REQUIRE(total <= std::numeric_limits<int>::max(), "--steps ", steps, " plus --burn-in ",
                burn_in, " is too long; expected at most ", std::numeric_limits<int>::max(),
                " steps in all");
  // Latents, rates and observations in float64, their copy without the burn-in, and the
  // float32 file written from it.
  const double values = double(trials) * double(total) * (config.rank + 2.0 * config.num_channels);
  require_fits_in_memory(values * (8 + 8 + 4),
                         detail::concat("--trials ", trials, " of ", total, " steps"));
}

int run_simulate(const std::string& model_path, int trials, int steps, std::uint64_t seed,
                 const std::string& inputs_path, const std::string& inputs_field,
                 const std::string& out, const DeviceOptions& device) {
  require_distinct_paths({{"--model", model_path}, {"--inputs", inputs_path}}, {{"--out", out}});
  require_writable_outputs({{"--out", out}});
  const Model model = load_model(model_path);
  require_sample_size(trials, steps, 0, model.config);
  auto backend = make_device_backend(device, model.config, FilterOptions{});
  const auto inputs = read_inputs(inputs_path, inputs_field, trials, steps, model.config);
  const SampleResult samples = backend->sample(model, trials, steps, inputs, seed);
  write_samples(out, samples, trials, steps, model.config, model_path);
  std::printf("wrote %s: observations (%d, %d, %d), latents (%d, %d, %d), rates\n", out.c_str(),
              trials, steps, model.config.num_channels, trials, steps, model.config.rank);
  return 0;
}

}  // namespace

/// Parses the command line and runs its command, with `world` the processes of an MPI launch
/// (or null).
int run_command(int argc, char** argv, const std::shared_ptr<Communicator>& world);

/// Reports the exception being handled on error_stream and returns the exit status: 2 for bad
/// input (the data, the options, the files, a computation they make fail), 1 otherwise.
int report_error() {
  try {
    throw;
  } catch (const lrsmc::Error& error) {
    std::fprintf(error_stream, "lrsmc: error: %s\n", error.what());
    // A computation the data or the model make fail (overflow, a singular matrix) is bad input
    // too, as a bad file or option is.
    const bool bad_input = dynamic_cast<const lrsmc::InvalidInput*>(&error) != nullptr ||
                           dynamic_cast<const lrsmc::IoError*>(&error) != nullptr ||
                           dynamic_cast<const lrsmc::NumericalError*>(&error) != nullptr;
    return bad_input ? 2 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(error_stream,
                 "lrsmc: error: out of memory; ask for less (fewer trials, steps, "
                 "particles or units)\n");
    return 1;
  } catch (const std::exception& error) {
    // Not one of lrsmc's own errors: a bug, reported as such.
    std::fprintf(error_stream, "lrsmc: error: internal error, please report it (%s)\n",
                 error.what());
    return 1;
  }
}

int main_with_exceptions(int argc, char** argv) {
  // The processes of an MPI launch (mpirun, srun), or null for a process on its own.
  const std::shared_ptr<Communicator> world = mpi_world(argc, argv);
  if (world == nullptr) return run_command(argc, argv, world);
  if (world->rank() != 0) {  // process 0 reports for all
    const int copy = ::dup(STDERR_FILENO);
    if (copy >= 0) error_stream = ::fdopen(copy, "w");
    if (error_stream == nullptr) error_stream = stderr;
    if (std::freopen("/dev/null", "w", stdout) == nullptr ||
        std::freopen("/dev/null", "w", stderr) == nullptr)
      error_stream = stderr;
  }
  try {
    return run_command(argc, argv, world);
  } catch (...) {
    // The other processes may be waiting for this one in a collective call: end them all.
    const int status = report_error();
    std::fflush(error_stream);
    world->abort(status);
    return status;
  }
}

int run_command(int argc, char** argv, const std::shared_ptr<Communicator>& world) {
  CLI::App app{
      "lrsmc: fit stochastic low-rank RNNs to neural recordings with variational "
      "sequential Monte Carlo"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lrsmc 0.1.0");

  // --- simulate ---
  auto* simulate =
      app.add_subcommand("simulate", "Draw latents and observations from a model file");
  std::string simulate_model, simulate_out = "simulated.npz", simulate_inputs,
                              simulate_inputs_field;
  int simulate_trials = 100, simulate_steps = 75;
  std::uint64_t simulate_seed = 0;
  simulate->add_option("--model", simulate_model, "Model file (.npz)")->required();
  simulate->add_option("--trials", simulate_trials, "Trials to draw")->capture_default_str();
  simulate->add_option("--steps", simulate_steps, "Time steps per trial")->capture_default_str();
  add_seed_option(*simulate, simulate_seed, "Random seed");
  simulate->add_option("--inputs", simulate_inputs, "Inputs (trials, steps, inputs)");
  simulate->add_option("--inputs-field", simulate_inputs_field, "Entry of an .npz inputs file");
  simulate
      ->add_option("--out,-o", simulate_out,
                   "Output .npz: observations (Poisson counts as int32), latents, rates "
                   "(trials, steps, ·)")
      ->capture_default_str();
  DeviceOptions simulate_device;
  add_device_options(*simulate, simulate_device);

  // --- fit ---
  auto* fit = app.add_subcommand("fit", "Fit a model to a recording");
  FitOptions fit_options;
  add_data_options(*fit, fit_options.data, true);
  add_architecture_options(*fit, fit_options.architecture);
  add_inference_options(*fit, fit_options.inference);
  add_device_options(*fit, fit_options.device);
  add_training_options(*fit, fit_options);
  fit->footer(
      "Short runs: the learning rate decays from --lr to --lr-end over --epochs, so a run cut "
      "to a small budget with a fixed --lr-end spends most of it at a rate too small to learn. "
      "Leave --lr-end at 0 (the paper's decay per optimizer step, scaled to this run), and for "
      "a budget of minutes start from --preset small: on the demo's teacher (120 trials of 75 "
      "steps) it comes within about 1% of the teacher's held-out ELBO in 200 epochs (2,400 "
      "optimizer steps). The progress header prints the epochs, steps and learning rates a run "
      "uses.");

  // --- filter ---
  auto* filter = app.add_subcommand(
      "filter", "Filtered latents and the ELBO per time step of each trial of a recording");
  FilterCommandOptions filter_options;
  filter_options.inference.particles = 1000;  // before the option captures its default
  filter->add_option("--model", filter_options.model_path, "Model file (.npz)")->required();
  add_data_options(*filter, filter_options.data, true);
  add_inference_options(*filter, filter_options.inference);
  add_device_options(*filter, filter_options.device);
  add_seed_option(*filter, filter_options.seed, "Random seed");
  filter
      ->add_option("--out-latents", filter_options.latents_path,
                   "Posterior-mean latents (trials, steps, rank) .npy")
      ->capture_default_str();
  filter
      ->add_option("--out-elbo", filter_options.elbo_path,
                   "ELBO per time step of each trial (trials) .npy")
      ->capture_default_str();
  filter->add_flag("--quiet,-q", filter_options.quiet, "No progress display");
  filter->add_option("--out-particles", filter_options.particles_path,
                     "Optional .npz with particles, log_weights, ancestors, resampled");
  filter->add_flag("--smooth", filter_options.smooth,
                   "Smoothed latents: --out-latents holds the means of backward-simulation "
                   "trajectories (FFBSi) drawn through the filter's particles");
  filter
      ->add_option("--trajectories", filter_options.trajectories,
                   "Backward-simulation trajectories per trial (with --smooth)")
      ->capture_default_str();
  filter->add_option("--out-trajectories", filter_options.trajectories_path,
                     "Optional .npy of the smoothed trajectories (trials, trajectories, steps, "
                     "rank), with --smooth");

  // --- sample ---
  auto* sample = app.add_subcommand("sample", "Generate observations from a fitted model");
  std::string sample_model, sample_out = "samples.npz", sample_inputs, sample_inputs_field;
  int sample_trials = 10, sample_steps = 100, sample_burn_in = 0;
  std::uint64_t sample_seed = 0;
  sample->add_option("--model", sample_model, "Model file (.npz)")->required();
  sample->add_option("--trials", sample_trials, "Sequences to generate")->capture_default_str();
  sample->add_option("--steps", sample_steps, "Steps per sequence (after burn-in)")
      ->capture_default_str();
  sample->add_option("--burn-in", sample_burn_in, "Steps generated and dropped first")
      ->capture_default_str();
  add_seed_option(*sample, sample_seed, "Random seed");
  sample->add_option("--inputs", sample_inputs, "Inputs (trials, burn-in + steps, inputs)");
  sample->add_option("--inputs-field", sample_inputs_field, "Entry of an .npz inputs file");
  std::string sample_init = "prior";
  DataOptions sample_data;
  int sample_init_step = -1, sample_particles = 1000;
  const std::size_t posterior_first = sample->get_options().size();
  sample
      ->add_option("--init", sample_init,
                   "prior (a draw of the initial state's prior) | posterior (a draw of the "
                   "posterior of --data's trials at --init-step: one sequence per trial)")
      ->capture_default_str();
  sample->add_option("--data", sample_data.path,
                     "Recording whose posterior starts the sequences (--init posterior)");
  sample->add_option("--field", sample_data.field, "Entry of an .npz data file");
  sample->add_option("--layout", sample_data.layout, "Axis order of the data, as in fit")
      ->capture_default_str();
  sample->add_option("--data-inputs", sample_data.inputs_path,
                     "Inputs of the recording (same layout as the data)");
  sample->add_option("--data-inputs-field", sample_data.inputs_field,
                     "Entry of an .npz file of the recording's inputs");
  sample->add_flag("--allow-missing", sample_data.allow_missing,
                   "NaN entries of the recording are missing values instead of bad input");
  sample
      ->add_option("--init-step", sample_init_step,
                   "Step of the recording whose posterior starts the sequences (-1: the last)")
      ->capture_default_str();
  sample->add_option("--particles", sample_particles, "Particles of the posterior's filter")
      ->capture_default_str();
  group_since(*sample, posterior_first, "Posterior start (--init posterior)");
  sample
      ->add_option("--out,-o", sample_out,
                   "Output .npz: observations (Poisson counts as int32), rates, latents")
      ->capture_default_str();
  DeviceOptions sample_device;
  add_device_options(*sample, sample_device);

  // --- evaluate ---
  auto* evaluate = app.add_subcommand(
      "evaluate", "Score a fitted model on a recording: ELBO, generated data against the recording");
  EvaluateCommandOptions evaluate_options;
  add_evaluate_options(*evaluate, evaluate_options);

  // --- sweep ---
  auto* sweep = app.add_subcommand(
      "sweep", "Independent fits over seeds and a grid of fit options, and a table of their results");
  SweepOptions sweep_options;
  add_sweep_options(*sweep, sweep_options);

  // --- fixed-points ---
  auto* fixed = app.add_subcommand("fixed-points",
                                   "Every fixed point of a relu / clipped-relu model's latent map");
  FixedPointCommandOptions fixed_options;
  add_fixed_point_options(*fixed, fixed_options);

  // --- demo ---
  auto* demo =
      app.add_subcommand("demo", "Fit a student to data from a built-in oscillator teacher");
  DemoOptions demo_options;
  add_demo_options(*demo, demo_options);

  // sweep passes what follows -- to every run's fit: split it off before CLI11 reads the rest.
  int parsed = argc;
  if (argc > 1 && std::string(argv[1]) == "sweep")
    for (int i = 2; i < argc; ++i)
      if (std::string(argv[i]) == "--") {
        sweep_options.fit_arguments.assign(argv + i + 1, argv + argc);
        parsed = i;
        break;
      }
  try {
    app.parse(parsed, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? 0 : 2;
  }
  LRSMC_REQUIRE(world == nullptr || *fit, "lrsmc ", app.get_subcommands().front()->get_name(), ": ",
                world ? world->size() : 0,
                " MPI processes; only lrsmc fit shares its work over MPI (run this command as one "
                "process)");
  fit_options.device.communicator = world;
  install_signal_handlers(*fit || *demo);
  ProgressPrinter printer(*demo ? demo_options.quiet : fit_options.quiet);
  const ProgressCallback progress = [&printer](const EpochReport& report) {
    return printer(report);
  };

  if (*simulate)
    return run_simulate(simulate_model, simulate_trials, simulate_steps, simulate_seed,
                        simulate_inputs, simulate_inputs_field, simulate_out, simulate_device);
  if (*fit) return run_fit(fit_options, progress);
  if (*filter) return run_filter(filter_options);
  if (*sample) {
    require_distinct_paths({{"--model", sample_model},
                            {"--inputs", sample_inputs},
                            {"--data", sample_data.path},
                            {"--data-inputs", sample_data.inputs_path}},
                           {{"--out", sample_out}});
    require_writable_outputs({{"--out", sample_out}});
    const Model model = load_model(sample_model);
    LRSMC_REQUIRE(sample_init == "prior" || sample_init == "posterior",
                  "--init is not recognised; got '", sample_init, "', expected prior or posterior");
    LRSMC_REQUIRE(sample_init == "posterior" || sample_data.path.empty(),
                  "--data needs --init posterior (the recording's posterior starts the sequences)");
    auto backend = make_device_backend(sample_device, model.config, FilterOptions{});
    std::vector<double> initial_states;
    if (sample_init == "posterior") {
      LRSMC_REQUIRE(!sample_data.path.empty(), "--init posterior needs --data (the recording)");
      int data_trials = 0;
      initial_states = posterior_states(*backend, model, sample_data, sample_particles,
                                        sample_init_step, sample_seed, &data_trials);
      LRSMC_REQUIRE(sample->count("--trials") == 0 || sample_trials == data_trials,
                    "--trials ", sample_trials, " does not match the ", data_trials,
                    " trials of ", sample_data.path, " (--init posterior: one sequence per trial)");
      sample_trials = data_trials;
    }
    require_sample_size(sample_trials, sample_steps, sample_burn_in, model.config);
    const int total = sample_steps + sample_burn_in;
    const auto inputs =
        read_inputs(sample_inputs, sample_inputs_field, sample_trials, total, model.config);
    SampleResult all =
        backend->sample(model, sample_trials, total, inputs, sample_seed, 0, initial_states);
    // Drop the burn-in steps of every trial.
    const auto drop = [&](const std::vector<double>& values, int width) {
      std::vector<double> kept;
      for (int trial = 0; trial < sample_trials; ++trial)
        kept.insert(
            kept.end(),
            values.begin() + std::ptrdiff_t((std::size_t(trial) * total + sample_burn_in) * width),
            values.begin() + std::ptrdiff_t(std::size_t(trial + 1) * total * width));
      return kept;
    };
    SampleResult kept{drop(all.latents, model.config.rank),
                      drop(all.rates, model.config.num_channels),
                      drop(all.observations, model.config.num_channels)};
    write_samples(sample_out, kept, sample_trials, sample_steps, model.config, sample_model);
    std::printf("wrote %s: %d sequences of %d steps (after %d burn-in steps)\n", sample_out.c_str(),
                sample_trials, sample_steps, sample_burn_in);
    return 0;
  }
  if (*evaluate) return run_evaluate(evaluate_options);
  if (*sweep) return run_sweep(sweep_options);
  if (*fixed) return run_fixed_points(fixed_options);
  if (*demo) return run_demo(demo_options, progress);
  return 2;
}

}  // namespace lrsmc::cli

int main(int argc, char** argv) {
  try {
    return lrsmc::cli::main_with_exceptions(argc, argv);
  } catch (...) {
    return lrsmc::cli::report_error();
  }
}
