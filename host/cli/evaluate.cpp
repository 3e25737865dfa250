// lrsmc evaluate: a fitted model against a recording, as JSON and a table on stdout.
#include "cli/evaluate.hpp"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "lrsmc/errors.hpp"
#include "lrsmc/evaluation.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::cli {

void add_evaluate_options(CLI::App& app, EvaluateCommandOptions& options) {
  app.add_option("--model", options.model_path, "Model file (.npz)")->required();
  // Scores need complete recordings: channels are hidden from the posterior with
  // --held-out-channels instead of --allow-missing.
  add_data_options(app, options.data, true, false);
  std::size_t first = app.get_options().size();
  app.add_option("--particles,-k", options.particles,
                 "Particles of the filter behind the ELBO and the posterior starts")
      ->capture_default_str();
  app.add_option("--proposal", options.proposal, "auto | optimal | bootstrap | encoder")
      ->capture_default_str();
  app.add_option("--trajectories", options.trajectories,
                 "Smoother trajectories per trial for the smoothed rates of counts")
      ->capture_default_str();
  app.add_option("--held-out-channels", options.held_out_channels,
                 "Channels the posterior does not see, whose smoothed predictions are scored "
                 "(co-smoothing: co_bps for counts, held_out_r2 otherwise), e.g. 0,5,9")
      ->delimiter(',');
  group_since(app, first, "Posterior");
  first = app.get_options().size();
  app.add_option("--repeats", options.repeats,
                 "Generated data sets, each scored on its own: median and MAD (the paper's EEG "
                 "table: 20)")
      ->capture_default_str();
  app.add_option("--burn-in", options.burn_in,
                 "Steps generated and dropped after each posterior start (the paper's EEG: 2400)")
      ->capture_default_str();
  app.add_option("--max-steps", options.max_steps, "Score the first this many steps of a trial")
      ->capture_default_str();
  app.add_option("--hann-window", options.hann_window,
                 "Smooth generated continuous data with a Hann window of this many steps, then "
                 "z-score it (the paper's EEG pipeline: 15; 0: score the draws as they are)")
      ->capture_default_str();
  app.add_option("--spectrum-smoothing", options.spectrum_smoothing,
                 "σ in frequency bins of the Gaussian smoothing of power spectra (D_H)")
      ->capture_default_str();
  app.add_option("--frequency-cutoff", options.frequency_cutoff,
                 "D_H compares spectrum bins [0, cutoff), Python slice semantics (EEG: -1)")
      ->capture_default_str();
  app.add_option("--stsp-samples", options.stsp_samples, "Monte-Carlo points of D_stsp")
      ->capture_default_str();
  app.add_option("--bin-seconds", options.bin_seconds,
                 "Bin width of count data in seconds (mean rates and ISIs in seconds)")
      ->capture_default_str();
  app.add_option("--forward-steps", options.forward_steps,
                 "Predict the last this many steps of each trial from the steps before them "
                 "(fp_bps for counts, forward_r2 otherwise)")
      ->capture_default_str();
  app.add_option("--conditions", options.conditions_path,
                 ".npy of one integer condition label per trial: PSTH R² of the smoothed "
                 "predictions");
  app.add_option("--behaviour", options.behaviour_path,
                 ".npy (trials, steps, dims) of a behavioural variable: ridge decoding R² from "
                 "the smoothed latents (first 70 % of trials fit, last 30 % scored)");
  group_since(app, first, "Generation and scores");
  add_seed_option(app, options.seed, "Random seed (same seed, same result)");
  app.add_option("--out-json", options.json_path, "Every value as JSON")->capture_default_str();
  add_device_options(app, options.device);
}

namespace {

nlohmann::ordered_json summary_of(const std::vector<double>& values) {
  nlohmann::ordered_json json;
  const auto number = [](double v) {
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
  };
  json["median"] = number(median(values));
  json["mad"] = number(median_absolute_deviation(values));
  json["values"] = nlohmann::ordered_json::array();
  for (const double v : values) json["values"].push_back(number(v));
  return json;
}

/// --hann-window z-scores the generated data only (the paper's EEG is z-scored already): says
/// so when a channel of the recording is not z-scored.
void warn_unless_standardised(const Dataset& data) {
  const int D = data.num_channels;
  const std::size_t rows = data.observations.size() / std::size_t(D);
  for (int d = 0; d < D; ++d) {
    double mean = 0.0, square = 0.0;
    for (std::size_t row = 0; row < rows; ++row) mean += data.observations[row * D + d];
    mean /= double(rows);
    for (std::size_t row = 0; row < rows; ++row) {
      const double v = data.observations[row * D + d] - mean;
      square += v * v;
    }
    const double std_dev = std::sqrt(square / double(rows));
    if (std::fabs(mean) > 0.1 || std::fabs(std_dev - 1.0) > 0.1) {
      std::fprintf(stderr,
                   "lrsmc: warning: --hann-window z-scores the generated data, but channel %d of "
                   "%s is not z-scored (mean %.3g, std %.3g): the scores then compare unlike "
                   "scales; z-score the recording first, as the paper's EEG is\n",
                   d, data.source.c_str(), mean, std_dev);
      return;
    }
  }
}

}  // namespace

int run_evaluate(const EvaluateCommandOptions& options) {
  require_distinct_paths({{"--model", options.model_path},
                          {"--data", options.data.path},
                          {"--inputs", options.data.inputs_path},
                          {"--conditions", options.conditions_path},
                          {"--behaviour", options.behaviour_path}},
                         {{"--out-json", options.json_path}});
  require_writable_outputs({{"--out-json", options.json_path}});
  const Model model = load_model(options.model_path);
  const Dataset data = load_data(options.data);
  check_data(data, model.config);
  if (options.hann_window > 0) warn_unless_standardised(data);
  EvaluationOptions evaluation;
  InferenceOptions inference;
  inference.particles = options.particles;
  inference.proposal = options.proposal;
  // The held-out channels are hidden from the posterior (evaluate refuses missing values).
  evaluation.filter = make_filter_options(
      inference, model.config, options.held_out_channels.empty() ? "" : "--held-out-channels");
  evaluation.held_out_channels = options.held_out_channels;
  evaluation.forward_steps = options.forward_steps;
  if (!options.conditions_path.empty()) {
    const Array labels = io::read_npy(options.conditions_path);
    LRSMC_REQUIRE(labels.ndim() == 1 && labels.shape[0] == data.num_trials, options.conditions_path,
                  ": expected one condition label per trial, shape (", data.num_trials,
                  ",); got shape ", labels.shape_string());
    for (const double label : labels.data) {
      LRSMC_REQUIRE(std::isfinite(label) && label >= 0 && label == std::floor(label) && label < 1e9,
                    options.conditions_path, ": condition labels must be integers ≥ 0; got ",
                    label);
      evaluation.conditions.push_back(int(label));
    }
  }
  if (!options.behaviour_path.empty()) {
    const Dataset behaviour =
        load_dataset(options.behaviour_path, DataLayout::trials_time_channels);
    LRSMC_REQUIRE(behaviour.num_trials == data.num_trials && behaviour.num_steps == data.num_steps,
                  options.behaviour_path, ": behaviour of ", behaviour.num_trials, " trials × ",
                  behaviour.num_steps, " steps does not match the ", data.num_trials, " × ",
                  data.num_steps, " of ", data.source, " (layout trials,time,dims)");
    evaluation.behaviour = behaviour.observations;
    evaluation.behaviour_dims = behaviour.num_channels;
  }
  evaluation.repeats = options.repeats;
  evaluation.burn_in = options.burn_in;
  evaluation.max_steps = options.max_steps;
  evaluation.trajectories = options.trajectories;
  evaluation.hann_window = options.hann_window;
  evaluation.spectrum.smoothing = options.spectrum_smoothing;
  evaluation.spectrum.frequency_cutoff = options.frequency_cutoff;
  evaluation.state_space.samples = options.stsp_samples;
  evaluation.bin_seconds = options.bin_seconds;
  evaluation.seed = options.seed;
  auto backend = make_device_backend(options.device, model.config, evaluation.filter);
  const Evaluation result = evaluate(*backend, model, data, evaluation);

  nlohmann::ordered_json json;
  json["model"] = options.model_path;
  json["data"] = data.source;
  json["observation"] = to_string(model.config.observation);
  json["trials"] = result.trials;
  json["steps_scored"] = result.steps;
  json["channels"] = result.channels;
  json["elbo_per_step"] = result.elbo;
  json["particles"] = evaluation.filter.num_particles;
  json["proposal"] = to_string(evaluation.filter.proposal);
  json["generation"] = {{"start", "smoothing posterior at step 0, one draw per trial and repeat"},
                        {"repeats", options.repeats},
                        {"burn_in", options.burn_in},
                        {"hann_window", options.hann_window},
                        {"held_out_channels", options.held_out_channels},
                        {"forward_steps", options.forward_steps},
                        {"seed", options.seed}};
  nlohmann::ordered_json metrics;
  for (const MetricValues& metric : result.metrics) {
    nlohmann::ordered_json entry = summary_of(metric.values);
    entry["description"] = metric.description;
    entry["baseline"] = summary_of(metric.baseline_values);
    entry["baseline"]["name"] = metric.baseline;
    if (!metric.note.empty()) entry["note"] = metric.note;
    metrics[metric.name] = entry;
  }
  json["metrics"] = metrics;
  io::write_text_file(options.json_path, json.dump(2) + "\n");

  std::printf("%s on %s: %d trials × %d steps, ELBO %.6f per step (%d particles, %s proposal)\n",
              options.model_path.c_str(), data.source.c_str(), result.trials, result.steps,
              result.elbo, evaluation.filter.num_particles,
              to_string(evaluation.filter.proposal).c_str());
  std::printf("%-26s %12s %10s   %12s  baseline\n", "metric", "median", "MAD", "baseline");
  for (const MetricValues& metric : result.metrics)
    std::printf("%-26s %12.5g %10.3g   %12.5g  %s\n", metric.name.c_str(), median(metric.values),
                median_absolute_deviation(metric.values), median(metric.baseline_values),
                metric.baseline.c_str());
  std::printf("wrote %s\n", options.json_path.c_str());
  return 0;
}

}  // namespace lrsmc::cli
