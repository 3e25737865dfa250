// Kalman filter and Rauch–Tung–Striebel smoother of a linear-Gaussian model; see
// linear_gaussian.hpp.
#include "support/linear_gaussian.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <string>

namespace lrsmc::testing {
namespace {

using Matrix = Eigen::MatrixXd;
using Vector = Eigen::VectorXd;

/// The model's matrices.
struct LinearGaussian {
  Matrix transition, process, initial, observation, noise;
  Vector offset, initial_mean, bias;
};

LinearGaussian linear_gaussian(const Model& model) {
  const auto& c = model.config;
  const int rank = c.rank, hidden = c.num_hidden, channels = c.num_channels;
  const auto m = model.get("m"), n = model.get("n"), h = model.get("h");
  LinearGaussian lg;
  lg.transition = model.decay() * Matrix::Identity(rank, rank);
  lg.offset = Vector::Zero(rank);
  for (int r = 0; r < rank; ++r)
    for (int i = 0; i < hidden; ++i) {
      lg.offset(r) -= n[r * hidden + i] * h[i];
      for (int s = 0; s < rank; ++s) lg.transition(r, s) += n[r * hidden + i] * m[i * rank + s];
    }
  const auto factor = [&](const std::string& name) {
    const auto rho = model.get(name);
    Matrix lower = Matrix::Zero(rank, rank);
    for (int r = 0; r < rank; ++r) {
      for (int s = 0; s < r; ++s) lower(r, s) = rho[r * rank + s];
      lower(r, r) = std::exp(0.5 * rho[r * rank + r]);
    }
    return Matrix(lower * lower.transpose());
  };
  lg.process = factor("transition_noise");
  lg.initial = factor("initial_noise");
  lg.initial_mean = Eigen::Map<const Vector>(model.get("z_init").data(), rank);
  const auto readout = model.get("readout_weight"), bias = model.get("readout_bias"),
             log_variance = model.get("observation_noise");
  lg.observation = Matrix(channels, rank);
  for (int i = 0; i < channels; ++i)
    for (int r = 0; r < rank; ++r) lg.observation(i, r) = readout[r * channels + i];
  lg.noise = Matrix::Zero(channels, channels);
  for (int i = 0; i < channels; ++i) lg.noise(i, i) = std::exp(log_variance[i]);
  lg.bias = Eigen::Map<const Vector>(bias.data(), channels);
  return lg;
}

/// One trial's Kalman filter: the filtered means and covariances of every step, and the
/// log-likelihood.
struct Filtered {
  std::vector<Vector> mean;
  std::vector<Matrix> covariance;
  double log_likelihood = 0.0;
};

Filtered kalman_filter(const LinearGaussian& lg, const SequenceBatch& batch, int trial) {
  const int rank = int(lg.transition.rows()), channels = int(lg.observation.rows());
  Filtered out;
  Vector mean = lg.initial_mean;
  Matrix covariance = lg.initial;
  for (int step = 0; step < batch.num_steps; ++step) {
    if (step > 0) {
      mean = lg.transition * mean + lg.offset;
      covariance = lg.transition * covariance * lg.transition.transpose() + lg.process;
    }
    Vector x(channels);
    for (int i = 0; i < channels; ++i)
      x(i) = batch.observations[(std::size_t(trial) * batch.num_steps + step) * channels + i] -
             lg.bias(i);
    const Matrix innovation = lg.observation * covariance * lg.observation.transpose() + lg.noise;
    const Eigen::LLT<Matrix> cholesky(innovation);
    const Vector residual = x - lg.observation * mean;
    double log_det = 0;
    for (int i = 0; i < channels; ++i) log_det += 2 * std::log(Matrix(cholesky.matrixL())(i, i));
    out.log_likelihood +=
        -0.5 * (residual.dot(cholesky.solve(residual)) + log_det + channels * std::log(2 * M_PI));
    const Matrix gain = covariance * lg.observation.transpose() *
                        cholesky.solve(Matrix::Identity(channels, channels));
    mean += gain * residual;
    covariance = (Matrix::Identity(rank, rank) - gain * lg.observation) * covariance;
    out.mean.push_back(mean);
    out.covariance.push_back(covariance);
  }
  return out;
}

}  // namespace

double kalman_log_likelihood(const Model& model, const SequenceBatch& batch) {
  const LinearGaussian lg = linear_gaussian(model);
  double total = 0;
  for (int trial = 0; trial < batch.num_trials; ++trial)
    total += kalman_filter(lg, batch, trial).log_likelihood;
  return total / (batch.num_trials * batch.num_steps);
}

ExactSmoother rts_smoother(const Model& model, const SequenceBatch& batch) {
  const LinearGaussian lg = linear_gaussian(model);
  const int rank = model.config.rank, steps = batch.num_steps;
  ExactSmoother out;
  out.mean.resize(std::size_t(batch.num_trials) * steps * rank);
  out.std_dev.resize(out.mean.size());
  for (int trial = 0; trial < batch.num_trials; ++trial) {
    const Filtered filtered = kalman_filter(lg, batch, trial);
    Vector mean = filtered.mean.back();
    Matrix covariance = filtered.covariance.back();
    for (int step = steps - 1; step >= 0; --step) {
      if (step < steps - 1) {
        const Matrix& p = filtered.covariance[std::size_t(step)];
        const Matrix predicted = lg.transition * p * lg.transition.transpose() + lg.process;
        const Matrix gain = p * lg.transition.transpose() * predicted.inverse();
        const Vector& m = filtered.mean[std::size_t(step)];
        mean = m + gain * (mean - (lg.transition * m + lg.offset));
        covariance = p + gain * (covariance - predicted) * gain.transpose();
      }
      for (int r = 0; r < rank; ++r) {
        const std::size_t at = (std::size_t(trial) * steps + step) * rank + r;
        out.mean[at] = mean(r);
        out.std_dev[at] = std::sqrt(covariance(r, r));
      }
    }
  }
  return out;
}

}  // namespace lrsmc::testing
