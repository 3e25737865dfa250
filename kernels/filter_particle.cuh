// Device-only: the per-particle step of the forward filter (method.md §1.1, §1.7, §3.2, §3.4),
// shared by both regimes (filter_block_per_trial.cu, filter_many_particles.cu) so that they
// compute bit-identical particles and log-weights for the same ancestor and draws.
#pragma once

#include <cstdint>

#include "kernels/launch.hpp"
#include "lrsmc/math/nonlinearity.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc::kernels {

/// The model's loadings in shared memory: m (hidden·rank), n (rank·hidden), h (hidden).
struct SharedLoadings {
  const float* m;
  const float* n;
  const float* h;
};

/// Copies m, n, h into `shared` (filter_shared_bytes(rank, hidden) bytes); the caller syncs.
__device__ inline SharedLoadings load_loadings(const FilterLaunch& p, float* shared) {
  const int size = p.hidden * p.rank;
  float* shared_m = shared;
  float* shared_n = shared + size;
  float* shared_h = shared_n + size;
  for (int i = int(threadIdx.x); i < size; i += int(blockDim.x)) {
    shared_m[i] = p.m[i];
    shared_n[i] = p.n[i];
  }
  for (int i = int(threadIdx.x); i < p.hidden; i += int(blockDim.x)) shared_h[i] = p.h[i];
  return {shared_m, shared_n, shared_h};
}

/// The rank as the kernel sees it: a compile-time constant in the specialisations that
/// kernels/dispatch.cuh selects (per-particle arrays then live in registers), else the
/// run-time rank (Rank = 0; the arrays, indexed at run time, live in local memory).
template <int Rank>
__device__ __forceinline__ int rank_of(const FilterLaunch& p) {
  return Rank > 0 ? Rank : p.rank;
}

/// values[phase] for a two-entry array in the kernel's parameters, selected without indexing
/// at run time (which would copy the whole parameter struct to local memory).
template <typename T>
__device__ __forceinline__ T by_phase(const T (&values)[2], int phase) {
  return phase == 0 ? values[0] : values[1];
}

/// log p(x | z) for one particle (method.md §1.7).
template <int Rank>
__device__ inline float observation_log_likelihood(const FilterLaunch& p, const float* observed,
                                                   const float* log_factorial, const float* z) {
  const int R = rank_of<Rank>(p);
  float total = 0.f;
  for (int i = 0; i < p.channels; ++i) {
    float eta = p.readout_bias[i];
    for (int r = 0; r < R; ++r) eta += p.readout[r * p.channels + i] * z[r];
    const auto link = math::link_response(p.link, eta);
    if (p.observation == Observation::gaussian) {
      total += math::gaussian_term(observed[i], link.rate, p.log_variance[i]).log_density;
    } else {
      total += math::poisson_log_probability(observed[i], link.rate, log_factorial[i]);
    }
  }
  return total;
}

/// One particle at one step: transition from `state` (null at step 0: the initial mean),
/// proposal draw z and its incremental log-weight log w_t (without the carried weight).
/// Writes z (rank values) and returns log w_t.
template <int Rank>
__device__ inline float propagate_particle(const FilterLaunch& p, const SharedLoadings& loadings,
                                           int trial, std::uint32_t trial_id, int step,
                                           int particle, const float* state, float* z) {
  const int R = rank_of<Rank>(p), N = p.hidden;
  const int phase = step == 0 ? 0 : 1;
  const std::size_t cell = std::size_t(trial) * p.steps + step;
  const float* observed = p.observations + cell * p.channels;
  const float* log_factorial = p.log_factorial ? p.log_factorial + cell * p.channels : nullptr;
  const float* currents =
      p.currents && step > 0 ? p.currents + (cell - 1) * std::size_t(N) : nullptr;
  const float* factor = by_phase(p.noise_factor, phase);
  float mean[max_rank], xi[max_rank];
  if (state == nullptr) {
    for (int r = 0; r < R; ++r) mean[r] = p.initial_mean[trial * R + r];
  } else {
    // μ = a z + n φ(m z + W_u u; h), method.md §1.1. The state is read from global memory
    // once, not once per hidden unit.
    float previous[max_rank];
    for (int r = 0; r < R; ++r) {
      previous[r] = state[r];
      mean[r] = p.decay * previous[r];
    }
    for (int i = 0; i < N; ++i) {
      float current = currents ? currents[i] : 0.f;
      for (int r = 0; r < R; ++r) current += loadings.m[i * R + r] * previous[r];
      const float rate = math::unit_value(p.nonlinearity, current, loadings.h[i]);
      for (int r = 0; r < R; ++r) mean[r] += loadings.n[r * N + i] * rate;
    }
  }
  for (int r = 0; r < R; ++r)
    xi[r] = float(math::standard_normal(p.seed, trial_id, std::uint32_t(step),
                                        std::uint32_t(particle), math::DrawStream::proposal_noise,
                                        std::uint32_t(r)));
  float log_weight = 0.f;
  if (p.optimal) {
    // μ_q = (I − α) μ + G (x − b); z = μ_q + L_q ξ (method.md §3.4).
    const float* gain = by_phase(p.gain, phase);
    const float* alpha = by_phase(p.alpha, phase);
    const float* proposal_factor = by_phase(p.proposal_factor, phase);
    float proposal_mean[max_rank];
    for (int r = 0; r < R; ++r) {
      float value = mean[r];
      for (int i = 0; i < p.channels; ++i)
        value += gain[r * p.channels + i] * (observed[i] - p.readout_bias[i]);
      for (int s = 0; s < R; ++s) value -= alpha[r * R + s] * mean[s];
      proposal_mean[r] = value;
    }
    float squared = 0.f, noise_squared = 0.f, residual[max_rank];
    for (int r = 0; r < R; ++r) {
      float value = proposal_mean[r];
      for (int s = 0; s <= r; ++s) value += proposal_factor[r * R + s] * xi[s];
      z[r] = value;
    }
    for (int r = 0; r < R; ++r) {
      float value = z[r] - mean[r];
      for (int s = 0; s < r; ++s) value -= factor[r * R + s] * residual[s];
      residual[r] = value / factor[r * R + r];
      squared += residual[r] * residual[r];
      noise_squared += xi[r] * xi[r];
    }
    log_weight = -0.5f * squared - by_phase(p.noise_log_det, phase) + 0.5f * noise_squared +
                 by_phase(p.proposal_log_det, phase);
  } else {
    for (int r = 0; r < R; ++r) {
      float value = mean[r];
      for (int s = 0; s <= r; ++s) value += factor[r * R + s] * xi[s];
      z[r] = value;
    }
  }
  return log_weight + observation_log_likelihood<Rank>(p, observed, log_factorial, z);
}

}  // namespace lrsmc::kernels
