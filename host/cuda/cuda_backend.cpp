// The CUDA backend (design.md, "Backends share one interface", "GPU work shape"): the forward
// filter's device memory, one packed upload of a call's parameters and data, the per-call
// constants built on the device, the launches and the copies back; gradients and training in
// cuda_training.cpp. Sampling is delegated to the CPU reference (it is sequential and cheap).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "core/shared_trials.hpp"
#include "cpu/cpu_backend.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_training.hpp"
#include "cuda/device_encoder.hpp"
#include "cuda/device_model.hpp"
#include "cuda/device_workspace.hpp"
#include "cuda/filter_plan.hpp"
#include "cuda/trial_gather.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "model/encoder_factors.hpp"
#include "model/model_constants.hpp"

namespace lrsmc {

bool cuda_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

namespace cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

namespace {

using kernels::DeviceBuffer;
using kernels::download;

/// Captures what `enqueue` puts on `stream` into one CUDA graph, runs it and waits for it
/// (design.md, "many particles": the time loop is one graph launch with no host
/// synchronisation inside). Nothing is allocated while capturing. The graph is rebuilt per
/// call: its kernel arguments hold, besides the device pointers (stable between calls of one
/// shape now that the workspace is kept), the call's seed and constants (decay, log-
/// determinants, threshold) by value, so a cached executable would need cudaGraphExecUpdate
/// from a fresh capture each call anyway; at the K ≥ 2048 this regime serves, the kernels
/// dominate the capture.
template <typename Enqueue>
void run_as_graph(cudaStream_t stream, const Enqueue& enqueue) {
  LRSMC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue(stream);
  } catch (...) {  // end the capture so that the stream (and the backend) stay usable
    cudaGraph_t partial = nullptr;
    if (cudaStreamEndCapture(stream, &partial) == cudaSuccess && partial) (void)cudaGraphDestroy(partial);
    (void)cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  LRSMC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t executable = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&executable, graph, 0);
  (void)cudaGraphDestroy(graph);
  if (instantiated != cudaSuccess)
    kernels::throw_cuda_error(instantiated, "cudaGraphInstantiate (forward filter, many-particle regime)",
                              __FILE__, __LINE__);
  cudaError_t status = cudaGraphLaunch(executable, stream);
  if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
  (void)cudaGraphExecDestroy(executable);
  if (status != cudaSuccess)
    kernels::throw_cuda_error(status, "forward filter graph (many-particle regime)", __FILE__, __LINE__);
}

/// The encoder proposal's records of `cells` cells (kernels::encoder_products) from the
/// encoder's factors on the device, in the arena (filter_plan.cpp's order); throws the CPU
/// backend's NumericalError for the first cell whose product is not positive definite.
const float* encoder_cells(const kernels::DeviceModel& model, const double* mean,
                           const double* variance, int cells, int data_steps, DeviceArena& arena) {
  const int R = model.shape.rank;
  double* products = arena.take<double>(std::size_t(cells) * kernels::encoder_product_doubles(R));
  float* records = arena.take<float>(std::size_t(cells) * kernels::encoder_cell_floats(R));
  std::uint8_t* status = arena.take<std::uint8_t>(std::size_t(cells));
  double* scratch = arena.take<double>(std::size_t(kernels::encoder_products_threads(cells)) *
                                       std::size_t(math::encoder_step_scratch_size(R)));
  // The CPU backend's errors in its order: the constants', then the first cell without a product.
  const double constants_status =
      download(model.constants + math::ConstantsLayout(model.shape).status, 1).front();
  if (constants_status != math::constants_ok)
    throw NumericalError(model::constants_error(int(constants_status)));
  kernels::encoder_products(model, mean, variance, cells, data_steps, products, records, status,
                            scratch, nullptr);
  const std::vector<std::uint8_t> failed = download(status, std::size_t(cells));
  for (int cell = 0; cell < cells; ++cell)
    if (failed[std::size_t(cell)] != 0)
      model::throw_product_failure(cell / data_steps, cell % data_steps);
  return records;
}

/// The many-particle regime (kernels/filter_many_particles.cu): takes its workspace from the
/// arena, then captures the T steps (three kernels each) and the last ancestor search into one
/// graph.
void run_many_particles(kernels::FilterLaunch& launch, DeviceArena& arena) {
  const std::size_t trials = std::size_t(launch.trials), K = std::size_t(launch.num_particles);
  kernels::ManyParticleWorkspace workspace;
  // In filter_plan.cpp's order.
  workspace.cumulative[0] = arena.take<double>(trials * K);
  workspace.cumulative[1] = arena.take<double>(trials * K);
  workspace.increment = arena.take<double>(trials);
  workspace.total = arena.take<double>(trials);
  workspace.resample = arena.take<std::int32_t>(trials);
  kernels::prepare_filter_many_particles(launch);
  const Stream stream;
  // The uploads and the constants ran on the legacy default stream, which a non-blocking
  // stream does not wait for.
  LRSMC_CUDA_CHECK(cudaDeviceSynchronize());
  LRSMC_CUDA_CHECK(cudaMemsetAsync(launch.failed_step, 0xFF, trials * sizeof(std::int32_t),
                                   stream.get()));
  run_as_graph(stream.get(), [&](cudaStream_t captured) {
    for (int step = 0; step < launch.steps; ++step)
      kernels::filter_many_particles_step(launch, workspace, step, captured);
    kernels::filter_many_particles_finish(launch, workspace, captured);
  });
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options) : options_(options) {
    int count = 0;
    LRSMC_CUDA_CHECK(cudaGetDeviceCount(&count));
    LRSMC_REQUIRE(options.device_index >= 0 && options.device_index < count,
                  "cuda backend: device index is out of range; got ", options.device_index,
                  ", expected 0 to ", count - 1);
    // Processes that share a fit take the devices of their machine in turn.
    if (options_.communicator != nullptr)
      options_.device_index =
          device_of_this_process(*options_.communicator, options.device_index, count);
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));
    cudaDeviceProp properties{};
    LRSMC_CUDA_CHECK(cudaGetDeviceProperties(&properties, options_.device_index));
    device_name_ = properties.name;
  }

  [[nodiscard]] std::string name() const override { return "cuda (" + device_name_ + ")"; }

  [[nodiscard]] Communicator* communicator() const override { return options_.communicator.get(); }

  [[nodiscard]] std::int64_t memory_estimate(const ModelConfig& config, int num_trials,
                                             int num_steps, int num_particles,
                                             bool with_gradient) const override {
    // Training splits a batch over trials when it does not fit: one trial is the least it needs.
    if (with_gradient)
      return cuda::gradient_memory_estimate(config, num_trials, num_steps, num_particles);
    // The forward filter in the regime a call would run in, storing every step for a backward
    // pass (do_filter checks the exact plan of each call, stored paths and filtered mean).
    FilterShape shape;
    shape.config = config;
    shape.trials = num_trials;
    shape.steps = num_steps;
    shape.particles = num_particles;
    shape.store_all = with_gradient;
    return filter_device_bytes(shape,
                               choose_filter_regime(num_particles, options_.cuda_filter_regime));
  }

  /// Free device memory plus the filter workspace this backend holds: a filter call reuses
  /// or frees the workspace before allocating, and gradients and training free it first.
  [[nodiscard]] std::int64_t memory_available() const override {
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));  // the current device is per thread
    std::size_t free_bytes = 0, total_bytes = 0;
    LRSMC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return static_cast<std::int64_t>(free_bytes) + static_cast<std::int64_t>(arena_.capacity());
  }

  [[nodiscard]] std::string cannot_run(const ModelConfig& config,
                                       const FilterOptions& /*options*/) const override {
    if (config.rank > kernels::max_rank)
      return detail::concat("the CUDA kernels run ranks up to ", kernels::max_rank, "; got rank ",
                            config.rank);
    return {};
  }

  /// Training with data, parameters and optimizer state on the device (host/cuda/cuda_training).
  /// The encoder proposal trains in the host loop instead (nullptr): the trainer's optimizer on
  /// the host, each gradient call's encoder and particles on the device.
  [[nodiscard]] std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup) override {
    const std::string reason = cannot_run(setup.config, setup.filter);
    LRSMC_REQUIRE(reason.empty(), name(), ": ", reason, "; use --device cpu (or auto)");
    if (setup.filter.proposal == Proposal::encoder) return nullptr;
    release_filter_workspace();
    return run_shared(options_.communicator.get(),
                      [&] { return cuda::start_training(setup, options_.device_index, gather()); });
  }

 private:
  /// Frees the filter workspace, so that allocations outside it (gradients, training) see it.
  void release_filter_workspace() {
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));
    arena_.release();
  }

  /// With several processes each filters its share of the trials (their own random numbers:
  /// the trials keep their ids) and the per-trial results are gathered in trial order, as the
  /// CPU backend does, so the result is the one-process result bit for bit. Calls that store
  /// particles, and the encoder proposal (whose blocks of trials set its products' shapes, so
  /// a share could round otherwise), run every trial on every process.
  FilterResult do_filter(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options, std::uint64_t seed,
                         const FilterRequest& request) override {
    Communicator* const world = options_.communicator.get();
    if (world == nullptr || world->size() == 1 || request.particles ||
        options.proposal == Proposal::encoder)
      return run_shared(world,
                        [&] { return filter_trials(model, batch, options, seed, request, 0); });
    const int trials = batch.num_trials, steps = batch.num_steps, R = model.config.rank;
    const std::vector<int> bounds = detail::shares_of(batch, world);
    const TrialShare share = share_in(bounds, world->rank());
    FilterResult result;
    result.elbo_per_trial.assign(std::size_t(trials), 0.0);
    if (request.filtered_mean) result.filtered_mean.assign(std::size_t(trials) * steps * R, 0.0);
    detail::on_every_process(world, [&] {
      if (share.count() == 0) return;
      const FilterResult mine =
          filter_trials(model, trials_of(batch, share), options, seed, request, share.first);
      std::copy(mine.elbo_per_trial.begin(), mine.elbo_per_trial.end(),
                result.elbo_per_trial.begin() + share.first);
      std::copy(mine.filtered_mean.begin(), mine.filtered_mean.end(),
                result.filtered_mean.begin() + std::ptrdiff_t(share.first) * steps * R);
    });
    detail::gather_trials(*world, bounds, 1, result.elbo_per_trial);
    if (request.filtered_mean)
      detail::gather_trials(*world, bounds, std::int64_t(steps) * R, result.filtered_mean);
    result.elbo = elbo_of(result.elbo_per_trial);
    return result;
  }

  /// The trials of `share` as a batch of their own, with their ids.
  static SequenceBatch trials_of(const SequenceBatch& batch, const TrialShare& share) {
    SequenceBatch part;
    part.num_trials = share.count();
    part.num_steps = batch.num_steps;
    part.num_channels = batch.num_channels;
    part.num_inputs = batch.num_inputs;
    part.allow_missing = batch.allow_missing;
    // Rows from `first` on: of a split batch the observations hold this share's rows only.
    const auto slice = [&](const std::vector<double>& values, int width, int first) {
      const std::size_t row = std::size_t(batch.num_steps) * std::size_t(width);
      return std::vector<double>(
          values.begin() + std::ptrdiff_t(std::size_t(share.first - first) * row),
          values.begin() + std::ptrdiff_t(std::size_t(share.last - first) * row));
    };
    part.observations =
        slice(batch.observations, batch.num_channels, batch.shares.empty() ? 0 : share.first);
    if (batch.num_inputs > 0) part.inputs = slice(batch.inputs, batch.num_inputs, 0);
    part.trial_ids.resize(std::size_t(share.count()));
    for (int trial = share.first; trial < share.last; ++trial)
      part.trial_ids[std::size_t(trial - share.first)] =
          batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    return part;
  }

  /// Checks the call's exact memory plan before allocating anything (counting the workspace
  /// already held as available: it is reused, or freed before a larger one is allocated), and
  /// turns an allocation failure into the same message: what would fit (design.md, "Errors").
  /// Errors name trials from `first_trial` on (the caller's share).
  FilterResult filter_trials(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, std::uint64_t seed,
                             const FilterRequest& request, int first_trial) {
    FilterShape shape;
    shape.config = model.config;
    shape.trials = batch.num_trials;
    shape.steps = batch.num_steps;
    shape.particles = options.num_particles;
    shape.store_all = request.particles;
    shape.filtered_mean = request.filtered_mean;
    shape.optimal = options.proposal == Proposal::optimal;
    shape.encoder = options.proposal == Proposal::encoder;
    const FilterRegime regime =
        choose_filter_regime(options.num_particles, options_.cuda_filter_regime);
    const std::int64_t available = memory_available();
    if (filter_device_bytes(shape, regime) > available)
      throw OutOfMemory(out_of_memory_message(shape, options_.cuda_filter_regime, available));
    // The workspace is free again when a call returns (every path has synchronised by then)
    // or throws: device work still in flight after a failure is waited for first, so that the
    // next call cannot overwrite its buffers under it.
    // The same wait keeps the pinned staging buffer of the uploads (staging_) untouched until
    // the copy out of it has finished: a call that returns has synchronised after its copy
    // (cudaDeviceSynchronize after the launch, or before the many-particle graph), and one
    // that throws after enqueueing it waits here.
    struct EndCall {
      DeviceArena& arena;
      PinnedStaging& staging;
      int exceptions = std::uncaught_exceptions();
      ~EndCall() {
        if (std::uncaught_exceptions() > exceptions && cudaDeviceSynchronize() != cudaSuccess)
          (void)cudaGetLastError();
        arena.end_call();
        staging.end_call();
      }
    };
    try {
      arena_.begin_call(std::size_t(filter_buffer_bytes(shape, regime)));
      const EndCall end_call{arena_, staging_};
      UploadBatch uploads(arena_, staging_, std::size_t(filter_upload_bytes(shape)));
      return filter_on_device(model, batch, options, seed, request, regime, uploads, first_trial);
    } catch (const OutOfMemory& error) {
      // A failed cudaMalloc is also the last error: the next call's launch check must not see it.
      (void)cudaGetLastError();
      throw OutOfMemory(detail::concat(
          out_of_memory_message(shape, options_.cuda_filter_regime, memory_available()),
          " (", error.what(), ")"));
    }
  }

  FilterResult filter_on_device(const Model& model, const SequenceBatch& batch,
                                const FilterOptions& options, std::uint64_t seed,
                                const FilterRequest& request, FilterRegime regime,
                                UploadBatch& uploads, int first_trial) {
    const ModelConfig& config = model.config;
    const math::ModelShape shape = model::model_shape(config, options.proposal);
    const int rank = config.rank, hidden = config.num_hidden, trials = batch.num_trials,
              steps = batch.num_steps, K = options.num_particles;
    LRSMC_REQUIRE(rank <= kernels::max_rank, "cuda backend: rank is out of range; got ", rank,
                  ", expected at most ", kernels::max_rank);
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));
    const std::size_t cells = std::size_t(trials) * steps;
    // Every device buffer comes from the workspace (arena_), in filter_plan.cpp's order; the
    // uploaded ones first, staged in pinned memory and copied together (UploadBatch::flush).
    const double* parameters = uploads.add(model.parameters);
    kernels::FilterLaunch launch;
    set_filter_settings(launch, options, steps, trials, seed);
    launch.observations = uploads.add_as_float(batch.observations.data(), batch.observations.size());
    if (config.observation == Observation::poisson) {
      const std::vector<double>& counts = batch.observations;
      launch.log_factorial = uploads.add<float>(counts.size(), [&counts](float* values) {
        for (std::size_t i = 0; i < counts.size(); ++i)
          values[i] = static_cast<float>(std::lgamma(counts[i] + 1.0));
      });
    }
    const double* inputs = config.num_inputs > 0 ? uploads.add(batch.inputs) : nullptr;
    std::vector<std::uint32_t> ids(static_cast<std::size_t>(trials));
    for (int trial = 0; trial < trials; ++trial)
      ids[std::size_t(trial)] =
          batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    launch.trial_ids = uploads.add(ids);
    // The encoder proposal: the encoder on the device, in its own buffers.
    const int data_steps = steps - options.t_forward;
    std::optional<DeviceEncoder> encoder;
    if (options.proposal == Proposal::encoder) encoder.emplace(model, trials, data_steps);
    // One copy on the legacy default stream: the constants and the block-per-trial launch
    // below are on it too (stream nullptr), and the many-particle regime waits for the device
    // before its graph.
    uploads.flush(nullptr);

    // The per-call constants, input currents and initial means, built on the device.
    double* constants = arena_.take<double>(std::size_t(math::ConstantsLayout(shape).size));
    float* working = arena_.take<float>(std::size_t(math::ParticleConstantsLayout(shape).size));
    double* scratch =
        arena_.take<double>(std::size_t(math::constants_scratch_size(shape.rank, shape.channels)));
    float* currents = arena_.take<float>(config.num_inputs > 0 ? cells * hidden : 0);
    float* readout_offsets = arena_.take<float>(
        math::readout_input_rows(shape) > 0 ? cells * std::size_t(config.num_channels) : 0);
    float* initial_mean = arena_.take<float>(std::size_t(trials) * rank);
    launch.model = device_model(shape, parameters, constants, working, options_.device_index);
    kernels::build_constants(launch.model, scratch, nullptr);
    kernels::input_terms(launch.model, inputs, trials, steps, currents, readout_offsets,
                         initial_mean, nullptr);
    launch.currents = currents;
    launch.readout_offsets = readout_offsets;
    launch.initial_mean = initial_mean;
    if (encoder) {
      encoder->forward(parameters, launch.observations, steps);
      launch.encoder_cells = encoder_cells(launch.model, encoder->mean(), encoder->variance(),
                                           trials * data_steps, data_steps, arena_);
    }

    // Workspace and outputs.
    launch.store_all = request.particles;
    const std::size_t slices = request.particles ? std::size_t(steps) : 2;
    const std::size_t weight_slices = request.particles ? std::size_t(steps) : 1;
    const std::size_t particle_count = std::size_t(trials) * slices * K * rank;
    const std::size_t weight_count = std::size_t(trials) * weight_slices * K;
    const std::size_t cell_count = request.particles ? cells : 0;
    const std::size_t mean_count = request.filtered_mean ? cells * rank : 0;
    launch.particles = arena_.take<float>(particle_count);
    launch.log_weights = arena_.take<double>(weight_count);
    launch.ancestors = arena_.take<std::int32_t>(weight_count);
    launch.resampled = arena_.take<std::uint8_t>(cell_count);
    launch.log_evidence = arena_.take<double>(std::size_t(trials));
    launch.failed_step = arena_.take<std::int32_t>(std::size_t(trials));
    launch.filtered_mean = arena_.take<double>(mean_count);
    launch.tiles = arena_.take<double>(std::size_t(trials) * kernels::filter_tile_values(K, rank));
    if (regime == FilterRegime::many_particles) {
      run_many_particles(launch, arena_);
    } else {
      launch.carried = arena_.take<double>(std::size_t(trials) * K);
      launch.cumulative = arena_.take<double>(std::size_t(trials) * K);
      LRSMC_CUDA_CHECK(cudaMemset(launch.failed_step, 0xFF, std::size_t(trials) * sizeof(std::int32_t)));
      kernels::filter_block_per_trial(launch, nullptr);
      LRSMC_CUDA_CHECK(cudaDeviceSynchronize());
    }

    FilterResult result;
    // The log-evidence and the failed steps are neighbours in the workspace (filter_plan.cpp's
    // order, the evidence rounded to 512 bytes): one copy of both when the arena holds them so.
    std::vector<double> evidence(static_cast<std::size_t>(trials));
    std::vector<std::int32_t> failures(static_cast<std::size_t>(trials));
    const std::size_t evidence_bytes = evidence.size() * sizeof(double);
    const std::size_t evidence_slot = (evidence_bytes + 511) / 512 * 512;
    const std::size_t failures_bytes = failures.size() * sizeof(std::int32_t);
    if (arena_.holds(launch.log_evidence, evidence_slot + failures_bytes) &&
        reinterpret_cast<std::uintptr_t>(launch.failed_step) -
                reinterpret_cast<std::uintptr_t>(launch.log_evidence) ==
            evidence_slot) {
      std::vector<std::uint8_t> bytes(evidence_slot + failures_bytes);
      LRSMC_CUDA_CHECK(
          cudaMemcpy(bytes.data(), launch.log_evidence, bytes.size(), cudaMemcpyDeviceToHost));
      std::memcpy(evidence.data(), bytes.data(), evidence_bytes);
      std::memcpy(failures.data(), bytes.data() + evidence_slot, failures_bytes);
    } else {
      evidence = download(launch.log_evidence, std::size_t(trials));
      failures = download(launch.failed_step, std::size_t(trials));
    }
    const double constants_status =
        download(constants + math::ConstantsLayout(shape).status, 1).front();
    const std::string failure = failure_of(constants_status, failures, evidence, first_trial);
    if (!failure.empty()) throw NumericalError(failure);  // the CPU backend's message
    result.elbo = elbo_per_trial(evidence, steps, result.elbo_per_trial);
    if (request.filtered_mean) result.filtered_mean = download(launch.filtered_mean, mean_count);
    if (request.particles) {
      const auto values = download(launch.particles, particle_count);
      result.particles.assign(values.begin(), values.end());
      result.log_weights = download(launch.log_weights, weight_count);
      result.ancestors = download(launch.ancestors, weight_count);
      result.resampled = download(launch.resampled, cell_count);
    }
    return result;
  }

  GradientResult do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed) override {
    release_filter_workspace();
    return run_shared(options_.communicator.get(), [&] {
      return cuda::elbo_gradient(model, batch, options, seed, options_.device_index, 0, gather());
    });
  }

  SampleResult do_sample(const Model& model, int num_trials, int num_steps,
                         const std::vector<double>& inputs, std::uint64_t seed, int first_trial,
                         const std::vector<double>& initial_states) override {
    cpu::CpuBackend reference(BackendOptions{});
    return reference.sample(model, num_trials, num_steps, inputs, seed, first_trial,
                            initial_states);
  }

  /// The processes sharing gradients and training steps (NCCL), made at the first shared call:
  /// every process makes the same calls in the same order, so this collective step is too.
  TrialGather* gather() {
    if (options_.communicator == nullptr) return nullptr;
    if (gather_ == nullptr)
      gather_ = std::make_unique<TrialGather>(*options_.communicator, options_.device_index);
    return gather_.get();
  }

  BackendOptions options_;
  std::string device_name_;
  std::unique_ptr<TrialGather> gather_;
  DeviceArena arena_;  // the forward filter's device buffers, kept between calls
  PinnedStaging staging_;  // the forward filter's uploads, staged for one copy, kept likewise
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  if (!cuda_available())
    throw Error("cuda backend: no CUDA device answers (cudaGetDeviceCount found none); use "
                "--device cpu or --device auto");
  return std::make_unique<CudaBackend>(options);
}

}  // namespace cuda
}  // namespace lrsmc
