// The CPU reference backend: the particle filter of method.md §3 (bootstrap and optimal
// proposals, systematic/stratified/multinomial resampling, optional ESS threshold), its
// hand-written backward pass, and sampling from the model. Templated on the scalar type:
// double is the reference, float mirrors the CUDA backend. Trials run in parallel (OpenMP);
// each thread reuses one trial's storage, and per-trial gradients are summed in trial order,
// so results do not depend on the number of threads.
#include "cpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <omp.h>
#include <thread>

#include "cpu/kalman.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/nonlinearity.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"
#include "lrsmc/math/resampling.hpp"

namespace lrsmc::cpu {
namespace {

using math::DrawStream;

/// The model's parameters converted to the working precision, plus per-call constants.
template <typename Scalar>
struct ModelView {
  int rank = 0, hidden = 0, channels = 0, inputs = 0;
  ModelConfig config;
  ParameterLayout layout;
  const double* raw = nullptr;  // flat float64 parameters
  std::vector<Scalar> m, n, h, w_u, readout, readout_bias, log_variance, z_init;
  Scalar decay = 0;
  Matrix<Scalar> transition_factor, initial_factor;  // L_z, L_z0
  Scalar transition_log_det = 0, initial_log_det = 0;  // Σ ln L_ii
  Matrix<Scalar> readout_matrix;                      // B (R, D)
  bool optimal = false;
  KalmanQuantities<Scalar> kalman, initial_kalman;

  ModelView(const Model& model, Proposal proposal) : config(model.config), layout(model.config) {
    rank = config.rank;
    hidden = config.num_hidden;
    channels = config.num_channels;
    inputs = config.num_inputs;
    raw = model.parameters.data();
    const auto copy = [&](std::int64_t offset, std::int64_t count) {
      std::vector<Scalar> values(static_cast<std::size_t>(std::max<std::int64_t>(count, 0)));
      for (std::int64_t i = 0; i < count; ++i) values[i] = static_cast<Scalar>(raw[offset + i]);
      return values;
    };
    m = copy(layout.m, std::int64_t(hidden) * rank);
    n = copy(layout.n, std::int64_t(rank) * hidden);
    h = copy(layout.h, hidden);
    if (layout.w_u >= 0) w_u = copy(layout.w_u, std::int64_t(hidden) * inputs);
    readout = copy(layout.readout_weight, std::int64_t(rank) * channels);
    readout_bias = copy(layout.readout_bias, channels);
    if (layout.observation_noise >= 0) log_variance = copy(layout.observation_noise, channels);
    z_init = layout.z_init >= 0 ? copy(layout.z_init, rank) : std::vector<Scalar>(rank, Scalar(0));
    decay = static_cast<Scalar>(std::exp(-std::exp(raw[layout.decay_logit])));
    transition_factor = noise_factor<Scalar>(raw + layout.transition_noise,
                                             config.transition_noise, rank);
    initial_factor = noise_factor<Scalar>(raw + layout.initial_noise, config.initial_noise, rank);
    for (int r = 0; r < rank; ++r) {
      transition_log_det += std::log(transition_factor(r, r));
      initial_log_det += std::log(initial_factor(r, r));
    }
    readout_matrix = Matrix<Scalar>(rank, channels);
    for (int r = 0; r < rank; ++r)
      for (int i = 0; i < channels; ++i) readout_matrix(r, i) = readout[r * channels + i];
    optimal = proposal == Proposal::optimal;
    if (optimal) {
      kalman = kalman_quantities<Scalar>(transition_factor, readout_matrix,
                                         raw + layout.observation_noise);
      initial_kalman = kalman_quantities<Scalar>(initial_factor, readout_matrix,
                                                 raw + layout.observation_noise);
    }
  }
};

/// Per-trial inputs: observations, unit input currents W_u u_t, ln Γ(x + 1) for Poisson.
template <typename Scalar>
struct TrialData {
  const double* observations = nullptr;  // (steps, channels)
  const double* inputs = nullptr;        // (steps, inputs) or null
  std::vector<Scalar> currents;          // (steps, hidden) or empty
  std::vector<Scalar> log_factorial;     // (steps, channels) or empty
  std::vector<Scalar> initial_mean;      // μ_0 (rank)
  std::vector<Scalar> initial_projection;  // P_m W_u u_0 (rank), saved for the backward pass
};

/// What the forward pass keeps for the backward pass and for outputs, reused across trials.
template <typename Scalar>
struct TrialStorage {
  std::vector<Scalar> particles;        // (steps, K, R) before resampling
  std::vector<Scalar> noise;            // (steps, K, R) standard normals ξ
  std::vector<double> log_weights;      // (steps, K) normalised, before resampling
  std::vector<std::int32_t> ancestors;  // (steps, K)
  std::vector<std::uint8_t> resampled;  // (steps)
  std::vector<double> cumulative;       // (K) scratch
  std::vector<double> increments;       // (K) scratch
  double log_evidence = 0;              // Σ_t c_t
};

/// Gradient accumulators of one trial, in the working precision.
template <typename Scalar>
struct TrialGradient {
  std::vector<double> flat;  // ParameterLayout order (direct terms)
  Matrix<Scalar> transition_factor, initial_factor;  // dL_z, dL_z0
  Matrix<Scalar> gain, proposal_factor, initial_gain, initial_proposal_factor;
  Matrix<Scalar> gain_mean_product, initial_gain_mean_product;  // Σ dμ_q μᵀ
  Vector<Scalar> gain_sum, initial_gain_sum;                    // Σ dμ_q
  Scalar decay = 0;
  std::vector<Scalar> current;         // (hidden) Σ dX at the current step (for W_u)
  std::vector<Scalar> initial_mean;    // Σ_k dμ_0

  void reset(const ModelView<Scalar>& view) {
    const int rank = view.rank, channels = view.channels;
    flat.assign(static_cast<std::size_t>(view.layout.total_size()), 0.0);
    transition_factor = Matrix<Scalar>::Zero(rank, rank);
    initial_factor = Matrix<Scalar>::Zero(rank, rank);
    gain = Matrix<Scalar>::Zero(rank, channels);
    initial_gain = Matrix<Scalar>::Zero(rank, channels);
    proposal_factor = Matrix<Scalar>::Zero(rank, rank);
    initial_proposal_factor = Matrix<Scalar>::Zero(rank, rank);
    gain_mean_product = Matrix<Scalar>::Zero(rank, rank);
    initial_gain_mean_product = Matrix<Scalar>::Zero(rank, rank);
    gain_sum = Vector<Scalar>::Zero(rank);
    initial_gain_sum = Vector<Scalar>::Zero(rank);
    decay = 0;
    current.assign(static_cast<std::size_t>(view.hidden), Scalar(0));
    initial_mean.assign(static_cast<std::size_t>(rank), Scalar(0));
  }
};

template <typename Scalar>
class CpuEngine {
 public:
  CpuEngine(const Model& model, const SequenceBatch* batch, const FilterOptions& options,
            std::uint64_t seed)
      : view_(model, options.proposal), options_(options), seed_(seed), batch_(batch) {}

  /// μ = a z + n φ(m z + c; h), method.md §1.1. `currents` may be null (no inputs).
  void transition(const Scalar* previous, const Scalar* currents, Scalar* mean) const {
    const int rank = view_.rank, hidden = view_.hidden;
    for (int r = 0; r < rank; ++r) mean[r] = view_.decay * previous[r];
    for (int i = 0; i < hidden; ++i) {
      Scalar current = currents ? currents[i] : Scalar(0);
      for (int r = 0; r < rank; ++r) current += view_.m[i * rank + r] * previous[r];
      const Scalar rate = math::unit_value(view_.config.nonlinearity, current, view_.h[i]);
      for (int r = 0; r < rank; ++r) mean[r] += view_.n[r * hidden + i] * rate;
    }
  }

  /// Adjoint of transition(): adds parameter gradients, returns d previous and Σ dX.
  void transition_backward(const Scalar* previous, const Scalar* currents, const Scalar* grad_mean,
                           Scalar* grad_previous, TrialGradient<Scalar>& grad) const {
    const int rank = view_.rank, hidden = view_.hidden;
    auto& flat = grad.flat;
    const auto& layout = view_.layout;
    for (int r = 0; r < rank; ++r) {
      grad_previous[r] = view_.decay * grad_mean[r];
      grad.decay += grad_mean[r] * previous[r];
    }
    for (int i = 0; i < hidden; ++i) {
      Scalar current = currents ? currents[i] : Scalar(0);
      for (int r = 0; r < rank; ++r) current += view_.m[i * rank + r] * previous[r];
      const auto response = math::unit_response(view_.config.nonlinearity, current, view_.h[i]);
      Scalar grad_rate = 0;
      for (int r = 0; r < rank; ++r) {
        flat[layout.n + r * hidden + i] += static_cast<double>(grad_mean[r] * response.value);
        grad_rate += view_.n[r * hidden + i] * grad_mean[r];
      }
      flat[layout.h + i] += static_cast<double>(grad_rate * response.bias_slope);
      const Scalar grad_current = grad_rate * response.slope;
      if (grad_current == Scalar(0)) continue;
      for (int r = 0; r < rank; ++r) {
        flat[layout.m + i * rank + r] += static_cast<double>(grad_current * previous[r]);
        grad_previous[r] += view_.m[i * rank + r] * grad_current;
      }
      grad.current[i] += grad_current;
    }
  }

  /// log p(x_t | z) (method.md §1.7); with `weight` ≠ 0 also adds weight·∂/∂(z, B, b, ρ_x).
  Scalar observation_log_likelihood(const TrialData<Scalar>& data, int step, const Scalar* z,
                                    Scalar weight, Scalar* grad_z,
                                    TrialGradient<Scalar>* grad) const {
    const int rank = view_.rank, channels = view_.channels;
    const double* observed = data.observations + std::int64_t(step) * channels;
    Scalar total = 0;
    for (int i = 0; i < channels; ++i) {
      Scalar eta = view_.readout_bias[i];
      for (int r = 0; r < rank; ++r) eta += view_.readout[r * channels + i] * z[r];
      const auto link = math::link_response(view_.config.link, eta);
      const Scalar x = static_cast<Scalar>(observed[i]);
      Scalar grad_rate = 0;
      if (view_.config.observation == Observation::gaussian) {
        const auto term = math::gaussian_term(x, link.rate, view_.log_variance[i]);
        total += term.log_density;
        grad_rate = term.d_mean;
        if (grad)
          grad->flat[view_.layout.observation_noise + i] +=
              static_cast<double>(weight * term.d_log_variance);
      } else {
        total += math::poisson_log_probability(
            x, link.rate, data.log_factorial[std::size_t(step) * channels + i]);
        grad_rate = x / link.rate - Scalar(1);
      }
      if (!grad) continue;
      const Scalar grad_eta = weight * grad_rate * link.slope;
      grad->flat[view_.layout.readout_bias + i] += static_cast<double>(grad_eta);
      for (int r = 0; r < rank; ++r) {
        grad->flat[view_.layout.readout_weight + r * channels + i] +=
            static_cast<double>(grad_eta * z[r]);
        grad_z[r] += view_.readout[r * channels + i] * grad_eta;
      }
    }
    return total;
  }

  TrialData<Scalar> prepare_trial(int trial) const {
    TrialData<Scalar> data;
    const int steps = batch_->num_steps, channels = view_.channels, hidden = view_.hidden,
              inputs = view_.inputs, rank = view_.rank;
    data.observations = batch_->observations.data() + std::int64_t(trial) * steps * channels;
    if (view_.config.observation == Observation::poisson) {
      data.log_factorial.resize(std::size_t(steps) * channels);
      for (std::size_t i = 0; i < data.log_factorial.size(); ++i)
        data.log_factorial[i] = static_cast<Scalar>(std::lgamma(data.observations[i] + 1.0));
    }
    data.initial_mean = view_.z_init;
    data.initial_projection.assign(std::size_t(rank), Scalar(0));
    if (inputs > 0) {
      data.inputs = batch_->inputs.data() + std::int64_t(trial) * steps * inputs;
      data.currents.assign(std::size_t(steps) * hidden, Scalar(0));
      for (int step = 0; step < steps; ++step)
        for (int i = 0; i < hidden; ++i) {
          Scalar current = 0;
          for (int j = 0; j < inputs; ++j)
            current += view_.w_u[i * inputs + j] *
                       static_cast<Scalar>(data.inputs[std::int64_t(step) * inputs + j]);
          data.currents[std::size_t(step) * hidden + i] = current;
        }
      // μ_0 = z_init + P_m W_u u_0 with P_m = (mᵀm)^{-1} mᵀ (method.md §1.5).
      const Matrix<Scalar> loadings = Eigen::Map<const Matrix<Scalar>>(view_.m.data(), hidden, rank);
      const Vector<Scalar> current0 =
          Eigen::Map<const Vector<Scalar>>(data.currents.data(), hidden);
      const Vector<Scalar> projection =
          (loadings.transpose() * loadings).ldlt().solve(loadings.transpose() * current0);
      for (int r = 0; r < rank; ++r) {
        data.initial_projection[r] = projection(r);
        data.initial_mean[r] += projection(r);
      }
    }
    return data;
  }

  const Scalar* currents_at(const TrialData<Scalar>& data, int step) const {
    return data.currents.empty() ? nullptr
                                 : data.currents.data() + std::size_t(step) * view_.hidden;
  }

  /// Forward filter of one trial; fills `storage` and returns the summed log-evidence.
  void forward_trial(int trial, const TrialData<Scalar>& data, TrialStorage<Scalar>& storage) const {
    const int steps = batch_->num_steps, rank = view_.rank, K = options_.num_particles,
              channels = view_.channels;
    const std::uint32_t trial_id =
        batch_->trial_ids.empty() ? std::uint32_t(trial) : batch_->trial_ids[trial];
    const std::size_t slice = std::size_t(K) * rank;
    storage.particles.resize(std::size_t(steps) * slice);
    storage.noise.resize(std::size_t(steps) * slice);
    storage.log_weights.resize(std::size_t(steps) * K);
    storage.ancestors.resize(std::size_t(steps) * K);
    storage.resampled.assign(std::size_t(steps), 0);
    storage.cumulative.resize(std::size_t(K));
    storage.increments.resize(std::size_t(K));
    storage.log_evidence = 0;
    std::vector<double> carried(std::size_t(K), -std::log(double(K)));  // normalised log W̄
    std::vector<Scalar> mean(rank), proposal_mean(rank), residual(rank), gain_observation(rank);
    const double log_k = std::log(double(K));

    for (int step = 0; step < steps; ++step) {
      const bool first = step == 0;
      const Matrix<Scalar>& factor = first ? view_.initial_factor : view_.transition_factor;
      const Scalar log_det = first ? view_.initial_log_det : view_.transition_log_det;
      const KalmanQuantities<Scalar>& kalman = first ? view_.initial_kalman : view_.kalman;
      Scalar* particles = storage.particles.data() + std::size_t(step) * slice;
      Scalar* noise = storage.noise.data() + std::size_t(step) * slice;
      const double* observed = data.observations + std::int64_t(step) * channels;
      if (view_.optimal) {  // G (x_t − b), shared by all particles
        for (int r = 0; r < rank; ++r) {
          Scalar sum = 0;
          for (int i = 0; i < channels; ++i)
            sum += kalman.gain(r, i) * (static_cast<Scalar>(observed[i]) - view_.readout_bias[i]);
          gain_observation[r] = sum;
        }
      }
      const Scalar* previous_particles =
          first ? nullptr : storage.particles.data() + std::size_t(step - 1) * slice;
      const std::int32_t* previous_ancestors =
          first ? nullptr : storage.ancestors.data() + std::size_t(step - 1) * K;
      for (int k = 0; k < K; ++k) {
        if (first) {
          for (int r = 0; r < rank; ++r) mean[r] = data.initial_mean[r];
        } else {
          transition(previous_particles + std::size_t(previous_ancestors[k]) * rank,
                     currents_at(data, step - 1), mean.data());
        }
        Scalar* z = particles + std::size_t(k) * rank;
        Scalar* xi = noise + std::size_t(k) * rank;
        for (int r = 0; r < rank; ++r)
          xi[r] = static_cast<Scalar>(math::standard_normal(
              seed_, trial_id, std::uint32_t(step), std::uint32_t(k), DrawStream::proposal_noise,
              std::uint32_t(r)));
        Scalar log_weight = 0;
        if (view_.optimal) {
          // μ_q = (I − α) μ + G (x − b); z = μ_q + L_q ξ (method.md §3.4).
          for (int r = 0; r < rank; ++r) {
            Scalar value = mean[r] + gain_observation[r];
            for (int s = 0; s < rank; ++s) value -= kalman.alpha(r, s) * mean[s];
            proposal_mean[r] = value;
          }
          for (int r = 0; r < rank; ++r) {
            Scalar value = proposal_mean[r];
            for (int s = 0; s <= r; ++s) value += kalman.proposal_factor(r, s) * xi[s];
            z[r] = value;
          }
          // log N(z; μ, L Lᵀ) − log N(z; μ_q, L_q L_qᵀ); the second is −½‖ξ‖² − Σ ln L_q,ii.
          Scalar squared = 0, noise_squared = 0, proposal_log_det = 0;
          math::whitened_residual(rank, factor.data(), z, mean.data(), residual.data());
          for (int r = 0; r < rank; ++r) {
            squared += residual[r] * residual[r];
            noise_squared += xi[r] * xi[r];
            proposal_log_det += std::log(kalman.proposal_factor(r, r));
          }
          log_weight += Scalar(-0.5) * squared - log_det + Scalar(0.5) * noise_squared +
                        proposal_log_det;
        } else {
          for (int r = 0; r < rank; ++r) {
            Scalar value = mean[r];
            for (int s = 0; s <= r; ++s) value += factor(r, s) * xi[s];
            z[r] = value;
          }
        }
        log_weight += observation_log_likelihood(data, step, z, Scalar(0), nullptr, nullptr);
        storage.increments[k] = carried[k] + static_cast<double>(log_weight);
      }
      // c_t = logsumexp_k(log W̄_{t−1} + log w_t): the step's log-evidence increment (method.md
      // §2; equals logsumexp(log w) − ln K after a resampling step).
      double maximum = -std::numeric_limits<double>::infinity();
      for (int k = 0; k < K; ++k) maximum = std::max(maximum, storage.increments[k]);
      if (!std::isfinite(maximum))
        throw NumericalError(detail::concat("particle filter: every log-weight of trial ", trial,
                                            " at step ", step, " is ", maximum,
                                            " (parameters or data are extreme)"));
      double sum = 0;
      for (int k = 0; k < K; ++k) sum += std::exp(storage.increments[k] - maximum);
      const double increment = maximum + std::log(sum);
      storage.log_evidence += increment;
      double* normalised = storage.log_weights.data() + std::size_t(step) * K;
      double squared_sum = 0;
      for (int k = 0; k < K; ++k) {
        normalised[k] = storage.increments[k] - increment;
        squared_sum += std::exp(2.0 * normalised[k]);
      }
      const double threshold = options_.resample_threshold;
      const bool resample =
          threshold >= 1.0 || (threshold > 0.0 && 1.0 / squared_sum < threshold * K);
      std::int32_t* ancestors = storage.ancestors.data() + std::size_t(step) * K;
      if (resample) {
        storage.resampled[step] = 1;
        double running = 0;
        for (int k = 0; k < K; ++k) {
          running += std::exp(normalised[k]);
          storage.cumulative[k] = running;
        }
        for (int k = 0; k < K; ++k) storage.cumulative[k] /= running;
        for (int k = 0; k < K; ++k) {
          const double position = math::resampling_position(
              options_.resampling, seed_, trial_id, std::uint32_t(step), std::uint32_t(k),
              std::uint32_t(K));
          ancestors[k] = math::lower_bound_index(storage.cumulative.data(), K, position);
        }
        std::fill(carried.begin(), carried.end(), -log_k);
      } else {
        for (int k = 0; k < K; ++k) {
          ancestors[k] = k;
          carried[k] = normalised[k];
        }
      }
    }
  }

  /// Reverse sweep of one trial (method.md §10.2), adding d(ℓ_b · scale)/dθ into `grad`.
  void backward_trial(const TrialData<Scalar>& data, const TrialStorage<Scalar>& storage,
                      double scale, TrialGradient<Scalar>& grad) const {
    const int steps = batch_->num_steps, rank = view_.rank, K = options_.num_particles,
              channels = view_.channels, inputs = view_.inputs;
    const std::size_t slice = std::size_t(K) * rank;
    const double grad_increment = scale / steps;  // ℓ_b = (1/T) Σ_t c_t
    std::vector<Scalar> grad_post(slice, Scalar(0)), grad_pre(slice), grad_next_post(slice);
    std::vector<double> grad_carried(std::size_t(K), 0.0), grad_log_weight(static_cast<std::size_t>(K));
    std::vector<Scalar> mean(rank), grad_z(rank), grad_proposal_mean(rank), grad_mean(rank),
        residual(rank), scaled_residual(rank), grad_previous(rank);
    const auto& layout = view_.layout;

    for (int step = steps - 1; step >= 0; --step) {
      const bool first = step == 0;
      const std::int32_t* ancestors = storage.ancestors.data() + std::size_t(step) * K;
      const double* normalised = storage.log_weights.data() + std::size_t(step) * K;
      // Route the adjoint of the post-resampling particles to their ancestors (scatter-add).
      std::fill(grad_pre.begin(), grad_pre.end(), Scalar(0));
      for (int k = 0; k < K; ++k)
        for (int r = 0; r < rank; ++r)
          grad_pre[std::size_t(ancestors[k]) * rank + r] += grad_post[std::size_t(k) * rank + r];
      // Adjoint of a_t^k = log W̄_{t−1}^k + log w_t^k through c_t and, when the step did not
      // resample, through the carried normalised weights log W̄_t = a_t − c_t.
      double carried_total = 0;
      if (!storage.resampled[step])
        for (int k = 0; k < K; ++k) carried_total += grad_carried[k];
      for (int k = 0; k < K; ++k) {
        const double softmax = std::exp(normalised[k]);
        double value = softmax * grad_increment;
        if (!storage.resampled[step]) value += grad_carried[k] - softmax * carried_total;
        grad_log_weight[k] = value;
      }
      const Matrix<Scalar>& factor = first ? view_.initial_factor : view_.transition_factor;
      const KalmanQuantities<Scalar>& kalman = first ? view_.initial_kalman : view_.kalman;
      Matrix<Scalar>& grad_factor = first ? grad.initial_factor : grad.transition_factor;
      Matrix<Scalar>& grad_proposal_factor =
          first ? grad.initial_proposal_factor : grad.proposal_factor;
      Matrix<Scalar>& grad_mean_product =
          first ? grad.initial_gain_mean_product : grad.gain_mean_product;
      Vector<Scalar> step_gain_sum = Vector<Scalar>::Zero(rank);
      const Scalar* particles = storage.particles.data() + std::size_t(step) * slice;
      const Scalar* noise = storage.noise.data() + std::size_t(step) * slice;
      const Scalar* previous_particles =
          first ? nullptr : storage.particles.data() + std::size_t(step - 1) * slice;
      const std::int32_t* previous_ancestors =
          first ? nullptr : storage.ancestors.data() + std::size_t(step - 1) * K;
      std::fill(grad_next_post.begin(), grad_next_post.end(), Scalar(0));
      if (inputs > 0) std::fill(grad.current.begin(), grad.current.end(), Scalar(0));

      for (int k = 0; k < K; ++k) {
        const Scalar weight = static_cast<Scalar>(grad_log_weight[k]);
        const Scalar* z = particles + std::size_t(k) * rank;
        const Scalar* xi = noise + std::size_t(k) * rank;
        const Scalar* previous =
            first ? nullptr : previous_particles + std::size_t(previous_ancestors[k]) * rank;
        if (first) {
          for (int r = 0; r < rank; ++r) mean[r] = data.initial_mean[r];
        } else {
          transition(previous, currents_at(data, step - 1), mean.data());
        }
        for (int r = 0; r < rank; ++r) grad_z[r] = grad_pre[std::size_t(k) * rank + r];
        observation_log_likelihood(data, step, z, weight, grad_z.data(), &grad);
        if (view_.optimal) {
          // Transition density term −½‖e‖² − Σ ln L_ii with e = L^{-1}(z − μ), f = L^{-T} e:
          // ∂/∂z = −f, ∂/∂μ = f, ∂/∂L = f eᵀ (lower) − diag(1/L_ii).
          math::whitened_residual(rank, factor.data(), z, mean.data(), residual.data());
          math::whitened_adjoint(rank, factor.data(), residual.data(), scaled_residual.data());
          for (int r = 0; r < rank; ++r) {
            grad_z[r] -= weight * scaled_residual[r];
            for (int s = 0; s <= r; ++s)
              grad_factor(r, s) += weight * scaled_residual[r] * residual[s];
            grad_factor(r, r) -= weight / factor(r, r);
            // −log q = ½‖ξ‖² + Σ ln L_q,ii (+ const): only L_q's diagonal.
            grad_proposal_factor(r, r) += weight / kalman.proposal_factor(r, r);
          }
          // z = μ_q + L_q ξ.
          for (int r = 0; r < rank; ++r) {
            for (int s = 0; s <= r; ++s) grad_proposal_factor(r, s) += grad_z[r] * xi[s];
            grad_proposal_mean[r] = grad_z[r];
          }
          // μ_q = μ + G (x − b − Bᵀμ): dμ = dμ_q − αᵀ dμ_q (+ f from the density term);
          // dG and dB need Σ dμ_q μᵀ and Σ dμ_q, finished once per trial.
          for (int r = 0; r < rank; ++r) {
            Scalar value = grad_proposal_mean[r] + weight * scaled_residual[r];
            for (int s = 0; s < rank; ++s) value -= kalman.alpha(s, r) * grad_proposal_mean[s];
            grad_mean[r] = value;
            step_gain_sum(r) += grad_proposal_mean[r];
            for (int s = 0; s < rank; ++s) grad_mean_product(r, s) += grad_proposal_mean[r] * mean[s];
          }
        } else {
          // z = μ + L ξ.
          for (int r = 0; r < rank; ++r) {
            for (int s = 0; s <= r; ++s) grad_factor(r, s) += grad_z[r] * xi[s];
            grad_mean[r] = grad_z[r];
          }
        }
        if (first) {
          for (int r = 0; r < rank; ++r) grad.initial_mean[r] += grad_mean[r];
        } else {
          transition_backward(previous, currents_at(data, step - 1), grad_mean.data(),
                              grad_previous.data(), grad);
          for (int r = 0; r < rank; ++r)
            grad_next_post[std::size_t(k) * rank + r] += grad_previous[r];
        }
      }
      if (view_.optimal) {
        // dG += (Σ_k dμ_q)(x_t − b)ᵀ; db −= Gᵀ Σ_k dμ_q.
        Matrix<Scalar>& grad_gain = first ? grad.initial_gain : grad.gain;
        const double* observed = data.observations + std::int64_t(step) * channels;
        for (int r = 0; r < rank; ++r)
          for (int i = 0; i < channels; ++i)
            grad_gain(r, i) +=
                step_gain_sum(r) * (static_cast<Scalar>(observed[i]) - view_.readout_bias[i]);
        (first ? grad.initial_gain_sum : grad.gain_sum) += step_gain_sum;
      }
      if (inputs > 0 && !first) {
        // X_t = m z + W_u u_{t−1}: dW_u += (Σ_k dX) u_{t−1}ᵀ.
        const double* input = data.inputs + std::int64_t(step - 1) * inputs;
        for (int i = 0; i < view_.hidden; ++i)
          for (int j = 0; j < inputs; ++j)
            grad.flat[layout.w_u + i * inputs + j] +=
                static_cast<double>(grad.current[i]) * input[j];
      }
      // Hand the adjoints to step t − 1.
      std::swap(grad_post, grad_next_post);
      for (int k = 0; k < K; ++k) grad_carried[k] = grad_log_weight[k];
    }
    finish_initial_mean(data, grad);
  }

  /// μ_0 = z_init + P_m W_u u_0: adjoints for z_init, m and W_u.
  void finish_initial_mean(const TrialData<Scalar>& data, TrialGradient<Scalar>& grad) const {
    const auto& layout = view_.layout;
    const int rank = view_.rank, hidden = view_.hidden, inputs = view_.inputs;
    if (layout.z_init >= 0)
      for (int r = 0; r < rank; ++r)
        grad.flat[layout.z_init + r] += static_cast<double>(grad.initial_mean[r]);
    if (inputs == 0) return;
    // y = M^{-1} s, M = mᵀm, s = mᵀ c: ds = M^{-1} dy, dM = −M^{-1} dy yᵀ,
    // dm = m (dM + dMᵀ) + c dsᵀ, dc = m ds, dW_u = dc u_0ᵀ.
    const Matrix<Scalar> loadings = Eigen::Map<const Matrix<Scalar>>(view_.m.data(), hidden, rank);
    const Vector<Scalar> current0 = Eigen::Map<const Vector<Scalar>>(data.currents.data(), hidden);
    const Vector<Scalar> grad_projection =
        Eigen::Map<const Vector<Scalar>>(grad.initial_mean.data(), rank);
    const Vector<Scalar> projection =
        Eigen::Map<const Vector<Scalar>>(data.initial_projection.data(), rank);
    const Matrix<Scalar> gram = loadings.transpose() * loadings;
    const Vector<Scalar> grad_source = gram.ldlt().solve(grad_projection);
    const Matrix<Scalar> grad_gram = -grad_source * projection.transpose();
    const Matrix<Scalar> grad_loadings =
        loadings * (grad_gram + grad_gram.transpose()) + current0 * grad_source.transpose();
    const Vector<Scalar> grad_current = loadings * grad_source;
    for (int i = 0; i < hidden; ++i) {
      for (int r = 0; r < rank; ++r)
        grad.flat[layout.m + i * rank + r] += static_cast<double>(grad_loadings(i, r));
      for (int j = 0; j < inputs; ++j)
        grad.flat[layout.w_u + i * inputs + j] +=
            static_cast<double>(grad_current(i)) * data.inputs[j];
    }
  }

  /// Sums per-trial gradients in trial order and runs the once-per-call adjoints (decay,
  /// noise factors, Kalman quantities).
  std::vector<double> finish_gradient(std::vector<TrialGradient<Scalar>>& per_trial) const {
    const auto& layout = view_.layout;
    const int rank = view_.rank;
    TrialGradient<Scalar> total;
    total.reset(view_);
    for (auto& grad : per_trial) {
      for (std::size_t i = 0; i < total.flat.size(); ++i) total.flat[i] += grad.flat[i];
      total.transition_factor += grad.transition_factor;
      total.initial_factor += grad.initial_factor;
      total.gain += grad.gain;
      total.initial_gain += grad.initial_gain;
      total.proposal_factor += grad.proposal_factor;
      total.initial_proposal_factor += grad.initial_proposal_factor;
      total.gain_mean_product += grad.gain_mean_product;
      total.initial_gain_mean_product += grad.initial_gain_mean_product;
      total.gain_sum += grad.gain_sum;
      total.initial_gain_sum += grad.initial_gain_sum;
      total.decay += grad.decay;
    }
    std::vector<double>& flat = total.flat;
    // a = exp(−exp(θ_a)) ⇒ da/dθ = −a exp(θ).
    const double theta = view_.raw[layout.decay_logit];
    flat[layout.decay_logit] += static_cast<double>(total.decay) * -std::exp(-std::exp(theta)) *
                                std::exp(theta);
    if (view_.optimal) {
      Matrix<Scalar> grad_readout = Matrix<Scalar>::Zero(rank, view_.channels);
      const auto finish = [&](const KalmanQuantities<Scalar>& kalman,
                              const Matrix<Scalar>& prior_factor, Matrix<Scalar> grad_gain,
                              const Matrix<Scalar>& grad_proposal_factor,
                              const Matrix<Scalar>& mean_product, const Vector<Scalar>& gain_sum,
                              Matrix<Scalar>& grad_prior_factor) {
        // μ_q = μ + G(x − b) − G Bᵀ μ: dG −= (Σ dμ_q μᵀ) B, dB −= (Σ dμ_q μᵀ)ᵀ G,
        // db −= Gᵀ Σ dμ_q.
        grad_gain -= mean_product * view_.readout_matrix;
        grad_readout -= mean_product.transpose() * kalman.gain;
        const Vector<Scalar> grad_bias = -kalman.gain.transpose() * gain_sum;
        for (int i = 0; i < view_.channels; ++i)
          flat[layout.readout_bias + i] += static_cast<double>(grad_bias(i));
        kalman_quantities_backward(kalman, prior_factor, view_.readout_matrix,
                                   view_.raw + layout.observation_noise, grad_gain,
                                   grad_proposal_factor, grad_prior_factor, grad_readout,
                                   flat.data() + layout.observation_noise);
      };
      finish(view_.kalman, view_.transition_factor, total.gain, total.proposal_factor,
             total.gain_mean_product, total.gain_sum, total.transition_factor);
      finish(view_.initial_kalman, view_.initial_factor, total.initial_gain,
             total.initial_proposal_factor, total.initial_gain_mean_product,
             total.initial_gain_sum, total.initial_factor);
      for (int r = 0; r < rank; ++r)
        for (int i = 0; i < view_.channels; ++i)
          flat[layout.readout_weight + r * view_.channels + i] +=
              static_cast<double>(grad_readout(r, i));
    }
    noise_factor_backward(view_.transition_factor, total.transition_factor,
                          view_.config.transition_noise, rank, flat.data() + layout.transition_noise);
    noise_factor_backward(view_.initial_factor, total.initial_factor, view_.config.initial_noise,
                          rank, flat.data() + layout.initial_noise);
    return flat;
  }

  FilterResult filter(const FilterRequest& request, int num_threads) const {
    const int trials = batch_->num_trials, steps = batch_->num_steps, rank = view_.rank,
              K = options_.num_particles;
    FilterResult result;
    result.elbo_per_trial.assign(std::size_t(trials), 0.0);
    if (request.filtered_mean) result.filtered_mean.assign(std::size_t(trials) * steps * rank, 0.0);
    if (request.particles) {
      result.particles.assign(std::size_t(trials) * steps * K * rank, 0.0);
      result.log_weights.assign(std::size_t(trials) * steps * K, 0.0);
      result.ancestors.assign(std::size_t(trials) * steps * K, 0);
      result.resampled.assign(std::size_t(trials) * steps, 0);
    }
    run_parallel(num_threads, [&](int trial, TrialStorage<Scalar>& storage) {
      const TrialData<Scalar> data = prepare_trial(trial);
      forward_trial(trial, data, storage);
      result.elbo_per_trial[trial] = storage.log_evidence / steps;
      const std::size_t slice = std::size_t(K) * rank;
      if (request.filtered_mean)
        for (int step = 0; step < steps; ++step)
          for (int k = 0; k < K; ++k) {
            const double weight = std::exp(storage.log_weights[std::size_t(step) * K + k]);
            for (int r = 0; r < rank; ++r)
              result.filtered_mean[(std::size_t(trial) * steps + step) * rank + r] +=
                  weight * static_cast<double>(storage.particles[step * slice + k * rank + r]);
          }
      if (request.particles) {
        const std::size_t offset = std::size_t(trial) * steps * slice;
        for (std::size_t i = 0; i < std::size_t(steps) * slice; ++i)
          result.particles[offset + i] = static_cast<double>(storage.particles[i]);
        std::copy(storage.log_weights.begin(), storage.log_weights.end(),
                  result.log_weights.begin() + std::ptrdiff_t(trial) * steps * K);
        std::copy(storage.ancestors.begin(), storage.ancestors.end(),
                  result.ancestors.begin() + std::ptrdiff_t(trial) * steps * K);
        std::copy(storage.resampled.begin(), storage.resampled.end(),
                  result.resampled.begin() + std::ptrdiff_t(trial) * steps);
      }
    });
    result.elbo = mean_of(result.elbo_per_trial);
    return result;
  }

  GradientResult gradient(int num_threads) const {
    const int trials = batch_->num_trials, steps = batch_->num_steps;
    GradientResult result;
    result.elbo_per_trial.assign(std::size_t(trials), 0.0);
    std::vector<TrialGradient<Scalar>> per_trial(static_cast<std::size_t>(trials));
    run_parallel(num_threads, [&](int trial, TrialStorage<Scalar>& storage) {
      const TrialData<Scalar> data = prepare_trial(trial);
      forward_trial(trial, data, storage);
      result.elbo_per_trial[trial] = storage.log_evidence / steps;
      per_trial[trial].reset(view_);
      backward_trial(data, storage, 1.0 / trials, per_trial[trial]);
    });
    result.elbo = mean_of(result.elbo_per_trial);
    result.gradient = finish_gradient(per_trial);
    return result;
  }

  template <typename Work>
  void run_parallel(int num_threads, const Work& work) const {
    const int trials = batch_->num_trials;
    std::vector<std::string> errors(static_cast<std::size_t>(trials));
    std::vector<int> error_kind(std::size_t(trials), 0);
#pragma omp parallel num_threads(num_threads)
    {
      TrialStorage<Scalar> storage;
#pragma omp for schedule(dynamic, 1)
      for (int trial = 0; trial < trials; ++trial) {
        // Exceptions may not cross an OpenMP region: record and rethrow after it.
        try {
          work(trial, storage);
        } catch (const NumericalError& error) {
          errors[trial] = error.what();
          error_kind[trial] = 1;
        } catch (const std::exception& error) {
          errors[trial] = error.what();
          error_kind[trial] = 2;
        }
      }
    }
    for (int trial = 0; trial < trials; ++trial) {
      if (error_kind[trial] == 1) throw NumericalError(errors[trial]);
      if (error_kind[trial] == 2) throw Error(errors[trial]);
    }
  }

  static double mean_of(const std::vector<double>& values) {
    double sum = 0;
    for (const double value : values) sum += value;
    return values.empty() ? 0.0 : sum / double(values.size());
  }

  const ModelView<Scalar>& view() const { return view_; }

 private:
  ModelView<Scalar> view_;
  FilterOptions options_;
  std::uint64_t seed_;
  const SequenceBatch* batch_;
};

/// Poisson draw by inversion (λ < 30) or the PTRS transformed rejection of Hörmann (1993),
/// fed by the Philox stream of (trial, step, channel).
double poisson_draw(double rate, std::uint64_t seed, std::uint32_t trial, std::uint32_t step,
                    std::uint32_t channel) {
  std::uint32_t index = 0;
  const auto next_uniform = [&]() {
    return math::uniform(seed, trial, step, channel, DrawStream::observation, index++);
  };
  if (rate <= 0) return 0;
  if (rate < 30) {
    double probability = std::exp(-rate), cumulative = probability, u = next_uniform();
    double count = 0;
    while (u > cumulative && count < 1000) {
      count += 1;
      probability *= rate / count;
      cumulative += probability;
    }
    return count;
  }
  const double slam = std::sqrt(rate), loglam = std::log(rate);
  const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b, inverse_alpha = 1.1239 + 1.1328 / (b - 3.4),
               v_r = 0.9277 - 3.6224 / (b - 2);
  for (int attempt = 0; attempt < 10000; ++attempt) {
    const double u = next_uniform() - 0.5, v = next_uniform(), us = 0.5 - std::fabs(u);
    const double k = std::floor((2 * a / us + b) * u + rate + 0.43);
    if (us >= 0.07 && v <= v_r) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (std::log(v) + std::log(inverse_alpha) - std::log(a / (us * us) + b) <=
        -rate + k * loglam - std::lgamma(k + 1))
      return k;
  }
  return std::round(rate);
}

template <typename Scalar>
SampleResult sample_model(const Model& model, int trials, int steps,
                          const std::vector<double>& inputs, std::uint64_t seed) {
  SequenceBatch batch;
  batch.num_trials = trials;
  batch.num_steps = steps;
  batch.num_channels = model.config.num_channels;
  batch.num_inputs = model.config.num_inputs;
  batch.observations.assign(std::size_t(trials) * steps * batch.num_channels, 0.0);
  batch.inputs = inputs;
  FilterOptions options;
  options.proposal = Proposal::bootstrap;
  const CpuEngine<Scalar> engine(model, &batch, options, seed);
  const auto& view = engine.view();
  const int rank = view.rank, channels = view.channels;
  SampleResult result;
  result.latents.assign(std::size_t(trials) * steps * rank, 0.0);
  result.rates.assign(std::size_t(trials) * steps * channels, 0.0);
  result.observations.assign(std::size_t(trials) * steps * channels, 0.0);
  for (int trial = 0; trial < trials; ++trial) {
    const auto data = engine.prepare_trial(trial);
    std::vector<Scalar> z(rank), mean(rank);
    for (int step = 0; step < steps; ++step) {
      const bool first = step == 0;
      if (first) {
        mean = data.initial_mean;
      } else {
        engine.transition(z.data(), engine.currents_at(data, step - 1), mean.data());
      }
      const Matrix<Scalar>& factor = first ? view.initial_factor : view.transition_factor;
      for (int r = 0; r < rank; ++r) {
        Scalar value = mean[r];
        for (int s = 0; s <= r; ++s)
          value += factor(r, s) * static_cast<Scalar>(math::standard_normal(
                                      seed, std::uint32_t(trial), std::uint32_t(step), 0,
                                      DrawStream::generative, std::uint32_t(s)));
        z[r] = value;
      }
      const std::size_t row = std::size_t(trial) * steps + step;
      for (int r = 0; r < rank; ++r) result.latents[row * rank + r] = static_cast<double>(z[r]);
      for (int i = 0; i < channels; ++i) {
        Scalar eta = view.readout_bias[i];
        for (int r = 0; r < rank; ++r) eta += view.readout[r * channels + i] * z[r];
        const double rate = static_cast<double>(math::link_response(view.config.link, eta).rate);
        result.rates[row * channels + i] = rate;
        if (view.config.observation == Observation::gaussian) {
          const double std_dev = std::exp(0.5 * static_cast<double>(view.log_variance[i]));
          result.observations[row * channels + i] =
              rate + std_dev * math::standard_normal(seed, std::uint32_t(trial),
                                                     std::uint32_t(step), std::uint32_t(i),
                                                     DrawStream::observation, 0);
        } else {
          result.observations[row * channels + i] = poisson_draw(
              rate, seed, std::uint32_t(trial), std::uint32_t(step), std::uint32_t(i));
        }
      }
    }
  }
  return result;
}

std::int64_t available_host_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value >> unit)
    if (key == "MemAvailable:") return value * 1024;
  return std::int64_t(16) << 30;
}

}  // namespace

CpuBackend::CpuBackend(const BackendOptions& options) : options_(options) {
  LRSMC_REQUIRE(options.num_threads >= 0 && options.num_threads <= 4096,
                "cpu backend: threads is out of range; got ", options.num_threads,
                ", expected 0 (all cores) to 4096");
}

std::string CpuBackend::name() const {
  return options_.single_precision ? "cpu (float32)" : "cpu (float64)";
}

int CpuBackend::threads() const {
  if (options_.num_threads > 0) return options_.num_threads;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

std::int64_t CpuBackend::memory_estimate(const ModelConfig& config, int num_trials,
                                         int num_steps, int num_particles,
                                         bool with_gradient) const {
  // Each worker holds one trial: particles and noise (2R scalars), weights and ancestors.
  const std::int64_t scalar = options_.single_precision ? 4 : 8;
  const std::int64_t per_trial = std::int64_t(num_steps) * num_particles *
                                 (2 * config.rank * scalar + 8 + 4);
  const std::int64_t workers = std::min<std::int64_t>(threads(), num_trials);
  std::int64_t total = workers * per_trial;
  if (with_gradient)
    total += std::int64_t(num_trials) * ParameterLayout(config).total_size() * 8;
  return total;
}

std::int64_t CpuBackend::memory_available() const { return available_host_memory(); }

FilterResult CpuBackend::do_filter(const Model& model, const SequenceBatch& batch,
                                   const FilterOptions& options, std::uint64_t seed,
                                   const FilterRequest& request) {
  if (options_.single_precision)
    return CpuEngine<float>(model, &batch, options, seed).filter(request, threads());
  return CpuEngine<double>(model, &batch, options, seed).filter(request, threads());
}

GradientResult CpuBackend::do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                            const FilterOptions& options, std::uint64_t seed) {
  if (options_.single_precision)
    return CpuEngine<float>(model, &batch, options, seed).gradient(threads());
  return CpuEngine<double>(model, &batch, options, seed).gradient(threads());
}

SampleResult CpuBackend::do_sample(const Model& model, int num_trials, int num_steps,
                                   const std::vector<double>& inputs, std::uint64_t seed) {
  if (options_.single_precision) return sample_model<float>(model, num_trials, num_steps, inputs, seed);
  return sample_model<double>(model, num_trials, num_steps, inputs, seed);
}

}  // namespace lrsmc::cpu
