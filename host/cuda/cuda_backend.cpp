// Host side of the CUDA backend: device memory, per-call constants (Kalman quantities, input
// currents, initial means, computed in float exactly as the CPU float path does), launches and
// copies. The filter runs on the GPU; gradients arrive with the training kernels (issue 4),
// and sampling is delegated to the CPU reference (it is sequential and cheap).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <utility>

#include "cpu/cpu_backend.hpp"
#include "cpu/kalman.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_training.hpp"
#include "cuda/filter_plan.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/launch.hpp"
#include "lrsmc/errors.hpp"

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
namespace {

using kernels::DeviceBuffer;
using kernels::download;

/// Device memory CudaBackend keeps between forward-filter calls (issue 3: a cudaMalloc and
/// cudaFree per buffer per call cost more than the K = 10 filter itself). One allocation,
/// grow-only: a call whose buffers fit in it allocates nothing; a larger call frees it first,
/// then allocates its own size (filter_buffer_bytes, checked against the plan beforehand).
/// Each call carves its buffers from the start, in order, each rounded up to the plan's 512
/// bytes, so the buffer list of filter_plan.cpp fits exactly; a buffer that would not fit
/// (the plan and the buffer list disagreeing) gets its own cudaMalloc, freed when the call
/// ends. Only workspaces up to `kept_bytes` outlive their call: the small calls whose
/// allocation cost matters stay allocation-free, while a large call's memory goes back to the
/// device as before (a training session running beside validation filters allocates its own).
/// Not thread-safe, like the backend.
class DeviceArena {
 public:
  static constexpr std::size_t kept_bytes = std::size_t(256) << 20;

  DeviceArena() = default;
  ~DeviceArena() { release(); }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  /// Bytes held between calls (counted as available to the next filter call).
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

  /// Frees the held memory (errors are only cleared: the memory is gone either way).
  void release() {
    spill_.clear();
    if (base_ && cudaFree(base_) != cudaSuccess) (void)cudaGetLastError();
    base_ = nullptr;
    capacity_ = 0;
    offset_ = 0;
  }

  /// Starts a call needing `bytes`: grows (free, then allocate) only when it holds less. A
  /// failed allocation leaves the arena empty and throws OutOfMemory (or CudaError).
  void begin_call(std::size_t bytes) {
    spill_.clear();
    offset_ = 0;
    if (bytes <= capacity_) return;
    release();
    void* data = nullptr;
    LRSMC_CUDA_CHECK(cudaMalloc(&data, bytes));
    base_ = static_cast<std::uint8_t*>(data);
    capacity_ = bytes;
  }

  /// Ends a call: frees any spilled buffers, and the arena itself when over kept_bytes.
  void end_call() {
    spill_.clear();
    offset_ = 0;
    if (capacity_ > kept_bytes) release();
  }

  /// `count` uninitialised elements, or nullptr when count is 0 (the kernels test optional
  /// buffers against nullptr, as with the former per-call allocations).
  template <typename T>
  [[nodiscard]] T* take(std::size_t count) {
    if (count == 0) return nullptr;
    const std::size_t bytes = (count * sizeof(T) + granularity - 1) / granularity * granularity;
    if (bytes <= capacity_ - offset_) {
      T* data = reinterpret_cast<T*>(base_ + offset_);
      offset_ += bytes;
      return data;
    }
    spill_.emplace_back(count * sizeof(T));
    return reinterpret_cast<T*>(spill_.back().get());
  }

  /// Whether [data, data + bytes) lies in the held allocation (not in a spilled buffer).
  [[nodiscard]] bool holds(const void* data, std::size_t bytes) const {
    const auto begin = reinterpret_cast<std::uintptr_t>(base_);
    const auto address = reinterpret_cast<std::uintptr_t>(data);
    return base_ && address >= begin && address - begin <= capacity_ &&
           bytes <= capacity_ - (address - begin);
  }

 private:
  static constexpr std::size_t granularity = 512;  // as filter_plan.cpp rounds every buffer
  std::uint8_t* base_ = nullptr;
  std::size_t capacity_ = 0, offset_ = 0;
  std::vector<DeviceBuffer<std::uint8_t>> spill_;
};

/// Pinned host memory the forward filter's per-call uploads are staged in (issue 3: about 20
/// small synchronous cudaMemcpy calls cost more than the K = 10 filter). Grow-only like the
/// device workspace and released on the same rule (after a call that needed more than
/// DeviceArena::kept_bytes), and in the destructor. Every filter call has synchronised with
/// the device before it returns or throws (do_filter's EndCall), so the copy out of this
/// buffer is complete whenever the next call writes into it or it is freed. Not thread-safe,
/// like the backend.
class PinnedStaging {
 public:
  PinnedStaging() = default;
  ~PinnedStaging() { release(); }
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  /// At least `bytes` of pinned memory, or nullptr when none can be had (the caller then
  /// copies from pageable memory, as before).
  [[nodiscard]] std::uint8_t* reserve(std::size_t bytes) {
    if (bytes <= capacity_) return data_;
    release();
    void* data = nullptr;
    if (cudaHostAlloc(&data, bytes, cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    data_ = static_cast<std::uint8_t*>(data);
    capacity_ = bytes;
    return data_;
  }

  void end_call() {
    if (capacity_ > DeviceArena::kept_bytes) release();
  }

  void release() {
    if (data_ && cudaFreeHost(data_) != cudaSuccess) (void)cudaGetLastError();
    data_ = nullptr;
    capacity_ = 0;
  }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t capacity_ = 0;
};

/// One call's uploads: each add() takes the next device buffer from the arena (in the plan's
/// order, so the uploads are the workspace's first filter_upload_bytes bytes) and writes its
/// values into the pinned staging buffer at the same offset, 512-byte rounded like the arena
/// (so every sub-buffer is at least 256-byte aligned on both sides); flush() then copies each
/// run of buffers that is contiguous on both sides with one cudaMemcpyAsync — one copy for the
/// whole region when the arena holds the plan's buffers. A buffer that finds no room in the
/// staging buffer (no pinned memory, or the plan and the buffer list disagreeing), or whose
/// device buffer spilled out of the arena, is copied at once with a synchronous cudaMemcpy,
/// as all were before; so a merged copy only ever writes inside the arena's allocation.
class UploadBatch {
 public:
  UploadBatch(DeviceArena& arena, PinnedStaging& staging, std::size_t planned_bytes)
      : arena_(arena),
        host_(staging.reserve(planned_bytes)),
        capacity_(host_ ? planned_bytes : 0) {}

  /// A device buffer of `count` values that `fill(T* values)` writes (nullptr when count is
  /// 0, as DeviceArena::take).
  template <typename T, typename Fill>
  [[nodiscard]] T* add(std::size_t count, const Fill& fill) {
    if (count == 0) return nullptr;
    T* const device = arena_.take<T>(count);
    const std::size_t bytes = count * sizeof(T);
    const std::size_t slot = (bytes + granularity - 1) / granularity * granularity;
    if (slot <= capacity_ - offset_ && arena_.holds(device, slot)) {
      fill(reinterpret_cast<T*>(host_ + offset_));
      std::memset(host_ + offset_ + bytes, 0, slot - bytes);  // the padding is copied too
      pieces_.push_back(Piece{reinterpret_cast<std::uintptr_t>(device), offset_, bytes});
      offset_ += slot;
    } else {
      std::vector<T> values(count);
      fill(values.data());
      LRSMC_CUDA_CHECK(cudaMemcpy(device, values.data(), bytes, cudaMemcpyHostToDevice));
    }
    return device;
  }

  /// A device copy of `host` (nullptr when empty).
  template <typename T>
  [[nodiscard]] T* add(const std::vector<T>& host) {
    return add<T>(host.size(), [&host](T* values) {
      std::memcpy(values, host.data(), host.size() * sizeof(T));
    });
  }

  /// `count` doubles converted to float32 (static_cast, as to_float).
  [[nodiscard]] float* add_as_float(const double* values, std::size_t count) {
    return add<float>(count, [values, count](float* out) {
      for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(values[i]);
    });
  }

  /// Enqueues the staged copies on `stream`; work enqueued after them on the same stream sees
  /// the values.
  void flush(cudaStream_t stream) {
    std::size_t first = 0;
    while (first < pieces_.size()) {
      std::size_t last = first;
      while (last + 1 < pieces_.size() &&
             pieces_[last + 1].device - pieces_[first].device ==
                 pieces_[last + 1].offset - pieces_[first].offset)
        ++last;
      const std::size_t bytes = pieces_[last].offset + pieces_[last].bytes - pieces_[first].offset;
      LRSMC_CUDA_CHECK(cudaMemcpyAsync(reinterpret_cast<void*>(pieces_[first].device),
                                       host_ + pieces_[first].offset, bytes,
                                       cudaMemcpyHostToDevice, stream));
      first = last + 1;
    }
    pieces_.clear();
  }

 private:
  static constexpr std::size_t granularity = 512;  // as DeviceArena and filter_plan.cpp
  struct Piece {
    std::uintptr_t device;
    std::size_t offset, bytes;
  };
  DeviceArena& arena_;
  std::uint8_t* const host_;
  const std::size_t capacity_;
  std::size_t offset_ = 0;
  std::vector<Piece> pieces_;
};

/// A non-blocking CUDA stream (capturable into a graph), destroyed with its owner.
class Stream {
 public:
  Stream() { LRSMC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (stream_ && cudaStreamDestroy(stream_) != cudaSuccess) (void)cudaGetLastError();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  [[nodiscard]] cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

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

/// The many-particle regime (kernels/filter_many_particles.cu): takes its workspace from the
/// arena, then captures the T steps (three kernels each) and the last ancestor search into one
/// graph.
void run_many_particles(kernels::FilterLaunch& launch, bool filtered_mean, DeviceArena& arena) {
  static_assert(kernels::many_particle_tile == many_particle_tile,
                "filter_plan.hpp and kernels/launch.hpp disagree on the tile size");
  const std::size_t trials = std::size_t(launch.trials), K = std::size_t(launch.num_particles),
                    rank = std::size_t(launch.rank);
  kernels::ManyParticleWorkspace workspace;
  workspace.blocks_per_trial = kernels::many_particle_blocks(launch.num_particles);
  const std::size_t blocks = std::size_t(workspace.blocks_per_trial) * trials;
  // In filter_plan.cpp's order.
  workspace.cumulative[0] = arena.take<double>(trials * K);
  workspace.cumulative[1] = arena.take<double>(trials * K);
  workspace.block_maximum = arena.take<double>(blocks);
  workspace.block_total = arena.take<double>(blocks);
  workspace.block_squares = arena.take<double>(blocks);
  workspace.block_start = arena.take<double>(blocks);
  workspace.block_scale = arena.take<double>(blocks);
  workspace.block_mean = arena.take<double>(filtered_mean ? blocks * rank : 0);
  workspace.increment = arena.take<double>(trials);
  workspace.cumulative_total = arena.take<double>(trials);
  workspace.resample = arena.take<std::int32_t>(trials);
  kernels::prepare_filter_many_particles(launch);
  const Stream stream;
  LRSMC_CUDA_CHECK(cudaMemsetAsync(launch.failed_step, 0xFF, trials * sizeof(std::int32_t),
                                   stream.get()));
  // The uploads ran on the legacy default stream, which a non-blocking stream does not wait for.
  LRSMC_CUDA_CHECK(cudaDeviceSynchronize());
  run_as_graph(stream.get(), [&](cudaStream_t captured) {
    for (int step = 0; step < launch.steps; ++step)
      kernels::filter_many_particles_step(launch, workspace, step, captured);
    kernels::filter_many_particles_finish(launch, workspace, captured);
  });
}

std::vector<float> flatten(const cpu::Matrix<float>& matrix) {
  return std::vector<float>(matrix.data(), matrix.data() + matrix.size());
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& options) : options_(options) {
    int count = 0;
    LRSMC_CUDA_CHECK(cudaGetDeviceCount(&count));
    LRSMC_REQUIRE(options.device_index >= 0 && options.device_index < count,
                  "cuda backend: device index is out of range; got ", options.device_index,
                  ", expected 0 to ", count - 1);
    LRSMC_CUDA_CHECK(cudaSetDevice(options.device_index));
    cudaDeviceProp properties{};
    LRSMC_CUDA_CHECK(cudaGetDeviceProperties(&properties, options.device_index));
    device_name_ = properties.name;
  }

  [[nodiscard]] std::string name() const override { return "cuda (" + device_name_ + ")"; }

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

  /// Training with data, parameters and optimizer state on the device (host/cuda/cuda_training).
  [[nodiscard]] std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup) override {
    release_filter_workspace();
    return cuda::start_training(setup, options_.device_index);
  }

 private:
  /// Frees the filter workspace, so that allocations outside it (gradients, training) see it.
  void release_filter_workspace() {
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));
    arena_.release();
  }

  /// Checks the call's exact memory plan before allocating anything (counting the workspace
  /// already held as available: it is reused, or freed before a larger one is allocated), and
  /// turns an allocation failure into the same message: what would fit (design.md, "Errors").
  FilterResult do_filter(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options, std::uint64_t seed,
                         const FilterRequest& request) override {
    FilterShape shape;
    shape.config = model.config;
    shape.trials = batch.num_trials;
    shape.steps = batch.num_steps;
    shape.particles = options.num_particles;
    shape.store_all = request.particles;
    shape.filtered_mean = request.filtered_mean;
    shape.optimal = options.proposal == Proposal::optimal;
    const FilterRegime regime =
        choose_filter_regime(options.num_particles, options_.cuda_filter_regime);
    const std::int64_t available = memory_available();
    if (filter_device_bytes(shape, regime) > available)
      throw OutOfMemory(out_of_memory_message(shape, options_.cuda_filter_regime, available));
    // The workspace is free again when a call returns (every path has synchronised by then)
    // or throws: device work still in flight after a failure is waited for first, as the
    // former per-call cudaFree did implicitly, so that the next call cannot overwrite its
    // buffers under it.
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
      return filter_on_device(model, batch, options, seed, request, regime, uploads);
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
                                UploadBatch& uploads) {
    const bool many = regime == FilterRegime::many_particles;
    const ModelConfig& config = model.config;
    const ParameterLayout layout(config);
    const int rank = config.rank, hidden = config.num_hidden, channels = config.num_channels,
              inputs = config.num_inputs, trials = batch.num_trials, steps = batch.num_steps,
              K = options.num_particles;
    LRSMC_REQUIRE(rank <= kernels::max_rank, "cuda backend: rank is out of range; got ", rank,
                  ", expected at most ", kernels::max_rank);
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));
    int shared_limit = 0;
    LRSMC_CUDA_CHECK(cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                            options_.device_index));
    const std::size_t shared_needed =
        kernels::filter_shared_bytes(rank, hidden) +
        (many ? kernels::many_particle_static_shared_bytes() : kernels::filter_static_shared_bytes());
    LRSMC_REQUIRE(shared_needed <= std::size_t(shared_limit),
                  "cuda backend: the model's loadings do not fit in shared memory; got hidden ",
                  hidden, " × rank ", rank, " (", shared_needed, " bytes), expected at most ",
                  shared_limit, " bytes on this device");
    // Every device buffer comes from the workspace (arena_), in filter_plan.cpp's order; the
    // uploaded ones first, staged in pinned memory and copied together (UploadBatch::flush).
    const double* raw = model.parameters.data();
    const auto block = [&](std::int64_t offset, std::int64_t count) {
      return uploads.add_as_float(raw + offset, std::size_t(count));
    };
    float* const m = block(layout.m, std::int64_t(hidden) * rank);
    float* const n = block(layout.n, std::int64_t(hidden) * rank);
    float* const h = block(layout.h, hidden);
    float* const readout = block(layout.readout_weight, std::int64_t(rank) * channels);
    float* const readout_bias = block(layout.readout_bias, channels);
    float* const log_variance =
        layout.observation_noise >= 0 ? block(layout.observation_noise, channels) : nullptr;

    kernels::FilterLaunch launch;
    set_filter_settings(launch, config, options, steps, trials, seed);
    launch.decay = static_cast<float>(std::exp(-std::exp(raw[layout.decay_logit])));
    launch.m = m;
    launch.n = n;
    launch.h = h;
    launch.readout = readout;
    launch.readout_bias = readout_bias;
    launch.log_variance = log_variance;

    // Noise factors and optimal-proposal constants, in float like the CPU float path.
    const cpu::Matrix<float> factors[2] = {
        cpu::noise_factor<float>(raw + layout.initial_noise, config.initial_noise, rank),
        cpu::noise_factor<float>(raw + layout.transition_noise, config.transition_noise, rank)};
    cpu::Matrix<float> readout_matrix(rank, channels);
    for (int r = 0; r < rank; ++r)
      for (int i = 0; i < channels; ++i)
        readout_matrix(r, i) = static_cast<float>(raw[layout.readout_weight + r * channels + i]);
    for (int phase = 0; phase < 2; ++phase) {
      float log_det = 0.f;
      for (int r = 0; r < rank; ++r) log_det += std::log(factors[phase](r, r));
      launch.noise_log_det[phase] = log_det;
      launch.noise_factor[phase] = uploads.add(flatten(factors[phase]));
      if (!launch.optimal) continue;
      const auto kalman = cpu::kalman_quantities<float>(factors[phase], readout_matrix,
                                                        raw + layout.observation_noise);
      float proposal_log_det = 0.f;
      for (int r = 0; r < rank; ++r) proposal_log_det += std::log(kalman.proposal_factor(r, r));
      launch.proposal_log_det[phase] = proposal_log_det;
      launch.gain[phase] = uploads.add(flatten(kalman.gain));
      launch.alpha[phase] = uploads.add(flatten(kalman.alpha));
      launch.proposal_factor[phase] = uploads.add(flatten(kalman.proposal_factor));
    }

    // Data, input currents W_u u_t and initial means μ_0 = z_init + P_m W_u u_0.
    launch.observations =
        uploads.add_as_float(batch.observations.data(), batch.observations.size());
    if (config.observation == Observation::poisson) {
      const std::vector<double>& counts = batch.observations;
      launch.log_factorial = uploads.add<float>(counts.size(), [&counts](float* values) {
        for (std::size_t i = 0; i < counts.size(); ++i)
          values[i] = static_cast<float>(std::lgamma(counts[i] + 1.0));
      });
    }
    std::vector<float> currents, initial_mean;
    input_terms(config, raw, batch.inputs.data(), trials, steps, currents, initial_mean);
    // Uploaded in the plan's order (currents before the initial means).
    if (inputs > 0) launch.currents = uploads.add(currents);
    launch.initial_mean = uploads.add(initial_mean);
    std::vector<std::uint32_t> ids(static_cast<std::size_t>(trials));
    for (int trial = 0; trial < trials; ++trial)
      ids[std::size_t(trial)] = batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    launch.trial_ids = uploads.add(ids);
    // One copy on the legacy default stream: the block-per-trial launch below is on it too
    // (stream nullptr), and the many-particle regime waits for the device before its graph.
    uploads.flush(nullptr);

    // Workspace and outputs.
    launch.store_all = request.particles;
    const std::size_t slices = request.particles ? std::size_t(steps) : 2;
    const std::size_t weight_slices = request.particles ? std::size_t(steps) : 1;
    const std::size_t particle_count = std::size_t(trials) * slices * K * rank;
    const std::size_t weight_count = std::size_t(trials) * weight_slices * K;
    const std::size_t cell_count = request.particles ? std::size_t(trials) * steps : 0;
    const std::size_t mean_count = request.filtered_mean ? std::size_t(trials) * steps * rank : 0;
    launch.particles = arena_.take<float>(particle_count);
    launch.log_weights = arena_.take<double>(weight_count);
    launch.ancestors = arena_.take<std::int32_t>(weight_count);
    launch.resampled = arena_.take<std::uint8_t>(cell_count);
    launch.log_evidence = arena_.take<double>(std::size_t(trials));
    launch.failed_step = arena_.take<std::int32_t>(std::size_t(trials));
    launch.filtered_mean = arena_.take<double>(mean_count);
    if (many) {
      run_many_particles(launch, request.filtered_mean, arena_);
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
    throw_if_failed(failures, evidence);  // the CPU backend's message, first trial first
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
    return cuda::elbo_gradient(model, batch, options, seed, options_.device_index);
  }

  SampleResult do_sample(const Model& model, int num_trials, int num_steps,
                         const std::vector<double>& inputs, std::uint64_t seed) override {
    cpu::CpuBackend reference(BackendOptions{});
    return reference.sample(model, num_trials, num_steps, inputs, seed);
  }

  BackendOptions options_;
  std::string device_name_;
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
