// The low-rank transition of one particle, μ = a z + n φ(m z + c; h) (method.md §1.1), and its
// adjoint, written once for every engine: the CPU engines (float64 reference, float) and the
// CUDA kernels. Sums over hidden units and channels are split over `lanes` partial sums
// (lane l takes units l, l + lanes, …) that are combined in the order of a warp-shuffle
// butterfly, so that a GPU running a particle on a group of lanes and a CPU running the lanes
// one after another compute the same bits.
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/nonlinearity.hpp"

namespace lrsmc::math {

/// What the particle step reads of the model, in the working precision (pointers to plain
/// arrays, host or device memory as the engine runs). Paper symbols: method.md §1.1, §1.7.
template <typename Scalar>
struct ParticleModel {
  int rank = 0, hidden = 0, channels = 0;
  Nonlinearity nonlinearity = Nonlinearity::relu;
  Observation observation = Observation::gaussian;
  Link link = Link::identity;
  ReadoutFrom readout_from = ReadoutFrom::z;
  Scalar decay = 0;                      ///< a
  const Scalar* m = nullptr;             ///< (hidden, rank)
  const Scalar* n = nullptr;             ///< (rank, hidden)
  const Scalar* h = nullptr;             ///< (hidden)
  const Scalar* readout = nullptr;       ///< B (rank, channels), the rows acting on z
  const Scalar* readout_gain = nullptr;  ///< g (channels), one-to-one read-outs
  const Scalar* readout_bias = nullptr;  ///< b (channels)
  const Scalar* log_variance = nullptr;  ///< ρ_x (channels), Gaussian observations only
};

/// Threads of the GPU block that runs a trial's particles, and the largest lane group.
constexpr int particle_block_threads = 256;
constexpr int max_lanes_per_particle = 32;

/// Lanes that split one particle's sums: the largest power of two up to a warp with
/// lanes · K ≤ particle_block_threads, so that a few particles (the paper trains with K = 10)
/// still keep a block's threads busy; 1 from K = 129 on. Every engine uses this split, so the
/// summation order, and with it every bit of the result, depends on K only.
LRSMC_HD int lanes_per_particle(int num_particles) {
  int lanes = 1;
  while (lanes < max_lanes_per_particle && 2 * lanes * num_particles <= particle_block_threads)
    lanes *= 2;
  return lanes;
}

/// Combines `lanes` partial sums of `width` values each (values[lane · width + j]) into
/// values[0 … width), in the order of the butterfly `value += shfl_xor(value, offset)` for
/// offset = lanes/2, …, 1: at each level lane l < offset adds lane l + offset. The kernels run
/// the butterfly with warp shuffles (every lane ends with lane 0's bits, since each level adds
/// the same two numbers in either order).
template <typename Scalar>
LRSMC_HD void butterfly_sum(Scalar* values, int lanes, int width) {
  for (int offset = lanes / 2; offset > 0; offset /= 2)
    for (int lane = 0; lane < offset; ++lane)
      for (int j = 0; j < width; ++j)
        values[lane * width + j] += values[(lane + offset) * width + j];
}

/// X_i = c_i + Σ_r m_ir z_r, the input current of hidden unit i (`currents` may be null).
template <typename Scalar, typename Value>
LRSMC_HD Value unit_current(const ParticleModel<Scalar>& model, const Value* previous,
                            const Scalar* currents, int i) {
  Value current = currents ? Value(currents[i]) : Value(0);
  for (int r = 0; r < model.rank; ++r) current += model.m[i * model.rank + r] * previous[r];
  return current;
}

/// Adds unit i's term n_i φ(X_i; h_i) to a partial sum of the transition (rank values).
template <typename Scalar, typename Value>
LRSMC_HD void add_unit_rate(const ParticleModel<Scalar>& model, const Value* previous,
                            const Scalar* currents, int i, Value* partial) {
  const Value rate =
      unit_value(model.nonlinearity, unit_current(model, previous, currents, i), model.h[i]);
  for (int r = 0; r < model.rank; ++r) partial[r] += model.n[r * model.hidden + i] * rate;
}

/// Lane `lane`'s part of Σ_i n_i φ(X_i; h_i) (rank values), over units lane, lane + lanes, …
template <typename Scalar>
LRSMC_HD void transition_partial(const ParticleModel<Scalar>& model, const Scalar* previous,
                                 const Scalar* currents, int lane, int lanes, Scalar* partial) {
  for (int r = 0; r < model.rank; ++r) partial[r] = Scalar(0);
  for (int i = lane; i < model.hidden; i += lanes)
    add_unit_rate(model, previous, currents, i, partial);
}

/// μ = a z + Σ_i n_i φ(X_i; h_i), given the lanes' combined sum.
template <typename Scalar, typename Value>
LRSMC_HD void transition_finish(const ParticleModel<Scalar>& model, const Value* previous,
                                const Value* summed, Value* mean) {
  for (int r = 0; r < model.rank; ++r) mean[r] = model.decay * previous[r] + summed[r];
}

/// The transition mean on one thread: every lane's part in one pass over the units (unit i
/// into lane i mod lanes, in order: transition_partial's sums), the butterfly, the finish.
/// `scratch` holds lanes · rank values.
template <typename Scalar, typename Value>
LRSMC_HD void transition_mean(const ParticleModel<Scalar>& model, const Value* previous,
                              const Scalar* currents, int lanes, Value* scratch, Value* mean) {
  for (int j = 0; j < lanes * model.rank; ++j) scratch[j] = Value(0);
  for (int i = 0; i < model.hidden; ++i)
    add_unit_rate(model, previous, currents, i, scratch + (i % lanes) * model.rank);
  butterfly_sum(scratch, lanes, model.rank);
  transition_finish(model, previous, scratch, mean);
}

/// One hidden unit in the reverse sweep: its rate φ and slopes at the particle's ancestor, and
/// the adjoints dr_i = Σ_r n_ri dμ_r and dX_i = dr_i ∂φ/∂X.
template <typename Value>
struct UnitAdjoint {
  Value rate;
  Value bias_slope;    ///< ∂φ/∂h
  Value grad_rate;     ///< dr_i
  Value grad_current;  ///< dX_i
};

template <typename Scalar, typename Value>
LRSMC_HD UnitAdjoint<Value> unit_adjoint(const ParticleModel<Scalar>& model, const Value* previous,
                                         const Scalar* currents, const Value* grad_mean, int i) {
  const auto response =
      unit_response(model.nonlinearity, unit_current(model, previous, currents, i), model.h[i]);
  Value grad_rate = Value(0);
  for (int r = 0; r < model.rank; ++r) grad_rate += model.n[r * model.hidden + i] * grad_mean[r];
  return {response.value, response.bias_slope, grad_rate, grad_rate * response.slope};
}

/// Adds unit i's term m_i dX_i to a partial sum of the ancestor's adjoint (nothing for dX_i = 0).
template <typename Scalar, typename Value>
LRSMC_HD void add_current_adjoint(const ParticleModel<Scalar>& model, int i, Value grad_current,
                                  Value* partial) {
  if (is_zero(grad_current)) return;
  for (int r = 0; r < model.rank; ++r) partial[r] += model.m[i * model.rank + r] * grad_current;
}

/// Lane `lane`'s part of Σ_i m_i dX_i, the adjoint of the ancestor through the currents.
template <typename Scalar>
LRSMC_HD void transition_adjoint_partial(const ParticleModel<Scalar>& model, const Scalar* previous,
                                         const Scalar* currents, const Scalar* grad_mean, int lane,
                                         int lanes, Scalar* partial) {
  for (int r = 0; r < model.rank; ++r) partial[r] = Scalar(0);
  for (int i = lane; i < model.hidden; i += lanes)
    add_current_adjoint(
        model, i, unit_adjoint(model, previous, currents, grad_mean, i).grad_current, partial);
}

/// dz_{t−1} = a dμ + Σ_i m_i dX_i, given the lanes' combined sum.
template <typename Scalar, typename Value>
LRSMC_HD void transition_adjoint_finish(const ParticleModel<Scalar>& model, const Value* grad_mean,
                                        const Value* summed, Value* grad_previous) {
  for (int r = 0; r < model.rank; ++r) grad_previous[r] = model.decay * grad_mean[r] + summed[r];
}

/// Adds one particle's terms of unit i to the parameter gradients (accumulate()): dn_ri += dμ_r
/// φ_i, dh_i += dr_i ∂φ/∂h, dm_ir += dX_i z_r (skipped when dX_i = 0), and returns dX_i for the
/// input weights. `grad_n` is strided by `n_stride`.
template <typename Value, typename Total>
LRSMC_HD Value add_unit_gradient(const UnitAdjoint<Value>& unit, const Value* grad_mean,
                                 const Value* previous, int rank, Total* grad_n,
                                 std::int64_t n_stride, Total& grad_h, Total* grad_m) {
  for (int r = 0; r < rank; ++r) accumulate(grad_n[r * n_stride], grad_mean[r] * unit.rate);
  accumulate(grad_h, unit.grad_rate * unit.bias_slope);
  if (is_zero(unit.grad_current)) return unit.grad_current;
  for (int r = 0; r < rank; ++r) accumulate(grad_m[r], unit.grad_current * previous[r]);
  return unit.grad_current;
}

}  // namespace lrsmc::math
