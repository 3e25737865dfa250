// Reverse sweep of the particle filter on the GPU (method.md §3.6, §10.2), one thread block per
// trial, over the paths filter_block_per_trial stored (store_all): particles before
// resampling, normalised log-weights, ancestors and resampling flags of every step. It runs
// the CPU engine's backward_trial (host/cpu/cpu_engine.cpp) with the same shared maths in the
// same order: the stop-gradient on resampling indices, the proposals' and the carried weights'
// adjoints; proposal noise is drawn again from Philox and hidden-unit currents are recomputed,
// never stored. Each step runs three phases:
//   1. particles, each on a group of lanes (particle_step.cuh): route the adjoint to the
//      ancestors, the log-weights' adjoints, the per-particle adjoints of the observation, the
//      proposal and the transition, d z_{t−1}, and a record of each particle;
//   2. accumulators (threads over hidden units, channels and named slots): each sums its terms
//      over the particles in index order, as the CPU engine does;
//   3. the optimal proposal's dG entries from the step's Σ dμ_q.
// Every result is deterministic; products are float, sums float64.
#include <cmath>

#include "kernels/device_memory.hpp"
#include "kernels/dispatch.cuh"
#include "kernels/launcher.hpp"
#include "kernels/particle_step.cuh"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/gradient_row.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int block_size = math::particle_block_threads;

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

/// The per-particle records of a step (BackwardLaunch::records), rank values per particle each.
struct Records {
  float *grad_mean, *grad_z, *residual, *scaled, *mean, *xi;
};

__device__ Records records_of(const BackwardLaunch& b, int trial) {
  const std::size_t size = std::size_t(b.forward.num_particles) * b.forward.model.shape.rank;
  float* base = b.records + std::size_t(trial) * 6 * size;
  return {base, base + size, base + 2 * size, base + 3 * size, base + 4 * size, base + 5 * size};
}

/// Slot jobs of a step, in the order threads take them: the noise factor's lower entries, for
/// the optimal proposal L_q's lower entries, Σ dμ_q μᵀ and Σ dμ_q, then the decay (later
/// steps) or Σ dμ_0 (step 0).
struct SlotJobs {
  int lower, proposal, product, gain_sum, last, count;
  __device__ SlotJobs(int rank, bool optimal, bool first) {
    lower = rank * (rank + 1) / 2;
    proposal = optimal ? lower : 0;
    product = optimal ? rank * rank : 0;
    gain_sum = optimal ? rank : 0;
    last = first ? rank : 1;
    count = lower + proposal + product + gain_sum + last;
  }
};

/// A channel's accumulators in phase 2 besides its read-out weights: db_i, dρ_x,i, dg_i (one to
/// one) and, in float as the CPU engine keeps it, Σ_k dy_i (a read-out with an input offset).
struct ChannelTotals {
  double bias = 0.0, log_variance = 0.0, gain = 0.0;
  float offset_sum = 0.f;
};

/// One particle's terms of channel i, as the CPU engine adds them: db, dρ_x and the weights
/// (`grad_weight`: B_z's column, or one to one m's row), then dg and dh (rates), then dy.
template <int Capacity>
__device__ void add_channel_terms(const math::ParticleModel<float>& model, const float* observed,
                                  const float* offset, const float* z, float weight, int i,
                                  ChannelTotals& totals, double (&grad_weight)[Capacity],
                                  double& grad_h) {
  const auto channel = math::channel_adjoint(model, observed, offset, z, weight, i);
  math::add_channel_gradient(channel, z, model.rank, totals.bias, totals.log_variance,
                             grad_weight, 1);
  if (math::one_to_one(model))
    math::add_unit_readout_gradient(channel, model.readout_from == ReadoutFrom::rates,
                                    totals.gain, grad_h);
  if (offset != nullptr) totals.offset_sum += channel.grad_linear;
}

/// (r, s ≤ r) of lower-triangle entry `index` in row order.
__device__ void lower_entry(int index, int& r, int& s) {
  r = 0;
  while ((r + 1) * (r + 2) / 2 <= index) ++r;
  s = index - r * (r + 1) / 2;
}

template <int Rank>
__global__ void __launch_bounds__(block_size)
    backward_block_per_trial_kernel(const BackwardLaunch b) {
  constexpr int capacity = Rank > 0 ? Rank : max_rank;
  extern __shared__ float loadings[];  // m, n, h when they fit
  __shared__ TileStorage storage;
  __shared__ double broadcast[1];
  __shared__ double step_gain_sum[max_rank];

  const FilterLaunch& p = b.forward;
  const int trial = blockIdx.x;
  if (p.failed_step[trial] >= 0) return;  // the host reports the failed forward pass
  const math::ModelShape& shape = p.model.shape;
  const int R = rank_of<Rank>(p), N = shape.hidden, K = p.num_particles, D = shape.channels,
            T = p.steps, U = shape.inputs;
  const math::ParticleModel<float> model = load_model<Rank>(p, loadings);
  const math::ParameterOffsets& offsets = shape.parameters;
  const math::GradientSlots slots(offsets.total, shape.rank, shape.channels);
  const std::uint32_t trial_id = p.trial_ids[trial];
  const std::size_t slice = std::size_t(K) * R;
  float* grad_post = b.grad_post + std::size_t(trial) * slice;
  float* grad_next = b.grad_next + std::size_t(trial) * slice;
  float* grad_pre = b.grad_pre + std::size_t(trial) * slice;
  double* grad_carried = b.grad_carried + std::size_t(trial) * K;
  double* grad_log_weight = b.grad_log_weight + std::size_t(trial) * K;
  double* row = b.rows + std::size_t(trial) * slots.row_size;
  const Records records = records_of(b, trial);
  const float* particles_all = p.particles + std::size_t(trial) * T * slice;
  const double* log_weights_all = p.log_weights + std::size_t(trial) * T * K;
  const std::int32_t* ancestors_all = p.ancestors + std::size_t(trial) * T * K;
  const LaneGroup group = lane_group(int(threadIdx.x), p.lanes);
  const int groups = block_size / p.lanes;
  const DeviceRoundedProduct product;
  for (std::size_t i = threadIdx.x; i < slice; i += block_size) grad_post[i] = 0.f;
  for (int k = threadIdx.x; k < K; k += block_size) grad_carried[k] = 0.0;
  if (p.encoder_cells != nullptr)  // dL_q's upper triangle stays zero; the jobs fill the rest
    for (int i = threadIdx.x; i < encoder_sum_doubles(R); i += block_size)
      b.encoder_sums[std::size_t(trial) * encoder_sum_doubles(R) + i] = 0.0;
  __syncthreads();

  for (int step = T - 1; step >= 0; --step) {
    const bool first = step == 0;
    const int phase_index = math::phase_of(step);
    const math::PhaseConstants<float> phase = step_phase(p, trial, step);
    // The Kalman or encoder product at this step (not in the t_forward steps).
    const bool product_branch = product_step(p, step),
               optimal = shape.optimal && product_branch,
               encoder = encoder_cell(p, trial, step) != nullptr;
    const std::size_t cell = cell_of(p, trial, step);
    const std::int32_t* ancestors = ancestors_all + std::size_t(step) * K;
    const double* normalised = log_weights_all + std::size_t(step) * K;
    const bool resampled = p.resampled[cell] != 0;
    const float* particles = particles_all + std::size_t(step) * slice;
    const float* previous_particles =
        first ? nullptr : particles_all + std::size_t(step - 1) * slice;
    const std::int32_t* previous_ancestors =
        first ? nullptr : ancestors_all + std::size_t(step - 1) * K;
    const float* observed = p.observations + cell * D;
    const float* currents =
        p.currents && !first ? p.currents + (cell - 1) * std::size_t(N) : nullptr;
    const float* readout_offset = readout_offset_at(p, model, cell);

    // 1a. Route the adjoint of the post-resampling particles to their ancestors. Systematic
    //     and stratified ancestors (and the identity of a step that did not resample) are
    //     non-decreasing, so the children of j are one range, summed in index order.
    //     Multinomial ancestors are unordered: one thread per rank dimension adds them in
    //     particle order, exactly as the CPU's scatter-add. So are, on a GPU, systematic ones
    //     whose cumulative weights dipped by a rounding step where CUB's scan trees meet (two
    //     positions in the dip): checked, not assumed.
    bool unordered = false;
    if (resampled) {
      bool descent = false;
      for (int k = threadIdx.x; k + 1 < K; k += block_size)
        descent = descent || ancestors[k] > ancestors[k + 1];
      unordered = __syncthreads_or(descent) != 0;
    }
    if (unordered) {
      for (std::size_t i = threadIdx.x; i < slice; i += block_size) grad_pre[i] = 0.f;
      __syncthreads();
      if (int(threadIdx.x) < R)
        for (int k = 0; k < K; ++k)
          grad_pre[std::size_t(ancestors[k]) * R + threadIdx.x] +=
              grad_post[std::size_t(k) * R + threadIdx.x];
    } else {
      for (int j = threadIdx.x; j < K; j += block_size) {
        const int low = lower_bound_int(ancestors, K, j),
                  high = lower_bound_int(ancestors, K, j + 1);
        for (int r = 0; r < R; ++r) {
          float sum = 0.f;
          for (int k = low; k < high; ++k) sum += grad_post[std::size_t(k) * R + r];
          grad_pre[std::size_t(j) * R + r] = sum;
        }
      }
    }
    // 1b. The log-weights' adjoints (math::log_weight_adjoint); without resampling the carried
    //     weights' adjoints are summed tile by tile, as the CPU engine sums them.
    double carried_total = 0.0;
    if (!resampled) {  // uniform over the block
      for (int tile = 0; tile * math::weight_tile < K; ++tile) {
        const int k = tile * math::weight_tile + int(threadIdx.x);
        const double sum = TileReduce(storage.reduce).Sum(k < K ? grad_carried[k] : 0.0);
        if (threadIdx.x == 0) broadcast[0] = tile == 0 ? sum : broadcast[0] + sum;
        __syncthreads();
      }
      carried_total = broadcast[0];
    }
    for (int k = threadIdx.x; k < K; k += block_size)
      grad_log_weight[k] = math::log_weight_adjoint(normalised[k], b.grad_increment, resampled,
                                                    grad_carried[k], carried_total, product);
    __syncthreads();  // grad_pre (multinomial: other threads'), grad_log_weight

    // 1c. Per particle, on the lanes of its group.
    for (int k = int(threadIdx.x) / p.lanes; k < K; k += groups) {  // uniform within a group
      const float weight = float(grad_log_weight[k]);
      const float* z = particles + std::size_t(k) * R;
      float previous[capacity] = {}, mean[capacity], xi[capacity], partial[capacity],
            grad_z[capacity], residual[capacity] = {}, scaled[capacity] = {}, grad_mean[capacity],
            grad_previous[capacity] = {};
      if (first) {
        for (int r = 0; r < R; ++r) mean[r] = p.initial_mean[std::size_t(trial) * R + r];
      } else {  // the forward kernels' transition, bit for bit
        const float* state = previous_particles + std::size_t(previous_ancestors[k]) * R;
        for (int r = 0; r < R; ++r) previous[r] = state[r];
        math::transition_partial(model, previous, currents, group.lane, group.lanes, partial);
        for (int r = 0; r < R; ++r) partial[r] = group_sum(partial[r], group);
        math::transition_finish(model, previous, partial, mean);
      }
      math::standard_normals(p.seed, trial_id, std::uint32_t(step), std::uint32_t(k),
                             math::DrawStream::proposal_noise, R, xi);
      math::observation_adjoint_partial(model, observed, readout_offset, z, weight, group.lane,
                                        group.lanes, partial);
      for (int r = 0; r < R; ++r)
        grad_z[r] = grad_pre[std::size_t(k) * R + r] + group_sum(partial[r], group);
      math::propose_adjoint(product_branch, R, phase, z, mean, weight,
                            math::ProposalRecord<float>{grad_z, residual, scaled}, grad_mean);
      if (!first) {
        math::transition_adjoint_partial(model, previous, currents, grad_mean, group.lane,
                                         group.lanes, partial);
        for (int r = 0; r < R; ++r) partial[r] = group_sum(partial[r], group);
        math::transition_adjoint_finish(model, grad_mean, partial, grad_previous);
      }
      if (group.lane != 0) continue;  // every lane holds the same values; lane 0 writes
      for (int r = 0; r < R; ++r) {
        const std::size_t at = std::size_t(k) * R + r;
        records.grad_mean[at] = grad_mean[r];
        records.grad_z[at] = grad_z[r];
        records.residual[at] = residual[r];
        records.scaled[at] = scaled[r];
        records.mean[at] = mean[r];
        records.xi[at] = xi[r];
        if (!first) grad_next[at] = grad_previous[r];
      }
    }
    __syncthreads();

    // 2. Accumulators, each summing over the particles in index order: hidden units (later
    //    steps), channels, then the slots. One to one, channel i's weights are unit i's row of m
    //    (and rates add to h_i): at later steps unit i's job takes channel i's terms too, per
    //    particle the channel's before the unit's, as the CPU engine adds them.
    const bool one_to_one = math::one_to_one(model);
    const int units = first ? 0 : N;
    const int channels = one_to_one && !first ? 0 : D;
    const SlotJobs jobs(R, product_branch, first);
    // The encoder proposal's sums of the step (its constants change every step): Σ dμ_q μᵀ,
    // dL_q and Σ dμ_q, each from zero, for the step's constants' adjoint below.
    double* encoder_sums =
        encoder ? b.encoder_sums + std::size_t(trial) * encoder_sum_doubles(R) : nullptr;
    // The read-out's input offset at this step: dW_u (one to one) or dB_v += (Σ_k dy) u_tᵀ.
    const double* step_input =
        readout_offset != nullptr ? b.inputs + cell * std::size_t(U) : nullptr;
    const auto add_offset_terms = [&](int i, const ChannelTotals& channel) {
      if (step_input == nullptr) return;
      for (int j = 0; j < U; ++j) {
        const std::int64_t slot = one_to_one ? offsets.w_u + std::int64_t(i) * U + j
                                             : offsets.readout_weight + std::int64_t(j) * D + i;
        row[slot] += product(double(channel.offset_sum), step_input[j]);
      }
    };
    const auto load_channel = [&](int i) {
      ChannelTotals channel;
      channel.bias = row[offsets.readout_bias + i];
      if (offsets.observation_noise >= 0) channel.log_variance = row[offsets.observation_noise + i];
      if (offsets.readout_gain >= 0) channel.gain = row[offsets.readout_gain + i];
      return channel;
    };
    const auto store_channel = [&](int i, const ChannelTotals& channel) {
      row[offsets.readout_bias + i] = channel.bias;
      if (offsets.observation_noise >= 0) row[offsets.observation_noise + i] = channel.log_variance;
      if (offsets.readout_gain >= 0) row[offsets.readout_gain + i] = channel.gain;
      add_offset_terms(i, channel);
    };
    const std::int64_t latent_weight = math::latent_readout_weight(shape);
    for (int u = threadIdx.x; u < units + channels + jobs.count; u += block_size) {
      if (u < units) {
        const int i = u;
        double grad_n[capacity], grad_m[capacity];
        for (int r = 0; r < R; ++r) {
          grad_n[r] = row[offsets.n + r * N + i];
          grad_m[r] = row[offsets.m + i * R + r];
        }
        double grad_h = row[offsets.h + i];
        ChannelTotals channel = one_to_one ? load_channel(i) : ChannelTotals{};
        float current_sum = 0.f;
        for (int k = 0; k < K; ++k) {
          if (one_to_one)
            add_channel_terms(model, observed, readout_offset, particles + std::size_t(k) * R,
                              float(grad_log_weight[k]), i, channel, grad_m, grad_h);
          const float* previous = previous_particles + std::size_t(previous_ancestors[k]) * R;
          const float* grad_mean = records.grad_mean + std::size_t(k) * R;
          const auto unit = math::unit_adjoint(model, previous, currents, grad_mean, i);
          current_sum +=
              math::add_unit_gradient(unit, grad_mean, previous, R, grad_n, 1, grad_h, grad_m);
        }
        for (int r = 0; r < R; ++r) {
          row[offsets.n + r * N + i] = grad_n[r];
          row[offsets.m + i * R + r] = grad_m[r];
        }
        row[offsets.h + i] = grad_h;
        if (one_to_one) store_channel(i, channel);
        if (U > 0) {  // X_t = m z + W_u u_{t−1}: dW_u += (Σ_k dX) u_{t−1}ᵀ
          const double* input = b.inputs + (cell - 1) * std::size_t(U);
          for (int j = 0; j < U; ++j)
            row[offsets.w_u + i * U + j] += product(double(current_sum), input[j]);
        }
      } else if (u < units + channels) {
        const int i = u - units;
        ChannelTotals channel = load_channel(i);
        double grad_weight[capacity], grad_h = one_to_one ? row[offsets.h + i] : 0.0;
        for (int r = 0; r < R; ++r)
          grad_weight[r] = one_to_one ? row[offsets.m + i * R + r] : row[latent_weight + r * D + i];
        for (int k = 0; k < K; ++k)
          add_channel_terms(model, observed, readout_offset, particles + std::size_t(k) * R,
                            float(grad_log_weight[k]), i, channel, grad_weight, grad_h);
        for (int r = 0; r < R; ++r) {
          if (one_to_one)
            row[offsets.m + i * R + r] = grad_weight[r];
          else
            row[latent_weight + r * D + i] = grad_weight[r];
        }
        if (one_to_one) row[offsets.h + i] = grad_h;
        store_channel(i, channel);
      } else {
        int job = u - units - channels, r = 0, s = 0;
        std::int64_t at = 0;
        int kind = 0;  // 0 factor, 1 L_q, 2 Σ dμ_q μᵀ, 3 Σ dμ_q, 4 decay, 5 Σ dμ_0
        if (job < jobs.lower) {
          lower_entry(job, r, s);
          at = slots.factor[phase_index] + r * R + s;
        } else if ((job -= jobs.lower) < jobs.proposal) {
          kind = 1;
          lower_entry(job, r, s);
          at = slots.proposal_factor[phase_index] + r * R + s;
        } else if ((job -= jobs.proposal) < jobs.product) {
          kind = 2;
          r = job / R;
          s = job % R;
          at = slots.mean_product[phase_index] + r * R + s;
        } else if ((job -= jobs.product) < jobs.gain_sum) {
          kind = 3;
          r = job;
          at = slots.gain_sum[phase_index] + r;
        } else {
          job -= jobs.gain_sum;
          kind = first ? 5 : 4;
          r = job;
          at = first ? slots.initial_mean + r : slots.decay;
        }
        // At an encoder step kinds 1 to 3 go into the step's sums, from zero; else the row's slot.
        const bool encoder_sum = encoder && kind >= 1 && kind <= 3;
        double* target = row + at;
        if (encoder_sum)
          target = encoder_sums +
                   (kind == 1 ? R * R + r * R + s : kind == 2 ? r * R + s : 2 * R * R + r);
        double value = encoder_sum || kind == 3 ? 0.0 : *target;
        for (int k = 0; k < K; ++k) {
          const std::size_t particle = std::size_t(k) * R;
          const float weight = float(grad_log_weight[k]);
          switch (kind) {
            case 0:
              value += math::factor_adjoint_term(product_branch, R, phase, weight,
                                                 records.grad_z + particle, records.xi + particle,
                                                 records.residual + particle,
                                                 records.scaled + particle, r, s);
              break;
            case 1:
              value += math::proposal_factor_adjoint_term(
                  R, phase, weight, records.grad_z + particle, records.xi + particle, r, s);
              break;
            case 2:
              value +=
                  math::mean_product_term(records.grad_z + particle, records.mean + particle, r, s);
              break;
            case 3:
              value += double(records.grad_z[particle + r]);
              break;
            case 4:
              value += math::decay_adjoint_term(
                  R, records.grad_mean + particle,
                  previous_particles + std::size_t(previous_ancestors[k]) * R);
              break;
            default:
              value += double(records.grad_mean[particle + r]);
              break;
          }
        }
        if (encoder_sum) {
          *target = value;
        } else if (kind == 3) {  // Σ_k dμ_q of the step: its slot, and dG below
          step_gain_sum[r] = value;
          row[at] += value;
        } else {
          row[at] = value;
        }
      }
    }
    __syncthreads();  // step_gain_sum, encoder_sums
    // 3. The encoder proposal: the adjoint of the step's constants (the CPU engine's order: after
    //    the particles' terms, dL adds to the prior factor's slot), into the cell's adjoints of
    //    the encoder's mean and variance.
    if (encoder && threadIdx.x == 0) {
      const std::size_t own = (std::size_t(trial) * p.data_steps + step) * R;
      const double* values = b.encoder_products + (std::size_t(trial) * p.data_steps + step) *
                                                      std::size_t(encoder_product_doubles(R));
      const math::GaussianProductView product{values,         values + R * R,
                                              values + 2 * R * R, values + 3 * R * R,
                                              values + 4 * R * R, values + 5 * R * R};
      double* scratch =
          b.encoder_scratch + std::size_t(trial) * math::encoder_step_scratch_size(R);
      const double* sums = encoder_sums;  // Σ dμ_q μᵀ, dL_q (lower triangle), Σ dμ_q
      double* prior_factor = encoder_sums + 2 * R * R + R;
      for (int i = 0; i < R * R; ++i) prior_factor[i] = 0.0;
      for (int r = 0; r < R; ++r) {
        b.grad_encoder_mean[own + r] = 0.0;
        b.grad_encoder_variance[own + r] = 0.0;
      }
      const math::ConstantsLayout layout(shape);
      math::encoder_step_constants_backward(
          R, p.model.constants + layout.factor[phase_index], b.encoder_mean + own,
          b.encoder_variance + own, product, sums, sums + 2 * R * R, sums + R * R, prior_factor,
          b.grad_encoder_mean + own, b.grad_encoder_variance + own, scratch);
      for (int i = 0; i < R * R; ++i) row[slots.factor[phase_index] + i] += prior_factor[i];
    }
    // 4. dG += (Σ_k dμ_q)(x_t − b)ᵀ, once per step (optimal proposal).
    if (optimal)
      for (int e = threadIdx.x; e < R * D; e += block_size) {
        const int r = e / D, i = e % D;
        row[slots.gain[phase_index] + e] +=
            math::gain_adjoint_term(step_gain_sum[r], observed[i], model.readout_bias[i], product);
      }
    // Hand the adjoints to step t − 1.
    for (int k = threadIdx.x; k < K; k += block_size) grad_carried[k] = grad_log_weight[k];
    float* swap = grad_post;
    grad_post = grad_next;
    grad_next = swap;
    __syncthreads();
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

}  // namespace

std::size_t backward_static_shared_bytes() {
  return static_shared_bytes(reinterpret_cast<const void*>(backward_block_per_trial_kernel<0>));
}

void backward_block_per_trial(const BackwardLaunch& launch, cudaStream_t stream) {
  const FilterLaunch& p = launch.forward;
  const math::ModelShape& shape = p.model.shape;
  LRSMC_REQUIRE(shape.rank >= 1 && shape.rank <= max_rank,
                "cuda backend: rank is out of range; got ", shape.rank, ", expected 1 to ",
                max_rank);
  LRSMC_ASSERT(p.store_all && p.resampled && p.failed_step);
  LRSMC_ASSERT(p.data_steps >= 1 && p.data_steps <= p.steps);
  const math::GradientSlots slots(shape.parameters.total, shape.rank, shape.channels);
  LRSMC_CUDA_CHECK(cudaMemsetAsync(
      launch.rows, 0, std::size_t(p.trials) * slots.row_size * sizeof(double), stream));
  LaunchShape launch_shape;
  launch_shape.grid = dim3(unsigned(p.trials));
  launch_shape.block = dim3(block_size);
  launch_shape.shared = loadings_shared_bytes(shape, p.model.loadings_in_shared);
  dispatch_rank(shape.rank, [&](auto rank) {
    launch_kernel("backward_block_per_trial",
                  backward_block_per_trial_kernel<decltype(rank)::value>, launch_shape, stream,
                  launch);
  });
}

void sum_over_trials(const double* rows, int trials, std::int64_t stride, double* total,
                     cudaStream_t stream) {
  constexpr int threads = 256;
  LaunchShape shape;
  shape.grid = dim3(unsigned((stride + threads - 1) / threads));
  shape.block = dim3(threads);
  if (shape.grid.x == 0) return;
  launch_kernel("sum_over_trials", sum_over_trials_kernel, shape, stream, rows, trials, stride,
                total);
}

}  // namespace lrsmc::kernels
