// Reverse sweep of the particle filter on the GPU (method.md §3.6, §10.2), one thread block per
// trial, over the paths filter_block_per_trial stored (store_all): particles before
// resampling, normalised log-weights, ancestors and resampling flags of every step. It
// mirrors CpuEngine::backward_trial (host/cpu/cpu_backend.cpp) term by term: the same
// stop-gradient on resampling indices, the same optimal-proposal and carried-weight adjoints;
// proposal noise is drawn again from Philox and hidden-unit currents are recomputed, never
// stored. Each step runs three phases:
//   1. particles (a group of threads per particle, up to a warp when K is small, splitting its
//      hidden units and channels): route the adjoint to ancestors, per-particle adjoints of
//      the weight, the proposal and the transition mean, and d z_{t−1};
//   2. hidden units and channels (threads over i): parameter adjoints summed over particles
//      in index order (each unit and channel belongs to one thread: no atomics);
//   3. small R×R sums in per-thread slots, reduced in thread order at the end.
// Every result is deterministic; products are float like the CPU float path, sums double.
#include <cub/block/block_reduce.cuh>

#include <cmath>

#include "kernels/dispatch.cuh"
#include "kernels/launch_check.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/nonlinearity.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int block_size = backward_block_size;
using BlockReduce = cub::BlockReduce<double, block_size>;

/// Smallest k with values[k] ≥ target in a non-decreasing array (count if none).
__device__ int lower_bound_int(const std::int32_t* values, int count, int target) {
  int low = 0, high = count;
  while (low < high) {
    const int middle = low + (high - low) / 2;
    if (values[middle] < target) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

/// Threads per particle in phase 1: a power of two up to a warp, so that a small K (the EEG
/// setting has K = 10) still keeps every thread busy; groups never straddle a warp.
__device__ int lanes_per_particle(int num_particles) {
  int lanes = 1;
  while (lanes < 32 && 2 * lanes * num_particles <= block_size) lanes *= 2;
  return lanes;
}

/// Sum over the `lanes` threads of a group (xor butterfly: every lane gets bitwise the same
/// total, since each level adds a pair in both orders and float addition commutes).
__device__ float group_sum(float value, int lanes, unsigned mask) {
  for (int offset = lanes / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(mask, value, offset);
  return value;
}

/// Rank > 0 compiles the rank in (kernels/dispatch.cuh: the demo's 2 and the paper's 3), so the
/// per-particle arrays live in registers; Rank = 0 reads it from the launch.
template <int Rank>
__global__ void __launch_bounds__(block_size)
    backward_block_per_trial_kernel(const BackwardLaunch b) {
  constexpr int capacity = Rank > 0 ? Rank : max_rank;
  extern __shared__ float loadings[];  // m (hidden·rank), n (rank·hidden), h (hidden)
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ double broadcast[max_rank + 1];

  const FilterLaunch& p = b.forward;
  const int trial = blockIdx.x;
  const int R = Rank > 0 ? Rank : p.rank, N = p.hidden, K = p.num_particles, D = p.channels, T = p.steps,
            U = b.num_inputs;
  if (p.failed_step[trial] >= 0) return;  // the host reports the failed forward pass
  float* shared_m = loadings;
  float* shared_n = loadings + N * R;
  float* shared_h = shared_n + N * R;
  for (int i = threadIdx.x; i < N * R; i += block_size) {
    shared_m[i] = p.m[i];
    shared_n[i] = p.n[i];
  }
  for (int i = threadIdx.x; i < N; i += block_size) shared_h[i] = p.h[i];

  const std::uint32_t trial_id = p.trial_ids[trial];
  const std::size_t slice = std::size_t(K) * R;
  float* grad_post = b.grad_post + std::size_t(trial) * slice;
  float* grad_next = b.grad_next + std::size_t(trial) * slice;
  float* grad_pre = b.grad_pre + std::size_t(trial) * slice;
  float* grad_mean = b.grad_mean + std::size_t(trial) * slice;
  double* grad_carried = b.grad_carried + std::size_t(trial) * K;
  double* grad_log_weight = b.grad_log_weight + std::size_t(trial) * K;
  const std::int64_t slot_count = backward_slot_count(R);
  double* slots = b.thread_slots + std::size_t(trial) * slot_count * block_size;
  double* accumulator = b.accumulators + std::size_t(trial) * b.offsets.stride;
  const float* particles_all = p.particles + std::size_t(trial) * T * slice;
  const double* log_weights_all = p.log_weights + std::size_t(trial) * T * K;
  const std::int32_t* ancestors_all = p.ancestors + std::size_t(trial) * T * K;
  // Slot v of this thread; slots of one value are contiguous over threads (coalesced).
  const auto slot = [&](std::int64_t v) -> double& { return slots[v * block_size + threadIdx.x]; };
  const std::int64_t slot_factor = 0, slot_proposal = 2 * R * R, slot_product = 4 * R * R,
                     slot_decay = 6 * R * R, slot_initial = 6 * R * R + 1;

  const int thread = int(threadIdx.x);
  // Phase 1 runs particle k on the `lanes` threads of group k (mod groups); lane 0 writes.
  const int lanes = lanes_per_particle(K), lane = thread % lanes, groups = block_size / lanes;
  const unsigned group_mask =
      lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1u) << ((thread % 32) / lanes * lanes);
  for (std::int64_t v = 0; v < slot_count; ++v) slot(v) = 0.0;  // this thread's slots
  for (std::size_t i = threadIdx.x; i < slice; i += block_size) grad_post[i] = 0.f;
  for (int k = threadIdx.x; k < K; k += block_size) grad_carried[k] = 0.0;
  __syncthreads();

  for (int step = T - 1; step >= 0; --step) {
    const bool first = step == 0;
    const int phase = first ? 0 : 1;
    const std::size_t cell = std::size_t(trial) * T + step;
    const std::int32_t* ancestors = ancestors_all + std::size_t(step) * K;
    const double* normalised = log_weights_all + std::size_t(step) * K;
    const bool resampled = p.resampled[cell] != 0;
    const float* particles = particles_all + std::size_t(step) * slice;
    const float* previous_particles = first ? nullptr : particles_all + std::size_t(step - 1) * slice;
    const std::int32_t* previous_ancestors =
        first ? nullptr : ancestors_all + std::size_t(step - 1) * K;
    const float* observed = p.observations + cell * D;
    const float* currents = p.currents && !first ? p.currents + (cell - 1) * std::size_t(N) : nullptr;

    // 1a. Route the adjoint of the post-resampling particles to their ancestors. Systematic
    //     and stratified ancestors (and the identity of a step that did not resample) are
    //     non-decreasing, so the children of j are one range, summed in index order.
    //     Multinomial ancestors are unordered: one thread per rank dimension adds them in
    //     particle order, exactly as the CPU's scatter-add.
    if (resampled && p.resampling == Resampling::multinomial) {
      for (std::size_t i = threadIdx.x; i < slice; i += block_size) grad_pre[i] = 0.f;
      __syncthreads();
      if (thread < R)
        for (int k = 0; k < K; ++k)
          grad_pre[std::size_t(ancestors[k]) * R + thread] += grad_post[std::size_t(k) * R + thread];
    } else {
      for (int j = threadIdx.x; j < K; j += block_size) {
        const int low = lower_bound_int(ancestors, K, j), high = lower_bound_int(ancestors, K, j + 1);
        for (int r = 0; r < R; ++r) {
          float sum = 0.f;
          for (int k = low; k < high; ++k) sum += grad_post[std::size_t(k) * R + r];
          grad_pre[std::size_t(j) * R + r] = sum;
        }
      }
    }
    // 1b. Adjoint of a_t^k = log W̄_{t−1}^k + log w_t^k through c_t = logsumexp_k a_t^k and,
    //     when the step did not resample, through the carried weights log W̄_t = a_t − c_t.
    double carried_total = 0.0;
    if (!resampled) {  // uniform over the block
      double thread_sum = 0.0;
      for (int k = threadIdx.x; k < K; k += block_size) thread_sum += grad_carried[k];
      const double total = BlockReduce(reduce_storage).Sum(thread_sum);
      if (threadIdx.x == 0) broadcast[0] = total;
      __syncthreads();
      carried_total = broadcast[0];
    }
    for (int k = threadIdx.x; k < K; k += block_size) {
      const double softmax = exp(normalised[k]);
      double value = softmax * b.grad_increment;
      if (!resampled) value += grad_carried[k] - softmax * carried_total;
      grad_log_weight[k] = value;
    }
    __syncthreads();  // grad_pre (multinomial: written by other threads), broadcast reuse

    // 1c. Per particle: weight, proposal and transition-mean adjoints, then d z_{t−1}.
    // Per-phase constants chosen with a branch: indexing a kernel parameter's array at run
    // time would copy the whole parameter struct to local memory.
    const float* factor = first ? p.noise_factor[0] : p.noise_factor[1];
    float step_gain_sum[capacity];
    for (int r = 0; r < R; ++r) step_gain_sum[r] = 0.f;
    for (int k = thread / lanes; k < K; k += groups) {  // uniform within a group
      const bool writer = lane == 0;
      const float weight = float(grad_log_weight[k]);
      const float* z = particles + std::size_t(k) * R;
      const float* previous =
          first ? nullptr : previous_particles + std::size_t(previous_ancestors[k]) * R;
      float mean[capacity], xi[capacity], grad_z[capacity], grad_mu[capacity];
      if (first) {
        for (int r = 0; r < R; ++r) mean[r] = p.initial_mean[trial * R + r];
      } else {  // the forward kernel's transition, hidden units split over the lanes
        for (int r = 0; r < R; ++r) mean[r] = 0.f;
        for (int i = lane; i < N; i += lanes) {
          float current = currents ? currents[i] : 0.f;
          for (int r = 0; r < R; ++r) current += shared_m[i * R + r] * previous[r];
          const float rate = math::unit_value(p.nonlinearity, current, shared_h[i]);
          for (int r = 0; r < R; ++r) mean[r] += shared_n[r * N + i] * rate;
        }
        for (int r = 0; r < R; ++r)
          mean[r] = p.decay * previous[r] + group_sum(mean[r], lanes, group_mask);
      }
      // log p(x_t | z): d/dz, channels split over the lanes (parameter adjoints in phase 2).
      for (int r = 0; r < R; ++r) grad_z[r] = 0.f;
      for (int i = lane; i < D; i += lanes) {
        float eta = p.readout_bias[i];
        for (int r = 0; r < R; ++r) eta += p.readout[r * D + i] * z[r];
        const auto link = math::link_response(p.link, eta);
        const float grad_rate =
            p.observation == Observation::gaussian
                ? math::gaussian_term(observed[i], link.rate, p.log_variance[i]).d_mean
                : observed[i] / link.rate - 1.f;
        const float grad_eta = weight * grad_rate * link.slope;
        for (int r = 0; r < R; ++r) grad_z[r] += p.readout[r * D + i] * grad_eta;
      }
      for (int r = 0; r < R; ++r) {
        grad_z[r] = grad_pre[std::size_t(k) * R + r] + group_sum(grad_z[r], lanes, group_mask);
        xi[r] = float(math::standard_normal(p.seed, trial_id, std::uint32_t(step), std::uint32_t(k),
                                            math::DrawStream::proposal_noise, std::uint32_t(r)));
      }
      // Every lane now holds the same z, μ, ξ and dz; only lane 0 adds to slots and writes.
      if (p.optimal) {
        // Transition density −½‖e‖² − Σ ln L_ii, e = L^{-1}(z − μ), f = L^{-T} e:
        // ∂/∂z = −f, ∂/∂μ = f, ∂/∂L = f eᵀ (lower) − diag(1/L_ii); −log q adds 1/L_q,ii.
        const float* proposal_factor = first ? p.proposal_factor[0] : p.proposal_factor[1];
        const float* alpha = first ? p.alpha[0] : p.alpha[1];
        float residual[capacity], scaled[capacity];
        math::whitened_residual(R, factor, z, mean, residual);
        math::whitened_adjoint(R, factor, residual, scaled);
        for (int r = 0; r < R; ++r) {
          grad_z[r] -= weight * scaled[r];
          if (!writer) continue;
          for (int s = 0; s <= r; ++s)
            slot(slot_factor + phase * R * R + r * R + s) += double(weight * scaled[r] * residual[s]);
          slot(slot_factor + phase * R * R + r * R + r) -= double(weight / factor[r * R + r]);
          slot(slot_proposal + phase * R * R + r * R + r) +=
              double(weight / proposal_factor[r * R + r]);
        }
        // z = μ_q + L_q ξ; μ_q = μ + G (x − b − Bᵀμ): dμ = dμ_q − αᵀ dμ_q + f.
        if (writer)
          for (int r = 0; r < R; ++r)
            for (int s = 0; s <= r; ++s)
              slot(slot_proposal + phase * R * R + r * R + s) += double(grad_z[r] * xi[s]);
        for (int r = 0; r < R; ++r) {
          float value = grad_z[r] + weight * scaled[r];
          for (int s = 0; s < R; ++s) value -= alpha[s * R + r] * grad_z[s];
          grad_mu[r] = value;
          if (!writer) continue;
          step_gain_sum[r] += grad_z[r];
          for (int s = 0; s < R; ++s)
            slot(slot_product + phase * R * R + r * R + s) += double(grad_z[r] * mean[s]);
        }
      } else {  // z = μ + L ξ
        for (int r = 0; r < R; ++r) {
          if (writer)
            for (int s = 0; s <= r; ++s)
              slot(slot_factor + phase * R * R + r * R + s) += double(grad_z[r] * xi[s]);
          grad_mu[r] = grad_z[r];
        }
      }
      if (first) {
        if (writer)
          for (int r = 0; r < R; ++r) slot(slot_initial + r) += double(grad_mu[r]);
        continue;
      }
      // μ = a z_{t−1} + n φ(m z_{t−1} + c; h): d z_{t−1}, hidden units split over the lanes
      // (parameter adjoints in phase 2).
      float grad_previous[capacity];
      for (int r = 0; r < R; ++r) grad_previous[r] = 0.f;
      for (int i = lane; i < N; i += lanes) {
        float current = currents ? currents[i] : 0.f;
        for (int r = 0; r < R; ++r) current += shared_m[i * R + r] * previous[r];
        const auto response = math::unit_response(p.nonlinearity, current, shared_h[i]);
        float grad_rate = 0.f;
        for (int r = 0; r < R; ++r) grad_rate += shared_n[r * N + i] * grad_mu[r];
        const float grad_current = grad_rate * response.slope;
        if (grad_current == 0.f) continue;
        for (int r = 0; r < R; ++r) grad_previous[r] += shared_m[i * R + r] * grad_current;
      }
      for (int r = 0; r < R; ++r)
        grad_previous[r] = p.decay * grad_mu[r] + group_sum(grad_previous[r], lanes, group_mask);
      if (!writer) continue;
      for (int r = 0; r < R; ++r) {
        grad_mean[std::size_t(k) * R + r] = grad_mu[r];
        slot(slot_decay) += double(grad_mu[r] * previous[r]);
        grad_next[std::size_t(k) * R + r] = grad_previous[r];
      }
    }
    // dG += (Σ_k dμ_q)(x_t − b)ᵀ and Σ dμ_q, once per step (optimal proposal).
    if (p.optimal) {
      for (int r = 0; r < R; ++r) {
        const double total = BlockReduce(reduce_storage).Sum(double(step_gain_sum[r]));
        if (threadIdx.x == 0) broadcast[r] = total;
        __syncthreads();
      }
      for (int e = threadIdx.x; e < R * D; e += block_size) {
        const int r = e / D, i = e % D;
        accumulator[(first ? b.offsets.gain[0] : b.offsets.gain[1]) + e] +=
            double(float(broadcast[r]) * (observed[i] - p.readout_bias[i]));
      }
      if (thread < R)
        accumulator[(first ? b.offsets.gain_sum[0] : b.offsets.gain_sum[1]) + thread] +=
            double(float(broadcast[thread]));
    }
    __syncthreads();  // grad_mean of every particle is written

    // 2. Parameter adjoints, one thread per hidden unit (steps t ≥ 1) or channel, summing
    //    over particles in index order into this trial's accumulator row.
    const int hidden_units = first ? 0 : N;
    for (int u = threadIdx.x; u < hidden_units + D; u += block_size) {
      if (u < hidden_units) {
        const int i = u;
        double grad_n[capacity], grad_m[capacity];
        for (int r = 0; r < R; ++r) {
          grad_n[r] = accumulator[b.offsets.n + r * N + i];
          grad_m[r] = accumulator[b.offsets.m + i * R + r];
        }
        double grad_h = accumulator[b.offsets.h + i];
        float current_sum = 0.f;
        for (int k = 0; k < K; ++k) {
          const float* previous = previous_particles + std::size_t(previous_ancestors[k]) * R;
          const float* grad_mu = grad_mean + std::size_t(k) * R;
          float current = currents ? currents[i] : 0.f;
          for (int r = 0; r < R; ++r) current += shared_m[i * R + r] * previous[r];
          const auto response = math::unit_response(p.nonlinearity, current, shared_h[i]);
          float grad_rate = 0.f;
          for (int r = 0; r < R; ++r) {
            grad_n[r] += double(grad_mu[r] * response.value);
            grad_rate += shared_n[r * N + i] * grad_mu[r];
          }
          grad_h += double(grad_rate * response.bias_slope);
          const float grad_current = grad_rate * response.slope;
          if (grad_current == 0.f) continue;
          for (int r = 0; r < R; ++r) grad_m[r] += double(grad_current * previous[r]);
          current_sum += grad_current;
        }
        for (int r = 0; r < R; ++r) {
          accumulator[b.offsets.n + r * N + i] = grad_n[r];
          accumulator[b.offsets.m + i * R + r] = grad_m[r];
        }
        accumulator[b.offsets.h + i] = grad_h;
        if (U > 0) {  // X_t = m z + W_u u_{t−1}: dW_u += (Σ_k dX) u_{t−1}ᵀ
          const double* input = b.inputs + (cell - 1) * std::size_t(U);
          for (int j = 0; j < U; ++j)
            accumulator[b.offsets.w_u + i * U + j] += double(current_sum) * input[j];
        }
      } else {
        const int i = u - hidden_units;
        double grad_bias = accumulator[b.offsets.readout_bias + i];
        double grad_noise = b.offsets.observation_noise >= 0
                                ? accumulator[b.offsets.observation_noise + i]
                                : 0.0;
        double grad_readout[capacity];
        for (int r = 0; r < R; ++r) grad_readout[r] = accumulator[b.offsets.readout_weight + r * D + i];
        const float x = observed[i];
        for (int k = 0; k < K; ++k) {
          const float weight = float(grad_log_weight[k]);
          const float* z = particles + std::size_t(k) * R;
          float eta = p.readout_bias[i];
          for (int r = 0; r < R; ++r) eta += p.readout[r * D + i] * z[r];
          const auto link = math::link_response(p.link, eta);
          float grad_rate;
          if (p.observation == Observation::gaussian) {
            const auto term = math::gaussian_term(x, link.rate, p.log_variance[i]);
            grad_rate = term.d_mean;
            grad_noise += double(weight * term.d_log_variance);
          } else {
            grad_rate = x / link.rate - 1.f;
          }
          const float grad_eta = weight * grad_rate * link.slope;
          grad_bias += double(grad_eta);
          for (int r = 0; r < R; ++r) grad_readout[r] += double(grad_eta * z[r]);
        }
        accumulator[b.offsets.readout_bias + i] = grad_bias;
        if (b.offsets.observation_noise >= 0) accumulator[b.offsets.observation_noise + i] = grad_noise;
        for (int r = 0; r < R; ++r) accumulator[b.offsets.readout_weight + r * D + i] = grad_readout[r];
      }
    }
    // Hand the adjoints to step t − 1.
    for (int k = threadIdx.x; k < K; k += block_size) grad_carried[k] = grad_log_weight[k];
    float* swap = grad_post;
    grad_post = grad_next;
    grad_next = swap;
    __syncthreads();
  }

  // 3. Per-thread slots, summed in thread order.
  for (std::int64_t v = threadIdx.x; v < slot_count; v += block_size) {
    double total = 0.0;
    for (int thread = 0; thread < block_size; ++thread) total += slots[v * block_size + thread];
    accumulator[b.offsets.slots_begin + v] += total;
  }
}

__global__ void sum_over_trials_kernel(const double* rows, int trials, std::int64_t stride,
                                       double* total) {
  const std::int64_t v = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= stride) return;
  double sum = 0.0;
  for (int trial = 0; trial < trials; ++trial) sum += rows[std::size_t(trial) * stride + v];
  total[v] = sum;
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    // Clear the last-error state, so that the next launch check (check_launch reads
    // cudaGetLastError) does not report this failure again as its own.
    (void)cudaGetLastError();
    throw CudaError(detail::concat(what, " failed (", cudaGetErrorString(status), ")"));
  }
}

}  // namespace

void backward_block_per_trial(const BackwardLaunch& launch, cudaStream_t stream) {
  const FilterLaunch& p = launch.forward;
  LRSMC_REQUIRE(p.rank >= 1 && p.rank <= max_rank, "cuda backend: rank is out of range; got ",
                p.rank, ", expected 1 to ", max_rank);
  LRSMC_ASSERT(p.store_all && p.resampled && p.failed_step);
  const std::size_t trials = std::size_t(p.trials);
  check(cudaMemsetAsync(launch.accumulators, 0, trials * launch.offsets.stride * sizeof(double), stream),
        "backward: clearing the accumulators");
  const std::size_t shared = filter_shared_bytes(p.rank, p.hidden);
  dispatch_rank(p.rank, [&](auto rank) {
    constexpr int Rank = decltype(rank)::value;
    // Opt in past the default limit, which is 48 KB for static (CUB, broadcast) and dynamic
    // shared memory together: the loadings alone just under 48 KB fail to launch otherwise.
    cudaFuncAttributes attributes{};
    check(cudaFuncGetAttributes(&attributes, backward_block_per_trial_kernel<Rank>),
          "backward: reading the kernel's attributes");
    if (shared + attributes.sharedSizeBytes > 48 * 1024)
      check(cudaFuncSetAttribute(backward_block_per_trial_kernel<Rank>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
            "backward: reserving shared memory for the loadings");
    backward_block_per_trial_kernel<Rank><<<p.trials, block_size, shared, stream>>>(launch);
  });
  check_launch("backward_block_per_trial");
}

void sum_over_trials(const double* rows, int trials, std::int64_t stride, double* total,
                     cudaStream_t stream) {
  constexpr int threads = 256;
  const auto blocks = unsigned((stride + threads - 1) / threads);
  if (blocks == 0) return;
  sum_over_trials_kernel<<<blocks, threads, 0, stream>>>(rows, trials, stride, total);
  check_launch("sum_over_trials");
}

}  // namespace lrsmc::kernels
