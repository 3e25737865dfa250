// Device-resident training (method.md §5.1 on a GPU): the hook a backend offers so that Trainer
// keeps the training data, the parameters and the optimizer state on the device and only
// draws batches, launches, logs and checkpoints. Backends without it (the CPU) return none
// from Backend::start_training, and Trainer runs its host loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"

namespace lrsmc {

/// The step-dependent scalars of one Adam / RAdam step (PyTorch's formulas, computed by Trainer
/// from the step count so that host and device steps agree).
struct OptimizerCoefficients {
  double learning_rate = 0.0;
  double bias1 = 1.0, bias2 = 1.0;  ///< 1 − β₁ᵗ, 1 − β₂ᵗ
  double rectification = 1.0;       ///< RAdam's r_t (1 for Adam)
  bool rectified = true;            ///< false: RAdam's un-adapted warm-up step
};

/// What a session starts from.
struct TrainingSetup {
  const Dataset* train = nullptr;  ///< must outlive the session
  ModelConfig config;
  FilterOptions filter;
  double gradient_clip = 0.0;  ///< global norm; 0 = off
  int max_batch_trials = 0;    ///< most rows in one batch
  int batch_steps = 0;         ///< steps of every row (window, or the trials' length)
  std::vector<double> parameters, first_moment, second_moment;
};

struct StepOutcome {
  double elbo = 0.0;
  std::string failure;  ///< "" when the step was applied; otherwise why nothing changed
};

class TrainingSession {
 public:
  virtual ~TrainingSession() = default;
  /// ELBO gradient at the current parameters on rows (trials[b], from step starts[b]) of the
  /// training data, then, when the ELBO and the gradient are finite, one optimizer step (with
  /// gradient clipping). Otherwise nothing changes and `failure` says why.
  virtual StepOutcome step(const std::vector<int>& trials, const std::vector<int>& starts,
                           std::uint64_t seed, const OptimizerCoefficients& coefficients) = 0;
  /// Current parameters and optimizer moments (copied from the device).
  virtual void read_state(std::vector<double>& parameters, std::vector<double>& first_moment,
                          std::vector<double>& second_moment) = 0;
  /// The parameters at which the last step evaluated its gradient (host copy).
  [[nodiscard]] virtual const std::vector<double>& evaluated_parameters() const = 0;
};

}  // namespace lrsmc
