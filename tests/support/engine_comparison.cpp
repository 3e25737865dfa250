// CPU-vs-CUDA comparisons of the GPU tests; see engine_comparison.hpp.
#include "support/engine_comparison.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_engine.hpp"
#include "lrsmc/math/weights.hpp"
#include "support/test_models.hpp"

namespace lrsmc::testing {
namespace {

/// Reports the first index where two arrays differ (== comparison), naming it with `place`.
template <typename T, typename Place>
void expect_same_values(const std::vector<T>& reference, const std::vector<T>& result,
                        const char* what, const Place& place, const std::string& label) {
  if (reference.size() != result.size()) {
    ADD_FAILURE() << label << ": " << what << " have " << result.size() << " values, expected "
                  << reference.size();
    return;
  }
  std::size_t differing = 0, first = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    if (reference[i] == result[i] || (reference[i] != reference[i] && result[i] != result[i]))
      continue;
    if (differing++ == 0) first = i;
  }
  if (differing > 0)
    ADD_FAILURE() << label << ": " << differing << " of " << reference.size() << " " << what
                  << " differ; first at " << place(first) << ": expected "
                  << ::testing::PrintToString(reference[first]) << ", got "
                  << ::testing::PrintToString(result[first]);
}

double relative_error(double reference, double value) {
  return std::fabs(reference - value) / std::max(1.0, std::fabs(reference));
}

/// The worst relative error over two arrays; reports it when it exceeds `tolerance`.
void expect_within(const std::vector<double>& reference, const std::vector<double>& result,
                   double tolerance, const char* what, const std::string& label,
                   const char* reference_name = "CPU", const char* result_name = "GPU") {
  ASSERT_EQ(reference.size(), result.size()) << label << ": " << what;
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const double error = relative_error(reference[i], result[i]);
    if (!(error <= worst)) {
      worst = error;
      at = i;
    }
  }
  EXPECT_LE(worst, tolerance) << label << ": " << what << " at flat index " << at << ": "
                              << reference_name << " " << reference[at] << ", " << result_name
                              << " " << result[at];
}

/// Two float32-or-better gradients of one run: the ELBO within device_tolerance and every
/// parameter block within a relative norm of 1e-3 of the reference's (the project's float32
/// target).
void expect_close_gradients(const ModelConfig& config, const GradientResult& reference,
                            const GradientResult& result, const std::string& label) {
  EXPECT_NEAR(result.elbo, reference.elbo,
              device_tolerance(config) * (1 + std::fabs(reference.elbo)))
      << label;
  const ParameterLayout layout(config);
  for (const ParameterBlock& block : layout.blocks()) {
    double difference = 0, norm = 0;
    for (std::int64_t i = block.offset; i < block.offset + block.size; ++i) {
      const double delta = result.gradient[std::size_t(i)] - reference.gradient[std::size_t(i)];
      difference += delta * delta;
      norm += reference.gradient[std::size_t(i)] * reference.gradient[std::size_t(i)];
    }
    const double relative = norm > 1e-20 ? std::sqrt(difference / norm) : std::sqrt(difference);
    EXPECT_LT(relative, 1e-3) << label << ": block '" << block.name << "' relative error "
                              << relative;
  }
}

cpu::ForcedPaths paths_of(const FilterResult& run, bool with_states) {
  cpu::ForcedPaths forced;
  forced.ancestors = run.ancestors.data();
  forced.resampled = run.resampled.data();
  if (with_states) {
    forced.particles = run.particles.data();
    forced.log_weights = run.log_weights.data();
  }
  return forced;
}

/// Every ancestor `run` chose must be consistent with the CPU's normalised log-weights of the
/// same step (`reference`, computed from the same state): its position lies in the chosen
/// particle's interval of the cumulative weights, up to `tolerance` of the weights' rounding.
void expect_consistent_ancestors(const FilterResult& reference, const FilterResult& run,
                                 const SequenceBatch& batch, const FilterOptions& options,
                                 std::uint64_t seed, double tolerance, const std::string& label) {
  const int K = options.num_particles;
  std::vector<double> cumulative(static_cast<std::size_t>(K));
  int reported = 0;
  for (int trial = 0; trial < batch.num_trials; ++trial) {
    const std::uint32_t id =
        batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    for (int step = 0; step < batch.num_steps; ++step) {
      const std::size_t cell = std::size_t(trial) * batch.num_steps + step;
      if (!run.resampled[cell]) continue;
      double running = 0, largest = 0;
      for (int k = 0; k < K; ++k) {
        const double log_weight = reference.log_weights[cell * K + k];
        running += std::exp(log_weight);
        cumulative[std::size_t(k)] = running;
        if (std::exp(log_weight) > 1e-12) largest = std::max(largest, std::fabs(log_weight));
      }
      for (double& value : cumulative) value /= running;
      const double slack = tolerance * (1.0 + largest);
      for (int k = 0; k < K && reported < 5; ++k) {
        const std::int32_t ancestor = run.ancestors[cell * K + k];
        const double position = math::resampling_position(
            options.resampling, seed, id, std::uint32_t(step), std::uint32_t(k), std::uint32_t(K));
        const double low = ancestor > 0 ? cumulative[std::size_t(ancestor - 1)] : 0.0;
        const double high = cumulative[std::size_t(ancestor)];
        if (ancestor < 0 || ancestor >= K || position < low - slack || position > high + slack) {
          ++reported;
          ADD_FAILURE() << label << ": ancestor " << ancestor << " of slot " << k << ", trial "
                        << trial << ", step " << step << " is not where its position " << position
                        << " falls in the CPU's cumulative weights (its interval [" << low << ", "
                        << high << "], slack " << slack << ")";
        }
      }
    }
  }
}

}  // namespace

double device_tolerance(const ModelConfig& config) {
  // A sum of n float products computed in another order, or with other fused multiply-adds,
  // differs from the CPU's by at most 2 γ_n Σ|terms| (each side is within γ_n Σ|terms| of the
  // exact sum; γ_n = n u / (1 − n u), u = 2^-24). One step sums at most n = N R + R terms for
  // the transition mean, R² for the proposal and D (R + 4) for the observation's log-density;
  // the device's exp, log, tanh, sin and cos add at most 2 ulp each, below that bound. The
  // test models (testing::random_model) keep Σ|terms| within κ = 16 times max(1, |result|):
  // loadings scaled to O(1) units whose contributions cancel by at most that factor.
  const double u = 5.9604644775390625e-8, kappa = 16.0;
  const double n = double(config.num_hidden) * config.rank + config.rank +
                   double(config.rank) * config.rank +
                   double(config.num_channels) * (config.rank + 4);
  const double gamma = n * u / (1.0 - n * u);
  return 2.0 * gamma * kappa;
}

void expect_identical(const FilterResult& reference, const FilterResult& result,
                      const std::string& label) {
  const auto index = [](std::size_t i) { return "flat index " + std::to_string(i); };
  expect_same_values(reference.elbo_per_trial, result.elbo_per_trial, "ELBO per trial", index,
                     label);
  expect_same_values(reference.filtered_mean, result.filtered_mean, "filtered means", index, label);
  expect_same_values(reference.particles, result.particles, "particle components", index, label);
  expect_same_values(reference.log_weights, result.log_weights, "log-weights", index, label);
  expect_same_values(reference.ancestors, result.ancestors, "ancestors", index, label);
  expect_same_values(reference.resampled, result.resampled, "resampling flags", index, label);
}

void expect_identical(const ModelConfig& config, const GradientResult& reference,
                      const GradientResult& result, const std::string& label) {
  const ParameterLayout layout(config);
  const auto place = [&layout](std::size_t i) {
    for (const ParameterBlock& block : layout.blocks())
      if (std::int64_t(i) >= block.offset && std::int64_t(i) < block.offset + block.size)
        return block.name + "[" + std::to_string(std::int64_t(i) - block.offset) + "]";
    return "flat index " + std::to_string(i);
  };
  expect_same_values(
      reference.elbo_per_trial, result.elbo_per_trial, "ELBO per trial",
      [](std::size_t i) { return "trial " + std::to_string(i); }, label);
  expect_same_values(reference.gradient, result.gradient, "gradient entries", place, label);
}

FilterResult expect_same_filter(Backend& backend, const Model& model, const SequenceBatch& batch,
                                const FilterOptions& options, std::uint64_t seed,
                                const std::string& label) {
  const FilterRequest request{true, true};
  const FilterResult result = backend.filter(model, batch, options, seed, request);
  // The CPU float engine following this run step by step: its particles and weights from the
  // run's states, its ancestors and resampling decisions.
  const cpu::ForcedPaths forced = paths_of(result, true);
  const FilterResult followed =
      cpu::filter_trials<float>(model, batch, options, seed, request, 1, &forced);
  if (emulated_device) {
    BackendOptions float_options;
    float_options.cpu_precision = CpuPrecision::device_float32;
    auto cpu = make_backend(BackendKind::cpu, float_options);
    expect_identical(cpu->filter(model, batch, options, seed, request), result, label);
    expect_identical(followed, result, label + " (the CPU following the run)");
    return result;
  }
  const double tolerance = device_tolerance(model.config);
  expect_within(followed.particles, result.particles, tolerance, "particle components", label);
  expect_within(followed.log_weights, result.log_weights, tolerance, "log-weights", label);
  expect_within(followed.filtered_mean, result.filtered_mean, tolerance, "filtered means", label);
  expect_within(followed.elbo_per_trial, result.elbo_per_trial, tolerance, "ELBO per trial", label);
  expect_consistent_ancestors(followed, result, batch, options, seed, tolerance, label);
  return result;
}

void expect_same_gradient(Backend& backend, const Model& model, const SequenceBatch& batch,
                          const FilterOptions& options, std::uint64_t seed,
                          const std::string& label) {
  const GradientResult result = backend.elbo_gradient(model, batch, options, seed);
  const FilterResult paths = backend.filter(model, batch, options, seed, {false, true});
  const cpu::ForcedPaths forced = paths_of(paths, false);
  const GradientResult followed =
      cpu::gradient_of_trials<float>(model, batch, options, seed, 1, &forced);
  if (emulated_device) {
    BackendOptions float_options;
    float_options.cpu_precision = CpuPrecision::device_float32;
    auto cpu = make_backend(BackendKind::cpu, float_options);
    expect_identical(model.config, cpu->elbo_gradient(model, batch, options, seed), result, label);
    expect_identical(model.config, followed, result, label + " (the CPU following the run)");
    return;
  }
  expect_close_gradients(model.config, followed, result, label);
}

void expect_packed_follows_reference(const Model& model, const SequenceBatch& batch,
                                     const FilterOptions& options, std::uint64_t seed,
                                     const std::string& label) {
  const FilterRequest request{true, true};
  const FilterResult reference = reference_backend()->filter(model, batch, options, seed, request);
  const cpu::ForcedPaths forced = paths_of(reference, true);
  const FilterResult followed =
      cpu::filter_trials_packed(model, batch, options, seed, request, 1, &forced);
  const double tolerance = device_tolerance(model.config);
  expect_within(reference.particles, followed.particles, tolerance, "particle components", label,
                "float64", "packed");
  expect_within(reference.log_weights, followed.log_weights, tolerance, "log-weights", label,
                "float64", "packed");
  expect_within(reference.filtered_mean, followed.filtered_mean, tolerance, "filtered means", label,
                "float64", "packed");
  expect_within(reference.elbo_per_trial, followed.elbo_per_trial, tolerance, "ELBO per trial",
                label, "float64", "packed");
}

void expect_packed_gradient_follows_reference(const Model& model, const SequenceBatch& batch,
                                              const FilterOptions& options, std::uint64_t seed,
                                              const std::string& label) {
  auto reference_engine = reference_backend();
  const GradientResult reference = reference_engine->elbo_gradient(model, batch, options, seed);
  const FilterResult paths = reference_engine->filter(model, batch, options, seed, {false, true});
  const cpu::ForcedPaths forced = paths_of(paths, false);
  const GradientResult followed =
      cpu::gradient_of_trials_packed(model, batch, options, seed, 1, &forced);
  expect_close_gradients(model.config, reference, followed, label);
}

}  // namespace lrsmc::testing
