// Fitting a model by stochastic gradient ascent on the SMC ELBO (method.md §5): RAdam or Adam,
// exponential learning-rate decay, optional gradient clipping, held-out evaluation, NaN guard,
// periodic checkpoints and resume. The same seed gives the same result, resumed or not.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc {

enum class Optimizer { radam, adam };
[[nodiscard]] std::string to_string(Optimizer optimizer);
[[nodiscard]] Optimizer parse_optimizer(const std::string& text, const std::string& field = "optimizer");

struct TrainingOptions {
  int epochs = 1500;
  int batch_size = 10;
  /// Continuous recordings: window length and windows drawn per epoch (the reference's EEG run
  /// draws 500 windows of 50 steps per epoch: 50 batches of 10).
  int window = 50;
  int windows_per_epoch = 500;
  double learning_rate = 1e-3;
  /// Reached at the last epoch (exponential decay). 0: the paper's decay per optimizer step,
  /// a factor 1000 over 75,000 steps (its EEG run), over this run's steps and at most 1000×
  /// (final_learning_rate): a short run then decays less instead of faster.
  double learning_rate_end = 0.0;
  Optimizer optimizer = Optimizer::radam;
  double gradient_clip = 0.0;        ///< global norm; 0 = off
  FilterOptions filter;              ///< particles, proposal, resampling for training
  int eval_particles = 0;            ///< particles for held-out ELBO; 0 = filter.num_particles
  int eval_every = 1;                ///< held-out evaluation every this many epochs
  double held_out_fraction = 0.0;    ///< fraction of trials (or of the recording's end) held out
  std::uint64_t seed = 0;
  /// Seed of the held-out split (split_held_out) when ≥ 0; −1: `seed`. Runs of several seeds
  /// compare their held-out ELBOs on one split when they share it.
  std::int64_t split_seed = -1;
  std::string checkpoint_path;       ///< "" = no checkpoints
  int checkpoint_every = 0;          ///< epochs between checkpoints; 0 = only at the end
  /// With a held-out set: the result's model is the one of the best held-out ELBO, not the last.
  bool keep_best = false;
  /// With a held-out set: stop when this many held-out evaluations in a row have not improved on
  /// the best (0: never).
  int patience = 0;
  /// The processes that share this fit (the backend's communicator, lrsmc/distributed.hpp), or
  /// null. Process 0 alone writes checkpoints; a failed write and a stop request stop every
  /// process at the same epoch's end.
  std::shared_ptr<Communicator> communicator;
};

/// Throws InvalidInput naming the option and value when an option is absurd.
void validate(const TrainingOptions& options, const std::string& source = "training options");

/// Optimizer steps of one epoch on `train`: its batches of trials, or of random windows of one
/// long recording.
[[nodiscard]] long steps_per_epoch(const TrainingOptions& options, const Dataset& train);

/// The learning rate of the last epoch: `learning_rate_end`, or for 0 the rate that the paper's
/// decay per optimizer step reaches after this run's epochs on `train`.
[[nodiscard]] double final_learning_rate(const TrainingOptions& options, const Dataset& train);

/// The learning rate above which the encoder proposal's training can blow up: Adam and RAdam move
/// every weight of the encoder's wide first convolution by about the rate at once
/// (bench/RESULTS.md, "Poisson teacher"). training_warnings warns above it, and "auto" gives a
/// new model an encoder only at or below it.
constexpr double encoder_learning_rate_limit = 2e-3;

/// Whether a new model fitted with the proposal "auto" gets an encoder and trains with the
/// encoder proposal (the paper's proposal for spike counts): for Poisson observations at a
/// learning rate of at most encoder_learning_rate_limit.
[[nodiscard]] bool auto_trains_encoder(Observation observation, double learning_rate);

/// Readings of the options that look like a mistake for this data, one sentence each: a run
/// far shorter than the schedule its learning rate was chosen for.
[[nodiscard]] std::vector<std::string> training_warnings(const TrainingOptions& options,
                                                         const Dataset& train);

struct EpochReport {
  int epoch = 0;  ///< 1-based
  int epochs = 0;
  double train_elbo = 0.0;  ///< mean over the epoch's batches
  double held_out_elbo = std::numeric_limits<double>::quiet_NaN();
  double learning_rate = 0.0;
  double elapsed_seconds = 0.0;
  double remaining_seconds = 0.0;
};

/// Called after every epoch; return false to stop training cleanly.
using ProgressCallback = std::function<bool(const EpochReport&)>;

/// A run at its last completed epoch: parameters, optimizer moments, learning rate, history,
/// and what defines the run (its options and data). What a checkpoint holds.
struct ResumeState;

struct TrainingResult {
  Model model;                       ///< the last good parameters
  std::vector<EpochReport> history;
  bool completed = false;            ///< all epochs ran, or early stopping ended the run
  /// Why training stopped early ("" when completed): a NaN objective, a request to stop, or an
  /// error after training started (an output that cannot be written, memory exhausted), which
  /// ends the run with its model kept instead of being thrown.
  std::string stop_reason;
  bool failed = false;               ///< stopped by an error (stop_reason says which)
  bool stopped_early = false;        ///< completed by early stopping (stop_reason says when)
  int best_epoch = 0;                ///< the epoch of the best held-out ELBO (0: none evaluated)
  double best_held_out_elbo = std::numeric_limits<double>::quiet_NaN();
  std::shared_ptr<const ResumeState> resume_state;  ///< the state at the last completed epoch
};

/// Writes `result`'s resume state as a checkpoint at `path` (atomically): Trainer::fit with
/// `resume_from = path`, the same options and the same data continues the run as if it had never
/// stopped. Throws InvalidInput when the result holds no state (it did not come from fit).
void save_checkpoint(const std::string& path, const TrainingResult& result);

/// Held-out split: trials by a seeded shuffle, or the end of a continuous recording cut into
/// windows. Returns {train, held_out}; held_out is empty (0 trials) when fraction is 0.
[[nodiscard]] std::pair<Dataset, Dataset> split_held_out(const Dataset& data, double fraction,
                                                         int window, std::uint64_t seed);
/// The held-out trials of split_held_out for a dataset of trials (ascending; none when fraction
/// is 0); only data.num_trials and data.source are read, so a loader can choose each process's
/// trials before reading any (load_dataset_trials).
[[nodiscard]] std::vector<int> held_out_trials(const Dataset& data, double fraction,
                                               std::uint64_t seed);

/// For a recording of trials split over `size` processes: the trials whose observations process
/// `rank` reads (load_dataset_trials; `shape` is what its TrialChooser receives), its share
/// (trial_share) of split_held_out's training trials and of its held-out trials, ascending.
[[nodiscard]] std::vector<int> trials_to_read(const Dataset& shape, double fraction,
                                              std::uint64_t seed, int rank, int size);

/// split_held_out of a recording read with trials_to_read by process `rank` of `size`: each set
/// holds this process's share of its trials and carries the split (Dataset::shares), so that
/// Trainer::fit with a backend over the `size` processes runs each trial where it was read, with
/// the model of the whole recording bit for bit.
[[nodiscard]] std::pair<Dataset, Dataset> split_held_out_in_shares(const Dataset& data,
                                                                   double fraction,
                                                                   std::uint64_t seed, int rank,
                                                                   int size);

/// Held-out ELBO of a dataset: all trials, or consecutive windows of a continuous recording.
[[nodiscard]] double evaluate_elbo(Backend& backend, const Model& model, const Dataset& data,
                                   const FilterOptions& options, int window, std::uint64_t seed);

class Trainer {
 public:
  Trainer(Backend& backend, TrainingOptions options);
  /// Trains from `model`. When `resume_from` names a checkpoint, its parameters, optimizer
  /// state and epoch replace the starting point; its model configuration, every option that
  /// changes the result and the data (shape and content) must match this run's, or InvalidInput
  /// names the first that differs with its stored and its given value. Errors after the first
  /// epoch starts do not throw: the result is returned with `failed` set.
  [[nodiscard]] TrainingResult fit(const Model& model, const Dataset& train, const Dataset& held_out,
                                   const ProgressCallback& progress = {},
                                   const std::string& resume_from = "");

 private:
  Backend& backend_;
  TrainingOptions options_;
};

}  // namespace lrsmc
