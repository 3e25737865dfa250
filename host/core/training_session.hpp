// Internal: device-resident training (method.md §5.1 on a GPU), the hook a backend offers so
// that Trainer keeps the training data, the parameters and the optimizer state on the device
// and only draws batches, reads each step's outcome, logs and checkpoints. Backends without it
// (the CPU) return none from Backend::start_training, and Trainer runs its host loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/math/optimizer.hpp"

namespace lrsmc {

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
  /// gradient clipping). Otherwise nothing changes and `failure` says why, in the words of the
  /// host loop.
  virtual StepOutcome step(const std::vector<int>& trials, const std::vector<int>& starts,
                           std::uint64_t seed, const math::AdamCoefficients& coefficients) = 0;
  /// Current parameters and optimizer moments (copied from the device).
  virtual void read_state(std::vector<double>& parameters, std::vector<double>& first_moment,
                          std::vector<double>& second_moment) = 0;
  /// The parameters at which the last applied step evaluated its gradient (the initial
  /// parameters before any step), copied from the device.
  virtual void read_evaluated(std::vector<double>& parameters) = 0;
};

}  // namespace lrsmc
