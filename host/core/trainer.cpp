// The host training loop of method.md §5: batches, RAdam/Adam on the flat parameter vector,
// exponential learning-rate decay, gradient clipping, held-out ELBO, NaN guard, checkpoints.
#include "lrsmc/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <exception>
#include <limits>
#include <numeric>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/json_input.hpp"
#include "core/shared_trials.hpp"
#include "core/training_session.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/optimizer.hpp"

namespace lrsmc {

std::string to_string(Optimizer optimizer) {
  return optimizer == Optimizer::radam ? "radam" : "adam";
}

Optimizer parse_optimizer(const std::string& text, const std::string& field) {
  if (text == "radam") return Optimizer::radam;
  if (text == "adam") return Optimizer::adam;
  throw InvalidInput(
      detail::concat(field, " is not recognised; got '", text, "', expected one of radam, adam"));
}

/// Optimizer state over the flat parameter vector (PyTorch's Adam and RAdam, β = (0.9, 0.999),
/// ε = 1e-8, no weight decay).
struct OptimizerState {
  std::vector<double> first_moment, second_moment;
  std::int64_t step = 0;
};

struct ResumeState {
  Model model;
  OptimizerState state;
  int epoch = 0;  // epochs completed
  double learning_rate = 0;
  std::vector<EpochReport> history;
  nlohmann::json run;  // run_definition: the options and data the state belongs to
  std::vector<double> best_parameters;  // with keep_best: the parameters of the best epoch
};

namespace {

/// The best held-out ELBO of a history (the first epoch that reached it) and the evaluations
/// since then.
struct BestEpoch {
  int epoch = 0;
  double elbo = -std::numeric_limits<double>::infinity();
  int evaluations_since = 0;
};

BestEpoch best_epoch(const std::vector<EpochReport>& history) {
  BestEpoch best;
  for (const EpochReport& report : history) {
    if (std::isnan(report.held_out_elbo)) continue;  // not evaluated
    if (report.held_out_elbo > best.elbo) {
      best = BestEpoch{report.epoch, report.held_out_elbo, 0};
    } else {
      ++best.evaluations_since;
    }
  }
  return best;
}

}  // namespace

void validate(const TrainingOptions& options, const std::string& source) {
  LRSMC_REQUIRE(options.epochs >= 1 && options.epochs <= 10'000'000, source,
                ": epochs is out of range; got ", options.epochs, ", expected 1 to 10000000");
  LRSMC_REQUIRE(options.batch_size >= 1 && options.batch_size <= 1'000'000, source,
                ": batch size is out of range; got ", options.batch_size,
                ", expected 1 to 1000000");
  LRSMC_REQUIRE(options.window >= 1, source, ": window must be at least 1 step; got ",
                options.window);
  LRSMC_REQUIRE(options.windows_per_epoch >= 1 && options.windows_per_epoch <= 100'000'000, source,
                ": windows per epoch is out of range; got ", options.windows_per_epoch,
                ", expected 1 to 100000000");
  LRSMC_REQUIRE(std::isfinite(options.learning_rate) && options.learning_rate > 0 &&
                    options.learning_rate < 10,
                source, ": learning rate must lie in (0, 10); got ", options.learning_rate);
  LRSMC_REQUIRE(std::isfinite(options.learning_rate_end) && options.learning_rate_end >= 0 &&
                    options.learning_rate_end <= options.learning_rate,
                source, ": final learning rate must lie in (0, lr = ", options.learning_rate,
                "], or be 0 for the automatic schedule; got ", options.learning_rate_end);
  LRSMC_REQUIRE(std::isfinite(options.gradient_clip) && options.gradient_clip >= 0, source,
                ": gradient clip must be ≥ 0 (0 = off); got ", options.gradient_clip);
  LRSMC_REQUIRE(options.eval_particles >= 0, source,
                ": evaluation particles must be ≥ 0 (0 = training particles); got ",
                options.eval_particles);
  LRSMC_REQUIRE(options.eval_every >= 1, source, ": eval-every must be at least 1; got ",
                options.eval_every);
  LRSMC_REQUIRE(options.held_out_fraction >= 0 && options.held_out_fraction < 1, source,
                ": held-out fraction must lie in [0, 1); got ", options.held_out_fraction);
  LRSMC_REQUIRE(options.checkpoint_every >= 0, source, ": checkpoint-every must be ≥ 0; got ",
                options.checkpoint_every);
  LRSMC_REQUIRE(options.patience >= 0, source,
                ": patience must be ≥ 0 (0: no early stopping); got ", options.patience);
  LRSMC_REQUIRE((!options.keep_best && options.patience == 0) || options.held_out_fraction > 0,
                source, ": keeping the best model and early stopping need a held-out set; got "
                "held-out fraction 0, expected --held-out > 0");
}

long steps_per_epoch(const TrainingOptions& options, const Dataset& train) {
  const long items = train.continuous() ? options.windows_per_epoch : train.num_trials;
  return (items + options.batch_size - 1) / options.batch_size;
}

double final_learning_rate(const TrainingOptions& options, const Dataset& train) {
  if (options.learning_rate_end > 0) return options.learning_rate_end;
  // The paper's EEG run (method.md §5.2): 1500 epochs of 50 batches, lr 1e-3 -> 1e-6.
  constexpr double paper_steps = 1500.0 * 50.0, paper_decay = 1e-3;
  const double steps = double(options.epochs) * double(steps_per_epoch(options, train));
  return options.learning_rate * std::pow(paper_decay, std::min(1.0, steps / paper_steps));
}

bool auto_trains_encoder(Observation observation, double learning_rate) {
  return observation == Observation::poisson && learning_rate <= encoder_learning_rate_limit;
}

std::vector<std::string> training_warnings(const TrainingOptions& options, const Dataset& train) {
  std::vector<std::string> warnings;
  const double steps = double(options.epochs) * double(steps_per_epoch(options, train));
  // The paper's rate 1e-3 is tuned for 75,000 steps; a tenth of that at such a rate stops far
  // from convergence (bench/RESULTS.md, "Presets").
  if (steps < 7500 && options.learning_rate <= 1e-3)
    warnings.push_back(detail::concat(
        "a short run: ", static_cast<long>(steps), " optimizer steps at learning rate ",
        options.learning_rate,
        " (the paper's recipe takes 75,000); with a budget like this, start from the preset "
        "'small' (Adam at 4e-2), which needs about 2,500 steps"));
  // Each Adam step moves every weight of the encoder's wide first convolution by about the
  // rate at once, so its outputs grow by the rate times the fan-in: at 1e-2 the Poisson
  // teacher's encoder blew up within 9 epochs (bench/RESULTS.md, "Poisson teacher").
  if (options.filter.proposal == Proposal::encoder &&
      options.learning_rate > encoder_learning_rate_limit)
    warnings.push_back(detail::concat(
        "the encoder proposal at learning rate ", options.learning_rate,
        ": above about 2e-3 the encoder's outputs can blow up within a few epochs (the ELBO "
        "then falls by orders of magnitude); the paper trains it at 1e-3"));
  return warnings;
}

namespace {

/// SplitMix64 finaliser: decorrelates the seeds of successive epochs and batches.
std::uint64_t mix(std::uint64_t value) {
  value += 0x9E3779B97F4A7C15ull;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ull;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBull;
  return value ^ (value >> 31);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  return mix(mix(mix(seed) ^ a) ^ (b * 0xD1B54A32D192ED03ull));
}

/// The step-dependent scalars of step `step` (1-based); shared by the host step below and
/// device-resident sessions, so both run the same arithmetic (math/optimizer.hpp).
math::AdamCoefficients optimizer_coefficients(Optimizer optimizer, double learning_rate,
                                              std::int64_t step) {
  const double beta2 = math::adam_beta2;
  const double t = double(step);
  math::AdamCoefficients coefficients;
  coefficients.learning_rate = learning_rate;
  coefficients.bias1 = 1 - std::pow(math::adam_beta1, t);
  coefficients.bias2 = 1 - std::pow(beta2, t);
  const double rho_infinity = 2 / (1 - beta2) - 1;
  const double rho = rho_infinity - 2 * t * std::pow(beta2, t) / coefficients.bias2;
  coefficients.rectified = optimizer == Optimizer::adam || rho > 5;
  coefficients.rectification =
      optimizer == Optimizer::adam
          ? 1.0
          : (rho > 5 ? std::sqrt((rho - 4) * (rho - 2) * rho_infinity /
                                 ((rho_infinity - 4) * (rho_infinity - 2) * rho))
                     : 1.0);
  return coefficients;
}

/// One optimizer step on the host for the ascent direction `gradient`, clipped to a global
/// norm of `clip` (0: off): the norm and the update of math/optimizer.hpp, as on the device.
void optimizer_step(Optimizer optimizer, double learning_rate, double clip,
                    const std::vector<double>& gradient, OptimizerState& state,
                    std::vector<double>& parameters) {
  constexpr math::HostRoundedProduct product{};
  state.step += 1;
  const math::AdamCoefficients coefficients =
      optimizer_coefficients(optimizer, learning_rate, state.step);
  const auto count = std::int64_t(gradient.size());
  double squares = 0.0;
  for (int chunk = 0; chunk < math::norm_chunks; ++chunk)
    squares += math::chunk_sum_of_squares(gradient.data(), count, chunk, product);
  const double clip_scale = math::clip_factor(std::sqrt(squares), clip);
  for (std::size_t i = 0; i < parameters.size(); ++i)
    math::adam_update(gradient[i], clip_scale, coefficients, parameters[i], state.first_moment[i],
                      state.second_moment[i], product);
}

bool all_finite(const std::vector<double>& values) {
  return std::all_of(values.begin(), values.end(), [](double v) { return std::isfinite(v); });
}

constexpr std::uint64_t fnv_offset = 0xCBF29CE484222325ull;

/// FNV-1a over `count` bytes, continuing from `hash`.
std::uint64_t fnv(const void* data, std::size_t count, std::uint64_t hash) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < count; ++i) hash = (hash ^ bytes[i]) * 0x100000001B3ull;
  return hash;
}

/// FNV-1a over the bytes of `values`, continuing from `hash`.
std::uint64_t digest(const std::vector<double>& values, std::uint64_t hash) {
  return fnv(values.data(), values.size() * sizeof(double), hash);
}

/// A digest of the observations that does not depend on how they are split over processes:
/// FNV-1a over each trial's FNV-1a digest, in trial order. Of a dataset split over the processes
/// of `communicator` (Dataset::shares), the other processes' trials' digests are gathered.
std::uint64_t observations_digest(const Dataset& data, Communicator* communicator,
                                  std::uint64_t hash) {
  const std::size_t row = std::size_t(data.num_steps) * std::size_t(data.num_channels);
  // Each trial's digest as two 32-bit halves, which a double holds exactly.
  std::vector<double> halves;
  for (std::size_t at = 0; row > 0 && at < data.observations.size(); at += row) {
    const std::uint64_t trial =
        fnv(data.observations.data() + at, row * sizeof(double), fnv_offset);
    halves.push_back(double(trial >> 32));
    halves.push_back(double(trial & 0xFFFFFFFFull));
  }
  const int size = communicator == nullptr ? 1 : communicator->size();
  LRSMC_REQUIRE(data.whole() || data.shares.size() == std::size_t(size) + 1, data.source,
                ": the dataset holds ", data.held_trials->size(), " of its ", data.num_trials,
                " trials, but they are not split over this run's ", size, " process(es)");
  if (!data.shares.empty()) {
    std::vector<std::int64_t> counts;
    for (int process = 0; process < size; ++process)
      counts.push_back(2 * std::int64_t(share_in(data.shares, process).count()));
    std::vector<double> mine = std::move(halves);
    communicator->all_gather(mine, counts, halves);
  }
  for (std::size_t index = 0; index + 1 < halves.size(); index += 2) {
    const std::uint64_t trial =
        (std::uint64_t(halves[index]) << 32) | std::uint64_t(halves[index + 1]);
    hash = fnv(&trial, sizeof trial, hash);
  }
  return hash;
}

std::string describe_shape(const Dataset& data) {
  return detail::concat(
      data.num_trials, data.continuous() ? " recording, " : " trials, ", data.num_steps, " steps, ",
      data.num_channels, " channels",
      data.num_inputs > 0 ? detail::concat(", ", data.num_inputs, " inputs") : std::string());
}

/// What defines a run, under the command line's option names: every option that changes its
/// result, and the data it trains and evaluates on (shapes and a digest of the values). Where
/// checkpoints are written (--checkpoint, --checkpoint-every) does not change the result. `world`:
/// the backend's processes, which hold the other shares of a split dataset.
nlohmann::json run_definition(const TrainingOptions& options, const Dataset& train,
                              const Dataset& held_out, Communicator* world) {
  char data_digest[17];
  std::snprintf(data_digest, sizeof data_digest, "%016llx",
                static_cast<unsigned long long>(digest(
                    held_out.inputs,
                    observations_digest(
                        held_out, world,
                        digest(train.inputs, observations_digest(train, world, fnv_offset))))));
  nlohmann::json run = nlohmann::json::object();
  run["--epochs"] = options.epochs;
  run["--batch-size"] = options.batch_size;
  run["--window"] = train.continuous() ? nlohmann::json(options.window) : nlohmann::json(nullptr);
  run["--windows-per-epoch"] =
      train.continuous() ? nlohmann::json(options.windows_per_epoch) : nlohmann::json(nullptr);
  run["--lr"] = options.learning_rate;
  run["--lr-end"] = options.learning_rate_end;
  run["--optimizer"] = to_string(options.optimizer);
  run["--clip"] = options.gradient_clip;
  run["--particles"] = options.filter.num_particles;
  run["--proposal"] = to_string(options.filter.proposal);
  run["--resampling"] = to_string(options.filter.resampling);
  run["--resample-threshold"] = options.filter.resample_threshold;
  run["--t-forward"] = options.filter.t_forward;
  run["--eval-particles"] = options.eval_particles;
  run["--eval-every"] = options.eval_every;
  run["--held-out"] = options.held_out_fraction;
  run["--seed"] = options.seed;
  run["--split-seed"] = options.split_seed;
  run["--keep"] = options.keep_best ? "best" : "last";
  run["--patience"] = options.patience;
  run["training data"] = describe_shape(train);
  run["held-out data"] = describe_shape(held_out);
  run["trial digest"] = data_digest;
  return run;
}

/// Refuses a checkpoint whose run definition differs from this run's, naming the first option
/// (or data property) that differs with its stored and given values.
void require_same_run(const std::string& path, const nlohmann::json& stored,
                      const nlohmann::json& given) {
  const std::string label = path + ": entry 'checkpoint_training'";
  LRSMC_REQUIRE(stored.is_object(), label, ": field 'run' must be a JSON object; got ",
                detail::excerpt(stored.dump()));
  // The options first, then the data's shapes, then its values.
  std::vector<std::string> names;
  for (const auto& item : given.items())
    if (item.key().rfind("--", 0) == 0) names.push_back(item.key());
  for (const char* name : {"training data", "held-out data", "trial digest"}) names.push_back(name);
  // A run of an lrsmc from before the digest of each trial's digest, and before batches in
  // ascending trial order, cannot continue here.
  LRSMC_REQUIRE(stored.contains("trial digest") || !stored.contains("data digest"), path,
                ": the checkpoint was written by an earlier lrsmc, whose batches and data digest "
                "differ from this one's; start a new run without --resume");
  // Checkpoints written before --split-seed existed split by --seed: -1.
  const nlohmann::json no_split_seed = std::int64_t(-1);
  for (const std::string& name : names) {
    const nlohmann::json& value = given.at(name);
    const auto found = stored.find(name);
    const bool before_split_seed = found == stored.end() && name == "--split-seed";
    LRSMC_REQUIRE(found != stored.end() || before_split_seed, label, ": field 'run' lacks '", name,
                  "'");
    const nlohmann::json& recorded = before_split_seed ? no_split_seed : *found;
    LRSMC_REQUIRE(recorded == value, path,
                  ": the checkpoint belongs to another run: it was made with ", name, " ",
                  detail::excerpt(recorded.dump()), ", this run has ", value.dump(),
                  name.rfind("--", 0) == 0
                      ? "; resume with the options it was made with, or start a new run without "
                        "--resume"
                      : "; resume with the data it was made with");
  }
}

void write_checkpoint_file(const std::string& path, const ResumeState& checkpoint) {
  std::map<std::string, Array> arrays;
  const ParameterLayout layout = checkpoint.model.layout();
  for (const auto& block : layout.blocks())
    arrays[block.name] = Array(block.shape, checkpoint.model.get(block.name));
  const auto count = std::int64_t(checkpoint.state.first_moment.size());
  arrays["checkpoint_first_moment"] = Array({count}, checkpoint.state.first_moment);
  arrays["checkpoint_second_moment"] = Array({count}, checkpoint.state.second_moment);
  if (!checkpoint.best_parameters.empty())
    arrays["checkpoint_best_parameters"] = Array({count}, checkpoint.best_parameters);
  nlohmann::json training;
  training["epoch"] = checkpoint.epoch;
  training["optimizer_step"] = checkpoint.state.step;
  training["learning_rate"] = checkpoint.learning_rate;
  training["run"] = checkpoint.run;
  nlohmann::json history = nlohmann::json::array();
  for (const auto& report : checkpoint.history)
    history.push_back({report.epoch, report.train_elbo,
                       std::isfinite(report.held_out_elbo) ? nlohmann::json(report.held_out_elbo)
                                                           : nlohmann::json(nullptr),
                       report.learning_rate, report.elapsed_seconds});
  training["history"] = history;
  io::write_npz(path, arrays,
                {{"config", config_to_json(checkpoint.model.config)},
                 {"checkpoint_training", training.dump()}},
                io::StoredType::float64);
}

ResumeState load_checkpoint(const std::string& path, const Model& expected,
                            const TrainingOptions& options, const nlohmann::json& run) {
  ResumeState checkpoint;
  checkpoint.model = load_model(path);
  LRSMC_REQUIRE(config_to_json(checkpoint.model.config) == config_to_json(expected.config), path,
                ": checkpoint configuration does not match this run; got ",
                config_to_json(checkpoint.model.config), ", expected ",
                config_to_json(expected.config));
  // A checkpoint of this run holds at most options.epochs history rows of five numbers, and two
  // moments per parameter.
  const std::size_t max_bytes = 4096 + 256 * std::size_t(options.epochs);
  io::NpzSelection selection;
  selection.entries = {"checkpoint_training", "checkpoint_first_moment",
                       "checkpoint_second_moment", "checkpoint_best_parameters"};
  selection.max_values = checkpoint.model.parameters.size();
  selection.max_text_bytes = 4 * max_bytes;  // numpy stores text as UTF-32
  const io::NpzContents contents = io::read_npz(path, selection);
  const auto training_text = contents.strings.find("checkpoint_training");
  LRSMC_REQUIRE(training_text != contents.strings.end(), path,
                ": entry 'checkpoint_training' is missing; this is a model file, not a checkpoint");
  const std::string label = path + ": entry 'checkpoint_training'";
  constexpr int max_depth = 3;  // {"history": [[...]]}, {"run": {...}}
  const nlohmann::json training =
      detail::parse_bounded_json(training_text->second, label, max_bytes, max_depth);
  LRSMC_REQUIRE(training.is_object(), label, " must be a JSON object; got ",
                detail::excerpt(training.dump()));
  for (const char* key : {"epoch", "optimizer_step", "learning_rate", "run", "history"})
    LRSMC_REQUIRE(training.contains(key), label, ": field '", key, "' is missing");
  require_same_run(path, training["run"], run);
  checkpoint.run = run;
  constexpr std::int64_t int_max = std::numeric_limits<int>::max();
  checkpoint.epoch = int(detail::bounded_integer(training["epoch"], label, "epoch", 0, int_max));
  LRSMC_REQUIRE(checkpoint.epoch <= options.epochs, path, ": checkpoint epoch ", checkpoint.epoch,
                " is beyond --epochs ", options.epochs);
  checkpoint.state.step =
      detail::bounded_integer(training["optimizer_step"], label, "optimizer_step", 0,
                              std::numeric_limits<std::int64_t>::max());
  const nlohmann::json& rate = training["learning_rate"];
  LRSMC_REQUIRE(rate.is_number() && std::isfinite(rate.get<double>()) && rate.get<double>() > 0 &&
                    rate.get<double>() <= options.learning_rate,
                label, ": field 'learning_rate' is out of range; got ",
                detail::excerpt(rate.dump()),
                ", expected a number in (0, lr = ", options.learning_rate, "]");
  checkpoint.learning_rate = rate.get<double>();
  const nlohmann::json& history = training["history"];
  LRSMC_REQUIRE(history.is_array() && history.size() == std::size_t(checkpoint.epoch), label,
                ": field 'history' must hold one row per completed epoch; got ",
                history.is_array() ? detail::concat(history.size(), " rows")
                                   : detail::excerpt(history.dump()),
                ", expected ", checkpoint.epoch);
  for (std::size_t row_index = 0; row_index < history.size(); ++row_index) {
    const nlohmann::json& row = history[row_index];
    const std::string row_label = detail::concat("history[", row_index, "]");
    LRSMC_REQUIRE(row.is_array() && row.size() == 5, label, ": field '", row_label,
                  "' must be [epoch, train_elbo, held_out_elbo, learning_rate, seconds]; got ",
                  detail::excerpt(row.dump()));
    EpochReport report;
    report.epoch =
        int(detail::bounded_integer(row[0], label, row_label + "[0]", 1, options.epochs));
    report.epochs = options.epochs;
    const auto number = [&](std::size_t column, bool allow_null) {
      const nlohmann::json& value = row[column];
      if (allow_null && value.is_null()) return std::numeric_limits<double>::quiet_NaN();
      LRSMC_REQUIRE(value.is_number(), label, ": field '", row_label, "[", column,
                    "]' must be a number; got ", detail::excerpt(value.dump()));
      return value.get<double>();
    };
    report.train_elbo = number(1, false);
    report.held_out_elbo = number(2, true);
    report.learning_rate = number(3, false);
    report.elapsed_seconds = number(4, false);
    checkpoint.history.push_back(report);
  }
  const std::size_t size = checkpoint.model.parameters.size();
  for (const char* name : {"checkpoint_first_moment", "checkpoint_second_moment"}) {
    const auto found = contents.arrays.find(name);
    LRSMC_REQUIRE(found != contents.arrays.end() && found->second.data.size() == size, path,
                  ": entry '", name, "' is missing or has the wrong size; expected ", size,
                  " values");
    const bool second = std::string(name) == "checkpoint_second_moment";
    const std::vector<double>& values = found->second.data;
    for (std::size_t i = 0; i < values.size(); ++i)
      LRSMC_REQUIRE(std::isfinite(values[i]) && (!second || values[i] >= 0), path, ": entry '",
                    name, "' is ", second ? "not finite and non-negative" : "not finite",
                    " at element ", i, "; got ", values[i]);
  }
  checkpoint.state.first_moment = contents.arrays.at("checkpoint_first_moment").data;
  checkpoint.state.second_moment = contents.arrays.at("checkpoint_second_moment").data;
  // With keep_best, the best epoch's parameters once an evaluation has happened.
  const bool needs_best = options.keep_best && best_epoch(checkpoint.history).epoch > 0;
  const auto best = contents.arrays.find("checkpoint_best_parameters");
  LRSMC_REQUIRE((best != contents.arrays.end()) == needs_best, path,
                ": entry 'checkpoint_best_parameters' is ",
                needs_best ? "missing; expected the best epoch's parameters for --keep best"
                           : "present, but this run keeps no best model");
  if (needs_best) {
    LRSMC_REQUIRE(best->second.data.size() == size &&
                      std::all_of(best->second.data.begin(), best->second.data.end(),
                                  [](double v) { return std::isfinite(v); }),
                  path, ": entry 'checkpoint_best_parameters' must hold ", size,
                  " finite values");
    checkpoint.best_parameters = best->second.data;
  }
  return checkpoint;
}

/// The trials of a recording of `num_trials` that are not among `held` (ascending).
std::vector<int> training_trials(const std::vector<int>& held, int num_trials) {
  std::vector<int> train;
  for (int trial = 0; trial < num_trials; ++trial)
    if (!std::binary_search(held.begin(), held.end(), trial)) train.push_back(trial);
  return train;
}

std::vector<int> window_starts(int count, int num_steps, int window, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<int> start(0, num_steps - window);
  std::vector<int> starts(static_cast<std::size_t>(count));
  for (auto& value : starts) value = start(generator);
  return starts;
}

}  // namespace

std::pair<Dataset, Dataset> split_held_out(const Dataset& data, double fraction, int window,
                                           std::uint64_t seed) {
  Dataset train = data, held_out = data;
  held_out.num_trials = 0;
  held_out.observations.clear();
  held_out.inputs.clear();
  held_out.held_trials.reset();
  held_out.shares.clear();
  if (fraction <= 0) return {train, held_out};
  if (data.continuous()) {
    // The recording's last fraction, at least one window long, is held out.
    const int held_steps = std::max(window, int(std::lround(fraction * data.num_steps)));
    LRSMC_REQUIRE(data.num_steps - held_steps >= window, data.source, ": held-out fraction ",
                  fraction, " leaves ", data.num_steps - held_steps,
                  " training steps; expected at least one window of ", window);
    const int split = data.num_steps - held_steps;
    const auto cut = [&](int from, int to) {
      Dataset part = data;
      part.num_steps = to - from;
      part.observations.assign(data.observations.begin() + std::ptrdiff_t(from) * data.num_channels,
                               data.observations.begin() + std::ptrdiff_t(to) * data.num_channels);
      if (data.num_inputs > 0)
        part.inputs.assign(data.inputs.begin() + std::ptrdiff_t(from) * data.num_inputs,
                           data.inputs.begin() + std::ptrdiff_t(to) * data.num_inputs);
      return part;
    };
    return {cut(0, split), cut(split, data.num_steps)};
  }
  const std::vector<int> held_trials = held_out_trials(data, fraction, seed);
  return {subset(data, training_trials(held_trials, data.num_trials)), subset(data, held_trials)};
}

std::vector<int> held_out_trials(const Dataset& data, double fraction, std::uint64_t seed) {
  if (fraction <= 0) return {};
  const int held = std::max(1, int(std::lround(fraction * data.num_trials)));
  LRSMC_REQUIRE(held < data.num_trials, data.source, ": held-out fraction ", fraction,
                " leaves no training trials (", data.num_trials, " trials)");
  std::vector<int> order(static_cast<std::size_t>(data.num_trials));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(derive_seed(seed, 0x5E1D, 0)));
  std::vector<int> held_trials(order.end() - held, order.end());
  std::sort(held_trials.begin(), held_trials.end());
  return held_trials;
}

std::vector<int> trials_to_read(const Dataset& shape, double fraction, std::uint64_t seed, int rank,
                                int size) {
  const std::vector<int> held = held_out_trials(shape, fraction, seed);
  const std::vector<int> train = training_trials(held, shape.num_trials);
  std::vector<int> mine;
  for (const std::vector<int>* set : {&train, &held}) {
    const TrialShare part = trial_share(int(set->size()), rank, size);
    mine.insert(mine.end(), set->begin() + part.first, set->begin() + part.last);
  }
  std::sort(mine.begin(), mine.end());
  return mine;
}

std::pair<Dataset, Dataset> split_held_out_in_shares(const Dataset& data, double fraction,
                                                     std::uint64_t seed, int rank, int size) {
  LRSMC_REQUIRE(!data.continuous(), data.source,
                ": a continuous recording is read whole; only trials are split over processes");
  auto [train, held_out] = split_held_out(data, fraction, 1, seed);
  for (Dataset* part : {&train, &held_out}) {
    if (part->num_trials == 0) continue;  // no held-out set
    part->shares = even_shares(part->num_trials, size);
    // Held trials ascend: the share is held when its first and last are, and no more.
    const TrialShare mine = share_in(part->shares, rank);
    const std::optional<std::vector<int>>& held = part->held_trials;
    LRSMC_REQUIRE(
        held && int(held->size()) == mine.count() &&
            (held->empty() || (held->front() == mine.first && held->back() == mine.last - 1)),
        data.source, ": the trials read are not process ", rank, "'s share of ", size,
        " (read them with trials_to_read)");
  }
  return {std::move(train), std::move(held_out)};
}

double evaluate_elbo(Backend& backend, const Model& model, const Dataset& data,
                     const FilterOptions& options, int window, std::uint64_t seed) {
  SequenceBatch batch;
  if (data.continuous()) {
    std::vector<int> starts;
    for (int start = 0; start + window <= data.num_steps; start += window) starts.push_back(start);
    LRSMC_REQUIRE(!starts.empty(), data.source, ": recording of ", data.num_steps,
                  " steps is shorter than the window of ", window);
    batch = windows_batch(data, starts, window);
  } else {
    batch = trials_batch(data, 0, data.num_trials);
  }
  return backend.filter(model, batch, options, seed).elbo;
}

void save_checkpoint(const std::string& path, const TrainingResult& result) {
  LRSMC_REQUIRE(result.resume_state != nullptr, path,
                ": the training result holds no state to checkpoint (it did not come from "
                "Trainer::fit)");
  write_checkpoint_file(path, *result.resume_state);
}

Trainer::Trainer(Backend& backend, TrainingOptions options)
    : backend_(backend), options_(std::move(options)) {
  validate(options_);
}

TrainingResult Trainer::fit(const Model& initial, const Dataset& train, const Dataset& held_out,
                            const ProgressCallback& progress, const std::string& resume_from) {
  initial.validate();
  validate(options_.filter, initial.config);
  LRSMC_REQUIRE(train.num_channels == initial.config.num_channels, train.source,
                ": channel count does not match the model; got ", train.num_channels, ", expected ",
                initial.config.num_channels);
  LRSMC_REQUIRE(train.num_inputs == initial.config.num_inputs, train.source,
                ": input dimension does not match the model; got ", train.num_inputs, ", expected ",
                initial.config.num_inputs);
  if (train.continuous())
    LRSMC_REQUIRE(options_.window <= train.num_steps, train.source, ": window of ", options_.window,
                  " steps is longer than the recording; got ", train.num_steps,
                  " steps, expected a window of at most ", train.num_steps);
  // The encoder meets batches of one window or one trial: checked before the first epoch.
  const int batch_steps = train.continuous() ? options_.window : train.num_steps;
  LRSMC_REQUIRE(options_.filter.t_forward < batch_steps, train.source,
                ": --t-forward must leave at least one step before the forecast; got ",
                options_.filter.t_forward, " of ", batch_steps, " steps per ",
                train.continuous() ? "window" : "trial");
  if (options_.filter.proposal == Proposal::encoder)
    validate(*initial.config.encoder, initial.config.num_channels, initial.config.rank,
             batch_steps - options_.filter.t_forward, train.source + ": encoder proposal");
  const nlohmann::json run = run_definition(options_, train, held_out, backend_.communicator());
  ResumeState state;
  state.model = initial;
  state.state.first_moment.assign(initial.parameters.size(), 0.0);
  state.state.second_moment.assign(initial.parameters.size(), 0.0);
  state.learning_rate = options_.learning_rate;
  state.run = run;
  if (!resume_from.empty()) state = load_checkpoint(resume_from, initial, options_, run);

  TrainingResult result;
  result.history = state.history;
  // The state at the last completed epoch: what a checkpoint holds, and what is kept when an
  // error ends the run.
  auto boundary = std::make_shared<ResumeState>(state);
  result.resume_state = boundary;
  // The model a stopped or finished run returns: its best held-out epoch's with keep_best (once
  // one was evaluated), else the given state's; the result says which epoch was best.
  const auto kept = [&](const ResumeState& at) {
    const BestEpoch best = best_epoch(at.history);
    result.best_epoch = best.epoch;
    if (best.epoch > 0) result.best_held_out_elbo = best.elbo;
    Model model = at.model;
    if (options_.keep_best && !at.best_parameters.empty()) model.parameters = at.best_parameters;
    return model;
  };
  const double learning_rate_end = final_learning_rate(options_, train);
  const double decay_factor =
      std::exp(std::log(learning_rate_end / options_.learning_rate) / options_.epochs);
  FilterOptions eval_options = options_.filter;
  if (options_.eval_particles > 0) eval_options.num_particles = options_.eval_particles;
  const auto start_time = std::chrono::steady_clock::now();
  std::deque<double> recent_ends{0.0};  // seconds since start_time: the start, then epoch ends
  const double earlier_seconds = state.history.empty() ? 0.0 : state.history.back().elapsed_seconds;
  const int first_epoch = state.epoch;
  std::vector<double> last_good = state.model.parameters;  // last parameters evaluated finite
  // Process 0 of several writes; every process learns whether the write failed.
  Communicator* const world = options_.communicator.get();
  const auto write_checkpoint = [&]() {
    if (options_.checkpoint_path.empty()) return;
    detail::on_every_process(world, [&] {
      if (world == nullptr || world->rank() == 0)
        write_checkpoint_file(options_.checkpoint_path, state);
    });
  };
  // A stop asked of any process stops them all after the same epoch.
  const auto go_on = [&](const EpochReport& report) {
    const bool asked_to_stop = progress && !progress(report);
    return world == nullptr ? !asked_to_stop : !world->any(asked_to_stop);
  };

  try {
    // Device-resident training when the backend offers it (CUDA: data, parameters and moments
    // stay on the device); otherwise the host loop on elbo_gradient. Both draw the same batches
    // and seeds and run the same optimizer arithmetic (optimizer_coefficients).
    std::unique_ptr<TrainingSession> session;
    {
      TrainingSetup setup;
      setup.train = &train;
      setup.config = state.model.config;
      setup.filter = options_.filter;
      setup.gradient_clip = options_.gradient_clip;
      setup.max_batch_trials = std::min(
          options_.batch_size, train.continuous() ? options_.windows_per_epoch : train.num_trials);
      setup.batch_steps = train.continuous() ? options_.window : train.num_steps;
      setup.parameters = state.model.parameters;
      setup.first_moment = state.state.first_moment;
      setup.second_moment = state.state.second_moment;
      session = backend_.start_training(setup);
    }

    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch) {
      // The epoch's batches depend only on (seed, epoch): resuming reproduces them. Each batch is
      // rows (trial, first step): windows of the recording, or whole trials from step 0.
      std::vector<std::vector<int>> batch_trials, batch_starts;
      if (train.continuous()) {
        const auto starts =
            window_starts(options_.windows_per_epoch, train.num_steps, options_.window,
                          derive_seed(options_.seed, 1, std::uint64_t(epoch)));
        for (std::size_t first = 0; first < starts.size();
             first += std::size_t(options_.batch_size)) {
          const auto last = std::min(starts.size(), first + std::size_t(options_.batch_size));
          batch_starts.emplace_back(starts.begin() + std::ptrdiff_t(first),
                                    starts.begin() + std::ptrdiff_t(last));
          batch_trials.emplace_back(last - first, 0);
        }
      } else {
        std::vector<int> order(static_cast<std::size_t>(train.num_trials));
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(),
                     std::mt19937_64(derive_seed(options_.seed, 2, std::uint64_t(epoch))));
        for (std::size_t first = 0; first < order.size();
             first += std::size_t(options_.batch_size)) {
          const auto last = std::min(order.size(), first + std::size_t(options_.batch_size));
          batch_trials.emplace_back(order.begin() + std::ptrdiff_t(first),
                                    order.begin() + std::ptrdiff_t(last));
          // In ascending order: split over processes (Dataset::shares), each one's trials are
          // then consecutive, whichever process holds which.
          std::sort(batch_trials.back().begin(), batch_trials.back().end());
          batch_starts.emplace_back(last - first, 0);
        }
      }
      double elbo_sum = 0;
      for (std::size_t index = 0; index < batch_trials.size(); ++index) {
        const std::uint64_t step_seed = derive_seed(options_.seed, 3 + std::uint64_t(epoch), index);
        std::string failure;
        if (session) {
          const StepOutcome outcome =
              session->step(batch_trials[index], batch_starts[index], step_seed,
                            optimizer_coefficients(options_.optimizer, state.learning_rate,
                                                   state.state.step + 1));
          failure = outcome.failure;
          if (failure.empty()) {
            state.state.step += 1;
            elbo_sum += outcome.elbo;
            continue;
          }
          session->read_evaluated(last_good);
        } else {
          const SequenceBatch batch =
              train.continuous() ? windows_batch(train, batch_starts[index], options_.window)
                               : trials_batch(train, batch_trials[index]);
          GradientResult gradient;
          try {
            gradient = backend_.elbo_gradient(state.model, batch, options_.filter, step_seed);
            if (!std::isfinite(gradient.elbo))
              failure = detail::concat("the ELBO is ", gradient.elbo);
            else if (!all_finite(gradient.gradient))
              failure = "the gradient contains NaN or Inf";
          } catch (const NumericalError& error) {
            failure = error.what();
          }
          if (failure.empty()) {
            elbo_sum += gradient.elbo;
            last_good = state.model.parameters;
            optimizer_step(options_.optimizer, state.learning_rate, options_.gradient_clip,
                           gradient.gradient, state.state, state.model.parameters);
            continue;
          }
        }
        // Keep the last parameters whose objective and gradient were finite.
        result.model = state.model;
        result.model.parameters = last_good;
        if (options_.keep_best && !state.best_parameters.empty())
          result.model.parameters = state.best_parameters;
        result.stop_reason = detail::concat("training stopped at epoch ", epoch + 1, ", batch ",
                                            index + 1, ": ", failure,
                                            "; kept the last good parameters (try a lower "
                                            "learning rate or --clip)");
        return result;
      }
      if (session)  // the epoch's parameters and moments, for evaluation and checkpoints
        session->read_state(state.model.parameters, state.state.first_moment,
                            state.state.second_moment);
      EpochReport report;
      report.epoch = epoch + 1;
      report.epochs = options_.epochs;
      report.train_elbo = elbo_sum / double(batch_trials.size());
      report.learning_rate = state.learning_rate;
      const bool last = epoch + 1 == options_.epochs;
      if (held_out.num_trials > 0 && ((epoch + 1) % options_.eval_every == 0 || last)) {
        try {
          report.held_out_elbo =
              evaluate_elbo(backend_, state.model, held_out, eval_options, options_.window,
                            derive_seed(options_.seed, 0xE7A1, 0));
        } catch (const NumericalError&) {
          report.held_out_elbo = -std::numeric_limits<double>::infinity();
        }
      }
      // γ = exp(ln(lr_end/lr)/epochs), stepped while lr > lr_end (method.md §5.1).
      if (state.learning_rate > learning_rate_end) state.learning_rate *= decay_factor;
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
      report.elapsed_seconds = earlier_seconds + seconds;
      // The time left from the recent epochs' pace: the last max(10, 2·eval_every) epochs, so
      // that the held-out evaluations are in the average in their proportion and an early
      // slow or fast stretch is forgotten.
      recent_ends.push_back(seconds);
      const std::size_t window =
          std::max<std::size_t>(10, 2 * static_cast<std::size_t>(options_.eval_every));
      while (recent_ends.size() > window + 1) recent_ends.pop_front();
      report.remaining_seconds = (seconds - recent_ends.front()) / double(recent_ends.size() - 1) *
                                 double(options_.epochs - epoch - 1);
      state.epoch = epoch + 1;
      state.history.push_back(report);
      result.history.push_back(report);
      const BestEpoch best = best_epoch(state.history);
      if (options_.keep_best && best.epoch == epoch + 1)
        state.best_parameters = state.model.parameters;
      *boundary = state;
      if (options_.checkpoint_every > 0 && (epoch + 1) % options_.checkpoint_every == 0)
        write_checkpoint();
      if (!go_on(report)) {
        result.model = kept(state);
        result.stop_reason = detail::concat("stopped by request after epoch ", epoch + 1);
        write_checkpoint();
        return result;
      }
      if (options_.patience > 0 && best.evaluations_since >= options_.patience && !last) {
        write_checkpoint();
        result.model = kept(state);
        result.completed = true;
        result.stopped_early = true;
        result.stop_reason = detail::concat(
            "early stopping after epoch ", epoch + 1, ": ", options_.patience,
            " held-out evaluations without improving on epoch ", best.epoch, "'s ", best.elbo);
        return result;
      }
    }
    write_checkpoint();
  } catch (const std::exception& error) {
    // The last completed epoch is kept: the caller saves its model and checkpoint. Before this
    // run completed an epoch there is nothing to keep, and the error is the caller's.
    if (boundary->epoch == first_epoch) throw;
    const bool memory = dynamic_cast<const std::bad_alloc*>(&error) != nullptr;
    result.model = kept(*boundary);
    result.failed = true;
    result.stop_reason =
        detail::concat("training failed after epoch ", boundary->epoch, " of ", options_.epochs,
                       ": ", memory ? std::string("out of memory") : std::string(error.what()),
                       "; kept the model of epoch ", boundary->epoch);
    return result;
  }
  result.model = kept(state);
  result.completed = true;
  return result;
}

}  // namespace lrsmc
