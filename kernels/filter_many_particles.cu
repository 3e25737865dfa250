// Forward particle filter on the GPU with each trial's particles spread over many blocks
// (method.md §3; design.md, "GPU work shape", many-particles regime): one particle per thread,
// three kernels per time step, enqueued without host synchronisation so that the host captures
// the whole time loop in one CUDA graph. The per-particle maths are filter_particle.cuh, shared
// with the block-per-trial kernel, so both regimes draw and weigh identically.
//
// Determinism: every reduction and scan is a CUB block primitive over a fixed partition (blocks
// of many_particle_tile particles, then one block per trial over the blocks' partials), and no
// atomics decide a result, so a repeated run is bitwise identical. cub::DeviceScan is not used
// for the cumulative weights: its decoupled look-back may sum a tile's prefix from aggregates or
// from inclusive prefixes depending on timing, which is not reproducible in floating point.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cmath>

#include "kernels/dispatch.cuh"
#include "kernels/filter_particle.cuh"
#include "kernels/launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/resampling.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int tile = many_particle_tile;

using BlockReduce = cub::BlockReduce<double, tile>;
using BlockScan = cub::BlockScan<double, tile>;

union BlockStorage {
  typename BlockReduce::TempStorage reduce;
  typename BlockScan::TempStorage scan;
};

/// fmax ignores NaN as the CPU backend's std::max(maximum, x) does.
struct MaximumOp {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

/// Where step `step` of `trial` reads and writes (store_all keeps every step; otherwise two
/// particle slices alternate and one weight/ancestor slice is reused in place).
struct StepSlices {
  float* particles;                  // (K, rank) of this step
  const float* previous;             // (K, rank) of step − 1 (step ≥ 1)
  double* log_weights;               // (K) of this step
  const double* previous_log_weights;  // (K) of step − 1, normalised (step ≥ 1)
  std::int32_t* previous_ancestors;  // (K) ancestors chosen by step − 1's resampling
};

__device__ __forceinline__ StepSlices step_slices(const FilterLaunch& p, int trial, int step) {
  const std::size_t K = std::size_t(p.num_particles), R = std::size_t(p.rank);
  const std::size_t particle_slices = p.store_all ? std::size_t(p.steps) : 2;
  const std::size_t weight_slices = p.store_all ? std::size_t(p.steps) : 1;
  const std::size_t current = p.store_all ? std::size_t(step) : std::size_t(step % 2);
  const std::size_t previous =
      p.store_all ? std::size_t(step > 0 ? step - 1 : 0) : std::size_t((step + 1) % 2);
  const std::size_t weight_current = p.store_all ? std::size_t(step) : 0;
  const std::size_t weight_previous = p.store_all && step > 0 ? std::size_t(step - 1) : 0;
  const std::size_t trial_particles = std::size_t(trial) * particle_slices;
  const std::size_t trial_weights = std::size_t(trial) * weight_slices;
  return {p.particles + (trial_particles + current) * K * R,
          p.particles + (trial_particles + previous) * K * R,
          p.log_weights + (trial_weights + weight_current) * K,
          p.log_weights + (trial_weights + weight_previous) * K,
          p.ancestors + (trial_weights + weight_previous) * K};
}

/// Ancestor of slot `particle` chosen by the resampling of `step` (the identity when that step
/// did not resample): left bisection of the position in the normalised float64 cumulative
/// weights of the whole trial (method.md §3.5), exactly math::lower_bound_index as on the CPU.
__device__ __forceinline__ std::int32_t choose_ancestor(const FilterLaunch& p, const ManyParticleWorkspace& w,
                                        int trial, std::uint32_t trial_id, int step,
                                        int particle) {
  if (w.resample[trial] == 0) return particle;
  const int K = p.num_particles;
  const double position =
      math::resampling_position(p.resampling, p.seed, trial_id, std::uint32_t(step),
                                std::uint32_t(particle), std::uint32_t(K));
  return math::lower_bound_index(by_phase(w.cumulative, step % 2) + std::size_t(trial) * K, K, position);
}

/// Grid (B, trials). Step t: ancestors of step t − 1, propagate, propose and weigh; then the
/// block's partials for the log-sum-exp, the ESS and the filtered mean, and the block-local
/// inclusive prefix sum of exp(x_k − shift_b) into cumulative[t % 2].
template <int Rank>
__global__ void __launch_bounds__(tile)
    propagate_weigh_kernel(const FilterLaunch p, const ManyParticleWorkspace w, const int step) {
  extern __shared__ float loadings[];  // m (hidden·rank), n (rank·hidden), h (hidden)
  __shared__ BlockStorage storage;
  __shared__ double broadcast;

  const int trial = int(blockIdx.y);
  if (p.failed_step[trial] >= 0) return;  // the trial stopped at an earlier step (uniform)
  const int K = p.num_particles, R = rank_of<Rank>(p);
  const int particle = int(blockIdx.x) * tile + int(threadIdx.x);
  const bool valid = particle < K;
  const SharedLoadings shared_loadings = load_loadings(p, loadings);
  __syncthreads();
  const std::uint32_t trial_id = p.trial_ids[trial];
  const StepSlices slices = step_slices(p, trial, step);

  double increment = -INFINITY;  // log W̄_{t−1} + log w_t
  float z[max_rank] = {};
  if (valid) {
    double carried = -log(double(K));
    const float* state = nullptr;
    if (step > 0) {
      const std::int32_t ancestor = choose_ancestor(p, w, trial, trial_id, step - 1, particle);
      // Without store_all the weight slice is reused in place: read before it is written below.
      if (w.resample[trial] == 0) carried = slices.previous_log_weights[particle];
      slices.previous_ancestors[particle] = ancestor;
      state = slices.previous + std::size_t(ancestor) * R;
    }
    const float log_weight =
        propagate_particle<Rank>(p, shared_loadings, trial, trial_id, step, particle, state, z);
    for (int r = 0; r < R; ++r) slices.particles[std::size_t(particle) * R + r] = z[r];
    increment = carried + double(log_weight);
    slices.log_weights[particle] = increment;
  }

  const double maximum = BlockReduce(storage.reduce).Reduce(increment, MaximumOp());
  if (threadIdx.x == 0) broadcast = maximum;
  __syncthreads();
  const double block_maximum = broadcast;
  // A block whose weights are all zero (−inf) contributes nothing; a non-finite global
  // maximum stops the trial in combine_kernel.
  const double shift = isfinite(block_maximum) ? block_maximum : 0.0;
  const double weight = valid ? exp(increment - shift) : 0.0;
  double inclusive = 0.0;
  BlockScan(storage.scan).InclusiveSum(weight, inclusive);
  const std::size_t block_index = std::size_t(trial) * w.blocks_per_trial + blockIdx.x;
  const int last_thread = min(K - int(blockIdx.x) * tile, tile) - 1;
  if (valid) by_phase(w.cumulative, step % 2)[std::size_t(trial) * K + particle] = inclusive;
  // The block's total is its last particle's inclusive sum, bit for bit (normalise_kernel
  // relies on it to make the trial's last cumulative weight exactly 1).
  if (int(threadIdx.x) == last_thread) w.block_total[block_index] = inclusive;
  __syncthreads();
  const double squares =
      BlockReduce(storage.reduce).Sum(valid ? exp(2.0 * (increment - shift)) : 0.0);
  if (threadIdx.x == 0) {
    w.block_maximum[block_index] = block_maximum;
    w.block_squares[block_index] = squares;
  }
  if (w.block_mean) {
    for (int r = 0; r < R; ++r) {
      __syncthreads();
      const double total = BlockReduce(storage.reduce).Sum(valid ? weight * double(z[r]) : 0.0);
      if (threadIdx.x == 0) w.block_mean[block_index * R + r] = total;
    }
  }
}

/// Grid (trials), one block per trial: combines the B partials of `step` in a fixed order into
/// c_t (log-evidence increment), the ESS and the resampling decision, the filtered mean, and the
/// offsets of each block in the trial's cumulative weights (a block scan over the blocks).
__global__ void __launch_bounds__(tile)
    combine_kernel(const FilterLaunch p, const ManyParticleWorkspace w, const int step) {
  __shared__ BlockStorage storage;
  __shared__ double broadcast[2];
  __shared__ int resample_broadcast;

  const int trial = int(blockIdx.x);
  if (p.failed_step[trial] >= 0) return;
  const int B = w.blocks_per_trial, R = p.rank, K = p.num_particles;
  const std::size_t base = std::size_t(trial) * B;
  const std::size_t cell = std::size_t(trial) * p.steps + step;

  double thread_maximum = -INFINITY;
  for (int b = int(threadIdx.x); b < B; b += tile)
    thread_maximum = fmax(thread_maximum, w.block_maximum[base + b]);
  const double maximum = BlockReduce(storage.reduce).Reduce(thread_maximum, MaximumOp());
  if (threadIdx.x == 0) broadcast[0] = maximum;
  __syncthreads();
  const double trial_maximum = broadcast[0];
  if (!isfinite(trial_maximum)) {  // uniform: every log-weight is ±inf or NaN
    if (threadIdx.x == 0) {
      p.failed_step[trial] = step;
      p.log_evidence[trial] = trial_maximum;
    }
    return;
  }

  // c_t = M + log Σ_b exp(m_b − M) Σ_{k ∈ b} exp(x_k − m_b), float64.
  double thread_sum = 0.0;
  for (int b = int(threadIdx.x); b < B; b += tile)
    thread_sum += exp(w.block_maximum[base + b] - trial_maximum) * w.block_total[base + b];
  const double sum = BlockReduce(storage.reduce).Sum(thread_sum);
  if (threadIdx.x == 0) broadcast[1] = trial_maximum + log(sum);
  __syncthreads();
  const double increment = broadcast[1];

  // Σ_k W_k² for the ESS; each block's scale exp(m_b − c_t) turns its partials into normalised
  // weights (0 for a block of zero weights, whose partials are 0 too).
  double thread_squares = 0.0;
  for (int b = int(threadIdx.x); b < B; b += tile) {
    const double block_maximum = w.block_maximum[base + b];
    w.block_scale[base + b] = exp(block_maximum - increment);
    thread_squares += exp(2.0 * (block_maximum - increment)) * w.block_squares[base + b];
  }
  const double squares = BlockReduce(storage.reduce).Sum(thread_squares);
  if (threadIdx.x == 0) {
    const double effective = 1.0 / squares;
    const bool resample = p.resample_threshold >= 1.0 ||
                          (p.resample_threshold > 0.0 && effective < p.resample_threshold * K);
    resample_broadcast = resample ? 1 : 0;
    w.resample[trial] = resample ? 1 : 0;
    w.increment[trial] = increment;
    if (p.resampled) p.resampled[cell] = resample ? 1 : 0;
    p.log_evidence[trial] = step == 0 ? increment : p.log_evidence[trial] + increment;
  }
  __syncthreads();
  const bool resample = resample_broadcast != 0;

  if (w.block_mean) {  // filtered mean Σ_k W_k z_k
    for (int r = 0; r < R; ++r) {
      double thread_mean = 0.0;
      for (int b = int(threadIdx.x); b < B; b += tile)
        thread_mean += w.block_scale[base + b] * w.block_mean[(base + b) * R + r];
      const double total = BlockReduce(storage.reduce).Sum(thread_mean);
      if (threadIdx.x == 0) p.filtered_mean[cell * R + r] = total;
      __syncthreads();
    }
  }

  if (resample) {
    // Exclusive prefix sum of the blocks' weights (scale_b · total_b) over tiles of blocks,
    // float64; the trial's total is the last particle's cumulative weight computed exactly
    // as normalise_kernel computes it (explicit roundings: no fused multiply-add).
    double running = 0.0;
    for (int first = 0; first < B; first += tile) {
      const int b = first + int(threadIdx.x);
      const double block_weight =
          b < B ? __dmul_rn(w.block_scale[base + b], w.block_total[base + b]) : 0.0;
      double exclusive = 0.0, tile_total = 0.0;
      BlockScan(storage.scan).ExclusiveSum(block_weight, exclusive, tile_total);
      if (b < B) {
        const double start = running + exclusive;
        w.block_start[base + b] = start;
        if (b == B - 1)
          w.cumulative_total[trial] =
              __dadd_rn(start, __dmul_rn(w.block_scale[base + b], w.block_total[base + b]));
      }
      running += tile_total;
      __syncthreads();
    }
  }
}

/// Grid (B, trials): normalised log-weights log W_t = x − c_t in place, and when the step
/// resamples, the normalised cumulative weights (start_b + scale_b · local_k) / total.
__global__ void __launch_bounds__(tile)
    normalise_kernel(const FilterLaunch p, const ManyParticleWorkspace w, const int step) {
  const int trial = int(blockIdx.y);
  if (p.failed_step[trial] >= 0) return;
  const int K = p.num_particles;
  const int particle = int(blockIdx.x) * tile + int(threadIdx.x);
  if (particle >= K) return;
  const StepSlices slices = step_slices(p, trial, step);
  slices.log_weights[particle] -= w.increment[trial];
  if (w.resample[trial] == 0) return;
  const std::size_t block_index = std::size_t(trial) * w.blocks_per_trial + blockIdx.x;
  double* cumulative = by_phase(w.cumulative, step % 2) + std::size_t(trial) * K;
  cumulative[particle] = __ddiv_rn(
      __dadd_rn(w.block_start[block_index], __dmul_rn(w.block_scale[block_index], cumulative[particle])),
      w.cumulative_total[trial]);
}

/// Grid (B, trials): the last step's ancestors (the earlier ones are chosen by the next step's
/// propagate_weigh_kernel).
__global__ void __launch_bounds__(tile)
    last_ancestors_kernel(const FilterLaunch p, const ManyParticleWorkspace w) {
  const int trial = int(blockIdx.y);
  if (p.failed_step[trial] >= 0) return;
  const int particle = int(blockIdx.x) * tile + int(threadIdx.x);
  if (particle >= p.num_particles) return;
  const int step = p.steps - 1;
  const std::size_t weight_slices = p.store_all ? std::size_t(p.steps) : 1;
  const std::size_t slice = p.store_all ? std::size_t(step) : 0;
  p.ancestors[(std::size_t(trial) * weight_slices + slice) * p.num_particles + particle] =
      choose_ancestor(p, w, trial, p.trial_ids[trial], step, particle);
}

void check_launch(const char* kernel, cudaStream_t stream) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw CudaError(detail::concat("filter_many_particles: launch of ", kernel, " failed (",
                                   cudaGetErrorString(status), ")"));
#ifdef LRSMC_DEBUG_SYNC
  // Synchronising is illegal while the stream is being captured into a graph.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) == cudaSuccess &&
      capture == cudaStreamCaptureStatusNone) {
    const cudaError_t synced = cudaStreamSynchronize(stream);
    if (synced != cudaSuccess)
      throw CudaError(detail::concat("filter_many_particles: ", kernel, ": ",
                                     cudaGetErrorString(synced)));
  }
#else
  (void)stream;
#endif
}

dim3 particle_grid(const FilterLaunch& launch, const ManyParticleWorkspace& workspace) {
  return dim3(unsigned(workspace.blocks_per_trial), unsigned(launch.trials));
}

}  // namespace

std::size_t many_particle_static_shared_bytes() {
  cudaFuncAttributes attributes{};
  // CUB's storage does not depend on the rank: any specialisation answers.
  if (cudaFuncGetAttributes(&attributes, propagate_weigh_kernel<0>) != cudaSuccess) return 0;
  return attributes.sharedSizeBytes;
}

void prepare_filter_many_particles(const FilterLaunch& launch) {
  LRSMC_REQUIRE(launch.rank >= 1 && launch.rank <= max_rank,
                "cuda backend: rank is out of range; got ", launch.rank, ", expected 1 to ",
                max_rank);
  LRSMC_REQUIRE(launch.trials >= 1 && launch.trials <= max_many_particle_trials,
                "cuda backend: trials per call in the many-particle regime is out of range; got ",
                launch.trials, ", expected 1 to ", max_many_particle_trials);
  const std::size_t shared = filter_shared_bytes(launch.rank, launch.hidden);
  dispatch_rank(launch.rank, [&](auto rank) {
    const auto kernel = propagate_weigh_kernel<decltype(rank)::value>;
    // Without the opt-in, the default limit on the *dynamic* shared memory is 48 KB minus the
    // kernel's static shared memory (CUB storage), not 48 KB: opt in whenever their sum exceeds
    // 48 KB, else loadings of just under 48 KB fail to launch.
    cudaFuncAttributes attributes{};
    cudaError_t status = cudaFuncGetAttributes(&attributes, kernel);
    if (status == cudaSuccess && shared + attributes.sharedSizeBytes > 48 * 1024)
      status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(shared));  // per device
    if (status != cudaSuccess) {
      (void)cudaGetLastError();  // or the next launch check would report this failure
      throw CudaError(detail::concat("filter_many_particles: cannot use ", shared,
                                     " bytes of shared memory (", cudaGetErrorString(status),
                                     ")"));
    }
  });
}

void filter_many_particles_step(const FilterLaunch& launch, const ManyParticleWorkspace& workspace,
                                int step, cudaStream_t stream) {
  const dim3 grid = particle_grid(launch, workspace);
  const std::size_t shared = filter_shared_bytes(launch.rank, launch.hidden);
  dispatch_rank(launch.rank, [&](auto rank) {
    propagate_weigh_kernel<decltype(rank)::value><<<grid, tile, shared, stream>>>(launch, workspace,
                                                                                 step);
  });
  check_launch("propagate_weigh_kernel", stream);
  combine_kernel<<<unsigned(launch.trials), tile, 0, stream>>>(launch, workspace, step);
  check_launch("combine_kernel", stream);
  normalise_kernel<<<grid, tile, 0, stream>>>(launch, workspace, step);
  check_launch("normalise_kernel", stream);
}

void filter_many_particles_finish(const FilterLaunch& launch,
                                  const ManyParticleWorkspace& workspace, cudaStream_t stream) {
  last_ancestors_kernel<<<particle_grid(launch, workspace), tile, 0, stream>>>(launch, workspace);
  check_launch("last_ancestors_kernel", stream);
}

}  // namespace lrsmc::kernels
