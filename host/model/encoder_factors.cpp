// The encoder proposal's factors on the host; see encoder_factors.hpp.
#include "model/encoder_factors.hpp"

#include <omp.h>

#include <algorithm>

#include "core/block_errors.hpp"
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

int encoder_block_count(int trials, int data_steps) {
  const std::int64_t rows = std::int64_t(trials) * data_steps;
  return int(std::max<std::int64_t>(
      1, std::min<std::int64_t>({trials, encoder_trial_blocks, rows / encoder_block_rows})));
}

std::vector<int> encoder_block_starts(int trials, int data_steps) {
  const int blocks = encoder_block_count(trials, data_steps);
  std::vector<int> starts;
  for (int block = 0; block <= blocks; ++block)
    starts.push_back(int(std::int64_t(trials) * block / blocks));
  return starts;
}

template <typename Scalar>
EncoderFactors<Scalar>::EncoderFactors(const Model& model, const SequenceBatch& batch,
                                       int data_steps, int threads)
    : config_(*model.config.encoder),
      rank_(model.config.rank),
      data_steps_(data_steps),
      threads_(threads > 0 ? threads : omp_get_max_threads()) {
  const int trials = batch.num_trials, R = rank_, D = model.config.num_channels;
  validate(config_, D, R, data_steps, "encoder proposal");
  const ParameterLayout layout(model.config);
  offset_ = layout.encoder;
  parameters_.assign(model.parameters.begin() + layout.encoder,
                     model.parameters.begin() + layout.encoder + layout.encoder_size);
  first_trial_ = encoder_block_starts(trials, data_steps);
  const int blocks = int(first_trial_.size()) - 1;
  passes_.resize(std::size_t(blocks));
  const std::size_t kept = std::size_t(data_steps) * D, stored = std::size_t(batch.num_steps) * D;
  const ThreadCountScope single_thread(1);  // Eigen inside each block: one thread
  detail::BlockErrors errors(blocks);
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
  for (int block = 0; block < blocks; ++block) {
    errors.run(block, [&] {
      const int first = first_trial_[std::size_t(block)],
                count = first_trial_[std::size_t(block) + 1] - first;
      std::vector<Scalar> observed(std::size_t(count) * kept);
      for (std::size_t trial = 0; trial < std::size_t(count); ++trial)
        for (std::size_t i = 0; i < kept; ++i)
          observed[trial * kept + i] =
              static_cast<Scalar>(batch.observations[(std::size_t(first) + trial) * stored + i]);
      passes_[std::size_t(block)] =
          encoder_forward(config_, parameters_, observed, count, data_steps, D, R);
    });
  }
  errors.rethrow();
  const std::size_t cells = std::size_t(trials) * data_steps * R;
  mean_.resize(cells);
  variance_.resize(cells);
  slope_.resize(cells);
  std::size_t cell = 0;
  for (const EncoderPass<Scalar>& pass : passes_)
    for (std::size_t i = 0; i < pass.mean.size(); ++i, ++cell) {
      mean_[cell] = double(pass.mean[i]);
      const auto variance = math::encoder_variance(double(pass.log_variance[i]));
      variance_[cell] = variance.value;
      slope_[cell] = variance.slope;
    }
}

template <typename Scalar>
void EncoderFactors<Scalar>::add_gradient(const std::vector<double>& grad_mean,
                                          const std::vector<double>& grad_variance,
                                          std::vector<double>& gradient) const {
  const int blocks = int(passes_.size()), threads = threads_;
  const std::size_t per_trial = std::size_t(data_steps_) * std::size_t(rank_);
  const ThreadCountScope single_thread(1);
  // Waves of `threads` blocks run in parallel; their gradients are added in block order.
  std::vector<std::vector<double>> partial(std::size_t(std::min(threads, blocks)));
  for (int wave = 0; wave < blocks; wave += int(partial.size())) {
    const int count = std::min(int(partial.size()), blocks - wave);
    detail::BlockErrors errors(count);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int j = 0; j < count; ++j) {
      errors.run(j, [&] {
        const int block = wave + j;
        const std::size_t begin = std::size_t(first_trial_[std::size_t(block)]) * per_trial,
                          end = std::size_t(first_trial_[std::size_t(block) + 1]) * per_trial;
        // The variances' adjoints reach the log-variances through the clamp's slope.
        std::vector<Scalar> mean_gradient(end - begin), log_variance_gradient(end - begin);
        for (std::size_t cell = begin; cell < end; ++cell) {
          mean_gradient[cell - begin] = static_cast<Scalar>(grad_mean[cell]);
          log_variance_gradient[cell - begin] =
              static_cast<Scalar>(grad_variance[cell] * slope_[cell]);
        }
        partial[std::size_t(j)] =
            encoder_backward(config_, parameters_, passes_[std::size_t(block)], mean_gradient,
                             log_variance_gradient);
      });
    }
    errors.rethrow();
    for (int j = 0; j < count; ++j)
      for (std::size_t i = 0; i < partial[std::size_t(j)].size(); ++i)
        gradient[std::size_t(offset_) + i] += partial[std::size_t(j)][i];
  }
}

void throw_product_failure(int trial, int step) {
  throw NumericalError(detail::concat(
      "encoder proposal: the product of the prior and the encoder's factor is not positive "
      "definite at trial ",
      trial, ", step ", step, " (noise parameters have diverged)"));
}

template class EncoderFactors<float>;
template class EncoderFactors<double>;

}  // namespace lrsmc::model
