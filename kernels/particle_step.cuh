// Device-only: the particle step of include/lrsmc/math/ as the kernels run it — a particle on a
// group of lanes_per_particle(K) lanes whose split sums are combined by a warp-shuffle butterfly
// (the order math::butterfly_sum defines), and the tile reductions of math/weights.hpp as CUB
// block primitives over one tile of particles per block. Shared by both forward regimes and the
// reverse sweep, so that all of them compute the bits of the CPU float engine.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cstddef>
#include <cstdint>

#include "kernels/launch.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"
#include "lrsmc/math/weights.hpp"

namespace lrsmc::kernels {

/// The product of math::combine_tiles and friends on the device: __dmul_rn is never fused
/// into an addition (math/common.hpp).
struct DeviceRoundedProduct {
  __device__ double operator()(double a, double b) const { return __dmul_rn(a, b); }
};

/// Where step `step` of trial `trial` lives in a filter's stored slices, in elements: every
/// step's slice when the launch stores all, else two alternating particle slices and one weight
/// slice per trial.
struct StepOffsets {
  std::size_t particles, previous_particles;  ///< into FilterLaunch::particles
  std::size_t weights, previous_weights;      ///< into FilterLaunch::log_weights and ::ancestors
};

__device__ inline StepOffsets step_offsets(const FilterLaunch& p, int trial, int step) {
  const std::size_t K = std::size_t(p.num_particles), R = std::size_t(p.model.shape.rank);
  const std::size_t particle_slices = p.store_all ? std::size_t(p.steps) : 2;
  const std::size_t weight_slices = p.store_all ? std::size_t(p.steps) : 1;
  const std::size_t current = p.store_all ? std::size_t(step) : std::size_t(step % 2);
  const std::size_t previous =
      p.store_all ? std::size_t(step > 0 ? step - 1 : 0) : std::size_t((step + 1) % 2);
  const std::size_t weight_current = p.store_all ? std::size_t(step) : 0;
  const std::size_t weight_previous = p.store_all && step > 0 ? std::size_t(step - 1) : 0;
  const std::size_t trial_particles = std::size_t(trial) * particle_slices;
  const std::size_t trial_weights = std::size_t(trial) * weight_slices;
  return {(trial_particles + current) * K * R, (trial_particles + previous) * K * R,
          (trial_weights + weight_current) * K, (trial_weights + weight_previous) * K};
}

/// The rank as the kernel sees it: a compile-time constant in the specialisations that
/// kernels/dispatch.cuh selects (per-particle arrays then live in registers), else the
/// run-time rank (Rank = 0; the arrays, indexed at run time, live in local memory).
template <int Rank>
__device__ __forceinline__ int rank_of(const FilterLaunch& p) {
  return Rank > 0 ? Rank : p.model.shape.rank;
}

/// The lanes of the group that runs one particle: lane l of `lanes` (a power of two up to a
/// warp, groups never straddle a warp) and the group's shuffle mask.
struct LaneGroup {
  int lane = 0, lanes = 1;
  unsigned mask = 0;
};

__device__ __forceinline__ LaneGroup lane_group(int thread, int lanes) {
  LaneGroup group;
  group.lanes = lanes;
  group.lane = thread % lanes;
  group.mask = lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1u) << ((thread % 32) / lanes * lanes);
  return group;
}

/// Σ over the group's lanes in math::butterfly_sum's order; every lane gets the same bits.
template <typename Scalar>
__device__ __forceinline__ Scalar group_sum(Scalar value, const LaneGroup& group) {
  for (int offset = group.lanes / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(group.mask, value, offset);
  return value;
}

/// The model in float as the particle step reads it, with the loadings m, n, h in the block's
/// shared memory (`shared`, ParticleConstantsLayout::loadings_size floats) when they fit
/// (launch.loadings_in_shared), else read from global memory (L2). The caller syncs.
template <int Rank>
__device__ math::ParticleModel<float> load_model(const FilterLaunch& p, float* shared) {
  math::ParticleModel<float> model = math::particle_model(p.model.shape, p.model.working);
  model.rank = rank_of<Rank>(p);
  if (!p.model.loadings_in_shared) return model;
  const math::ParticleConstantsLayout layout(p.model.shape);
  for (std::int64_t i = threadIdx.x; i < layout.loadings_size; i += blockDim.x)
    shared[i] = p.model.working[i];
  model.m = shared + layout.m;
  model.n = shared + layout.n;
  model.h = shared + layout.h;
  return model;
}

/// The constants of `step`'s phase (math::phase_of).
__device__ __forceinline__ math::PhaseConstants<float> phase_at(const FilterLaunch& p, int step) {
  return math::phase_constants(p.model.shape, p.model.working, math::phase_of(step));
}

/// Where a trial's cell (trial, step) of the data starts.
__device__ __forceinline__ std::size_t cell_of(const FilterLaunch& p, int trial, int step) {
  return std::size_t(trial) * p.steps + step;
}

/// Whether the step's proposal multiplies the prior with a Gaussian factor (the optimal
/// proposal's read-out or the encoder's), the particle step's `optimal` branch; never in the
/// t_forward steps, whose particles come from the transition.
__device__ __forceinline__ bool product_step(const FilterLaunch& p, int step) {
  return (p.model.shape.optimal || p.encoder_cells != nullptr) && step < p.data_steps;
}

/// The encoder proposal's record of (trial, step) (encoder_cell_floats), or null.
__device__ __forceinline__ const float* encoder_cell(const FilterLaunch& p, int trial, int step) {
  if (p.encoder_cells == nullptr || step >= p.data_steps) return nullptr;
  return p.encoder_cells + (std::size_t(trial) * p.data_steps + step) *
                               std::size_t(encoder_cell_floats(p.model.shape.rank));
}

/// The constants of (trial, step): its phase's, with the encoder's product (α, L_q, ln|L_q|) at
/// an encoder step.
__device__ __forceinline__ math::PhaseConstants<float> step_phase(const FilterLaunch& p, int trial,
                                                                  int step) {
  math::PhaseConstants<float> phase = phase_at(p, step);
  const float* cell = encoder_cell(p, trial, step);
  if (cell == nullptr) return phase;
  const int R = p.model.shape.rank;
  phase.alpha = cell;
  phase.proposal_factor = cell + R * R;
  phase.proposal_log_det = cell[2 * R * R + R];
  return phase;
}

/// The read-out's offset at a cell (math::readout_response): the input currents W_u u_t one to
/// one, B_vᵀ u_t with z_and_v, or null.
__device__ __forceinline__ const float* readout_offset_at(const FilterLaunch& p,
                                                          const math::ParticleModel<float>& model,
                                                          std::size_t cell) {
  if (math::one_to_one(model))
    return p.currents ? p.currents + cell * std::size_t(model.hidden) : nullptr;
  return p.readout_offsets ? p.readout_offsets + cell * std::size_t(model.channels) : nullptr;
}

/// The step's gain term into `gain_term` (rank floats, shared), by thread 0: G (x_t − b) of the
/// optimal proposal, or the encoder's G μ_e; the caller syncs.
__device__ __forceinline__ void gain_term_of(const FilterLaunch& p,
                                             const math::ParticleModel<float>& model, int trial,
                                             int step, float* gain_term) {
  if (!product_step(p, step) || threadIdx.x != 0) return;
  if (const float* cell = encoder_cell(p, trial, step)) {
    for (int r = 0; r < model.rank; ++r) gain_term[r] = cell[2 * model.rank * model.rank + r];
    return;
  }
  const float* observed = p.observations + cell_of(p, trial, step) * model.channels;
  math::gain_observation(phase_at(p, step), model.rank, model.channels, observed,
                         model.readout_bias, gain_term);
}

/// One particle at one step on the lanes of `group`: the transition from `state` (null at step
/// 0: the initial mean), the proposal draw z and the log-weight log w_t (without the carried
/// weight). Every lane returns the same bits as the CPU engine.
template <int Rank>
__device__ float propagate_particle(const FilterLaunch& p, const math::ParticleModel<float>& model,
                                    const float* gain_term, int trial, std::uint32_t trial_id,
                                    int step, int particle, const float* state,
                                    const LaneGroup& group, float* z) {
  constexpr int capacity = Rank > 0 ? Rank : max_rank;
  const int R = model.rank;
  const std::size_t cell = cell_of(p, trial, step);
  float mean[capacity] = {}, xi[capacity] = {}, scratch[capacity] = {};
  if (state == nullptr) {
    for (int r = 0; r < R; ++r) mean[r] = p.initial_mean[std::size_t(trial) * R + r];
  } else {
    float previous[capacity] = {};  // read from global memory once, not once per hidden unit
    for (int r = 0; r < R; ++r) previous[r] = state[r];
    const float* currents =
        p.currents ? p.currents + (cell - 1) * std::size_t(model.hidden) : nullptr;
    math::transition_partial(model, previous, currents, group.lane, group.lanes, scratch);
    for (int r = 0; r < R; ++r) scratch[r] = group_sum(scratch[r], group);
    math::transition_finish(model, previous, scratch, mean);
  }
  math::standard_normals(p.seed, trial_id, std::uint32_t(step), std::uint32_t(particle),
                         math::DrawStream::proposal_noise, R, xi);
  const float proposal_term = math::propose(product_step(p, step), R, step_phase(p, trial, step),
                                            gain_term, mean, xi, scratch, z);
  const float* observed = p.observations + cell * model.channels;
  const float* log_factorial = p.log_factorial ? p.log_factorial + cell * model.channels : nullptr;
  const float* offset = readout_offset_at(p, model, cell);
  const float observation = group_sum(
      math::observation_partial(model, observed, log_factorial, offset, z, group.lane, group.lanes),
      group);
  return proposal_term + observation;
}

using TileReduce = cub::BlockReduce<double, math::weight_tile>;
using TileScan = cub::BlockScan<double, math::weight_tile>;

/// The temporary storage of the tile reductions (one block of math::weight_tile threads).
union TileStorage {
  typename TileReduce::TempStorage reduce;
  typename TileScan::TempStorage scan;
};

struct MaximumIgnoringNan {
  __device__ double operator()(double a, double b) const {
    return math::maximum_ignoring_nan(a, b);
  }
};

/// The per-trial arrays of the tile partials (FilterLaunch::tiles: maximum, total, squares,
/// scale and start, `tiles` each, then the mean sums, tiles × rank).
struct TileArrays {
  double *maximum, *total, *squares, *scale, *start, *mean;
};

__device__ __forceinline__ TileArrays tile_arrays(const FilterLaunch& p, int trial) {
  const int tiles = math::weight_tiles(p.num_particles), R = p.model.shape.rank;
  double* base = p.tiles + std::size_t(trial) * tiles * (5 + R);
  return {
      base, base + tiles, base + 2 * tiles, base + 3 * tiles, base + 4 * tiles, base + 5 * tiles};
}

/// The sums of tile `tile` of a trial's increments x = log W̄_{t−1} + log w_t (math/weights.hpp),
/// thread t taking particle tile · weight_tile + t: the maximum, the local cumulative weights
/// into `cumulative`, their total, Σ exp(2 (x − shift)) and with `particles` Σ exp(x − shift) z.
/// Every thread of the block calls it; it ends with a barrier.
__device__ inline void tile_sums(const FilterLaunch& p, int tile, const double* increments,
                                 const float* particles, double* cumulative,
                                 const TileArrays& arrays, TileStorage& storage,
                                 double* broadcast) {
  const int K = p.num_particles, R = p.model.shape.rank;
  const int k = tile * math::weight_tile + int(threadIdx.x);
  const int last = min(K, (tile + 1) * math::weight_tile) - 1;
  const bool valid = k < K;
  const double x = valid ? increments[k] : -INFINITY;
  const double maximum = TileReduce(storage.reduce).Reduce(x, MaximumIgnoringNan());
  if (threadIdx.x == 0) broadcast[0] = maximum;
  __syncthreads();
  const double shift = math::tile_shift(broadcast[0]);
  const double weight = valid ? math::tile_weight(x, shift) : 0.0;
  double local = 0.0;
  TileScan(storage.scan).InclusiveSum(weight, local);
  if (valid) cumulative[k] = local;
  if (k == last) arrays.total[tile] = local;
  __syncthreads();
  const double squares = TileReduce(storage.reduce).Sum(valid ? math::tile_square(x, shift) : 0.0);
  if (threadIdx.x == 0) {
    arrays.maximum[tile] = broadcast[0];
    arrays.squares[tile] = squares;
  }
  const DeviceRoundedProduct product;
  for (int r = 0; particles != nullptr && r < R; ++r) {
    __syncthreads();
    const double sum =
        TileReduce(storage.reduce)
            .Sum(valid ? product(weight, double(particles[std::size_t(k) * R + r])) : 0.0);
    if (threadIdx.x == 0) arrays.mean[std::size_t(tile) * R + r] = sum;
  }
  __syncthreads();
}

}  // namespace lrsmc::kernels
