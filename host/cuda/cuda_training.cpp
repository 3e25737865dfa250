// Host side of CUDA training (issue 4; method.md §3.6, §5.1): the ELBO gradient from the
// forward kernel (every step stored) and the backward sweep, split over trials when a batch
// does not fit; and device-resident training sessions (data uploaded once, parameters and
// optimizer moments on the device). The R×R and R×D algebra that runs once per call — noise
// factors, the optimal proposal's Kalman quantities and their adjoints, μ_0's projection —
// stays on the host in float through host/cpu/kalman.hpp, so it is the CPU float path's own.
#include "cuda/cuda_training.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <set>
#include <tuple>

#include "cpu/kalman.hpp"
#include "kernels/device_memory.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::cuda {
namespace {

using cpu::Matrix;
using cpu::Vector;

/// Grow-only use of the shared buffer: reserve(), upload() and download(host, count, offset).
template <typename T>
using Buffer = kernels::DeviceBuffer<T>;

std::vector<float> to_float(const double* values, std::size_t count) {
  std::vector<float> result(count);
  for (std::size_t i = 0; i < count; ++i) result[i] = static_cast<float>(values[i]);
  return result;
}

kernels::GradientOffsets make_offsets(const ModelConfig& config) {
  const ParameterLayout layout(config);
  const std::int64_t rank = config.rank, channels = config.num_channels;
  kernels::GradientOffsets offsets;
  offsets.m = layout.m;
  offsets.n = layout.n;
  offsets.h = layout.h;
  offsets.w_u = layout.w_u;
  offsets.readout_weight = layout.readout_weight;
  offsets.readout_bias = layout.readout_bias;
  offsets.observation_noise = layout.observation_noise;
  offsets.slots_begin = layout.total_size();
  std::int64_t next = offsets.slots_begin + kernels::backward_slot_count(config.rank);
  for (int phase = 0; phase < 2; ++phase) {
    offsets.gain[phase] = next;
    next += rank * channels;
  }
  for (int phase = 0; phase < 2; ++phase) {
    offsets.gain_sum[phase] = next;
    next += rank;
  }
  offsets.stride = next;
  return offsets;
}

/// The model in float on the device plus its per-call constants, computed on the host in
/// float exactly as the CPU float path (and the CUDA filter) computes them. Everything travels
/// in one packed copy per call (a training step pays one small transfer, not fourteen).
struct DeviceModel {
  Buffer<float> packed;
  Matrix<float> factors[2], readout_matrix;
  cpu::KalmanQuantities<float> kalman[2];
  float decay = 0.f, log_det[2] = {0.f, 0.f}, proposal_log_det[2] = {0.f, 0.f};
  bool optimal = false;
  // Offsets into `packed` (−1: absent).
  std::int64_t m = -1, n = -1, h = -1, readout = -1, readout_bias = -1, log_variance = -1,
               factor[2] = {-1, -1}, gain[2] = {-1, -1}, alpha[2] = {-1, -1},
               proposal_factor[2] = {-1, -1};

  /// Throws NumericalError (as the CPU does) when the optimal proposal's covariance is not
  /// positive definite.
  void upload(const ModelConfig& config, const double* raw, Proposal proposal) {
    const ParameterLayout layout(config);
    const int rank = config.rank, hidden = config.num_hidden, channels = config.num_channels;
    optimal = proposal == Proposal::optimal;
    std::vector<float> host;
    const auto append_doubles = [&](const double* values, std::size_t count) {
      const auto offset = std::int64_t(host.size());
      for (std::size_t i = 0; i < count; ++i) host.push_back(static_cast<float>(values[i]));
      return offset;
    };
    const auto append_matrix = [&](const Matrix<float>& matrix) {
      const auto offset = std::int64_t(host.size());
      host.insert(host.end(), matrix.data(), matrix.data() + matrix.size());
      return offset;
    };
    m = append_doubles(raw + layout.m, std::size_t(hidden) * rank);
    n = append_doubles(raw + layout.n, std::size_t(hidden) * rank);
    h = append_doubles(raw + layout.h, std::size_t(hidden));
    readout = append_doubles(raw + layout.readout_weight, std::size_t(rank) * channels);
    readout_bias = append_doubles(raw + layout.readout_bias, std::size_t(channels));
    log_variance = layout.observation_noise >= 0
                       ? append_doubles(raw + layout.observation_noise, std::size_t(channels))
                       : -1;
    decay = static_cast<float>(std::exp(-std::exp(raw[layout.decay_logit])));
    factors[0] = cpu::noise_factor<float>(raw + layout.initial_noise, config.initial_noise, rank);
    factors[1] = cpu::noise_factor<float>(raw + layout.transition_noise, config.transition_noise, rank);
    readout_matrix = Matrix<float>(rank, channels);
    for (int r = 0; r < rank; ++r)
      for (int i = 0; i < channels; ++i)
        readout_matrix(r, i) = static_cast<float>(raw[layout.readout_weight + r * channels + i]);
    for (int phase = 0; phase < 2; ++phase) {
      log_det[phase] = 0.f;
      for (int r = 0; r < rank; ++r) log_det[phase] += std::log(factors[phase](r, r));
      factor[phase] = append_matrix(factors[phase]);
      if (!optimal) continue;
      kalman[phase] = cpu::kalman_quantities<float>(factors[phase], readout_matrix,
                                                    raw + layout.observation_noise);
      proposal_log_det[phase] = 0.f;
      for (int r = 0; r < rank; ++r)
        proposal_log_det[phase] += std::log(kalman[phase].proposal_factor(r, r));
      gain[phase] = append_matrix(kalman[phase].gain);
      alpha[phase] = append_matrix(kalman[phase].alpha);
      proposal_factor[phase] = append_matrix(kalman[phase].proposal_factor);
    }
    packed.upload(host);
  }

  [[nodiscard]] const float* at(std::int64_t offset) const {
    return offset >= 0 ? packed.get() + offset : nullptr;
  }

  void fill(kernels::FilterLaunch& launch) const {
    launch.decay = decay;
    launch.m = at(m);
    launch.n = at(n);
    launch.h = at(h);
    launch.readout = at(readout);
    launch.readout_bias = at(readout_bias);
    launch.log_variance = at(log_variance);
    for (int phase = 0; phase < 2; ++phase) {
      launch.noise_factor[phase] = at(factor[phase]);
      launch.noise_log_det[phase] = log_det[phase];
      launch.gain[phase] = optimal ? at(gain[phase]) : nullptr;
      launch.alpha[phase] = optimal ? at(alpha[phase]) : nullptr;
      launch.proposal_factor[phase] = optimal ? at(proposal_factor[phase]) : nullptr;
      launch.proposal_log_det[phase] = optimal ? proposal_log_det[phase] : 0.f;
    }
  }
};

/// Forward paths and backward workspace for chunks of up to `chunk` trials, and accumulator
/// rows and results for the whole batch.
struct Workspace {
  int chunk = 0;
  Buffer<float> particles, grad_post, grad_next, grad_pre, grad_mean;
  Buffer<double> log_weights, carried, cumulative, grad_carried, grad_log_weight, slots;
  Buffer<std::int32_t> ancestors;
  Buffer<std::uint8_t> resampled;
  // Whole batch.
  Buffer<double> log_evidence, accumulators, totals;
  Buffer<std::int32_t> failed_step;
  Buffer<std::uint32_t> trial_ids;
  Buffer<float> currents, initial_mean;

  void reserve(const ModelConfig& config, int trials, int steps, int particles_per_trial,
               int chunk_trials, std::int64_t stride) {
    chunk = chunk_trials;
    const std::size_t c = std::size_t(chunk_trials), T = std::size_t(steps),
                      K = std::size_t(particles_per_trial), R = std::size_t(config.rank);
    particles.reserve(c * T * K * R);
    log_weights.reserve(c * T * K);
    ancestors.reserve(c * T * K);
    resampled.reserve(c * T);
    carried.reserve(c * K);
    cumulative.reserve(c * K);
    for (Buffer<float>* buffer : {&grad_post, &grad_next, &grad_pre, &grad_mean}) buffer->reserve(c * K * R);
    grad_carried.reserve(c * K);
    grad_log_weight.reserve(c * K);
    slots.reserve(c * std::size_t(kernels::backward_slot_count(config.rank)) *
                  kernels::backward_block_size);
    const std::size_t B = std::size_t(trials);
    log_evidence.reserve(B);
    failed_step.reserve(B);
    trial_ids.reserve(B);
    accumulators.reserve(B * std::size_t(stride));
    totals.reserve(std::size_t(stride));
  }
};

/// Where a batch's data lie on the device.
struct DeviceBatch {
  int trials = 0, steps = 0;
  const float* observations = nullptr;   // (trials, steps, channels)
  const float* log_factorial = nullptr;  // or null
  const double* inputs = nullptr;        // (trials, steps, inputs) or null
  const float* currents = nullptr;       // (trials, steps, hidden) or null
  const float* initial_mean = nullptr;   // (trials, rank)
  const std::uint32_t* trial_ids = nullptr;
};

/// A batch's device pointers; log-factorials only for Poisson, inputs and currents only with
/// inputs (the workspace holds currents, μ_0 and ids).
DeviceBatch device_batch_of(const ModelConfig& config, int trials, int steps,
                            const float* observations, const float* log_factorial,
                            const double* inputs, const Workspace& work) {
  DeviceBatch batch;
  batch.trials = trials;
  batch.steps = steps;
  batch.observations = observations;
  batch.log_factorial = config.observation == Observation::poisson ? log_factorial : nullptr;
  batch.inputs = config.num_inputs > 0 ? inputs : nullptr;
  batch.currents = config.num_inputs > 0 ? work.currents.get() : nullptr;
  batch.initial_mean = work.initial_mean.get();
  batch.trial_ids = work.trial_ids.get();
  return batch;
}

/// Forward and backward over a batch, chunk by chunk, then the trial-ordered sum into
/// workspace.totals. Asynchronous on the default stream.
void run_gradient(const ModelConfig& config, const FilterOptions& options, std::uint64_t seed,
                  const DeviceModel& model, const DeviceBatch& batch,
                  const kernels::GradientOffsets& offsets, Workspace& work) {
  const int R = config.rank, T = batch.steps;
  LRSMC_CUDA_CHECK(cudaMemset(work.failed_step.get(), 0xFF,
                              std::size_t(batch.trials) * sizeof(std::int32_t)));
  for (int first = 0; first < batch.trials; first += work.chunk) {
    const int count = std::min(work.chunk, batch.trials - first);
    kernels::FilterLaunch launch;
    set_filter_settings(launch, config, options, T, count, seed);
    model.fill(launch);
    const std::size_t cells = std::size_t(first) * T;
    launch.observations = batch.observations + cells * config.num_channels;
    launch.log_factorial = batch.log_factorial ? batch.log_factorial + cells * config.num_channels : nullptr;
    launch.currents = batch.currents ? batch.currents + cells * config.num_hidden : nullptr;
    launch.initial_mean = batch.initial_mean + std::size_t(first) * R;
    launch.trial_ids = batch.trial_ids + first;
    launch.store_all = true;
    launch.particles = work.particles.get();
    launch.log_weights = work.log_weights.get();
    launch.ancestors = work.ancestors.get();
    launch.resampled = work.resampled.get();
    launch.carried = work.carried.get();
    launch.cumulative = work.cumulative.get();
    launch.log_evidence = work.log_evidence.get() + first;
    launch.failed_step = work.failed_step.get() + first;
    launch.filtered_mean = nullptr;
    kernels::filter_block_per_trial(launch, nullptr);

    kernels::BackwardLaunch backward;
    backward.forward = launch;
    backward.num_inputs = config.num_inputs;
    backward.inputs = batch.inputs ? batch.inputs + cells * config.num_inputs : nullptr;
    backward.grad_increment = 1.0 / (double(batch.trials) * T);  // ℓ = mean_b (1/T) Σ_t c_t
    backward.offsets = offsets;
    backward.grad_post = work.grad_post.get();
    backward.grad_next = work.grad_next.get();
    backward.grad_pre = work.grad_pre.get();
    backward.grad_mean = work.grad_mean.get();
    backward.grad_carried = work.grad_carried.get();
    backward.grad_log_weight = work.grad_log_weight.get();
    backward.thread_slots = work.slots.get();
    backward.accumulators = work.accumulators.get() + std::size_t(first) * offsets.stride;
    kernels::backward_block_per_trial(backward, nullptr);
  }
  kernels::sum_over_trials(work.accumulators.get(), batch.trials, offsets.stride,
                           work.totals.get(), nullptr);
}

/// Σ_k dμ_0 of each trial (rows of the accumulators), for μ_0's input projection.
std::vector<double> initial_mean_rows(const ModelConfig& config,
                                      const kernels::GradientOffsets& offsets,
                                      const Workspace& work, int trials) {
  const int rank = config.rank;
  std::vector<double> rows(std::size_t(trials) * rank);
  const std::int64_t column = offsets.slots_begin + 6 * std::int64_t(rank) * rank + 1;
  LRSMC_CUDA_CHECK(cudaMemcpy2D(rows.data(), sizeof(double) * rank,
                                work.accumulators.get() + column,
                                sizeof(double) * offsets.stride, sizeof(double) * rank,
                                std::size_t(trials), cudaMemcpyDeviceToHost));
  return rows;
}

Matrix<float> block_matrix(const std::vector<double>& values, std::int64_t offset, int rows, int columns) {
  Matrix<float> matrix(rows, columns);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < columns; ++c)
      matrix(r, c) = static_cast<float>(values[std::size_t(offset + std::int64_t(r) * columns + c)]);
  return matrix;
}

/// The once-per-call adjoints of CpuEngine::finish_gradient and finish_initial_mean (float
/// matrices, as the CPU float path), applied to the device's summed row `totals`.
/// `initial_mean_rows` holds Σ_k dμ_0 per trial (only read with inputs).
std::vector<double> finish_gradient(const ModelConfig& config, const double* raw,
                                    const DeviceModel& model, const kernels::GradientOffsets& offsets,
                                    const std::vector<double>& totals,
                                    const std::vector<double>& initial_mean_rows,
                                    const double* inputs, int trials, int steps) {
  const ParameterLayout layout(config);
  const int rank = config.rank, channels = config.num_channels, hidden = config.num_hidden,
            num_inputs = config.num_inputs;
  std::vector<double> flat(totals.begin(), totals.begin() + layout.total_size());
  const std::int64_t base = offsets.slots_begin, square = std::int64_t(rank) * rank;
  Matrix<float> grad_factor[2], grad_proposal[2], mean_product[2], grad_gain[2];
  Vector<float> gain_sum[2];
  for (int phase = 0; phase < 2; ++phase) {
    grad_factor[phase] = block_matrix(totals, base + phase * square, rank, rank);
    grad_proposal[phase] = block_matrix(totals, base + (2 + phase) * square, rank, rank);
    mean_product[phase] = block_matrix(totals, base + (4 + phase) * square, rank, rank);
    grad_gain[phase] = block_matrix(totals, offsets.gain[phase], rank, channels);
    gain_sum[phase] = Vector<float>(rank);
    for (int r = 0; r < rank; ++r)
      gain_sum[phase](r) = static_cast<float>(totals[std::size_t(offsets.gain_sum[phase] + r)]);
  }
  const double grad_decay = totals[std::size_t(base + 6 * square)];
  // a = exp(−exp(θ_a)) ⇒ da/dθ = −a exp(θ).
  const double theta = raw[layout.decay_logit];
  flat[layout.decay_logit] += grad_decay * -std::exp(-std::exp(theta)) * std::exp(theta);
  if (model.optimal) {
    Matrix<float> grad_readout = Matrix<float>::Zero(rank, channels);
    for (const int phase : {1, 0}) {  // the CPU's order: later steps, then the initial step
      const auto& kalman = model.kalman[phase];
      // μ_q = μ + G(x − b) − G Bᵀ μ: dG −= (Σ dμ_q μᵀ) B, dB −= (Σ dμ_q μᵀ)ᵀ G, db −= Gᵀ Σ dμ_q.
      Matrix<float> gain = grad_gain[phase] - mean_product[phase] * model.readout_matrix;
      grad_readout -= mean_product[phase].transpose() * kalman.gain;
      const Vector<float> grad_bias = -kalman.gain.transpose() * gain_sum[phase];
      for (int i = 0; i < channels; ++i)
        flat[layout.readout_bias + i] += static_cast<double>(grad_bias(i));
      cpu::kalman_quantities_backward(kalman, model.factors[phase], model.readout_matrix,
                                      raw + layout.observation_noise, gain, grad_proposal[phase],
                                      grad_factor[phase], grad_readout,
                                      flat.data() + layout.observation_noise);
    }
    for (int r = 0; r < rank; ++r)
      for (int i = 0; i < channels; ++i)
        flat[layout.readout_weight + r * channels + i] += static_cast<double>(grad_readout(r, i));
  }
  cpu::noise_factor_backward(model.factors[1], grad_factor[1], config.transition_noise, rank,
                             flat.data() + layout.transition_noise);
  cpu::noise_factor_backward(model.factors[0], grad_factor[0], config.initial_noise, rank,
                             flat.data() + layout.initial_noise);
  const std::int64_t initial = base + 6 * square + 1;
  if (layout.z_init >= 0)
    for (int r = 0; r < rank; ++r) flat[layout.z_init + r] += totals[std::size_t(initial + r)];
  if (num_inputs == 0) return flat;
  // μ_0 = z_init + P_m W_u u_0 per trial: y = M^{-1} s, M = mᵀm, s = mᵀ c (CpuEngine's adjoint).
  const auto loadings_values = to_float(raw + layout.m, std::size_t(hidden) * rank);
  const Matrix<float> loadings = Eigen::Map<const Matrix<float>>(loadings_values.data(), hidden, rank);
  const Matrix<float> gram = loadings.transpose() * loadings;
  std::vector<float> currents, initial_means;
  for (int trial = 0; trial < trials; ++trial) {
    const double* trial_inputs = inputs + std::size_t(trial) * steps * num_inputs;
    input_terms(config, raw, trial_inputs, 1, 1, currents, initial_means);
    const Vector<float> current0 = Eigen::Map<const Vector<float>>(currents.data(), hidden);
    const Vector<float> projection =
        gram.ldlt().solve(loadings.transpose() * current0);
    Vector<float> grad_projection(rank);
    for (int r = 0; r < rank; ++r)
      grad_projection(r) = static_cast<float>(initial_mean_rows[std::size_t(trial) * rank + r]);
    const Vector<float> grad_source = gram.ldlt().solve(grad_projection);
    const Matrix<float> grad_gram = -grad_source * projection.transpose();
    const Matrix<float> grad_loadings =
        loadings * (grad_gram + grad_gram.transpose()) + current0 * grad_source.transpose();
    const Vector<float> grad_current = loadings * grad_source;
    for (int i = 0; i < hidden; ++i) {
      for (int r = 0; r < rank; ++r)
        flat[layout.m + i * rank + r] += static_cast<double>(grad_loadings(i, r));
      for (int j = 0; j < num_inputs; ++j)
        flat[layout.w_u + i * num_inputs + j] += static_cast<double>(grad_current(i)) * trial_inputs[j];
    }
  }
  return flat;
}

void check_shared_memory(const ModelConfig& config, int device_index) {
  int shared_limit = 0;
  LRSMC_CUDA_CHECK(cudaDeviceGetAttribute(
      &shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
  const std::size_t needed = kernels::filter_shared_bytes(config.rank, config.num_hidden) +
                             kernels::filter_static_shared_bytes();
  LRSMC_REQUIRE(config.rank <= kernels::max_rank, "cuda backend: rank is out of range; got ",
                config.rank, ", expected at most ", kernels::max_rank);
  LRSMC_REQUIRE(needed <= std::size_t(shared_limit),
                "cuda backend: the model's loadings do not fit in shared memory; got hidden ",
                config.num_hidden, " × rank ", config.rank, " (", needed,
                " bytes), expected at most ", shared_limit, " bytes on this device");
}

std::int64_t free_device_memory() {
  std::size_t free_bytes = 0, total_bytes = 0;
  LRSMC_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return static_cast<std::int64_t>(free_bytes);
}

/// Chunk size for a batch, with the log line the issue asks for when it splits.
int plan_chunks(const ModelConfig& config, int trials, int steps, int particles,
                int max_chunk_trials) {
  // Leave 10% of the free memory for the CUDA runtime and other allocations.
  const std::int64_t available = free_device_memory() / 10 * 9;
  int chunk = gradient_chunk_trials(config, trials, steps, particles, available);
  if (max_chunk_trials > 0) chunk = std::min(chunk, max_chunk_trials);
  // Said once per problem shape and chunk size (a fit would otherwise repeat it every step).
  static std::mutex said_mutex;
  static std::set<std::tuple<int, int, int, int>> said;
  bool first_time = false;
  if (chunk < trials && max_chunk_trials <= 0) {
    const std::lock_guard<std::mutex> lock(said_mutex);
    first_time = said.insert({trials, steps, particles, chunk}).second;
  }
  if (first_time)
    std::fprintf(stderr,
                 "lrsmc: cuda: the gradient of %d trials × %d steps × %d particles needs %lld MiB "
                 "but %lld MiB are free; running it in %d chunks of at most %d trials "
                 "(gradients accumulated, same result)\n",
                 trials, steps, particles,
                 static_cast<long long>(gradient_memory_bytes(config, trials, steps, particles, trials) >> 20),
                 static_cast<long long>(available >> 20), (trials + chunk - 1) / chunk, chunk);
  return chunk;
}

std::vector<std::uint32_t> row_ids(const SequenceBatch& batch) {
  std::vector<std::uint32_t> ids(static_cast<std::size_t>(batch.num_trials));
  for (int trial = 0; trial < batch.num_trials; ++trial)
    ids[std::size_t(trial)] = batch.trial_ids.empty() ? std::uint32_t(trial)
                                                      : batch.trial_ids[std::size_t(trial)];
  return ids;
}

}  // namespace

void throw_if_failed(const std::vector<std::int32_t>& failed, const std::vector<double>& evidence) {
  for (std::size_t trial = 0; trial < failed.size(); ++trial)
    if (failed[trial] >= 0)
      throw NumericalError(detail::concat("particle filter: every log-weight of trial ", trial,
                                          " at step ", failed[trial], " is ", evidence[trial],
                                          " (parameters or data are extreme)"));
}

double elbo_per_trial(const std::vector<double>& evidence, int steps, std::vector<double>& per_trial) {
  const std::size_t trials = evidence.size();
  per_trial.resize(trials);
  double total = 0;
  for (std::size_t trial = 0; trial < trials; ++trial) {
    per_trial[trial] = evidence[trial] / steps;
    total += per_trial[trial];
  }
  return total / double(trials);
}

void set_filter_settings(kernels::FilterLaunch& launch, const ModelConfig& config,
                         const FilterOptions& options, int steps, int trials, std::uint64_t seed) {
  launch.rank = config.rank;
  launch.hidden = config.num_hidden;
  launch.channels = config.num_channels;
  launch.num_particles = options.num_particles;
  launch.steps = steps;
  launch.trials = trials;
  launch.nonlinearity = config.nonlinearity;
  launch.observation = config.observation;
  launch.link = config.link;
  launch.optimal = options.proposal == Proposal::optimal;
  launch.resampling = options.resampling;
  launch.resample_threshold = options.resample_threshold;
  launch.seed = seed;
}

void input_terms(const ModelConfig& config, const double* raw, const double* inputs, int rows,
                 int steps, std::vector<float>& currents, std::vector<float>& initial_mean) {
  const ParameterLayout layout(config);
  const int rank = config.rank, hidden = config.num_hidden, num_inputs = config.num_inputs;
  initial_mean.assign(std::size_t(rows) * rank, 0.f);
  if (layout.z_init >= 0)
    for (int row = 0; row < rows; ++row)
      for (int r = 0; r < rank; ++r)
        initial_mean[std::size_t(row) * rank + r] = static_cast<float>(raw[layout.z_init + r]);
  currents.clear();
  if (num_inputs == 0) return;
  const auto w_u = to_float(raw + layout.w_u, std::size_t(hidden) * num_inputs);
  const auto loadings_values = to_float(raw + layout.m, std::size_t(hidden) * rank);
  const Matrix<float> loadings = Eigen::Map<const Matrix<float>>(loadings_values.data(), hidden, rank);
  currents.resize(std::size_t(rows) * steps * hidden);
  for (int row = 0; row < rows; ++row) {
    for (int step = 0; step < steps; ++step)
      for (int i = 0; i < hidden; ++i) {
        float current = 0.f;
        for (int j = 0; j < num_inputs; ++j)
          current += w_u[std::size_t(i) * num_inputs + j] *
                     static_cast<float>(inputs[(std::size_t(row) * steps + step) * num_inputs + j]);
        currents[(std::size_t(row) * steps + step) * hidden + i] = current;
      }
    const Vector<float> current0 = Eigen::Map<const Vector<float>>(
        currents.data() + std::size_t(row) * steps * hidden, hidden);
    const Vector<float> projection =
        (loadings.transpose() * loadings).ldlt().solve(loadings.transpose() * current0);
    for (int r = 0; r < rank; ++r) initial_mean[std::size_t(row) * rank + r] += projection(r);
  }
}


std::int64_t gradient_memory_bytes(const ModelConfig& config, int trials, int steps,
                                   int particles, int chunk_trials) {
  const std::int64_t B = trials, c = std::max(1, std::min(chunk_trials, trials)), T = steps,
                     K = particles, R = config.rank, D = config.num_channels,
                     N = config.num_hidden, U = config.num_inputs;
  const std::int64_t stride = make_offsets(config).stride;
  // Per chunk: every step's particles (float), log-weights (double), ancestors (int32) and
  // resampling flag; carried weights and cumulative sums; the backward's four K×R float
  // adjoints, two K double adjoints and its per-thread slots.
  const std::int64_t per_chunk_trial =
      T * K * (R * 4 + 8 + 4) + T + K * 16 + K * R * 16 + K * 16 +
      kernels::backward_slot_count(config.rank) * kernels::backward_block_size * 8;
  // Per batch trial: data (observations, log-factorials, inputs, currents), μ_0, accumulator
  // row, evidence, failure flag and id.
  const std::int64_t per_trial = T * D * 8 + T * U * 8 + (U > 0 ? T * N * 4 : 0) + R * 4 +
                                 stride * 8 + 8 + 4 + 4;
  const std::int64_t model = (2 * N * R + N + R * D + 2 * D + 8 * R * R + 4 * R * D) * 4 +
                             stride * 8;
  return c * per_chunk_trial + B * per_trial + model + (std::int64_t(64) << 20);
}

int gradient_chunk_trials(const ModelConfig& config, int trials, int steps, int particles,
                          std::int64_t available) {
  int low = 1, high = std::max(1, trials);
  while (low < high) {  // the largest chunk that fits (the need grows with the chunk)
    const int middle = low + (high - low + 1) / 2;
    if (gradient_memory_bytes(config, trials, steps, particles, middle) <= available) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

GradientResult elbo_gradient(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, std::uint64_t seed, int device_index,
                             int max_chunk_trials) {
  const ModelConfig& config = model.config;
  LRSMC_CUDA_CHECK(cudaSetDevice(device_index));
  check_shared_memory(config, device_index);
  const int trials = batch.num_trials, steps = batch.num_steps, K = options.num_particles;
  const double* raw = model.parameters.data();
  const kernels::GradientOffsets offsets = make_offsets(config);

  DeviceModel device_model;
  device_model.upload(config, raw, options.proposal);
  Buffer<float> observations, log_factorial;
  Buffer<double> inputs;
  observations.upload(to_float(batch.observations.data(), batch.observations.size()));
  if (config.observation == Observation::poisson) {
    std::vector<float> values(batch.observations.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      values[i] = static_cast<float>(std::lgamma(batch.observations[i] + 1.0));
    log_factorial.upload(values);
  }
  Workspace work;
  std::vector<float> currents, initial_mean;
  input_terms(config, raw, batch.inputs.data(), trials, steps, currents, initial_mean);
  if (config.num_inputs > 0) {
    inputs.upload(batch.inputs);
    work.currents.upload(currents);
  }
  work.initial_mean.upload(initial_mean);
  work.trial_ids.upload(row_ids(batch));
  const int chunk = plan_chunks(config, trials, steps, K, max_chunk_trials);
  work.reserve(config, trials, steps, K, chunk, offsets.stride);

  const DeviceBatch device_batch = device_batch_of(config, trials, steps, observations.get(),
                                                   log_factorial.get(), inputs.get(), work);
  run_gradient(config, options, seed, device_model, device_batch, offsets, work);
  LRSMC_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<double> evidence, totals, initial_rows;
  std::vector<std::int32_t> failed;
  work.log_evidence.download(evidence, std::size_t(trials));
  work.failed_step.download(failed, std::size_t(trials));
  throw_if_failed(failed, evidence);
  work.totals.download(totals, std::size_t(offsets.stride));
  if (config.num_inputs > 0) initial_rows = initial_mean_rows(config, offsets, work, trials);
  GradientResult result;
  result.elbo = elbo_per_trial(evidence, steps, result.elbo_per_trial);
  result.gradient = finish_gradient(config, raw, device_model, offsets, totals, initial_rows,
                                    batch.inputs.data(), trials, steps);
  return result;
}

namespace {

/// Data on the device for the whole fit; per step only the rows' indices travel, and the
/// host does the once-per-call R×R algebra between launches (two small copies per step).
class CudaTrainingSession final : public TrainingSession {
 public:
  CudaTrainingSession(const TrainingSetup& setup, int device_index)
      : setup_(setup), data_(*setup.train), offsets_(make_offsets(setup.config)),
        count_(ParameterLayout(setup.config).total_size()) {
    const ModelConfig& config = setup_.config;
    LRSMC_CUDA_CHECK(cudaSetDevice(device_index));
    check_shared_memory(config, device_index);
    LRSMC_ASSERT(setup_.max_batch_trials >= 1 && setup_.batch_steps >= 1);
    LRSMC_ASSERT(std::int64_t(setup_.parameters.size()) == count_);
    {
      // The host loop checks every batch in Backend::elbo_gradient (shapes, finite values,
      // Poisson counts); the session never builds one, so check the whole training set once
      // with the same checks and messages. Otherwise a size mismatch would read past the
      // device copy and NaN or non-count data would train silently or fail as "every
      // log-weight is nan".
      SequenceBatch whole;
      whole.num_trials = data_.num_trials;
      whole.num_steps = data_.num_steps;
      whole.num_channels = data_.num_channels;
      whole.num_inputs = data_.num_inputs;
      whole.observations = data_.observations;
      whole.inputs = data_.inputs;
      validate_batch(config, whole, data_.source.empty() ? "training data" : data_.source);
    }
    data_observations_.upload(to_float(data_.observations.data(), data_.observations.size()));
    if (config.observation == Observation::poisson) {
      std::vector<float> values(data_.observations.size());
      for (std::size_t i = 0; i < values.size(); ++i)
        values[i] = static_cast<float>(std::lgamma(data_.observations[i] + 1.0));
      data_log_factorial_.upload(values);
    }
    if (config.num_inputs > 0) data_inputs_.upload(data_.inputs);
    parameters_.upload(setup_.parameters);
    first_moment_.upload(setup_.first_moment);
    second_moment_.upload(setup_.second_moment);
    ascent_.reserve(std::size_t(count_));
    status_.reserve(2);
    const std::size_t rows = std::size_t(setup_.max_batch_trials), T = std::size_t(setup_.batch_steps);
    rows_trials_.reserve(rows);
    rows_starts_.reserve(rows);
    batch_observations_.reserve(rows * T * config.num_channels);
    if (config.observation == Observation::poisson)
      batch_log_factorial_.reserve(rows * T * config.num_channels);
    if (config.num_inputs > 0) batch_inputs_.reserve(rows * T * config.num_inputs);
    std::vector<std::uint32_t> ids(rows);
    for (std::size_t row = 0; row < rows; ++row) ids[row] = std::uint32_t(row);
    work_.trial_ids.upload(ids);
    const int chunk = plan_chunks(config, setup_.max_batch_trials, setup_.batch_steps,
                                  setup_.filter.num_particles, 0);
    work_.reserve(config, setup_.max_batch_trials, setup_.batch_steps,
                  setup_.filter.num_particles, chunk, offsets_.stride);
    host_parameters_ = setup_.parameters;
  }

  StepOutcome step(const std::vector<int>& trials, const std::vector<int>& starts,
                   std::uint64_t seed, const OptimizerCoefficients& coefficients) override {
    const ModelConfig& config = setup_.config;
    const int rows = int(trials.size()), steps = setup_.batch_steps;
    LRSMC_ASSERT(rows >= 1 && rows <= setup_.max_batch_trials && starts.size() == trials.size());
    parameters_.download(host_parameters_, std::size_t(count_));
    StepOutcome outcome;
    try {
      model_.upload(config, host_parameters_.data(), setup_.filter.proposal);
    } catch (const NumericalError& error) {
      outcome.failure = error.what();
      return outcome;
    }
    // The rows' data, gathered on the device.
    rows_trials_.upload(trials);
    rows_starts_.upload(starts);
    kernels::GatherLaunch gather;
    gather.batch = rows;
    gather.length = steps;
    gather.data_steps = data_.num_steps;
    gather.channels = config.num_channels;
    gather.num_inputs = config.num_inputs;
    gather.trials = rows_trials_.get();
    gather.starts = rows_starts_.get();
    gather.observations = data_observations_.get();
    gather.log_factorial = config.observation == Observation::poisson ? data_log_factorial_.get() : nullptr;
    gather.inputs = config.num_inputs > 0 ? data_inputs_.get() : nullptr;
    gather.out_observations = batch_observations_.get();
    gather.out_log_factorial = batch_log_factorial_.get();
    gather.out_inputs = batch_inputs_.get();
    kernels::gather_batch(gather, nullptr);
    // W_u u_t and μ_0 depend on the parameters: the host computes them for the rows (inputs
    // only; without inputs μ_0 = z_init).
    std::vector<double> row_inputs;
    if (config.num_inputs > 0) {
      const std::size_t width = std::size_t(steps) * config.num_inputs;
      row_inputs.resize(std::size_t(rows) * width);
      for (int row = 0; row < rows; ++row)
        std::copy_n(data_.inputs.begin() +
                        std::ptrdiff_t((std::size_t(trials[std::size_t(row)]) * data_.num_steps +
                                        std::size_t(starts[std::size_t(row)])) * config.num_inputs),
                    width, row_inputs.begin() + std::ptrdiff_t(std::size_t(row) * width));
    }
    std::vector<float> currents, initial_mean;
    input_terms(config, host_parameters_.data(), row_inputs.data(), rows, steps, currents, initial_mean);
    if (config.num_inputs > 0) work_.currents.upload(currents);
    work_.initial_mean.upload(initial_mean);

    const DeviceBatch batch =
        device_batch_of(config, rows, steps, batch_observations_.get(),
                        batch_log_factorial_.get(), batch_inputs_.get(), work_);
    run_gradient(config, setup_.filter, seed, model_, batch, offsets_, work_);

    std::vector<double> evidence, totals, initial_rows;
    std::vector<std::int32_t> failed;
    work_.log_evidence.download(evidence, std::size_t(rows));  // synchronises
    work_.failed_step.download(failed, std::size_t(rows));
    try {
      throw_if_failed(failed, evidence);
    } catch (const NumericalError& error) {
      outcome.failure = error.what();
      return outcome;
    }
    work_.totals.download(totals, std::size_t(offsets_.stride));
    if (config.num_inputs > 0) initial_rows = initial_mean_rows(config, offsets_, work_, rows);
    std::vector<double> elbo_per_row;
    outcome.elbo = elbo_per_trial(evidence, steps, elbo_per_row);
    const std::vector<double> ascent = finish_gradient(config, host_parameters_.data(), model_,
                                                       offsets_, totals, initial_rows,
                                                       row_inputs.data(), rows, steps);
    // The CPU trainer's NaN guard, with its words.
    if (!std::isfinite(outcome.elbo)) {
      outcome.failure = detail::concat("the ELBO is ", outcome.elbo);
      return outcome;
    }
    for (const double value : ascent)
      if (!std::isfinite(value)) {
        outcome.failure = "the gradient contains NaN or Inf";
        return outcome;
      }
    ascent_.upload(ascent);
    kernels::gradient_norm(ascent_.get(), count_, nullptr, nullptr, 0, status_.get(), nullptr);
    kernels::OptimizerLaunch launch;
    launch.count = count_;
    launch.parameters = parameters_.get();
    launch.first_moment = first_moment_.get();
    launch.second_moment = second_moment_.get();
    launch.ascent = ascent_.get();
    launch.status = status_.get();
    launch.learning_rate = coefficients.learning_rate;
    launch.gradient_clip = setup_.gradient_clip;
    launch.bias1 = coefficients.bias1;
    launch.bias2 = coefficients.bias2;
    launch.rectification = coefficients.rectification;
    launch.rectified = coefficients.rectified;
    kernels::optimizer_step(launch, nullptr);
    return outcome;
  }

  void read_state(std::vector<double>& parameters, std::vector<double>& first_moment,
                  std::vector<double>& second_moment) override {
    parameters_.download(parameters, std::size_t(count_));
    first_moment_.download(first_moment, std::size_t(count_));
    second_moment_.download(second_moment, std::size_t(count_));
  }

  [[nodiscard]] const std::vector<double>& evaluated_parameters() const override {
    return host_parameters_;
  }

 private:
  TrainingSetup setup_;
  const Dataset& data_;
  kernels::GradientOffsets offsets_;
  std::int64_t count_ = 0;
  Buffer<double> parameters_, first_moment_, second_moment_, ascent_, status_;
  Buffer<float> data_observations_, data_log_factorial_, batch_observations_, batch_log_factorial_;
  Buffer<double> data_inputs_, batch_inputs_;
  Buffer<std::int32_t> rows_trials_, rows_starts_;
  DeviceModel model_;
  Workspace work_;
  std::vector<double> host_parameters_;
};

}  // namespace

std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup, int device_index) {
  LRSMC_ASSERT(setup.train != nullptr);
  return std::make_unique<CudaTrainingSession>(setup, device_index);
}

}  // namespace lrsmc::cuda
