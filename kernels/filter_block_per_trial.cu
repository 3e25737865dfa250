// Forward particle filter on the GPU, one thread block per trial (method.md §3; design.md,
// "GPU work shape", few-particles regime): the time loop runs inside the kernel. Each step
// propagates, proposes and weighs every particle on a group of lanes (particle_step.cuh),
// reduces the weights tile by tile with CUB block primitives, combines the tiles on one thread
// (math::combine_tiles), normalises and resamples. The arithmetic is the CPU engines' own
// (include/lrsmc/math/), in the same order; every result is deterministic.
#include <cmath>

#include "kernels/dispatch.cuh"
#include "kernels/launch.hpp"
#include "kernels/launcher.hpp"
#include "kernels/particle_step.cuh"
#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int block_size = math::particle_block_threads;
static_assert(block_size == math::weight_tile, "one block reduces one tile of weights at a time");

/// Step `step`'s slices of a trial's particles, weights and ancestors (store_all keeps every
/// step; otherwise two particle slices alternate and one weight/ancestor slice is reused).
struct Slices {
  float* particles;
  const float* previous;
  double* log_weights;
  std::int32_t* ancestors;
  const std::int32_t* previous_ancestors;
};

__device__ Slices slices_of(const FilterLaunch& p, int trial, int step) {
  const StepOffsets at = step_offsets(p, trial, step);
  return {p.particles + at.particles, p.particles + at.previous_particles,
          p.log_weights + at.weights, p.ancestors + at.weights, p.ancestors + at.previous_weights};
}

template <int Rank>
__global__ void __launch_bounds__(block_size) filter_block_per_trial_kernel(const FilterLaunch p) {
  extern __shared__ float loadings[];  // m, n, h when they fit (DeviceModel::loadings_in_shared)
  __shared__ TileStorage storage;
  __shared__ double broadcast[3];
  __shared__ int decision[2];
  __shared__ float gain_term[max_rank];

  const int trial = blockIdx.x;
  const int K = p.num_particles, R = rank_of<Rank>(p), tiles = math::weight_tiles(K);
  const math::ParticleModel<float> model = load_model<Rank>(p, loadings);
  const std::uint32_t trial_id = p.trial_ids[trial];
  const LaneGroup group = lane_group(int(threadIdx.x), p.lanes);
  const int groups = block_size / p.lanes;
  const TileArrays arrays = tile_arrays(p, trial);
  double* carried = p.carried + std::size_t(trial) * K;
  double* cumulative = p.cumulative + std::size_t(trial) * K;
  for (int k = threadIdx.x; k < K; k += block_size) carried[k] = -log(double(K));
  double log_evidence = 0.0;  // thread 0's
  const DeviceRoundedProduct product;
  __syncthreads();

  for (int step = 0; step < p.steps; ++step) {
    const Slices slices = slices_of(p, trial, step);
    const std::size_t cell = cell_of(p, trial, step);
    gain_term_of(p, model, trial, step, gain_term);
    __syncthreads();
    // 1. Propagate, propose and weigh: particle k on the lanes of group k mod groups.
    for (int k = int(threadIdx.x) / p.lanes; k < K; k += groups) {  // uniform within a group
      const float* state =
          step == 0 ? nullptr : slices.previous + std::size_t(slices.previous_ancestors[k]) * R;
      float z[Rank > 0 ? Rank : max_rank];
      const float log_weight =
          propagate_particle<Rank>(p, model, gain_term, trial, trial_id, step, k, state, group, z);
      if (group.lane != 0) continue;
      for (int r = 0; r < R; ++r) slices.particles[std::size_t(k) * R + r] = z[r];
      slices.log_weights[k] = carried[k] + double(log_weight);
    }
    __syncthreads();
    // 2. The tiles' sums, then their combination on thread 0 (math/weights.hpp).
    for (int tile = 0; tile < tiles; ++tile)
      tile_sums(p, tile, slices.log_weights, p.filtered_mean ? slices.particles : nullptr,
                cumulative, arrays, storage, broadcast);
    if (threadIdx.x == 0) {
      const math::StepWeights weights = math::combine_tiles(
          tiles, arrays.maximum, arrays.total, arrays.squares,
          p.filtered_mean ? arrays.mean : nullptr, R, arrays.scale, arrays.start,
          p.filtered_mean ? p.filtered_mean + cell * R : nullptr, product);
      const bool resample =
          !weights.failed && math::should_resample(p.resample_threshold, weights.squares, K);
      decision[0] = weights.failed ? 1 : 0;
      decision[1] = resample ? 1 : 0;
      broadcast[1] = weights.increment;
      broadcast[2] = weights.total;
      if (weights.failed) {
        p.failed_step[trial] = step;
        p.log_evidence[trial] = weights.maximum;
      } else {
        log_evidence += weights.increment;
        if (p.resampled) p.resampled[cell] = resample ? 1 : 0;
      }
    }
    __syncthreads();
    if (decision[0] != 0) return;  // uniform: every log-weight is ±inf or NaN
    const bool resample = decision[1] != 0;
    // 3. Normalised log-weights and, when resampling, the normalised cumulative weights.
    for (int k = threadIdx.x; k < K; k += block_size) {
      slices.log_weights[k] -= broadcast[1];
      if (!resample) continue;
      const int tile = k / math::weight_tile;
      cumulative[k] = math::normalised_cumulative(arrays.start[tile], arrays.scale[tile],
                                                  cumulative[k], broadcast[2], product);
    }
    __syncthreads();
    // 4. Ancestors (method.md §3.5) and the weights carried to the next step.
    for (int k = threadIdx.x; k < K; k += block_size) {
      if (resample) {
        const double position =
            math::resampling_position(p.resampling, p.seed, trial_id, std::uint32_t(step),
                                      std::uint32_t(k), std::uint32_t(K));
        slices.ancestors[k] = math::lower_bound_index(cumulative, K, position);
        carried[k] = -log(double(K));
      } else {
        slices.ancestors[k] = k;
        carried[k] = slices.log_weights[k];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) p.log_evidence[trial] = log_evidence;
}

}  // namespace

std::size_t loadings_shared_bytes(const math::ModelShape& shape, bool in_shared) {
  return in_shared ? sizeof(float) * std::size_t(math::ParticleConstantsLayout(shape).loadings_size)
                   : 0;
}

std::size_t filter_block_static_shared_bytes() {
  // CUB's storage does not depend on the rank: any specialisation answers.
  return static_shared_bytes(reinterpret_cast<const void*>(filter_block_per_trial_kernel<0>));
}

void filter_block_per_trial(const FilterLaunch& launch, cudaStream_t stream) {
  LRSMC_REQUIRE(launch.model.shape.rank >= 1 && launch.model.shape.rank <= max_rank,
                "cuda backend: rank is out of range; got ", launch.model.shape.rank,
                ", expected 1 to ", max_rank);
  LRSMC_ASSERT(launch.data_steps >= 1 && launch.data_steps <= launch.steps);
  LaunchShape shape;
  shape.grid = dim3(unsigned(launch.trials));
  shape.block = dim3(block_size);
  shape.shared = loadings_shared_bytes(launch.model.shape, launch.model.loadings_in_shared);
  dispatch_rank(launch.model.shape.rank, [&](auto rank) {
    launch_kernel("filter_block_per_trial", filter_block_per_trial_kernel<decltype(rank)::value>,
                  shape, stream, launch);
  });
}

}  // namespace lrsmc::kernels
