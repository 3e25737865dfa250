// Host side of the CUDA backend: device memory, per-call constants (Kalman quantities, input
// currents, initial means, computed in float exactly as the CPU float path does), launches and
// copies. The filter runs on the GPU; gradients arrive with the training kernels (issue 4),
// and sampling is delegated to the CPU reference (it is sequential and cheap).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>

#include "cpu/cpu_backend.hpp"
#include "cpu/kalman.hpp"
#include "cuda/cuda_backend.hpp"
#include "cuda/cuda_training.hpp"
#include "kernels/launch.hpp"
#include "lrsmc/errors.hpp"

#define LRSMC_CUDA_CHECK(expression)                                                        \
  do {                                                                                      \
    const cudaError_t lrsmc_status = (expression);                                          \
    if (lrsmc_status != cudaSuccess) {                                                      \
      if (lrsmc_status == cudaErrorMemoryAllocation)                                        \
        throw ::lrsmc::OutOfMemory(::lrsmc::detail::concat(                                 \
            #expression, " failed: out of GPU memory (", __FILE__, ":", __LINE__, ")"));    \
      throw ::lrsmc::CudaError(::lrsmc::detail::concat(#expression, " failed at ", __FILE__, \
                                                       ":", __LINE__, ": ",                 \
                                                       cudaGetErrorString(lrsmc_status)));  \
    }                                                                                       \
  } while (false)

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

/// Owning device allocation; freed in the destructor (errors there are only reported).
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count > 0) LRSMC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (!host.empty())
      LRSMC_CUDA_CHECK(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() {
    if (data_ && cudaFree(data_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), count_(other.count_) {
    other.data_ = nullptr;
    other.count_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  [[nodiscard]] T* get() const { return data_; }
  [[nodiscard]] std::vector<T> download() const {
    std::vector<T> host(count_);
    if (count_ > 0)
      LRSMC_CUDA_CHECK(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

std::vector<float> to_float(const double* values, std::size_t count) {
  std::vector<float> result(count);
  for (std::size_t i = 0; i < count; ++i) result[i] = static_cast<float>(values[i]);
  return result;
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
    const std::int64_t trials = num_trials, steps = num_steps, particles = num_particles,
                       rank = config.rank;
    // Particles: 2 slices (all steps with gradient); carried, cumulative and weights in
    // float64; ancestors int32; plus data and currents.
    const std::int64_t slices = with_gradient ? steps : 2;
    const std::int64_t weight_slices = with_gradient ? steps : 1;
    return trials * particles * (slices * rank * 4 + weight_slices * (8 + 4) + 16) +
           trials * steps * (rank * 8 + 1) +  // filtered means, resampling flags
           trials * steps * (std::int64_t(config.num_channels) * 8 + std::int64_t(config.num_hidden) * 4 * (config.num_inputs > 0)) +
           (std::int64_t(64) << 20);  // constants, CUDA context slack
  }

  [[nodiscard]] std::int64_t memory_available() const override {
    LRSMC_CUDA_CHECK(cudaSetDevice(options_.device_index));  // the current device is per thread
    std::size_t free_bytes = 0, total_bytes = 0;
    LRSMC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return static_cast<std::int64_t>(free_bytes);
  }

  /// Training with data, parameters and optimizer state on the device (host/cuda/cuda_training).
  [[nodiscard]] std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup) override {
    return cuda::start_training(setup, options_.device_index);
  }

 private:
  FilterResult do_filter(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options, std::uint64_t seed,
                         const FilterRequest& request) override {
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
        kernels::filter_shared_bytes(rank, hidden) + kernels::filter_static_shared_bytes();
    LRSMC_REQUIRE(shared_needed <= std::size_t(shared_limit),
                  "cuda backend: the model's loadings do not fit in shared memory; got hidden ",
                  hidden, " × rank ", rank, " (", shared_needed, " bytes), expected at most ",
                  shared_limit, " bytes on this device");
    const double* raw = model.parameters.data();
    const auto block = [&](std::int64_t offset, std::int64_t count) {
      return DeviceBuffer<float>(to_float(raw + offset, std::size_t(count)));
    };
    DeviceBuffer<float> m = block(layout.m, std::int64_t(hidden) * rank);
    DeviceBuffer<float> n = block(layout.n, std::int64_t(hidden) * rank);
    DeviceBuffer<float> h = block(layout.h, hidden);
    DeviceBuffer<float> readout = block(layout.readout_weight, std::int64_t(rank) * channels);
    DeviceBuffer<float> readout_bias = block(layout.readout_bias, channels);
    DeviceBuffer<float> log_variance =
        layout.observation_noise >= 0 ? block(layout.observation_noise, channels) : DeviceBuffer<float>();

    kernels::FilterLaunch launch;
    launch.rank = rank;
    launch.hidden = hidden;
    launch.channels = channels;
    launch.num_particles = K;
    launch.steps = steps;
    launch.trials = trials;
    launch.nonlinearity = config.nonlinearity;
    launch.observation = config.observation;
    launch.link = config.link;
    launch.optimal = options.proposal == Proposal::optimal;
    launch.resampling = options.resampling;
    launch.resample_threshold = options.resample_threshold;
    launch.decay = static_cast<float>(std::exp(-std::exp(raw[layout.decay_logit])));
    launch.seed = seed;
    launch.m = m.get();
    launch.n = n.get();
    launch.h = h.get();
    launch.readout = readout.get();
    launch.readout_bias = readout_bias.get();
    launch.log_variance = log_variance.get();

    // Noise factors and optimal-proposal constants, in float like the CPU float path.
    const cpu::Matrix<float> factors[2] = {
        cpu::noise_factor<float>(raw + layout.initial_noise, config.initial_noise, rank),
        cpu::noise_factor<float>(raw + layout.transition_noise, config.transition_noise, rank)};
    cpu::Matrix<float> readout_matrix(rank, channels);
    for (int r = 0; r < rank; ++r)
      for (int i = 0; i < channels; ++i)
        readout_matrix(r, i) = static_cast<float>(raw[layout.readout_weight + r * channels + i]);
    std::vector<DeviceBuffer<float>> constants;
    constants.reserve(8);
    for (int phase = 0; phase < 2; ++phase) {
      float log_det = 0.f;
      for (int r = 0; r < rank; ++r) log_det += std::log(factors[phase](r, r));
      launch.noise_log_det[phase] = log_det;
      constants.emplace_back(flatten(factors[phase]));
      launch.noise_factor[phase] = constants.back().get();
      if (!launch.optimal) continue;
      const auto kalman = cpu::kalman_quantities<float>(factors[phase], readout_matrix,
                                                        raw + layout.observation_noise);
      float proposal_log_det = 0.f;
      for (int r = 0; r < rank; ++r) proposal_log_det += std::log(kalman.proposal_factor(r, r));
      launch.proposal_log_det[phase] = proposal_log_det;
      constants.emplace_back(flatten(kalman.gain));
      launch.gain[phase] = constants.back().get();
      constants.emplace_back(flatten(kalman.alpha));
      launch.alpha[phase] = constants.back().get();
      constants.emplace_back(flatten(kalman.proposal_factor));
      launch.proposal_factor[phase] = constants.back().get();
    }

    // Data, input currents W_u u_t and initial means μ_0 = z_init + P_m W_u u_0.
    const DeviceBuffer<float> observations(to_float(batch.observations.data(), batch.observations.size()));
    launch.observations = observations.get();
    DeviceBuffer<float> log_factorial;
    if (config.observation == Observation::poisson) {
      std::vector<float> values(batch.observations.size());
      for (std::size_t i = 0; i < values.size(); ++i)
        values[i] = static_cast<float>(std::lgamma(batch.observations[i] + 1.0));
      log_factorial = DeviceBuffer<float>(values);
      launch.log_factorial = log_factorial.get();
    }
    std::vector<float> initial_mean(std::size_t(trials) * rank, 0.f);
    if (layout.z_init >= 0)
      for (int trial = 0; trial < trials; ++trial)
        for (int r = 0; r < rank; ++r)
          initial_mean[std::size_t(trial) * rank + r] = static_cast<float>(raw[layout.z_init + r]);
    DeviceBuffer<float> currents;
    if (inputs > 0) {
      const auto w_u = to_float(raw + layout.w_u, std::size_t(hidden) * inputs);
      const auto loadings_values = to_float(raw + layout.m, std::size_t(hidden) * rank);
      const cpu::Matrix<float> loadings =
          Eigen::Map<const cpu::Matrix<float>>(loadings_values.data(), hidden, rank);
      std::vector<float> values(std::size_t(trials) * steps * hidden);
      for (int trial = 0; trial < trials; ++trial) {
        for (int step = 0; step < steps; ++step)
          for (int i = 0; i < hidden; ++i) {
            float current = 0.f;
            for (int j = 0; j < inputs; ++j)
              current += w_u[std::size_t(i) * inputs + j] *
                         static_cast<float>(batch.inputs[(std::size_t(trial) * steps + step) * inputs + j]);
            values[(std::size_t(trial) * steps + step) * hidden + i] = current;
          }
        const cpu::Vector<float> current0 = Eigen::Map<const cpu::Vector<float>>(
            values.data() + std::size_t(trial) * steps * hidden, hidden);
        const cpu::Vector<float> projection =
            (loadings.transpose() * loadings).ldlt().solve(loadings.transpose() * current0);
        for (int r = 0; r < rank; ++r) initial_mean[std::size_t(trial) * rank + r] += projection(r);
      }
      currents = DeviceBuffer<float>(values);
      launch.currents = currents.get();
    }
    const DeviceBuffer<float> initial(initial_mean);
    launch.initial_mean = initial.get();
    std::vector<std::uint32_t> ids(static_cast<std::size_t>(trials));
    for (int trial = 0; trial < trials; ++trial)
      ids[std::size_t(trial)] = batch.trial_ids.empty() ? std::uint32_t(trial) : batch.trial_ids[std::size_t(trial)];
    const DeviceBuffer<std::uint32_t> trial_ids(ids);
    launch.trial_ids = trial_ids.get();

    // Workspace and outputs.
    launch.store_all = request.particles;
    const std::size_t slices = request.particles ? std::size_t(steps) : 2;
    const std::size_t weight_slices = request.particles ? std::size_t(steps) : 1;
    DeviceBuffer<float> particles(std::size_t(trials) * slices * K * rank);
    DeviceBuffer<double> log_weights(std::size_t(trials) * weight_slices * K);
    DeviceBuffer<std::int32_t> ancestors(std::size_t(trials) * weight_slices * K);
    DeviceBuffer<std::uint8_t> resampled(request.particles ? std::size_t(trials) * steps : 0);
    DeviceBuffer<double> carried(std::size_t(trials) * K), cumulative(std::size_t(trials) * K),
        log_evidence(static_cast<std::size_t>(trials));
    DeviceBuffer<std::int32_t> failed_step(static_cast<std::size_t>(trials));
    LRSMC_CUDA_CHECK(cudaMemset(failed_step.get(), 0xFF, std::size_t(trials) * sizeof(std::int32_t)));
    DeviceBuffer<double> filtered_mean(request.filtered_mean ? std::size_t(trials) * steps * rank : 0);
    launch.particles = particles.get();
    launch.log_weights = log_weights.get();
    launch.ancestors = ancestors.get();
    launch.resampled = resampled.get();
    launch.carried = carried.get();
    launch.cumulative = cumulative.get();
    launch.log_evidence = log_evidence.get();
    launch.filtered_mean = filtered_mean.get();
    launch.failed_step = failed_step.get();
    kernels::filter_block_per_trial(launch, nullptr);
    LRSMC_CUDA_CHECK(cudaDeviceSynchronize());

    FilterResult result;
    const auto evidence = log_evidence.download();
    const auto failures = failed_step.download();
    for (int trial = 0; trial < trials; ++trial)  // the CPU backend's message, first trial first
      if (failures[std::size_t(trial)] >= 0)
        throw NumericalError(detail::concat("particle filter: every log-weight of trial ", trial,
                                            " at step ", failures[std::size_t(trial)], " is ",
                                            evidence[std::size_t(trial)],
                                            " (parameters or data are extreme)"));
    result.elbo_per_trial.resize(std::size_t(trials));
    double total = 0;
    for (int trial = 0; trial < trials; ++trial) {
      result.elbo_per_trial[std::size_t(trial)] = evidence[std::size_t(trial)] / steps;
      total += result.elbo_per_trial[std::size_t(trial)];
    }
    result.elbo = total / trials;
    if (request.filtered_mean) result.filtered_mean = filtered_mean.download();
    if (request.particles) {
      const auto values = particles.download();
      result.particles.assign(values.begin(), values.end());
      result.log_weights = log_weights.download();
      result.ancestors = ancestors.download();
      result.resampled = resampled.download();
    }
    return result;
  }

  GradientResult do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed) override {
    return cuda::elbo_gradient(model, batch, options, seed, options_.device_index);
  }

  SampleResult do_sample(const Model& model, int num_trials, int num_steps,
                         const std::vector<double>& inputs, std::uint64_t seed) override {
    cpu::CpuBackend reference(BackendOptions{});
    return reference.sample(model, num_trials, num_steps, inputs, seed);
  }

  BackendOptions options_;
  std::string device_name_;
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
