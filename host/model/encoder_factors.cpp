// The encoder proposal's factors on the host; see encoder_factors.hpp.
#include "model/encoder_factors.hpp"

#include <omp.h>

#include "lrsmc/errors.hpp"
#include "lrsmc/math/encoder.hpp"

namespace lrsmc::model {
namespace {

/// Holds the calling thread's OpenMP thread count at `threads` while it lives and restores it
/// after. The encoder's Eigen products run under a count of one: Eigen would otherwise split each
/// product over every core whatever the call's thread count, and its threads spin-wait for each
/// other, which on busy or oversubscribed cores cost five times the single-threaded time.
class ThreadCountScope {
 public:
  explicit ThreadCountScope(int threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~ThreadCountScope() { omp_set_num_threads(saved_); }
  ThreadCountScope(const ThreadCountScope&) = delete;
  ThreadCountScope& operator=(const ThreadCountScope&) = delete;

 private:
  int saved_;
};

}  // namespace

template <typename Scalar>
EncoderFactors<Scalar>::EncoderFactors(const Model& model, const SequenceBatch& batch,
                                       int data_steps)
    : config_(*model.config.encoder) {
  const int trials = batch.num_trials, R = model.config.rank, D = model.config.num_channels;
  validate(config_, D, R, data_steps, "encoder proposal");
  const ParameterLayout layout(model.config);
  offset_ = layout.encoder;
  parameters_.assign(model.parameters.begin() + layout.encoder,
                     model.parameters.begin() + layout.encoder + layout.encoder_size);
  const std::size_t kept = std::size_t(data_steps) * D, stored = std::size_t(batch.num_steps) * D;
  std::vector<Scalar> observed(std::size_t(trials) * kept);
  for (std::size_t trial = 0; trial < std::size_t(trials); ++trial)
    for (std::size_t i = 0; i < kept; ++i)
      observed[trial * kept + i] = static_cast<Scalar>(batch.observations[trial * stored + i]);
  const ThreadCountScope single_thread(1);
  pass_ = encoder_forward(config_, parameters_, observed, trials, data_steps, D, R);
  const std::size_t cells = std::size_t(trials) * data_steps * R;
  mean_.resize(cells);
  variance_.resize(cells);
  slope_.resize(cells);
  for (std::size_t i = 0; i < cells; ++i) {
    mean_[i] = double(pass_.mean[i]);
    const auto variance = math::encoder_variance(double(pass_.log_variance[i]));
    variance_[i] = variance.value;
    slope_[i] = variance.slope;
  }
}

template <typename Scalar>
void EncoderFactors<Scalar>::add_gradient(const std::vector<double>& grad_mean,
                                          const std::vector<double>& grad_variance,
                                          std::vector<double>& gradient) const {
  // The variances' adjoints reach the log-variances through the clamp's slope.
  std::vector<Scalar> mean_gradient(mean_.size()), log_variance_gradient(mean_.size());
  for (std::size_t cell = 0; cell < mean_.size(); ++cell) {
    mean_gradient[cell] = static_cast<Scalar>(grad_mean[cell]);
    log_variance_gradient[cell] = static_cast<Scalar>(grad_variance[cell] * slope_[cell]);
  }
  const ThreadCountScope single_thread(1);
  const std::vector<double> encoder_gradient =
      encoder_backward(config_, parameters_, pass_, mean_gradient, log_variance_gradient);
  for (std::size_t i = 0; i < encoder_gradient.size(); ++i)
    gradient[std::size_t(offset_) + i] += encoder_gradient[i];
}

void throw_product_failure(int trial, int step) {
  throw NumericalError(detail::concat(
      "encoder proposal: the product of the prior and the encoder's factor is not positive "
      "definite at trial ", trial, ", step ", step, " (noise parameters have diverged)"));
}

template class EncoderFactors<float>;
template class EncoderFactors<double>;

}  // namespace lrsmc::model
