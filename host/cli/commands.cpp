// lrsmc fit, filter, fixed-points and demo.
#include "cli/commands.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <tuple>

#include <unistd.h>

#include "core/shared_trials.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/fixed_points.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/presets.hpp"
#include "lrsmc/smoother.hpp"

namespace lrsmc::cli {

void add_training_options(CLI::App& app, FitOptions& options) {
  options.app = &app;
  TrainingOptions& training = options.training;
  std::string preset_help =
      "A recipe that sets the options not given explicitly (README, \"Presets\"):";
  for (const Preset& preset : presets())
    preset_help += "\n  " + preset.name + ": " + preset.purpose + ".\n    Sets " +
                   describe_settings(preset) + ".";
  app.add_option("--preset", options.preset, preset_help)
      ->check(CLI::IsMember([] {
        std::vector<std::string> names;
        for (const Preset& preset : presets()) names.push_back(preset.name);
        return names;
      }()));
  app.add_option("--init", options.init_path,
                 "Start from this model file (its architecture is used)");
  app.add_option("--out,-o", options.out, "Fitted model file (.npz)")->capture_default_str();
  app.add_option("--epochs", training.epochs, "Training epochs")->capture_default_str();
  app.add_option("--batch-size", training.batch_size, "Trials or windows per step")
      ->capture_default_str();
  app.add_option("--window", training.window,
                 "Window length for one long recording (layout time,channels)")
      ->capture_default_str();
  app.add_option("--windows-per-epoch", training.windows_per_epoch,
                 "Random windows per epoch for one long recording")
      ->capture_default_str();
  app.add_option("--lr", training.learning_rate, "Initial learning rate")->capture_default_str();
  app.add_option("--lr-end", training.learning_rate_end,
                 "Learning rate reached at the last epoch (exponential decay); 0: the paper's "
                 "decay per optimizer step (1000x over 75,000 steps), at most 1000x, so a short "
                 "run decays less")
      ->capture_default_str();
  app.add_option("--optimizer", options.optimizer, "radam | adam")->capture_default_str();
  app.add_option("--clip", training.gradient_clip, "Gradient-norm clipping (0: off)")
      ->capture_default_str();
  app.add_option("--held-out", training.held_out_fraction,
                 "Fraction of trials (or of the recording's end) held out for evaluation")
      ->capture_default_str();
  app.add_option("--split-seed", training.split_seed,
                 "Seed of the held-out split (-1: --seed); runs of several seeds share a split "
                 "with the same --split-seed")
      ->check(CLI::Range(std::int64_t(-1), std::numeric_limits<std::int64_t>::max()))
      ->capture_default_str();
  app.add_option("--eval-particles", training.eval_particles,
                 "Particles for the held-out ELBO (0: as training)")
      ->capture_default_str();
  app.add_option("--eval-every", training.eval_every, "Evaluate every this many epochs")
      ->capture_default_str();
  add_seed_option(app, training.seed, "Random seed (same seed, same result)");
  app.add_option("--checkpoint", options.checkpoint,
                 "Checkpoint file (default: <out>.checkpoint.npz when checkpointing)");
  app.add_option("--checkpoint-every", training.checkpoint_every,
                 "Write a checkpoint every this many epochs (0: only at the end with --checkpoint)")
      ->capture_default_str();
  app.add_flag("--resume", options.resume, "Resume from the checkpoint");
  app.add_option("--keep", options.keep,
                 "last | best: the model of the last epoch, or of the best held-out ELBO "
                 "(needs --held-out)")
      ->capture_default_str();
  app.add_option("--patience", training.patience,
                 "Stop after this many held-out evaluations without improvement (0: never; "
                 "needs --held-out)")
      ->capture_default_str();
  app.add_flag("--quiet,-q", options.quiet, "No progress display");
  app.add_option("--shard", options.shard,
                 "auto | on | off: under MPI, each process reads only the observations of its "
                 "share of the trials (auto: when they take over 2 GiB, or every batch holds "
                 "every training trial); the model is the same either way")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  // What is not data, architecture, particle filter or device is training and output.
  for (CLI::Option* option : app.get_options())
    if (option->get_group() == "Options" && option->get_name() != "--help")
      option->group("Training and output");
}

namespace {

/// Writes with `write` to the first of `candidates` where that works; returns that path, or ""
/// when none worked, after saying on stderr why each failed.
std::string write_first_possible(const std::vector<std::string>& candidates, const char* what,
                                 const std::function<void(const std::string&)>& write) {
  for (const std::string& candidate : candidates) {
    try {
      write(candidate);
      return candidate;
    } catch (const Error& error) {
      std::fprintf(stderr, "lrsmc: could not write the %s to %s: %s\n", what, candidate.c_str(),
                   error.what());
    }
  }
  return {};
}

/// Where a stopped run's files go when their own paths cannot be written: the folder of the
/// other output, the working folder, the system's temporary folder.
std::vector<std::string> rescue_paths(const std::string& path, const std::string& other) {
  namespace fs = std::filesystem;
  std::string name =
      detail::concat("lrsmc-rescued-", ::getpid(), "-", fs::path(path).filename().string());
  if (!io::has_extension(name, ".npz")) name += ".npz";
  std::vector<std::string> paths{path};
  std::error_code error;
  for (const fs::path& folder : {fs::absolute(other, error).parent_path(), fs::current_path(error),
                                 fs::temp_directory_path(error)}) {
    if (!folder.empty()) paths.push_back((folder / name).string());
  }
  return paths;
}

/// Refuses a fit whose largest allocations exceed this machine's memory, before the first
/// epoch: an epoch's batch plan, a batch's stored particles (states, proposal noise, weights
/// and ancestors for every step, kept for the backward pass) and the held-out evaluation's.
void require_training_fits(const TrainingOptions& training, const ModelConfig& config,
                           const Dataset& train, const Dataset& held_out) {
  const double per_particle_step = 8.0 * (2.0 * config.rank + 2.0);
  const double rows_per_epoch =
      train.continuous() ? double(training.windows_per_epoch) : double(train.num_trials);
  const double batch_rows = std::min(double(training.batch_size), rows_per_epoch);
  const double steps = train.continuous() ? double(training.window) : double(train.num_steps);
  // Each row: its start, its trial, and its slot in the batch lists.
  require_fits_in_memory(
      rows_per_epoch * 16.0 +
          batch_rows * steps * training.filter.num_particles * per_particle_step,
      detail::concat("training (--batch-size ", training.batch_size,
                     train.continuous()
                         ? detail::concat(", --windows-per-epoch ", training.windows_per_epoch)
                         : std::string(),
                     ", --particles ", training.filter.num_particles, ")"));
  if (held_out.num_trials == 0) return;
  const int particles =
      training.eval_particles > 0 ? training.eval_particles : training.filter.num_particles;
  require_fits_in_memory(
      double(held_out.num_trials) * held_out.num_steps * particles * per_particle_step,
      detail::concat("the held-out evaluation (--eval-particles ", particles, ", ",
                     held_out.num_trials, " trials of ", held_out.num_steps, " steps)"));
}

/// Observations over this size (float64) are split over the processes by --shard auto.
constexpr double auto_shard_bytes = double(std::int64_t(2) << 30);

/// The recording of a fit, split into training and held-out sets (split_held_out). With several
/// processes and --shard on (or auto, for a large recording or batches of every training trial),
/// each process reads only the observations of its share of each set (trial_share), and the
/// split is the sets' Dataset::shares; otherwise every process reads the recording whole.
/// Sharing changes which process runs which trial, not the model. `encoder`: the fit may use the
/// encoder proposal, whose gradient reads every trial.
struct FitData {
  /// As read: the whole recording, or (shared) its shape, source and layout without values.
  Dataset recording;
  Dataset train, held_out;
  bool shared = false;  ///< whether the sets are split over the processes (Dataset::shares)
};
FitData read_fit_data(const FitOptions& options, Communicator* world, bool encoder) {
  const DataOptions& data_options = options.data;
  const DataLayout layout = parse_data_layout(data_options.layout, "--layout");
  const bool trials =
      layout == DataLayout::trials_time_channels || layout == DataLayout::trials_channels_time;
  const TrainingOptions& training = options.training;
  const std::uint64_t split_seed =
      training.split_seed >= 0 ? std::uint64_t(training.split_seed) : training.seed;
  const int processes = world == nullptr ? 1 : world->size();
  if (options.shard == "on" && processes > 1) {
    LRSMC_REQUIRE(trials, "--shard on splits trials over the processes; got layout ",
                  data_options.layout, ", one recording that every process reads whole");
    LRSMC_REQUIRE(!encoder,
                  "--shard on: the encoder proposal's gradient reads every trial's "
                  "observations; use --proposal bootstrap (or optimal), or --shard off");
  }
  FitData read;
  Dataset& data = read.recording;
  if (processes == 1 || options.shard == "off" || !trials || encoder) {
    data = load_data(data_options);
  } else {
    // The choice rests on the options and the file's shape alone: every process makes it alike.
    // A value refused in one process's trials stops every process with that error.
    detail::on_every_process(world, [&] {
      data = load_dataset_trials(
          data_options.path, layout, data_options.field, data_options.inputs_path,
          data_options.inputs_field, data_options.allow_missing, [&](const Dataset& shape) {
            const int training_trials =
                shape.num_trials -
                int(held_out_trials(shape, training.held_out_fraction, split_seed).size());
            const double bytes =
                8.0 * shape.num_trials * double(shape.num_steps) * shape.num_channels;
            read.shared = options.shard == "on" || bytes > auto_shard_bytes ||
                          training.batch_size >= training_trials;
            if (read.shared)
              return trials_to_read(shape, training.held_out_fraction, split_seed, world->rank(),
                                    processes);
            std::vector<int> every(std::size_t(shape.num_trials));
            std::iota(every.begin(), every.end(), 0);
            return every;
          });
    });
    if (!read.shared) data.held_trials.reset();  // every trial was read
  }
  if (data.continuous())
    LRSMC_REQUIRE(training.window <= data.num_steps, data.source, ": --window ", training.window,
                  " is longer than the recording; got ", data.num_steps,
                  " steps, expected a window of at most ", data.num_steps);
  std::tie(read.train, read.held_out) =
      read.shared ? split_held_out_in_shares(data, training.held_out_fraction, split_seed,
                                             world->rank(), processes)
                  : split_held_out(data, training.held_out_fraction, training.window, split_seed);
  if (read.shared) {  // the sets hold this process's trials; the recording keeps none twice
    data.observations.clear();
    data.observations.shrink_to_fit();
  }
  return read;
}

/// The checkpoint path of a fit without --checkpoint.
std::string default_checkpoint_path(const std::string& out) { return out + ".checkpoint.npz"; }

/// The checkpoint path of a fit: --checkpoint, else the default.
std::string checkpoint_path_of(const FitOptions& options) {
  return options.checkpoint.empty() ? default_checkpoint_path(options.out) : options.checkpoint;
}

/// Saves a fit's model to --out, or beside it when that cannot be written (saying so); returns
/// where it went ("" when nowhere).
std::string save_fitted_model(const FitOptions& options, const TrainingResult& result) {
  const std::string model_at =
      write_first_possible(rescue_paths(options.out, checkpoint_path_of(options)), "model",
                           [&](const std::string& path) { save_model(path, result.model); });
  if (!model_at.empty() && model_at != options.out)
    std::fprintf(stderr, "lrsmc: saved the model to %s instead\n", model_at.c_str());
  // The history beside a model file (not beside /dev/null or a FIFO).
  std::error_code error;
  if (!model_at.empty() && std::filesystem::is_regular_file(model_at, error)) {
    std::string csv = "epoch,train_elbo,held_out_elbo,learning_rate,elapsed_seconds\n";
    char line[160], held_out[40] = "";
    for (const EpochReport& report : result.history) {
      held_out[0] = '\0';  // empty: not evaluated at this epoch
      if (!std::isnan(report.held_out_elbo))
        std::snprintf(held_out, sizeof held_out, "%.17g", report.held_out_elbo);
      std::snprintf(line, sizeof line, "%d,%.17g,%s,%.17g,%.3f\n", report.epoch, report.train_elbo,
                    held_out, report.learning_rate, report.elapsed_seconds);
      csv += line;
    }
    write_first_possible({model_at + ".history.csv"}, "training history",
                         [&](const std::string& path) { io::write_text_file(path, csv); });
  }
  return model_at;
}

/// A run that stopped early (a request, a NaN, or an error after training started): its model
/// goes to --out (or beside it); a checkpoint of its last completed epoch goes to the checkpoint
/// path (or beside it), unless it stopped on a NaN, where resuming would meet the same NaN. Says
/// where each went.
/// The exit status of a run that did not complete: 130 when stopped by request, else 1.
int stopped_status(const TrainingResult& result) {
  return result.stop_reason.rfind("stopped by request", 0) == 0 ? 130 : 1;
}

int save_stopped_fit(const FitOptions& options, const TrainingResult& result) {
  const bool requested = stopped_status(result) == 130;
  const std::string model_at = save_fitted_model(options, result);
  if (model_at == options.out) std::fprintf(stderr, "saved the model to %s\n", model_at.c_str());
  if (requested || result.failed) {
    const std::string checkpoint = checkpoint_path_of(options);
    const std::string checkpoint_at =
        write_first_possible(rescue_paths(checkpoint, options.out), "checkpoint",
                             [&](const std::string& path) { save_checkpoint(path, result); });
    const bool default_path = checkpoint_at == default_checkpoint_path(options.out);
    if (!checkpoint_at.empty()) {
      std::fprintf(stderr, "saved a checkpoint of epoch %d to %s; continue with --resume%s%s\n",
                   result.history.empty() ? 0 : result.history.back().epoch, checkpoint_at.c_str(),
                   default_path ? "" : " --checkpoint ", default_path ? "" : checkpoint_at.c_str());
    }
  }
  return stopped_status(result);
}

/// Gives every option of the preset that the command line did not give its preset value. With
/// --init the model file fixes the architecture, so the preset's architecture options are left.
void apply_preset(FitOptions& options) {
  if (options.preset.empty()) return;
  LRSMC_REQUIRE(options.app != nullptr, "--preset needs the fit command's options");
  const Preset& preset = find_preset(options.preset, "--preset");
  for (const auto& [name, value] : preset.settings) {
    CLI::Option* option = options.app->get_option("--" + name);
    if (option->count() > 0) continue;
    if (!options.init_path.empty() && option->get_group() == "Architecture") continue;
    option->add_result(value);
    option->run_callback();
  }
}

}  // namespace

int run_fit(FitOptions& options, const ProgressCallback& progress) {
  apply_preset(options);
  // Under MPI every process trains (on its share of each batch's trials) and process 0 alone
  // writes the model and checkpoints (the others' output is silenced: main.cpp).
  Communicator* const world = options.device.communicator.get();
  const bool writer = world == nullptr || world->rank() == 0;
  if (options.resume || options.training.checkpoint_every > 0 || !options.checkpoint.empty())
    options.training.checkpoint_path = checkpoint_path_of(options);
  require_distinct_paths(
      {{"--data", options.data.path},
       {"--inputs", options.data.inputs_path},
       {"--init", options.init_path}},
      {{"--out", options.out}, {"--checkpoint", options.training.checkpoint_path}});
  // Checks whose outcome can differ between processes (files, this machine's memory) end every
  // process when one fails, so that none waits alone for the others.
  detail::on_every_process(world, [&] {
    if (writer)
      require_writable_outputs(
          {{"--out", options.out}, {"--checkpoint", options.training.checkpoint_path}});
  });
  // The encoder proposal (of an --init model that has an encoder, or chosen for counts by
  // "auto") reads every trial: each process then reads the whole recording.
  Model model;
  if (!options.init_path.empty()) model = load_model(options.init_path);
  const bool may_use_encoder =
      options.inference.proposal == "encoder" ||
      (options.inference.proposal == "auto" &&
       (options.init_path.empty()
            ? auto_trains_encoder(
                  parse_observation(options.architecture.observation, "--observation"),
                  options.training.learning_rate)
            : model.config.encoder.has_value()));
  if (!(options.training.held_out_fraction >= 0 && options.training.held_out_fraction < 1))
    validate(options.training, "options");  // before the fraction splits the trials
  const FitData fit_data = read_fit_data(options, world, may_use_encoder);
  const Dataset &data = fit_data.recording, &train = fit_data.train, &held_out = fit_data.held_out;
  // Whether an observation is missing (in any process's share, when split).
  const bool missing = fit_data.shared ? world->any(train.has_missing() || held_out.has_missing())
                                       : data.has_missing();
  if (!options.init_path.empty()) {
    for (const char* name : {"--rank", "--hidden", "--nonlinearity", "--observation",
                             "--encoder-kernels", "--encoder-channels"})
      LRSMC_REQUIRE(options.app == nullptr || options.app->count(name) == 0, options.init_path,
                    ": ", name,
                    " cannot be combined with --init (the model file fixes the "
                    "architecture)");
    LRSMC_REQUIRE(model.config.num_channels == data.num_channels, options.init_path, ": model has ",
                  model.config.num_channels, " channels; got data ", data.source, " with ",
                  data.num_channels, " channels (layout ", to_string(data.layout), ")");
    LRSMC_REQUIRE(model.config.num_inputs == data.num_inputs, options.init_path, ": model takes ",
                  model.config.num_inputs, " inputs; got ", data.num_inputs);
  } else {
    // "auto" fits spike counts with the encoder proposal, at the learning rates it is stable at.
    const bool encoder =
        options.inference.proposal == "encoder" ||
        (options.inference.proposal == "auto" && !missing &&
         auto_trains_encoder(parse_observation(options.architecture.observation, "--observation"),
                             options.training.learning_rate));
    const ModelConfig config =
        make_config(options.architecture, data.num_channels, data.num_inputs, encoder);
    model = Model::initialise(config, options.training.seed);
  }
  // Shared, the warnings come from process 0's training trials (it alone prints).
  check_data(fit_data.shared ? train : data, model.config);
  options.training.filter = make_filter_options(options.inference, model.config,
                                                missing ? data.source + " has missing values" : "");
  options.training.optimizer = parse_optimizer(options.optimizer, "--optimizer");
  LRSMC_REQUIRE(options.keep == "last" || options.keep == "best", "--keep is not recognised; got '",
                options.keep, "', expected last or best");
  options.training.keep_best = options.keep == "best";
  std::string resume_from;
  if (options.resume) {
    LRSMC_REQUIRE(std::filesystem::exists(options.training.checkpoint_path),
                  options.training.checkpoint_path,
                  ": --resume given but the checkpoint does not "
                  "exist");
    resume_from = options.training.checkpoint_path;
  }
  options.training.communicator = options.device.communicator;
  validate(options.training, "options");
  // "auto" trains on the GPU when there is one (device-resident: data, parameters and
  // optimizer state stay on it), on the CPU otherwise.
  auto backend = make_device_backend(options.device, model.config, options.training.filter);
  detail::on_every_process(
      world, [&] { require_training_fits(options.training, model.config, train, held_out); });
  if (!options.quiet && !options.preset.empty())
    std::fprintf(stderr, "lrsmc fit: preset %s (options given explicitly win)\n",
                 options.preset.c_str());
  if (!options.quiet)
    std::fprintf(stderr, "lrsmc fit: %s; rank %d, %d units, %s; %d particles, %s proposal; %s\n",
                 describe(data).c_str(), model.config.rank, model.config.num_hidden,
                 to_string(model.config.nonlinearity).c_str(),
                 options.training.filter.num_particles,
                 to_string(options.training.filter.proposal).c_str(), backend->name().c_str());
  if (!options.quiet)
    std::fprintf(stderr, "lrsmc fit: %d epochs of %ld steps, %s, learning rate %.3g -> %.3g%s\n",
                 options.training.epochs, steps_per_epoch(options.training, train),
                 to_string(options.training.optimizer).c_str(), options.training.learning_rate,
                 final_learning_rate(options.training, train),
                 options.training.learning_rate_end > 0 ? "" : " (--lr-end 0: automatic)");
  if (!options.quiet && world != nullptr)
    std::fprintf(stderr,
                 "lrsmc fit: %d MPI processes share each batch's trials (each gradient gathers "
                 "%.1f KiB per trial); process 0 writes\n",
                 world->size(),
                 double(gathered_values_per_trial(
                     model.config, options.training.filter,
                     train.continuous() ? options.training.window : train.num_steps)) *
                     8 / 1024);
  if (!options.quiet && fit_data.shared)
    std::fprintf(stderr,
                 "lrsmc fit: each process read only the observations of its share of the trials "
                 "(--shard): process 0 holds %zu of %d training and %zu of %d held-out trials\n",
                 train.held_trials->size(), train.num_trials,
                 held_out.whole() ? std::size_t(0) : held_out.held_trials->size(),
                 held_out.num_trials);
  for (const std::string& warning : training_warnings(options.training, train))
    std::fprintf(stderr, "lrsmc: warning: %s\n", warning.c_str());
  Trainer trainer(*backend, options.training);
  const TrainingResult result = trainer.fit(model, train, held_out, progress, resume_from);
  if (!writer)  // the same result as process 0's, which reports and saves it
    return result.completed ? 0 : stopped_status(result);
  if (!result.completed) {
    std::fprintf(stderr, "lrsmc: %s\n", result.stop_reason.c_str());
    return save_stopped_fit(options, result);
  }
  if (save_fitted_model(options, result) != options.out) return 1;
  if (result.stopped_early) std::fprintf(stderr, "lrsmc: %s\n", result.stop_reason.c_str());
  const auto& last = result.history.back();
  std::printf("fitted %s: final training ELBO %.4f per step", options.out.c_str(), last.train_elbo);
  if (std::isfinite(last.held_out_elbo)) std::printf(", held-out ELBO %.4f", last.held_out_elbo);
  std::printf(" (%s)\n", format_duration(last.elapsed_seconds).c_str());
  if (options.training.keep_best && result.best_epoch > 0)
    std::printf("kept the model of epoch %d, the best held-out ELBO %.4f\n", result.best_epoch,
                result.best_held_out_elbo);
  return 0;
}

namespace {

/// Filters every trial of `data`; with `progress`, in about twenty parts with a progress line
/// between them. Each trial keeps its own random-number address (SequenceBatch::trial_ids), so
/// the parts give the same numbers as one call.
FilterResult filter_in_parts(Backend& backend, const Model& model, const Dataset& data,
                             const FilterOptions& options, std::uint64_t seed,
                             const FilterRequest& request, bool progress) {
  constexpr int parts = 20;
  if (!progress || data.num_trials < parts)
    return backend.filter(model, trials_batch(data, 0, data.num_trials), options, seed, request);
  const auto start = std::chrono::steady_clock::now();
  FilterResult result;
  const auto append = [](auto& into, const auto& from) {
    into.insert(into.end(), from.begin(), from.end());
  };
  for (int part = 0; part < parts; ++part) {
    const int first = int(std::int64_t(data.num_trials) * part / parts);
    const int last = int(std::int64_t(data.num_trials) * (part + 1) / parts);
    SequenceBatch batch = trials_batch(data, first, last - first);
    batch.trial_ids.resize(std::size_t(last - first));
    std::iota(batch.trial_ids.begin(), batch.trial_ids.end(), std::uint32_t(first));
    const FilterResult piece = backend.filter(model, batch, options, seed, request);
    append(result.elbo_per_trial, piece.elbo_per_trial);
    append(result.filtered_mean, piece.filtered_mean);
    append(result.particles, piece.particles);
    append(result.log_weights, piece.log_weights);
    append(result.ancestors, piece.ancestors);
    append(result.resampled, piece.resampled);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\rlrsmc filter: trial %d/%d | %s elapsed | %s left   ", last,
                 data.num_trials, format_duration(seconds).c_str(),
                 format_duration(seconds / last * (data.num_trials - last)).c_str());
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
  result.elbo = std::accumulate(result.elbo_per_trial.begin(), result.elbo_per_trial.end(), 0.0) /
                double(data.num_trials);
  return result;
}

}  // namespace

int run_filter(const FilterCommandOptions& options) {
  require_distinct_paths({{"--model", options.model_path},
                          {"--data", options.data.path},
                          {"--inputs", options.data.inputs_path}},
                         {{"--out-latents", options.latents_path},
                          {"--out-elbo", options.elbo_path},
                          {"--out-particles", options.particles_path},
                          {"--out-trajectories", options.trajectories_path}});
  require_writable_outputs({{"--out-latents", options.latents_path},
                            {"--out-elbo", options.elbo_path},
                            {"--out-particles", options.particles_path},
                            {"--out-trajectories", options.trajectories_path}});
  LRSMC_REQUIRE(options.smooth || options.trajectories_path.empty(),
                "--out-trajectories needs --smooth (the trajectories are the smoother's draws)");
  LRSMC_REQUIRE(!options.smooth || options.particles_path.empty(),
                "--out-particles cannot be combined with --smooth (the filter's particles are "
                "written by a run without it)");
  LRSMC_REQUIRE(!options.smooth || (options.trajectories >= 1 && options.trajectories <= 1'000'000),
                "--trajectories is out of range; got ", options.trajectories,
                ", expected 1 to 1000000");
  const Model model = load_model(options.model_path);
  const Dataset data = load_data(options.data);
  check_data(data, model.config);
  const FilterOptions filter_options =
      make_filter_options(options.inference, model.config, missing_values_of(data));
  auto backend = make_device_backend(options.device, model.config, filter_options);
  FilterRequest request;
  request.filtered_mean = true;
  request.particles = !options.particles_path.empty();
  const std::int64_t trials = data.num_trials, steps = data.num_steps, rank = model.config.rank,
                     particles = filter_options.num_particles;
  if (options.smooth) {  // backward simulation over the filter's particles
    const SmoothResult smoothed =
        lrsmc::smooth(*backend, model, trials_batch(data, 0, data.num_trials), filter_options,
                      options.seed, options.trajectories);
    io::write_npy(options.latents_path, Array({trials, steps, rank}, smoothed.smoothed_mean));
    io::write_npy(options.elbo_path, Array({trials}, smoothed.elbo_per_trial),
                  io::StoredType::float64);
    if (!options.trajectories_path.empty())
      io::write_npy(options.trajectories_path,
                    Array({trials, std::int64_t(options.trajectories), steps, rank},
                          smoothed.trajectories));
    std::printf("ELBO %.6f per step (mean of %d trials, %d particles, %s proposal); smoothed "
                "means of %d trajectories per trial; wrote %s, %s\n",
                smoothed.elbo, data.num_trials, filter_options.num_particles,
                to_string(filter_options.proposal).c_str(), options.trajectories,
                options.latents_path.c_str(), options.elbo_path.c_str());
    return 0;
  }
  const bool progress = !options.quiet && isatty(fileno(stderr)) != 0;
  const FilterResult result =
      filter_in_parts(*backend, model, data, filter_options, options.seed, request, progress);
  io::write_npy(options.latents_path, Array({trials, steps, rank}, result.filtered_mean));
  io::write_npy(options.elbo_path, Array({trials}, result.elbo_per_trial), io::StoredType::float64);
  if (request.particles) {
    std::vector<double> ancestors(result.ancestors.begin(), result.ancestors.end());
    std::vector<double> resampled(result.resampled.begin(), result.resampled.end());
    io::write_npz(options.particles_path,
                  {{"particles", Array({trials, steps, particles, rank}, result.particles)},
                   {"log_weights", Array({trials, steps, particles}, result.log_weights)},
                   {"ancestors", Array({trials, steps, particles}, ancestors)},
                   {"resampled", Array({trials, steps}, resampled)}},
                  {}, io::StoredType::float32,
                  {{"ancestors", io::StoredType::int32}, {"resampled", io::StoredType::int32}});
  }
  std::printf("ELBO %.6f per step (mean of %d trials, %d particles, %s proposal); wrote %s, %s\n",
              result.elbo, data.num_trials, filter_options.num_particles,
              to_string(filter_options.proposal).c_str(), options.latents_path.c_str(),
              options.elbo_path.c_str());
  return 0;
}

std::vector<double> posterior_states(Backend& backend, const Model& model,
                                     const DataOptions& data_options, int particles, int step,
                                     std::uint64_t seed, int* trials) {
  const Dataset data = load_data(data_options);
  check_data(data, model.config);
  LRSMC_REQUIRE(step >= -1 && step < data.num_steps, "--init-step is out of range; got ", step,
                ", expected 0 to ", data.num_steps - 1, " (or -1: the last step) for ",
                data.source);
  LRSMC_REQUIRE(particles >= 1, "--particles must be at least 1; got ", particles);
  const int at = step < 0 ? data.num_steps - 1 : step;
  FilterOptions options;
  options.num_particles = particles;
  options.proposal = default_proposal(model.config, !data.has_missing());
  const SmoothResult smoothed = lrsmc::smooth(backend, model, trials_batch(data, 0, data.num_trials),
                                              options, seed, 1);
  const int R = model.config.rank;
  std::vector<double> states(std::size_t(data.num_trials) * R);
  for (int trial = 0; trial < data.num_trials; ++trial)
    for (int r = 0; r < R; ++r)
      states[std::size_t(trial) * R + r] =
          smoothed.trajectories[(std::size_t(trial) * data.num_steps + at) * R + r];
  *trials = data.num_trials;
  return states;
}

void add_fixed_point_options(CLI::App& app, FixedPointCommandOptions& options) {
  // --model as in every other command, or positionally.
  app.add_option("model,--model", options.model_path, "Model file (.npz)")->required();
  app.add_option("--input", options.input, "Constant input u held during the analysis")
      ->delimiter(',');
  app.add_option("--out-json", options.json_path, "Fixed points as JSON")->capture_default_str();
  app.add_option("--out-npy", options.npy_path, "Fixed points (count, rank) as .npy")
      ->capture_default_str();
  app.add_option("--numerical", options.numerical_starts,
                 "Numerical root search from this many starts (any nonlinearity, e.g. tanh)")
      ->capture_default_str();
  add_seed_option(app, options.seed, "Seed of the numerical search");
  app.add_option("--device", options.device,
                 "cpu | cuda | auto: where the exact method sweeps the arrangement (auto: the GPU "
                 "when there is one and the arrangement is large)")
      ->capture_default_str();
  app.add_option("--max-regions", options.max_regions,
                 "The exact method refuses an arrangement of more candidate regions (about "
                 "10^7 per second on the CPU)")
      ->check(CLI::Range(1.0, 1e30))
      ->capture_default_str();
  app.add_flag("--quiet,-q", options.quiet, "No announcement of the work before it starts");
}

namespace {

/// The latent map of a model with its input held at `input` (empty: zero input).
PiecewiseLinearNetwork latent_map(const Model& model, const std::vector<double>& input) {
  const ModelConfig& config = model.config;
  PiecewiseLinearNetwork network;
  network.rank = config.rank;
  network.num_hidden = config.num_hidden;
  network.decay = model.decay();
  network.nonlinearity = config.nonlinearity;
  network.m = model.get("m");
  network.n = model.get("n");
  network.h = model.get("h");
  network.constant_current.assign(std::size_t(config.num_hidden), 0.0);
  if (config.num_inputs > 0) {
    LRSMC_REQUIRE(input.empty() || int(input.size()) == config.num_inputs, "--input has ",
                  input.size(), " values; expected ", config.num_inputs,
                  " (the model's input dimension)");
    const auto w_u = model.get("w_u");
    for (int i = 0; i < config.num_hidden; ++i)
      for (int j = 0; j < int(input.size()); ++j)
        network.constant_current[std::size_t(i)] +=
            w_u[std::size_t(i * config.num_inputs + j)] * input[std::size_t(j)];
  } else {
    LRSMC_REQUIRE(input.empty(), "--input given, but the model has no inputs");
  }
  return network;
}

}  // namespace

/// Warns when the constant current dwarfs every other term of the units' currents: the kinks'
/// positions then differ by less than float64 resolves, and fixed points may be missed or
/// misplaced.
void warn_if_unresolvable(const PiecewiseLinearNetwork& network) {
  double current = 0.0, scale = 1.0;
  for (const double c : network.constant_current) current = std::max(current, std::fabs(c));
  for (const double h : network.h) scale = std::max(scale, 1.0 + std::fabs(h));
  for (int i = 0; i < network.num_hidden; ++i) {
    double row = 0.0;
    for (int r = 0; r < network.rank; ++r)
      row += std::fabs(network.m[std::size_t(i) * std::size_t(network.rank) + std::size_t(r)]);
    scale = std::max(scale, 1.0 + row);
  }
  constexpr double resolvable = 1e12;  // about 2^-52 · 1e12 ≈ 2e-4 of a unit's scale is lost
  if (current > resolvable * scale)
    std::fprintf(stderr,
                 "lrsmc: warning: the input makes currents of up to %.3g, %.3g times the scale of "
                 "the recurrent terms and biases (%.3g); float64 cannot place the units' kinks "
                 "at that size, so fixed points may be missed or misplaced\n",
                 current, current / scale, scale);
}

int run_fixed_points(const FixedPointCommandOptions& options) {
  FixedPointOptions fixed_point_options;
  fixed_point_options.device = parse_backend_kind(options.device, "--device");
  require_distinct_paths({{"model", options.model_path}},
                         {{"--out-json", options.json_path}, {"--out-npy", options.npy_path}});
  require_writable_outputs({{"--out-json", options.json_path}, {"--out-npy", options.npy_path}});
  LRSMC_REQUIRE(options.numerical_starts >= 0 && options.numerical_starts <= 10'000'000,
                "--numerical is out of range; got ", options.numerical_starts,
                ", expected 0 (the exact method) to 10000000 starts");
  const Model model = load_model(options.model_path);
  const ModelConfig& config = model.config;
  const PiecewiseLinearNetwork network = latent_map(model, options.input);
  warn_if_unresolvable(network);
  if (options.numerical_starts == 0) {
    // The exact method's work: the regions of the arrangement, tested one by one.
    const double regions = count_candidate_regions(network);
    LRSMC_REQUIRE(regions <= options.max_regions, options.model_path, ": rank ", config.rank, ", ",
                  config.num_hidden, " ", to_string(config.nonlinearity), " units give ", regions,
                  " candidate regions to test; expected at most --max-regions ",
                  options.max_regions,
                  " (raise it to run anyway, at about 10^7 regions per "
                  "second on the CPU, or use --numerical)");
    if (!options.quiet)
      std::fprintf(stderr,
                   "lrsmc fixed-points: rank %d, %d %s units: %.3g candidate regions on %s\n",
                   config.rank, config.num_hidden, to_string(config.nonlinearity).c_str(), regions,
                   to_string(choose_fixed_point_device(network, fixed_point_options)).c_str());
  } else if (!options.quiet) {
    std::fprintf(stderr, "lrsmc fixed-points: numerical search from %d starts\n",
                 options.numerical_starts);
  }
  const auto start = std::chrono::steady_clock::now();
  const FixedPointResult result =
      options.numerical_starts > 0
          ? find_fixed_points_numerical(network, options.numerical_starts, options.seed)
          : find_fixed_points(network, fixed_point_options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::ordered_json json;
  json["model"] = options.model_path;
  json["method"] = options.numerical_starts > 0 ? "numerical" : "exact";
  json["rank"] = config.rank;
  json["hidden"] = config.num_hidden;
  json["nonlinearity"] = to_string(config.nonlinearity);
  json["input"] = options.input;
  json["regions_tested"] = result.num_regions;
  json["linear_solves"] = result.num_solves;
  json["device"] = to_string(result.device);
  json["seconds"] = seconds;
  json["fixed_points"] = nlohmann::json::array();
  std::vector<double> points;
  for (const auto& point : result.fixed_points) {
    nlohmann::ordered_json entry;
    entry["z"] = point.z;
    entry["stability"] = to_string(point.stability);
    entry["eigenvalues_real"] = point.eigenvalues_real;
    entry["eigenvalues_imag"] = point.eigenvalues_imag;
    std::vector<int> pattern(point.pattern.begin(), point.pattern.end());
    entry["pattern"] = pattern;
    json["fixed_points"].push_back(entry);
    points.insert(points.end(), point.z.begin(), point.z.end());
  }
  io::write_text_file(options.json_path, json.dump(2) + "\n");
  io::write_npy(options.npy_path,
                Array({std::int64_t(result.fixed_points.size()), config.rank}, points),
                io::StoredType::float64);
  std::printf("%zu fixed point(s) of %s (%lld regions tested, %.3f s); wrote %s, %s\n",
              result.fixed_points.size(), options.model_path.c_str(),
              static_cast<long long>(result.num_regions), seconds, options.json_path.c_str(),
              options.npy_path.c_str());
  for (const auto& point : result.fixed_points) {
    std::printf("  z = (");
    for (std::size_t r = 0; r < point.z.size(); ++r)
      std::printf("%s%.4f", r ? ", " : "", point.z[r]);
    std::printf(")  %s\n", to_string(point.stability).c_str());
  }
  return 0;
}

void add_demo_options(CLI::App& app, DemoOptions& options) {
  app.add_option("--out-dir", options.out_dir, "Folder for the demo's files")
      ->capture_default_str();
  app.add_option("--epochs", options.epochs, "Training epochs")->capture_default_str();
  app.add_option("--hidden", options.hidden, "Units of the student network")->capture_default_str();
  app.add_option("--particles", options.particles, "Training particles")->capture_default_str();
  app.add_option("--eval-particles", options.eval_particles,
                 "Particles for the teacher/student comparison")
      ->capture_default_str();
  add_seed_option(app, options.seed, "Random seed");
  add_device_options(app, options.device);
  app.add_flag("--quiet,-q", options.quiet, "No progress display");
  // What is not data, architecture, particle filter or device is training and output.
  for (CLI::Option* option : app.get_options())
    if (option->get_group() == "Options" && option->get_name() != "--help")
      option->group("Training and output");
}

int run_demo(const DemoOptions& options, const ProgressCallback& progress) {
  namespace fs = std::filesystem;
  // Every option is checked before the teacher's data is drawn and the student trained.
  const Model checked = oscillator_teacher();
  FilterOptions check;
  check.num_particles = options.eval_particles;
  validate(check, checked.config, "--eval-particles");
  check.num_particles = options.particles;
  validate(check, checked.config, "--particles");
  std::error_code error;
  fs::create_directories(options.out_dir, error);
  LRSMC_REQUIRE(!error, options.out_dir, ": cannot create the output folder (", error.message(),
                ")");
  const auto path = [&](const std::string& name) {
    return (fs::path(options.out_dir) / name).string();
  };
  const Model& teacher = checked;
  auto backend = make_device_backend(options.device, teacher.config, FilterOptions{});

  // 1. Data from the teacher: 150 trials of 75 steps, a fifth held out.
  const int trials = 150, steps = 75;
  const SampleResult samples = backend->sample(teacher, trials, steps, {}, options.seed);
  save_model(path("teacher.npz"), teacher);
  const int D = teacher.config.num_channels;
  Dataset data = dataset_from_array(Array({trials, steps, D}, samples.observations),
                                    DataLayout::trials_time_channels, path("data.npz"));
  const auto [train, held_out] = split_held_out(data, 0.2, steps, options.seed);
  // Every trial, and the held-out ones alone (for lrsmc evaluate).
  io::write_npz(path("data.npz"),
                {{"observations", Array({trials, steps, D}, samples.observations)},
                 {"latents", Array({trials, steps, teacher.config.rank}, samples.latents)},
                 {"held_out", Array({held_out.num_trials, steps, D}, held_out.observations)}},
                {}, io::StoredType::float32);
  std::printf(
      "lrsmc demo: teacher = rank-2 oscillator (20 relu units), %d training and %d "
      "held-out trials of %d steps × %d channels in %s\n",
      train.num_trials, held_out.num_trials, steps, teacher.config.num_channels,
      options.out_dir.c_str());
  std::fflush(stdout);  // before the progress display on stderr

  // 2. Fit a student of the same rank.
  ModelConfig config = teacher.config;
  config.num_hidden = options.hidden;
  config.init_decay = 0.9;
  config.init_transition_std = 0.1;
  config.init_initial_std = 1.0;
  config.init_observation_std = 0.3;
  const Model student_start = Model::initialise(config, options.seed + 100);
  TrainingOptions training;
  training.epochs = options.epochs;
  training.batch_size = 10;
  // Adam at a larger rate than the paper's RAdam 1e-3: RAdam's un-adapted first steps overshoot
  // at this rate, and the demo must finish in minutes on two cores.
  training.optimizer = Optimizer::adam;
  training.learning_rate = 2e-2;
  training.learning_rate_end = 2e-3;
  training.filter.num_particles = options.particles;
  training.filter.proposal = Proposal::optimal;
  training.seed = options.seed;
  training.eval_every = std::max(1, options.epochs / 10);
  training.eval_particles = 64;
  Trainer trainer(*backend, training);
  const TrainingResult result = trainer.fit(student_start, train, held_out, progress);
  save_model(path("student.npz"), result.model);
  LRSMC_REQUIRE(result.completed, "demo: ", result.stop_reason);

  // 3. Held-out ELBO of teacher and student with the same particles and draws.
  FilterOptions evaluation;
  evaluation.num_particles = options.eval_particles;
  evaluation.proposal = Proposal::optimal;
  const std::uint64_t eval_seed = options.seed + 999;
  const double teacher_elbo =
      evaluate_elbo(*backend, teacher, held_out, evaluation, steps, eval_seed);
  const double student_elbo =
      evaluate_elbo(*backend, result.model, held_out, evaluation, steps, eval_seed);
  const double gap = (teacher_elbo - student_elbo) / std::fabs(teacher_elbo);
  nlohmann::ordered_json summary;
  summary["teacher_held_out_elbo"] = teacher_elbo;
  summary["student_held_out_elbo"] = student_elbo;
  summary["relative_gap"] = gap;
  summary["eval_particles"] = options.eval_particles;
  summary["epochs"] = options.epochs;
  summary["training_seconds"] = result.history.back().elapsed_seconds;
  summary["teacher_decay"] = teacher.decay();
  summary["student_decay"] = result.model.decay();
  io::write_text_file(path("summary.json"), summary.dump(2) + "\n");
  std::printf(
      "\nheld-out ELBO per time step (%d particles, same draws):\n"
      "  teacher (true parameters)  %.4f\n"
      "  student (fitted)           %.4f\n"
      "  relative gap               %.2f%%  %s\n"
      "decay a: teacher %.3f, student %.3f; training took %s\n"
      "wrote teacher.npz, student.npz, data.npz, summary.json in %s\n",
      options.eval_particles, teacher_elbo, student_elbo, 100 * gap,
      std::fabs(gap) <= 0.02 ? "(within 2%)" : "(NOT within 2%)", teacher.decay(),
      result.model.decay(), format_duration(result.history.back().elapsed_seconds).c_str(),
      options.out_dir.c_str());
  // The fitted dynamics, read through their fixed points (method.md §7).
  for (const auto& [label, fitted] :
       {std::pair<const char*, const Model*>{"teacher", &teacher},
        std::pair<const char*, const Model*>{"student", &result.model}}) {
    const FixedPointResult points = find_fixed_points(latent_map(*fitted, {}));
    std::printf("%s fixed points:", label);
    for (const auto& point : points.fixed_points) {
      std::printf(" (");
      for (std::size_t r = 0; r < point.z.size(); ++r)
        std::printf("%s%.3f", r ? ", " : "", point.z[r]);
      std::printf(") %s;", to_string(point.stability).c_str());
    }
    std::printf("\n");
  }
  return std::fabs(gap) <= 0.02 ? 0 : 1;
}

}  // namespace lrsmc::cli
