// Backend's public calls: one place that validates every request (identical checks and
// messages on every backend), checks the memory estimate, then dispatches.
#include "lrsmc/backend.hpp"

#include <algorithm>
#include <cmath>

#include "core/shared_trials.hpp"
#include "core/training_session.hpp"
#include "cpu/cpu_backend.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/trial_gather.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc {

std::string to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::cpu: return "cpu";
    case BackendKind::cuda: return "cuda";
    case BackendKind::automatic: break;
  }
  return "auto";
}

BackendKind parse_backend_kind(const std::string& text, const std::string& field) {
  if (text == "cpu") return BackendKind::cpu;
  if (text == "cuda") return BackendKind::cuda;
  if (text == "auto") return BackendKind::automatic;
  throw InvalidInput(detail::concat(field, " is not recognised; got '", text,
                                    "', expected one of cpu, cuda, auto"));
}

std::string to_string(CpuPrecision precision) {
  switch (precision) {
    case CpuPrecision::float64: return "float64";
    case CpuPrecision::device_float32: return "float32-device";
    case CpuPrecision::packed_float32: break;
  }
  return "float32";
}

CpuPrecision parse_cpu_precision(const std::string& text, const std::string& field) {
  if (text == "float32") return CpuPrecision::packed_float32;
  if (text == "float64") return CpuPrecision::float64;
  if (text == "float32-device") return CpuPrecision::device_float32;
  throw InvalidInput(detail::concat(field, " is not recognised; got '", text,
                                    "', expected one of float32, float64, float32-device"));
}

void validate_batch(const ModelConfig& config, const SequenceBatch& batch,
                    const std::string& source, const std::optional<TrialShare>& observed) {
  LRSMC_REQUIRE(batch.num_trials >= 1, source, ": trial count must be at least 1; got ",
                batch.num_trials);
  LRSMC_REQUIRE(batch.num_steps >= 1, source, ": time steps must be at least 1; got ",
                batch.num_steps);
  LRSMC_REQUIRE(batch.num_channels == config.num_channels, source,
                ": channel count does not match the model; got ", batch.num_channels,
                ", expected ", config.num_channels);
  LRSMC_REQUIRE(batch.num_inputs == config.num_inputs, source,
                ": input dimension does not match the model; got ", batch.num_inputs,
                ", expected ", config.num_inputs);
  const std::size_t cells = std::size_t(batch.num_trials) * std::size_t(batch.num_steps);
  const TrialShare held = observed.value_or(TrialShare{0, batch.num_trials});
  const std::size_t held_values =
      std::size_t(held.count()) * std::size_t(batch.num_steps) * std::size_t(batch.num_channels);
  LRSMC_REQUIRE(batch.observations.size() == held_values, source,
                ": observations have the wrong size; got ", batch.observations.size(),
                " values, expected ", held_values, " (trials ", held.count(), " × steps ",
                batch.num_steps, " × channels ", batch.num_channels, ")");
  LRSMC_REQUIRE(batch.inputs.size() == cells * std::size_t(batch.num_inputs), source,
                ": inputs have the wrong size; got ", batch.inputs.size(), " values, expected ",
                cells * std::size_t(batch.num_inputs));
  LRSMC_REQUIRE(batch.trial_ids.empty() || batch.trial_ids.size() == std::size_t(batch.num_trials),
                source, ": trial_ids has the wrong size; got ", batch.trial_ids.size(),
                ", expected ", batch.num_trials);
  for (std::size_t i = 0; i < batch.observations.size(); ++i) {
    const double value = batch.observations[i];
    const std::size_t channels = std::size_t(batch.num_channels);
    if (batch.allow_missing && std::isnan(value)) continue;  // a missing value
    const std::size_t trial = held.first + i / channels / std::size_t(batch.num_steps);
    LRSMC_REQUIRE(std::isfinite(value), source, ": observations contain ", value, " at trial ",
                  trial, ", step ", (i / channels) % std::size_t(batch.num_steps), ", channel ",
                  i % channels, "; expected finite values");
    if (config.observation == Observation::poisson)
      LRSMC_REQUIRE(value >= 0.0 && value == std::floor(value), source,
                    ": Poisson observations must be non-negative counts; got ", value, " at trial ",
                    trial, ", step ", (i / channels) % std::size_t(batch.num_steps), ", channel ",
                    i % channels);
  }
  for (std::size_t i = 0; i < batch.inputs.size(); ++i)
    LRSMC_REQUIRE(std::isfinite(batch.inputs[i]), source, ": inputs contain ", batch.inputs[i],
                  " at flat index ", i, "; expected finite values");
}

void require_complete(const SequenceBatch& batch, Proposal proposal, const std::string& source,
                      const std::optional<TrialShare>& observed) {
  if (!batch.allow_missing || (proposal != Proposal::optimal && proposal != Proposal::encoder))
    return;
  const std::size_t channels = std::size_t(batch.num_channels);
  for (std::size_t i = 0; i < batch.observations.size(); ++i)
    LRSMC_REQUIRE(!std::isnan(batch.observations[i]), "the ", to_string(proposal),
                  " proposal needs every observation, but ", source,
                  " has a missing value (NaN) at trial ",
                  (observed ? observed->first : 0) + i / channels / std::size_t(batch.num_steps),
                  ", step ", (i / channels) % std::size_t(batch.num_steps), ", channel ",
                  i % channels, "; use the bootstrap proposal");
}

void Backend::check_fits(const ModelConfig& config, int num_trials, int num_steps,
                         int num_particles, bool with_gradient) const {
  const std::int64_t needed =
      memory_estimate(config, num_trials, num_steps, num_particles, with_gradient);
  const std::int64_t available = memory_available();
  if (needed <= available) return;
  // The estimate grows with particles and trials (not always affinely: a backend may change
  // regime with the particle count), so bisect for the largest of each that fits.
  const auto largest = [available](int high, const auto& estimate) {
    int low = 0;  // the largest count known to fit (0: none)
    while (low < high) {
      const int middle = low + (high - low + 1) / 2;
      if (estimate(middle) <= available) {
        low = middle;
      } else {
        high = middle - 1;
      }
    }
    return low;
  };
  const int fitting_particles = largest(num_particles, [&](int particles) {
    return memory_estimate(config, num_trials, num_steps, particles, with_gradient);
  });
  const int fitting_trials = largest(num_trials, [&](int trials) {
    return memory_estimate(config, trials, num_steps, num_particles, with_gradient);
  });
  throw OutOfMemory(detail::concat(
      name(), ": ", num_particles, " particles × ", num_trials, " trials × ", num_steps,
      " steps need ", needed / (1 << 20), " MiB but only ", available / (1 << 20),
      " MiB are available; at most ", fitting_particles, " particles per trial (or ",
      fitting_trials, " trials of ", num_particles, " particles) would fit"));
}

void Backend::check_call(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options) const {
  model.validate();
  validate(options, model.config);
  // A batch split over processes holds this process's trials' observations only.
  std::optional<TrialShare> observed;
  if (!batch.shares.empty()) {
    const Communicator* const world = communicator();
    observed = share_in(detail::shares_of(batch, world), world == nullptr ? 0 : world->rank());
  }
  validate_batch(model.config, batch, "data", observed);
  require_complete(batch, options.proposal, "observations", observed);
  LRSMC_REQUIRE(options.t_forward < batch.num_steps, "filter options: t_forward must leave at "
                "least one step before the forecast; got ", options.t_forward, " of ",
                batch.num_steps, " steps");
  if (options.proposal == Proposal::encoder)
    validate(*model.config.encoder, model.config.num_channels, model.config.rank,
             batch.num_steps - options.t_forward, "encoder proposal");
  const std::string reason = cannot_run(model.config, options);
  LRSMC_REQUIRE(reason.empty(), name(), ": ", reason, "; use --device cpu (or auto)");
  if (!batch.shares.empty()) {
    // The encoder's gradient sums over every trial's observations.
    LRSMC_REQUIRE(options.proposal != Proposal::encoder,
                  "the encoder proposal reads every trial's observations, but the batch holds "
                  "only this process's share of them (SequenceBatch::shares); read the whole "
                  "recording on every process (--shard off) or use another proposal");
  }
}

void Backend::checked_on_every_process(const Model& model, const SequenceBatch& batch,
                                       const FilterOptions& options) const {
  // Each process checks its own trials of a split batch: all then fail alike.
  if (batch.shares.empty()) return check_call(model, batch, options);
  detail::on_every_process(communicator(), [&] { check_call(model, batch, options); });
}

FilterResult Backend::filter(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, std::uint64_t seed,
                             const FilterRequest& request) {
  checked_on_every_process(model, batch, options);
  LRSMC_REQUIRE(!request.particles || batch.shares.empty(),
                "filter: storing particles runs every trial on every process, but the batch "
                "holds only this process's share of the observations (SequenceBatch::shares)");
  // Free memory differs between processes: with several, all agree on one's failure.
  detail::on_every_process(communicator(), [&] {
    check_fits(model.config, batch.num_trials, batch.num_steps, options.num_particles, false);
  });
  if (request.particles) {  // the returned paths, float64 (device copies: the backend's own plan)
    const double per_particle = double(batch.num_trials) * batch.num_steps *
                                (model.config.rank + 2) * 8.0;
    const double bytes = per_particle * options.num_particles;
    const double available = double(memory_available());
    if (!(bytes < available))
      throw OutOfMemory(detail::concat(
          "filter: storing every particle needs ", bytes / double(1 << 20), " MiB but only ",
          available / double(1 << 20), " MiB are available; got ", options.num_particles,
          " particles, at most ", std::int64_t(std::max(0.0, std::ceil(available / per_particle) - 1)),
          " particles per trial would fit with stored paths (or do not request particle paths)"));
  }
  return do_filter(model, batch, options, seed, request);
}

GradientResult Backend::elbo_gradient(const Model& model, const SequenceBatch& batch,
                                      const FilterOptions& options, std::uint64_t seed) {
  checked_on_every_process(model, batch, options);
  detail::on_every_process(communicator(), [&] {
    check_fits(model.config, batch.num_trials, batch.num_steps, options.num_particles, true);
  });
  return do_elbo_gradient(model, batch, options, seed);
}

SampleResult Backend::sample(const Model& model, int num_trials, int num_steps,
                             const std::vector<double>& inputs, std::uint64_t seed,
                             int first_trial, const std::vector<double>& initial_states) {
  model.validate();
  LRSMC_REQUIRE(num_trials >= 1 && num_trials <= 10'000'000, "sample: trials is out of range; got ",
                num_trials, ", expected 1 to 10000000");
  LRSMC_REQUIRE(num_steps >= 1 && num_steps <= 100'000'000, "sample: steps is out of range; got ",
                num_steps, ", expected 1 to 100000000");
  const std::size_t expected =
      std::size_t(num_trials) * std::size_t(num_steps) * std::size_t(model.config.num_inputs);
  LRSMC_REQUIRE(inputs.size() == expected, "sample: inputs have the wrong size; got ",
                inputs.size(), " values, expected ", expected, " (trials × steps × inputs)");
  LRSMC_REQUIRE(first_trial >= 0 && first_trial <= 100'000'000 - num_trials,
                "sample: first_trial is out of range; got ", first_trial, ", expected 0 to ",
                100'000'000 - num_trials);
  if (!initial_states.empty()) {
    const std::size_t states = std::size_t(num_trials) * std::size_t(model.config.rank);
    LRSMC_REQUIRE(initial_states.size() == states,
                  "sample: initial states have the wrong size; got ", initial_states.size(),
                  " values, expected ", states, " (trials × rank)");
    for (std::size_t i = 0; i < states; ++i)
      LRSMC_REQUIRE(std::isfinite(initial_states[i]), "sample: initial state ", i / model.config.rank,
                    " is not finite; got ", initial_states[i], " in latent dimension ",
                    i % std::size_t(model.config.rank));
  }
  return do_sample(model, num_trials, num_steps, inputs, seed, first_trial, initial_states);
}

std::unique_ptr<TrainingSession> Backend::start_training(const TrainingSetup&) { return nullptr; }

std::string Backend::cannot_run(const ModelConfig&, const FilterOptions&) const { return {}; }

std::unique_ptr<Backend> make_backend(BackendKind kind, const BackendOptions& options) {
  Communicator* const world = options.communicator.get();
  if (world == nullptr || world->size() == 1) {
    if (kind == BackendKind::cpu || (kind == BackendKind::automatic && !cuda_available()))
      return std::make_unique<cpu::CpuBackend>(options);
    return cuda::make_cuda_backend(options);
  }
  // Several processes share the fit: every one must take the same backend, the CPU's (trials
  // gathered over MPI) or the CUDA backend's (over NCCL, a GPU of its own per process: NCCL
  // refuses two processes of a communicator on one). auto takes the GPUs when every process
  // has one and NCCL loads.
  const int here = world->local_size();
  if (kind == BackendKind::automatic)
    kind = world->any(!cuda::nccl_usable() || cuda::device_count() < here) ? BackendKind::cpu
                                                                           : BackendKind::cuda;
  if (kind == BackendKind::cpu) return std::make_unique<cpu::CpuBackend>(options);
  std::unique_ptr<Backend> backend;
  detail::on_every_process(world, [&] {
    std::string why;
    LRSMC_REQUIRE(cuda::nccl_usable(&why), "cuda backend: ", world->size(),
                  " MPI processes share this fit over NCCL, but ", why,
                  "; use --device cpu, or run one process");
    const int devices = cuda::device_count();
    LRSMC_REQUIRE(devices == 0 || devices >= here, "cuda backend: ", here,
                  " processes of this launch run on this machine, which has ", devices,
                  " GPUs; each needs a GPU of its own (NCCL refuses two on one): start at most ",
                  devices, " per machine (mpirun --map-by ppr:", devices,
                  ":node), or use --device cpu");
    backend = cuda::make_cuda_backend(options);
  });
  return backend;
}

std::unique_ptr<Backend> make_backend_for(BackendKind kind, const BackendOptions& options,
                                          const ModelConfig& config, const FilterOptions& filter,
                                          std::string* note) {
  std::unique_ptr<Backend> backend = make_backend(kind, options);
  const std::string reason = backend->cannot_run(config, filter);
  if (reason.empty()) return backend;
  LRSMC_REQUIRE(kind == BackendKind::automatic, backend->name(), ": ", reason,
                "; use --device cpu (or auto)");
  if (note != nullptr)
    *note = detail::concat("device auto: ", backend->name(), " cannot run this model (", reason,
                           "); running on the CPU");
  return make_backend(BackendKind::cpu, options);
}

}  // namespace lrsmc
