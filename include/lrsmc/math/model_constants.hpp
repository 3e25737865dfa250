// The per-call constants of the particle filter, built once by every engine from the flat
// float64 parameters (method.md §1.3, §1.5, §1.6, §3.4): the decay, the noise factors and their
// log-determinants, the optimal proposal's Kalman quantities (gain, α, L_q), the Cholesky factor
// of mᵀm for the initial mean, and the working-precision copy the particle step reads; the input
// currents and initial means of each trial; and the adjoints of all of them, which finish a
// reverse sweep's gradient. The CPU engines call these on the host, the CUDA backend in one
// small kernel, so the R×R algebra exists once. Constants and adjoints are float64.
#pragma once

#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "lrsmc/math/gaussian_product.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "lrsmc/math/proposal.hpp"
#include "lrsmc/math/small_matrix.hpp"

namespace lrsmc::math {

/// Offsets of the parameter blocks in the flat float64 vector (lrsmc::ParameterLayout's),
/// −1 when absent.
struct ParameterOffsets {
  std::int64_t m = -1, n = -1, h = -1, w_u = -1, decay_logit = -1, z_init = -1,
               transition_noise = -1, initial_noise = -1, readout_weight = -1, readout_gain = -1,
               readout_bias = -1, observation_noise = -1;
  /// The parameters the particle engines differentiate: every block but the encoder's, which
  /// follow them in the flat vector (its gradient comes from the encoder's own backward pass).
  std::int64_t total = 0;
};

/// Sizes, kinds and parameter offsets of a model as the engines read them.
struct ModelShape {
  int rank = 0, hidden = 0, channels = 0, inputs = 0;
  Nonlinearity nonlinearity = Nonlinearity::relu;
  Observation observation = Observation::gaussian;
  Link link = Link::identity;
  ReadoutFrom readout_from = ReadoutFrom::z;
  NoiseType noise[2] = {NoiseType::full, NoiseType::full};  ///< [0] Σ_z0, [1] Σ_z
  bool optimal = false;                                     ///< optimal-proposal constants
  ParameterOffsets parameters;
};

/// The constants of step 0 (prior Σ_z0) are phase 0, those of every later step (Σ_z) phase 1.
LRSMC_HD int phase_of(int step) { return step == 0 ? 0 : 1; }

/// Why build_constants failed (0: it did not).
enum ConstantsStatus : int {
  constants_ok = 0,
  proposal_not_positive_definite = 1,  ///< Σ_q of the optimal proposal
  loadings_degenerate = 2,             ///< mᵀm is singular: μ_0's projection is undefined
};

/// Offsets of the float64 constants of one call.
struct ConstantsLayout {
  std::int64_t factor[2] = {}, log_det[2] = {}, precision[2] = {}, covariance[2] = {}, gain[2] = {},
               alpha[2] = {}, proposal_factor[2] = {}, proposal_log_det[2] = {};
  std::int64_t variance = 0;     ///< S = max(exp ρ_x, 1e-8) (channels), optimal only
  std::int64_t decay = 0;        ///< a = exp(−exp θ_a)
  std::int64_t gram_factor = 0;  ///< Cholesky factor of mᵀm (rank × rank), with inputs
  std::int64_t status = 0;       ///< a ConstantsStatus
  std::int64_t size = 0;

  LRSMC_HD explicit ConstantsLayout(const ModelShape& shape) {
    const std::int64_t square = std::int64_t(shape.rank) * shape.rank,
                       gain_size = std::int64_t(shape.rank) * shape.channels;
    std::int64_t next = 0;
    const auto take = [&next](std::int64_t count) {
      const std::int64_t offset = next;
      next += count;
      return offset;
    };
    for (int phase = 0; phase < 2; ++phase) {
      factor[phase] = take(square);
      log_det[phase] = take(1);
      precision[phase] = take(square);
      covariance[phase] = take(square);
      gain[phase] = take(gain_size);
      alpha[phase] = take(square);
      proposal_factor[phase] = take(square);
      proposal_log_det[phase] = take(1);
    }
    variance = take(shape.channels);
    decay = take(1);
    gram_factor = take(square);
    status = take(1);
    size = next;
  }
};

/// The read-out's rows that act on the inputs (readout_from z_and_v: the first D_u rows of
/// readout_weight), 0 otherwise.
LRSMC_HD int readout_input_rows(const ModelShape& shape) {
  return shape.readout_from == ReadoutFrom::z_and_v ? shape.inputs : 0;
}

/// Where B_z, the read-out's rows acting on z, lies in the flat parameters (after B_v's rows
/// with z_and_v); −1 for the one-to-one read-outs, which have no read-out weights.
LRSMC_HD std::int64_t latent_readout_weight(const ModelShape& shape) {
  if (shape.parameters.readout_weight < 0) return -1;
  return shape.parameters.readout_weight +
         std::int64_t(readout_input_rows(shape)) * shape.channels;
}

/// Offsets of the working-precision copy the particle step reads: the loadings m, n, h first
/// and contiguous (N (2R + 1) values, the block a GPU keeps in shared memory), then the input
/// weights, the read-out and the per-phase constants.
struct ParticleConstantsLayout {
  std::int64_t m = 0, n = 0, h = 0, w_u = 0, readout = 0, readout_input = 0, readout_gain = 0,
               readout_bias = 0, log_variance = 0, decay = 0;
  std::int64_t factor[2] = {}, log_det[2] = {}, gain[2] = {}, alpha[2] = {},
               proposal_factor[2] = {}, proposal_log_det[2] = {};
  std::int64_t loadings_size = 0;  ///< m, n and h
  std::int64_t size = 0;

  LRSMC_HD explicit ParticleConstantsLayout(const ModelShape& shape) {
    const std::int64_t R = shape.rank, N = shape.hidden, D = shape.channels;
    std::int64_t next = 0;
    const auto take = [&next](std::int64_t count) {
      const std::int64_t offset = next;
      next += count;
      return offset;
    };
    m = take(N * R);
    n = take(R * N);
    h = take(N);
    loadings_size = next;
    w_u = take(N * shape.inputs);
    readout = take(R * D);
    readout_input = take(readout_input_rows(shape) * D);
    readout_gain = take(D);
    readout_bias = take(D);
    log_variance = take(D);
    decay = take(1);
    for (int phase = 0; phase < 2; ++phase) {
      factor[phase] = take(R * R);
      log_det[phase] = take(1);
      gain[phase] = take(R * D);
      alpha[phase] = take(R * R);
      proposal_factor[phase] = take(R * R);
      proposal_log_det[phase] = take(1);
    }
    size = next;
  }
};

/// float64 scratch that build_constants and finish_gradient need.
LRSMC_HD std::int64_t constants_scratch_size(int rank, int channels) {
  return 6 * std::int64_t(rank) * channels + channels + 16 * std::int64_t(rank) * rank + 4 * rank;
}

/// L = chol_embed(ρ) for full noise (strict lower triangle of ρ, diagonal exp(ρ_ii/2)), or
/// diag(exp(ρ/2)) for diagonal noise (method.md §1.6). ρ is (R, R) or (R).
LRSMC_HD void noise_factor(const double* rho, NoiseType type, int rank, double* factor) {
  for (int i = 0; i < rank * rank; ++i) factor[i] = 0.0;
  for (int row = 0; row < rank; ++row) {
    if (type == NoiseType::diag) {
      factor[row * rank + row] = std::exp(0.5 * rho[row]);
      continue;
    }
    for (int column = 0; column < row; ++column)
      factor[row * rank + column] = rho[row * rank + column];
    factor[row * rank + row] = std::exp(0.5 * rho[row * rank + row]);
  }
}

/// Adds dρ for a given dL (only the lower triangle of dL is read).
LRSMC_HD void noise_factor_backward(const double* factor, const double* grad_factor, NoiseType type,
                                    int rank, double* grad_rho) {
  for (int row = 0; row < rank; ++row) {
    const double diagonal = 0.5 * grad_factor[row * rank + row] * factor[row * rank + row];
    if (type == NoiseType::diag) {
      grad_rho[row] += diagonal;
      continue;
    }
    for (int column = 0; column < row; ++column)
      grad_rho[row * rank + column] += grad_factor[row * rank + column];
    grad_rho[row * rank + row] += diagonal;
  }
}

/// Where the optimal-proposal quantities of one phase (method.md §3.4) lie in the constants: the
/// product of the phase's prior with the read-out's Gaussian factor (gaussian_product.hpp).
template <typename Pointer>
LRSMC_HD GaussianProductOf<Pointer> kalman_product(const ModelShape& shape, int phase,
                                                   Pointer constants) {
  const ConstantsLayout layout(shape);
  return {constants + layout.precision[phase],       constants + layout.covariance[phase],
          constants + layout.gain[phase],            constants + layout.alpha[phase],
          constants + layout.proposal_factor[phase], constants + layout.proposal_log_det[phase]};
}

/// Computes them; returns a ConstantsStatus.
LRSMC_HD int kalman_quantities(const ModelShape& shape, const double* readout, int phase,
                               double* constants, double* scratch) {
  const ConstantsLayout layout(shape);
  const bool positive =
      gaussian_product(shape.rank, shape.channels, constants + layout.factor[phase], readout,
                       constants + layout.variance, kalman_product(shape, phase, constants), scratch);
  return positive ? constants_ok : proposal_not_positive_definite;
}

/// Builds the float64 constants of a call from the flat parameters (one thread). Returns a
/// ConstantsStatus (also stored at layout.status); the constants are then incomplete.
LRSMC_HD int build_constants(const ModelShape& shape, const double* parameters, double* constants,
                             double* scratch) {
  const ConstantsLayout layout(shape);
  const ParameterOffsets& offsets = shape.parameters;
  const int R = shape.rank;
  constants[layout.decay] = std::exp(-std::exp(parameters[offsets.decay_logit]));
  for (int phase = 0; phase < 2; ++phase) {
    const std::int64_t rho = phase == 0 ? offsets.initial_noise : offsets.transition_noise;
    double* factor = constants + layout.factor[phase];
    noise_factor(parameters + rho, shape.noise[phase], R, factor);
    double log_det = 0.0;
    for (int r = 0; r < R; ++r) log_det += std::log(factor[r * R + r]);
    constants[layout.log_det[phase]] = log_det;
  }
  int status = constants_ok;
  if (shape.optimal) {
    for (int i = 0; i < shape.channels; ++i)
      constants[layout.variance + i] =
          std::fmax(std::exp(parameters[offsets.observation_noise + i]), 1e-8);
    for (int phase = 0; phase < 2 && status == constants_ok; ++phase)
      status =
          kalman_quantities(shape, parameters + offsets.readout_weight, phase, constants, scratch);
  }
  if (status == constants_ok && shape.inputs > 0) {
    // mᵀm for μ_0 = z_init + (mᵀm)^{-1} mᵀ c_0 (method.md §1.5).
    double* gram = scratch;
    const double* m = parameters + offsets.m;
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < R; ++s) {
        double sum = 0.0;
        for (int i = 0; i < shape.hidden; ++i) sum += m[i * R + r] * m[i * R + s];
        gram[r * R + s] = sum;
      }
    if (!cholesky(gram, R, constants + layout.gram_factor)) status = loadings_degenerate;
  }
  constants[layout.status] = double(status);
  return status;
}

/// Writes the working-precision copy (ParticleConstantsLayout) of the parameters and
/// constants; entries are split over `threads` callers (thread `thread` takes every
/// threads-th entry of each block), so a GPU block fills it in parallel.
template <typename Scalar>
LRSMC_HD void fill_particle_constants(const ModelShape& shape, const double* parameters,
                                      const double* constants, Scalar* out, int thread,
                                      int threads) {
  const ParticleConstantsLayout working(shape);
  const ConstantsLayout layout(shape);
  const ParameterOffsets& offsets = shape.parameters;
  const std::int64_t R = shape.rank, N = shape.hidden, D = shape.channels;
  const auto copy = [&](std::int64_t to, const double* from, std::int64_t count) {
    for (std::int64_t i = thread; i < count; i += threads) out[to + i] = Scalar(from[i]);
  };
  copy(working.m, parameters + offsets.m, N * R);
  copy(working.n, parameters + offsets.n, R * N);
  copy(working.h, parameters + offsets.h, N);
  if (shape.inputs > 0) copy(working.w_u, parameters + offsets.w_u, N * shape.inputs);
  if (offsets.readout_weight >= 0) {
    copy(working.readout, parameters + latent_readout_weight(shape), R * D);
    copy(working.readout_input, parameters + offsets.readout_weight, readout_input_rows(shape) * D);
  }
  if (offsets.readout_gain >= 0) copy(working.readout_gain, parameters + offsets.readout_gain, D);
  copy(working.readout_bias, parameters + offsets.readout_bias, D);
  if (offsets.observation_noise >= 0)
    copy(working.log_variance, parameters + offsets.observation_noise, D);
  copy(working.decay, constants + layout.decay, 1);
  for (int phase = 0; phase < 2; ++phase) {
    copy(working.factor[phase], constants + layout.factor[phase], R * R);
    copy(working.log_det[phase], constants + layout.log_det[phase], 1);
    if (!shape.optimal) continue;
    copy(working.gain[phase], constants + layout.gain[phase], R * D);
    copy(working.alpha[phase], constants + layout.alpha[phase], R * R);
    copy(working.proposal_factor[phase], constants + layout.proposal_factor[phase], R * R);
    copy(working.proposal_log_det[phase], constants + layout.proposal_log_det[phase], 1);
  }
}

/// The particle step's view of a working copy (m, n, h may be redirected, e.g. to a GPU
/// block's shared memory).
template <typename Scalar>
LRSMC_HD ParticleModel<Scalar> particle_model(const ModelShape& shape, const Scalar* values) {
  const ParticleConstantsLayout working(shape);
  ParticleModel<Scalar> model;
  model.rank = shape.rank;
  model.hidden = shape.hidden;
  model.channels = shape.channels;
  model.nonlinearity = shape.nonlinearity;
  model.observation = shape.observation;
  model.link = shape.link;
  model.readout_from = shape.readout_from;
  model.decay = values[working.decay];
  model.m = values + working.m;
  model.n = values + working.n;
  model.h = values + working.h;
  model.readout = values + working.readout;
  model.readout_gain = values + working.readout_gain;
  model.readout_bias = values + working.readout_bias;
  model.log_variance = values + working.log_variance;
  return model;
}

template <typename Scalar>
LRSMC_HD PhaseConstants<Scalar> phase_constants(const ModelShape& shape, const Scalar* values,
                                                int phase) {
  const ParticleConstantsLayout working(shape);
  PhaseConstants<Scalar> constants;
  constants.factor = values + working.factor[phase];
  constants.log_det = values[working.log_det[phase]];
  constants.gain = values + working.gain[phase];
  constants.alpha = values + working.alpha[phase];
  constants.proposal_factor = values + working.proposal_factor[phase];
  constants.proposal_log_det = values[working.proposal_log_det[phase]];
  return constants;
}

/// The input current c_i = Σ_j W_u,ij u_j of unit i for one step's inputs (float64 data).
template <typename Scalar>
LRSMC_HD Scalar input_current(const ModelShape& shape, const Scalar* values, const double* inputs,
                              int i) {
  const Scalar* w_u = values + ParticleConstantsLayout(shape).w_u + std::int64_t(i) * shape.inputs;
  Scalar current = 0;
  for (int j = 0; j < shape.inputs; ++j) current += w_u[j] * Scalar(inputs[j]);
  return current;
}

/// The read-out's offset o_i = Σ_j B_v,ji v_j of channel i from one step's inputs (readout_from
/// z_and_v: η = Bᵀ[v; z] + b = b + o + B_zᵀ z).
template <typename Scalar>
LRSMC_HD Scalar readout_input_offset(const ModelShape& shape, const Scalar* values,
                                     const double* inputs, int i) {
  const Scalar* weights = values + ParticleConstantsLayout(shape).readout_input;
  Scalar offset = 0;
  for (int j = 0; j < shape.inputs; ++j)
    offset += weights[std::int64_t(j) * shape.channels + i] * Scalar(inputs[j]);
  return offset;
}

/// P_m c_0 = (mᵀm)^{-1} mᵀ c_0 in float64 from the parameters and the first step's currents
/// (rank values).
template <typename Scalar>
LRSMC_HD void initial_projection(const ModelShape& shape, const double* parameters,
                                 const double* constants, const Scalar* first_currents,
                                 double* projection) {
  const int R = shape.rank;
  const double* m = parameters + shape.parameters.m;
  for (int r = 0; r < R; ++r) {
    double sum = 0.0;
    for (int i = 0; i < shape.hidden; ++i) sum += m[i * R + r] * double(first_currents[i]);
    projection[r] = sum;
  }
  cholesky_solve(constants + ConstantsLayout(shape).gram_factor, R, projection);
}

/// μ_0 = z_init + P_m c_0 (method.md §1.5); without inputs (`first_currents` null) μ_0 = z_init.
/// `projection` receives P_m c_0 (rank values, 0 without inputs).
template <typename Scalar>
LRSMC_HD void initial_mean(const ModelShape& shape, const double* parameters,
                           const double* constants, const Scalar* first_currents, Scalar* mean,
                           double* projection) {
  const ParameterOffsets& offsets = shape.parameters;
  if (first_currents != nullptr) {
    initial_projection(shape, parameters, constants, first_currents, projection);
  } else {
    for (int r = 0; r < shape.rank; ++r) projection[r] = 0.0;
  }
  for (int r = 0; r < shape.rank; ++r) {
    const double z_init = offsets.z_init >= 0 ? parameters[offsets.z_init + r] : 0.0;
    mean[r] = Scalar(z_init + projection[r]);
  }
}

/// One trial's adjoint through μ_0's projection y = M^{-1} s, s = mᵀ c_0, M = mᵀm, given
/// dy = Σ_k dμ_0 (`grad_mean`): the projection y and ds = M^{-1} dy (rank values each).
template <typename Scalar>
LRSMC_HD void initial_mean_adjoint(const ModelShape& shape, const double* parameters,
                                   const double* constants, const Scalar* first_currents,
                                   const double* grad_mean, double* projection,
                                   double* grad_source) {
  initial_projection(shape, parameters, constants, first_currents, projection);
  for (int r = 0; r < shape.rank; ++r) grad_source[r] = grad_mean[r];
  cholesky_solve(constants + ConstantsLayout(shape).gram_factor, shape.rank, grad_source);
}

/// Adds unit i's part of one trial's adjoint through μ_0's projection (initial_mean_adjoint's
/// y and ds): dm_i += m_i (dM + dMᵀ) + c_0,i dsᵀ with dM = −ds yᵀ, and dW_u,ij += dc_0,i u_0,j
/// with dc_0,i = m_i · ds. `first_inputs` is u_0.
template <typename Scalar, typename RoundedProduct>
LRSMC_HD void add_initial_mean_unit_gradient(const ModelShape& shape, const double* parameters,
                                             const Scalar* first_currents,
                                             const double* first_inputs, const double* projection,
                                             const double* grad_source, int i, double* grad_m,
                                             double* grad_w_u, const RoundedProduct& product) {
  const int R = shape.rank;
  const double* m_row = parameters + shape.parameters.m + std::int64_t(i) * R;
  for (int r = 0; r < R; ++r) {
    double value = 0.0;
    for (int s = 0; s < R; ++s)
      value += m_row[s] * -(grad_source[s] * projection[r] + grad_source[r] * projection[s]);
    value += double(first_currents[i]) * grad_source[r];
    grad_m[r] += value;
  }
  double grad_current = 0.0;
  for (int r = 0; r < R; ++r) grad_current += m_row[r] * grad_source[r];
  for (int j = 0; j < shape.inputs; ++j) grad_w_u[j] += product(grad_current, first_inputs[j]);
}

/// Adjoint of kalman_quantities for one phase: given dG and dL_q, adds dL (prior factor),
/// dB (read-out, R × D) and dρ_x (below the clip at 1e-8 the gradient stops).
LRSMC_HD void kalman_quantities_backward(const ModelShape& shape, const double* parameters,
                                         const double* constants, int phase,
                                         const double* grad_gain,
                                         const double* grad_proposal_factor,
                                         double* grad_prior_factor, double* grad_readout,
                                         double* grad_observation_log_variance, double* scratch) {
  const ConstantsLayout layout(shape);
  const int D = shape.channels;
  double* grad_variance = scratch;  // D
  gaussian_product_backward(shape.rank, D, constants + layout.factor[phase],
                            parameters + shape.parameters.readout_weight,
                            constants + layout.variance, kalman_product(shape, phase, constants),
                            grad_gain, grad_proposal_factor, grad_prior_factor, grad_readout,
                            grad_variance, scratch + D);
  const double* log_variance = parameters + shape.parameters.observation_noise;
  for (int i = 0; i < D; ++i) {
    const double raw = std::exp(log_variance[i]);
    if (raw > 1e-8) grad_observation_log_variance[i] += grad_variance[i] * raw;
  }
}

/// Finishes a gradient from the trial-summed accumulator row `totals` (gradient_row.hpp): copies
/// its parameter part into `gradient` and adds the once-per-call adjoints — the decay, the
/// optimal proposal's Kalman quantities (dG, dB, db, dρ_x from the slots), the noise factors and
/// z_init. The adjoint of μ_0's projection with inputs is per trial (initial_mean_adjoint).
LRSMC_HD void finish_gradient(const ModelShape& shape, const double* parameters,
                              const double* constants, const double* totals, double* gradient,
                              double* scratch) {
  const ConstantsLayout layout(shape);
  const ParameterOffsets& offsets = shape.parameters;
  const GradientSlots slots(offsets.total, shape.rank, shape.channels);
  const int R = shape.rank, D = shape.channels;
  for (std::int64_t i = 0; i < offsets.total; ++i) gradient[i] = totals[i];
  // a = exp(−exp(θ_a)) ⇒ da/dθ = −a exp(θ).
  const double theta = parameters[offsets.decay_logit];
  gradient[offsets.decay_logit] +=
      totals[slots.decay] * -std::exp(-std::exp(theta)) * std::exp(theta);
  double* grad_factor[2] = {scratch, scratch + R * R};
  for (int phase = 0; phase < 2; ++phase)
    for (int i = 0; i < R * R; ++i) grad_factor[phase][i] = totals[slots.factor[phase] + i];
  double* rest = scratch + 2 * R * R;
  if (shape.optimal) {
    const double* readout = parameters + offsets.readout_weight;
    double* grad_readout = rest;               // R × D
    double* grad_gain = grad_readout + R * D;  // R × D
    double* kalman_scratch = grad_gain + R * D;
    for (int i = 0; i < R * D; ++i) grad_readout[i] = 0.0;
    for (int order = 0; order < 2; ++order) {
      const int phase = 1 - order;  // the later steps' quantities first, then the initial step's
      const double* mean_product = totals + slots.mean_product[phase];
      const double* gain = constants + layout.gain[phase];
      const double* gain_sum = totals + slots.gain_sum[phase];
      // μ_q = μ + G(x − b) − G Bᵀ μ: dG −= (Σ dμ_q μᵀ) B, dB −= (Σ dμ_q μᵀ)ᵀ G, db −= Gᵀ Σ dμ_q.
      for (int r = 0; r < R; ++r)
        for (int i = 0; i < D; ++i) {
          double product = 0.0, transposed = 0.0;
          for (int s = 0; s < R; ++s) {
            product += mean_product[r * R + s] * readout[s * D + i];
            transposed += mean_product[s * R + r] * gain[s * D + i];
          }
          grad_gain[r * D + i] = totals[slots.gain[phase] + r * D + i] - product;
          grad_readout[r * D + i] -= transposed;
        }
      for (int i = 0; i < D; ++i) {
        double sum = 0.0;
        for (int r = 0; r < R; ++r) sum += gain[r * D + i] * gain_sum[r];
        gradient[offsets.readout_bias + i] += -sum;
      }
      kalman_quantities_backward(
          shape, parameters, constants, phase, grad_gain, totals + slots.proposal_factor[phase],
          grad_factor[phase], grad_readout, gradient + offsets.observation_noise, kalman_scratch);
    }
    for (int i = 0; i < R * D; ++i) gradient[offsets.readout_weight + i] += grad_readout[i];
  }
  noise_factor_backward(constants + layout.factor[1], grad_factor[1], shape.noise[1], R,
                        gradient + offsets.transition_noise);
  noise_factor_backward(constants + layout.factor[0], grad_factor[0], shape.noise[0], R,
                        gradient + offsets.initial_noise);
  if (offsets.z_init >= 0)
    for (int r = 0; r < R; ++r) gradient[offsets.z_init + r] += totals[slots.initial_mean + r];
}

}  // namespace lrsmc::math
