// Forward particle filter on the GPU, one thread block per trial (method.md §3; design.md,
// "GPU work shape", few-particles regime): the time loop runs inside the kernel, particles are
// strided over the block's threads, and the log-sum-exp, the ESS and the float64 prefix sum of
// the resampling weights are block-level CUB primitives in a fixed order (deterministic).
// The per-particle maths are the include/lrsmc/math functions the CPU backend runs.
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

constexpr int block_size = 256;

using BlockReduce = cub::BlockReduce<double, block_size>;
using BlockScan = cub::BlockScan<double, block_size>;

struct MaximumOp {
  __device__ double operator()(double a, double b) const { return a > b ? a : b; }
};

template <int Rank>
__global__ void __launch_bounds__(block_size)
    filter_block_per_trial_kernel(const FilterLaunch p) {
  extern __shared__ float loadings[];  // m (hidden·rank), n (rank·hidden), h (hidden)
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ double broadcast[2];

  const int trial = blockIdx.x;
  const int R = rank_of<Rank>(p), K = p.num_particles;
  const SharedLoadings shared_loadings = load_loadings(p, loadings);
  const std::uint32_t trial_id = p.trial_ids[trial];
  double* carried = p.carried + std::size_t(trial) * K;
  double* cumulative = p.cumulative + std::size_t(trial) * K;
  for (int k = threadIdx.x; k < K; k += block_size) carried[k] = -log(double(K));
  const int particle_slices = p.store_all ? p.steps : 2;
  const int weight_slices = p.store_all ? p.steps : 1;
  double log_evidence = 0.0;
  __syncthreads();

  for (int step = 0; step < p.steps; ++step) {
    const int current_slice = p.store_all ? step : step % 2;
    const int previous_slice = p.store_all ? (step > 0 ? step - 1 : 0) : (step + 1) % 2;
    float* particles = p.particles + (std::size_t(trial) * particle_slices + current_slice) * K * R;
    const float* previous =
        p.particles + (std::size_t(trial) * particle_slices + previous_slice) * K * R;
    const int weight_slice = p.store_all ? step : 0;
    const int previous_weight_slice = p.store_all && step > 0 ? step - 1 : 0;
    double* log_weights = p.log_weights + (std::size_t(trial) * weight_slices + weight_slice) * K;
    std::int32_t* ancestors = p.ancestors + (std::size_t(trial) * weight_slices + weight_slice) * K;
    const std::int32_t* previous_ancestors =
        p.ancestors + (std::size_t(trial) * weight_slices + previous_weight_slice) * K;
    const std::size_t cell = std::size_t(trial) * p.steps + step;

    // 1. Propagate, propose and weigh every particle of this thread.
    double thread_maximum = -INFINITY;
    for (int k = threadIdx.x; k < K; k += block_size) {
      // The particle that survived resampling into slot k at the previous step.
      const float* state =
          step == 0 ? nullptr : previous + std::size_t(previous_ancestors[k]) * R;
      float z[max_rank];
      const float log_weight =
          propagate_particle<Rank>(p, shared_loadings, trial, trial_id, step, k, state, z);
      for (int r = 0; r < R; ++r) particles[std::size_t(k) * R + r] = z[r];
      const double increment = carried[k] + double(log_weight);
      log_weights[k] = increment;
      thread_maximum = fmax(thread_maximum, increment);
    }

    // 2. c_t = logsumexp_k(log W̄_{t−1} + log w_t), in float64.
    const double maximum = BlockReduce(reduce_storage).Reduce(thread_maximum, MaximumOp());
    if (threadIdx.x == 0) broadcast[0] = maximum;
    __syncthreads();
    const double block_maximum = broadcast[0];
    if (!isfinite(block_maximum)) {  // uniform across the block: broadcast from shared memory
      if (threadIdx.x == 0) {
        p.failed_step[trial] = step;
        p.log_evidence[trial] = block_maximum;
      }
      return;
    }
    double thread_sum = 0.0;
    for (int k = threadIdx.x; k < K; k += block_size) thread_sum += exp(log_weights[k] - block_maximum);
    const double sum = BlockReduce(reduce_storage).Sum(thread_sum);
    if (threadIdx.x == 0) broadcast[1] = block_maximum + log(sum);
    __syncthreads();
    const double increment = broadcast[1];
    log_evidence += increment;

    // 3. Normalised weights, effective sample size, filtered mean.
    double thread_squares = 0.0;
    for (int k = threadIdx.x; k < K; k += block_size) {
      log_weights[k] -= increment;
      thread_squares += exp(2.0 * log_weights[k]);
    }
    const double squares = BlockReduce(reduce_storage).Sum(thread_squares);
    if (threadIdx.x == 0) broadcast[0] = squares;
    __syncthreads();
    const double effective = 1.0 / broadcast[0];
    if (p.filtered_mean) {
      for (int r = 0; r < R; ++r) {
        double thread_mean = 0.0;
        for (int k = threadIdx.x; k < K; k += block_size)
          thread_mean += exp(log_weights[k]) * double(particles[std::size_t(k) * R + r]);
        const double total = BlockReduce(reduce_storage).Sum(thread_mean);
        if (threadIdx.x == 0) p.filtered_mean[cell * R + r] = total;
        __syncthreads();
      }
    }
    const bool resample = p.resample_threshold >= 1.0 ||
                          (p.resample_threshold > 0.0 && effective < p.resample_threshold * K);
    if (p.resampled && threadIdx.x == 0) p.resampled[cell] = resample ? 1 : 0;

    // 4. Resample: float64 inclusive prefix sum over tiles of block_size, normalised by its
    //    last value; positions (U + k)/K; left bisection (method.md §3.5).
    if (resample) {
      double running = 0.0;
      for (int base = 0; base < K; base += block_size) {
        const int k = base + threadIdx.x;
        const double weight = k < K ? exp(log_weights[k]) : 0.0;
        double inclusive = 0.0, tile_total = 0.0;
        BlockScan(scan_storage).InclusiveSum(weight, inclusive, tile_total);
        if (k < K) cumulative[k] = running + inclusive;
        running += tile_total;
        __syncthreads();
      }
      (void)running;
      const double last = cumulative[K - 1];  // normalise by the last value, as method.md §3.5
      __syncthreads();
      for (int k = threadIdx.x; k < K; k += block_size) cumulative[k] /= last;
      __syncthreads();
      for (int k = threadIdx.x; k < K; k += block_size) {
        const double position = math::resampling_position(
            p.resampling, p.seed, trial_id, std::uint32_t(step), std::uint32_t(k), std::uint32_t(K));
        ancestors[k] = math::lower_bound_index(cumulative, K, position);
        carried[k] = -log(double(K));
      }
    } else {
      for (int k = threadIdx.x; k < K; k += block_size) {
        ancestors[k] = k;
        carried[k] = log_weights[k];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) p.log_evidence[trial] = log_evidence;
}

}  // namespace

std::size_t filter_shared_bytes(int rank, int hidden) {
  return sizeof(float) * (std::size_t(2) * rank * hidden + hidden);
}

std::size_t filter_static_shared_bytes() {
  cudaFuncAttributes attributes{};
  // CUB's storage does not depend on the rank: any specialisation answers.
  if (cudaFuncGetAttributes(&attributes, filter_block_per_trial_kernel<0>) != cudaSuccess) return 0;
  return attributes.sharedSizeBytes;
}

void filter_block_per_trial(const FilterLaunch& launch, cudaStream_t stream) {
  LRSMC_REQUIRE(launch.rank >= 1 && launch.rank <= max_rank,
                "cuda backend: rank is out of range; got ", launch.rank, ", expected 1 to ",
                max_rank);
  const std::size_t shared = filter_shared_bytes(launch.rank, launch.hidden);
  dispatch_rank(launch.rank, [&](auto rank) {
    constexpr int Rank = decltype(rank)::value;
    // Opt in to more than 48 KB; per device, so on every launch. The default limit on the
    // dynamic shared memory is 48 KB minus the static (CUB) storage, so their sum decides.
    cudaFuncAttributes attributes{};
    cudaError_t status = cudaFuncGetAttributes(&attributes, filter_block_per_trial_kernel<Rank>);
    if (status == cudaSuccess && shared + attributes.sharedSizeBytes > 48 * 1024)
      status = cudaFuncSetAttribute(filter_block_per_trial_kernel<Rank>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
    if (status != cudaSuccess) {
      (void)cudaGetLastError();  // or the launch check below would report this failure
      throw CudaError(detail::concat("filter_block_per_trial: cannot use ", shared,
                                     " bytes of shared memory (", cudaGetErrorString(status),
                                     ")"));
    }
    filter_block_per_trial_kernel<Rank><<<launch.trials, block_size, shared, stream>>>(launch);
  });
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    throw CudaError(detail::concat("filter_block_per_trial: launch failed (",
                                   cudaGetErrorString(status), ")"));
#ifdef LRSMC_DEBUG_SYNC
  const cudaError_t synced = cudaStreamSynchronize(stream);
  if (synced != cudaSuccess)
    throw CudaError(detail::concat("filter_block_per_trial: ", cudaGetErrorString(synced)));
#endif
}

}  // namespace lrsmc::kernels
