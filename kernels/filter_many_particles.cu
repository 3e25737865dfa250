// Forward particle filter on the GPU with each trial's particles spread over many blocks
// (method.md §3; design.md, "GPU work shape", many-particles regime): one block per tile of
// math::weight_tile particles, three kernels per time step, enqueued without host
// synchronisation so that the host captures the whole time loop in one CUDA graph. The
// particle step and the tile sums are particle_step.cuh's, shared with the block-per-trial
// kernel, and the tiles are combined by math::combine_tiles as there: both regimes, and the CPU
// float engine, compute the same bits.
//
// Determinism: every reduction is a CUB block primitive over one tile, the tiles are combined
// in order on one thread, and no atomics decide a result, so a repeated run is bitwise
// identical.
#include <cmath>

#include "kernels/dispatch.cuh"
#include "kernels/launch.hpp"
#include "kernels/launcher.hpp"
#include "kernels/particle_step.cuh"
#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int tile = math::weight_tile;

/// Where step `step` of `trial` reads and writes (store_all keeps every step; otherwise two
/// particle slices alternate and one weight/ancestor slice is reused in place).
struct StepSlices {
  float* particles;                    // (K, rank) of this step
  const float* previous;               // (K, rank) of step − 1 (step ≥ 1)
  double* log_weights;                 // (K) of this step
  const double* previous_log_weights;  // (K) of step − 1, normalised (step ≥ 1)
  std::int32_t* previous_ancestors;    // (K) ancestors chosen by step − 1's resampling
};

__device__ StepSlices step_slices(const FilterLaunch& p, int trial, int step) {
  const StepOffsets at = step_offsets(p, trial, step);
  return {p.particles + at.particles, p.particles + at.previous_particles,
          p.log_weights + at.weights, p.log_weights + at.previous_weights,
          p.ancestors + at.previous_weights};
}

__device__ __forceinline__ double* cumulative_of(const ManyParticleWorkspace& w, int step) {
  return step % 2 == 0 ? w.cumulative[0] : w.cumulative[1];
}

/// Ancestor of slot `particle` chosen by the resampling of `step` (the identity when that step
/// did not resample): left bisection of the position in the trial's normalised cumulative
/// weights (method.md §3.5).
__device__ std::int32_t choose_ancestor(const FilterLaunch& p, const ManyParticleWorkspace& w,
                                        int trial, std::uint32_t trial_id, int step, int particle) {
  if (w.resample[trial] == 0) return particle;
  const int K = p.num_particles;
  const double position =
      math::resampling_position(p.resampling, p.seed, trial_id, std::uint32_t(step),
                                std::uint32_t(particle), std::uint32_t(K));
  return math::lower_bound_index(cumulative_of(w, step) + std::size_t(trial) * K, K, position);
}

/// Grid (tiles, trials). Step t: the ancestors of step t − 1 and the carried weights, then
/// propagate, propose and weigh (a particle on a group of lanes), then the tile's sums.
template <int Rank>
__global__ void __launch_bounds__(tile)
    propagate_weigh_kernel(const FilterLaunch p, const ManyParticleWorkspace w, const int step) {
  extern __shared__ float loadings[];  // m, n, h when they fit
  __shared__ TileStorage storage;
  __shared__ double broadcast[1];
  __shared__ double carried[tile];
  __shared__ float gain_term[max_rank];

  const int trial = int(blockIdx.y);
  if (p.failed_step[trial] >= 0) return;  // the trial stopped at an earlier step (uniform)
  const int K = p.num_particles, R = rank_of<Rank>(p);
  const int first = int(blockIdx.x) * tile, count = min(tile, K - first);
  const math::ParticleModel<float> model = load_model<Rank>(p, loadings);
  const std::uint32_t trial_id = p.trial_ids[trial];
  const StepSlices slices = step_slices(p, trial, step);
  // The ancestors of step − 1, particle by thread, and the weights they carry. Without
  // store_all the weight slice is reused in place: read here, written after the barrier.
  const int k = first + int(threadIdx.x);
  if (k < K) {
    double value = -log(double(K));
    if (step > 0) {
      slices.previous_ancestors[k] = choose_ancestor(p, w, trial, trial_id, step - 1, k);
      if (w.resample[trial] == 0) value = slices.previous_log_weights[k];
    }
    carried[threadIdx.x] = value;
  }
  gain_term_of(p, model, trial, step, gain_term);
  __syncthreads();
  // Particle first + j on the lanes of group j (p.lanes > 1 only when all K fit in one tile).
  const LaneGroup group = lane_group(int(threadIdx.x), p.lanes);
  for (int j = int(threadIdx.x) / p.lanes; j < count; j += tile / p.lanes) {
    const int particle = first + j;
    const float* state =
        step == 0 ? nullptr
                  : slices.previous + std::size_t(slices.previous_ancestors[particle]) * R;
    float z[Rank > 0 ? Rank : max_rank];
    const float log_weight = propagate_particle<Rank>(p, model, gain_term, trial, trial_id, step,
                                                      particle, state, group, z);
    if (group.lane != 0) continue;
    for (int r = 0; r < R; ++r) slices.particles[std::size_t(particle) * R + r] = z[r];
    slices.log_weights[particle] = carried[j] + double(log_weight);
  }
  __syncthreads();
  tile_sums(p, int(blockIdx.x), slices.log_weights, p.filtered_mean ? slices.particles : nullptr,
            cumulative_of(w, step) + std::size_t(trial) * K, tile_arrays(p, trial), storage,
            broadcast);
}

/// Grid (trials), one thread each: combines the tiles of `step` in order (math::combine_tiles)
/// into c_t, the ESS and the resampling decision, the filtered mean and the tiles' offsets.
__global__ void combine_kernel(const FilterLaunch p, const ManyParticleWorkspace w,
                               const int step) {
  const int trial = int(blockIdx.x);
  if (p.failed_step[trial] >= 0) return;
  const int K = p.num_particles, R = p.model.shape.rank, tiles = math::weight_tiles(K);
  const std::size_t cell = std::size_t(trial) * p.steps + step;
  const TileArrays arrays = tile_arrays(p, trial);
  const math::StepWeights weights = math::combine_tiles(
      tiles, arrays.maximum, arrays.total, arrays.squares, p.filtered_mean ? arrays.mean : nullptr,
      R, arrays.scale, arrays.start, p.filtered_mean ? p.filtered_mean + cell * R : nullptr,
      DeviceRoundedProduct());
  if (weights.failed) {  // every log-weight is ±inf or NaN
    p.failed_step[trial] = step;
    p.log_evidence[trial] = weights.maximum;
    return;
  }
  const bool resample = math::should_resample(p.resample_threshold, weights.squares, K);
  w.resample[trial] = resample ? 1 : 0;
  w.increment[trial] = weights.increment;
  w.total[trial] = weights.total;
  if (p.resampled) p.resampled[cell] = resample ? 1 : 0;
  p.log_evidence[trial] = step == 0 ? weights.increment : p.log_evidence[trial] + weights.increment;
}

/// Grid (tiles, trials): normalised log-weights log W_t = x − c_t in place, and when the step
/// resamples, the normalised cumulative weights (math::normalised_cumulative).
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
  const TileArrays arrays = tile_arrays(p, trial);
  double* cumulative = cumulative_of(w, step) + std::size_t(trial) * K;
  cumulative[particle] =
      math::normalised_cumulative(arrays.start[blockIdx.x], arrays.scale[blockIdx.x],
                                  cumulative[particle], w.total[trial], DeviceRoundedProduct());
}

/// Grid (tiles, trials): the last step's ancestors (the earlier ones are chosen by the next
/// step's propagate_weigh_kernel).
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

/// One block per tile and trial. Launched inside a stream capture: prepare_filter_many_particles
/// opted propagate_weigh_kernel in to its shared memory beforehand.
LaunchShape particle_shape(const FilterLaunch& launch, std::size_t shared) {
  LaunchShape shape;
  shape.grid = dim3(unsigned(math::weight_tiles(launch.num_particles)), unsigned(launch.trials));
  shape.block = dim3(tile);
  shape.shared = shared;
  shape.opted_in = true;
  return shape;
}

}  // namespace

std::size_t many_particle_static_shared_bytes() {
  // CUB's storage does not depend on the rank: any specialisation answers.
  return static_shared_bytes(reinterpret_cast<const void*>(propagate_weigh_kernel<0>));
}

void prepare_filter_many_particles(const FilterLaunch& launch) {
  LRSMC_REQUIRE(launch.model.shape.rank >= 1 && launch.model.shape.rank <= max_rank,
                "cuda backend: rank is out of range; got ", launch.model.shape.rank,
                ", expected 1 to ", max_rank);
  LRSMC_REQUIRE(launch.trials >= 1 && launch.trials <= max_many_particle_trials,
                "cuda backend: trials per call in the many-particle regime is out of range; got ",
                launch.trials, ", expected 1 to ", max_many_particle_trials);
  const std::size_t shared =
      loadings_shared_bytes(launch.model.shape, launch.model.loadings_in_shared);
  dispatch_rank(launch.model.shape.rank, [&](auto rank) {
    reserve_shared_memory(
        "propagate_weigh_kernel",
        reinterpret_cast<const void*>(propagate_weigh_kernel<decltype(rank)::value>), shared);
  });
}

void filter_many_particles_step(const FilterLaunch& launch, const ManyParticleWorkspace& workspace,
                                int step, cudaStream_t stream) {
  LRSMC_ASSERT(launch.data_steps >= 1 && launch.data_steps <= launch.steps);
  const std::size_t shared =
      loadings_shared_bytes(launch.model.shape, launch.model.loadings_in_shared);
  dispatch_rank(launch.model.shape.rank, [&](auto rank) {
    launch_kernel("propagate_weigh_kernel", propagate_weigh_kernel<decltype(rank)::value>,
                  particle_shape(launch, shared), stream, launch, workspace, step);
  });
  LaunchShape combine;
  combine.grid = dim3(unsigned(launch.trials));
  launch_kernel("combine_kernel", combine_kernel, combine, stream, launch, workspace, step);
  launch_kernel("normalise_kernel", normalise_kernel, particle_shape(launch, 0), stream, launch,
                workspace, step);
}

void filter_many_particles_finish(const FilterLaunch& launch,
                                  const ManyParticleWorkspace& workspace, cudaStream_t stream) {
  launch_kernel("last_ancestors_kernel", last_ancestors_kernel, particle_shape(launch, 0), stream,
                launch, workspace);
}

}  // namespace lrsmc::kernels
