// Backward-simulation smoothing on the host over the forward filter's stored particles; see
// lrsmc/smoother.hpp.
#include "lrsmc/smoother.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/block_errors.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"
#include "model/model_constants.hpp"

namespace lrsmc {
namespace {

/// Bytes of stored particles and weights one filter call of the smoother may hold.
constexpr std::int64_t part_bytes = std::int64_t(256) << 20;

/// The trials [first, first + count) of `batch`, keeping their random-number addresses.
SequenceBatch part_of(const SequenceBatch& batch, int first, int count) {
  SequenceBatch part;
  part.num_trials = count;
  part.num_steps = batch.num_steps;
  part.num_channels = batch.num_channels;
  part.num_inputs = batch.num_inputs;
  part.allow_missing = batch.allow_missing;
  const std::size_t cells = std::size_t(batch.num_steps);
  part.observations.assign(
      batch.observations.begin() + std::ptrdiff_t(std::size_t(first) * cells * batch.num_channels),
      batch.observations.begin() +
          std::ptrdiff_t(std::size_t(first + count) * cells * batch.num_channels));
  if (batch.num_inputs > 0)
    part.inputs.assign(
        batch.inputs.begin() + std::ptrdiff_t(std::size_t(first) * cells * batch.num_inputs),
        batch.inputs.begin() +
            std::ptrdiff_t(std::size_t(first + count) * cells * batch.num_inputs));
  for (int trial = first; trial < first + count; ++trial)
    part.trial_ids.push_back(batch.trial_ids.empty() ? std::uint32_t(trial)
                                                     : batch.trial_ids[std::size_t(trial)]);
  return part;
}

/// The index k with cumulative[k − 1] ≤ u · total < cumulative[k] (cumulative non-decreasing).
int draw_index(const std::vector<double>& cumulative, double u) {
  const double target = u * cumulative.back();
  const auto found = std::upper_bound(cumulative.begin(), cumulative.end(), target);
  return int(
      std::min<std::ptrdiff_t>(found - cumulative.begin(), std::ptrdiff_t(cumulative.size()) - 1));
}

}  // namespace

SmoothResult smooth(Backend& backend, const Model& model, const SequenceBatch& batch,
                    const FilterOptions& options, std::uint64_t seed, int trajectories) {
  LRSMC_REQUIRE(trajectories >= 1 && trajectories <= 1'000'000,
                "smoother: trajectories is out of range; got ", trajectories,
                ", expected 1 to 1000000");
  LRSMC_REQUIRE(batch.num_trials >= 1, "smoother: the batch has no trials");
  const int trials = batch.num_trials, steps = batch.num_steps, R = model.config.rank,
            K = options.num_particles, U = model.config.num_inputs, N = model.config.num_hidden;
  const model::HostConstants<double> constants(model, Proposal::bootstrap);
  const math::ParticleModel<double> particle_model = constants.particle_model();
  const math::PhaseConstants<double> transition = constants.phase(1);  // Σ_z = L Lᵀ
  SmoothResult result;
  result.num_trajectories = trajectories;
  result.elbo_per_trial.resize(std::size_t(trials));
  result.trajectories.assign(std::size_t(trials) * trajectories * steps * R, 0.0);
  result.smoothed_mean.assign(std::size_t(trials) * steps * R, 0.0);
  const std::int64_t per_trial = std::int64_t(steps) * K * (R + 1) * 8;
  const int part_trials =
      int(std::max<std::int64_t>(1, part_bytes / std::max<std::int64_t>(1, per_trial)));
  FilterRequest request;
  request.particles = true;
  for (int first = 0; first < trials; first += part_trials) {
    const int count = std::min(part_trials, trials - first);
    const SequenceBatch part = part_of(batch, first, count);
    const FilterResult filtered = backend.filter(model, part, options, seed, request);
    detail::BlockErrors errors(count);
#pragma omp parallel for schedule(dynamic, 1)
    for (int local = 0; local < count; ++local) {
      errors.run(local, [&] {
        const int trial = first + local;
        const std::uint32_t address = part.trial_ids[std::size_t(local)];
        const std::size_t rank = static_cast<std::size_t>(R), count_k = static_cast<std::size_t>(K);
        std::vector<double> means(count_k * rank), lanes(rank), residual(rank),
            log_weights(count_k), cumulative(count_k),
            currents(static_cast<std::size_t>(U > 0 ? N : 0));
        const auto particle = [&](int step, int k) {
          return filtered.particles.data() + ((std::size_t(local) * steps + step) * K + k) * R;
        };
        const auto weight = [&](int step, int k) {
          return filtered.log_weights[(std::size_t(local) * steps + step) * K + std::size_t(k)];
        };
        const auto path = [&](int j, int step) {
          return result.trajectories.data() +
                 ((std::size_t(trial) * trajectories + j) * steps + step) * R;
        };
        // The last step: draws from the filtering weights.
        for (int k = 0; k < K; ++k)
          cumulative[std::size_t(k)] =
              (k > 0 ? cumulative[std::size_t(k) - 1] : 0.0) + std::exp(weight(steps - 1, k));
        for (int j = 0; j < trajectories; ++j) {
          const double u = math::uniform(seed, address, std::uint32_t(steps - 1), std::uint32_t(j),
                                         math::DrawStream::smoothing, 0);
          std::copy_n(particle(steps - 1, draw_index(cumulative, u)), R, path(j, steps - 1));
        }
        for (int step = steps - 2; step >= 0; --step) {
          // The transition means of every particle of the step, into step + 1 (currents W_u u_t).
          if (U > 0)
            for (int i = 0; i < N; ++i)
              currents[std::size_t(i)] = math::input_current(
                  constants.shape, constants.working.data(),
                  part.inputs.data() + (std::size_t(local) * steps + step) * U, i);
          for (int k = 0; k < K; ++k)
            math::transition_mean(particle_model, particle(step, k),
                                  U > 0 ? currents.data() : nullptr, 1, lanes.data(),
                                  means.data() + std::size_t(k) * R);
          for (int j = 0; j < trajectories; ++j) {
            const double* future = path(j, step + 1);
            double largest = -INFINITY;
            for (int k = 0; k < K; ++k) {
              math::whitened_residual(R, transition.factor, future,
                                      means.data() + std::size_t(k) * R, residual.data());
              double squares = 0.0;
              for (int r = 0; r < R; ++r)
                squares += residual[std::size_t(r)] * residual[std::size_t(r)];
              log_weights[std::size_t(k)] = weight(step, k) - 0.5 * squares;
              largest = std::max(largest, log_weights[std::size_t(k)]);
            }
            if (!std::isfinite(largest))
              throw NumericalError(detail::concat(
                  "smoother: no particle of trial ", trial, " at step ", step,
                  " can reach the trajectory's next state (every backward weight is ", largest,
                  ")"));
            double running = 0.0;
            for (int k = 0; k < K; ++k) {
              running += std::exp(log_weights[std::size_t(k)] - largest);
              cumulative[std::size_t(k)] = running;
            }
            const double u = math::uniform(seed, address, std::uint32_t(step), std::uint32_t(j),
                                           math::DrawStream::smoothing, 0);
            std::copy_n(particle(step, draw_index(cumulative, u)), R, path(j, step));
          }
        }
        double* mean = result.smoothed_mean.data() + std::size_t(trial) * steps * R;
        for (int j = 0; j < trajectories; ++j)
          for (int i = 0; i < steps * R; ++i) mean[i] += path(j, 0)[i] / trajectories;
        result.elbo_per_trial[std::size_t(trial)] = filtered.elbo_per_trial[std::size_t(local)];
      });
    }
    errors.rethrow();
  }
  double total = 0.0;
  for (const double value : result.elbo_per_trial) total += value;
  result.elbo = total / trials;
  return result;
}

}  // namespace lrsmc
