// The CPU reference backend (Eigen, OpenMP over trials), float64 by default.
#pragma once

#include "lrsmc/backend.hpp"

namespace lrsmc::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options);
  [[nodiscard]] std::string name() const override;
  [[nodiscard]] std::int64_t memory_estimate(const ModelConfig& config, int num_trials,
                                             int num_steps, int num_particles,
                                             bool with_gradient) const override;
  [[nodiscard]] std::int64_t memory_available() const override;
  [[nodiscard]] Communicator* communicator() const override { return options_.communicator.get(); }

 private:
  [[nodiscard]] int threads() const;
  FilterResult do_filter(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options, std::uint64_t seed,
                         const FilterRequest& request) override;
  GradientResult do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed) override;
  SampleResult do_sample(const Model& model, int num_trials, int num_steps,
                         const std::vector<double>& inputs, std::uint64_t seed, int first_trial,
                         const std::vector<double>& initial_states) override;
  BackendOptions options_;
};

}  // namespace lrsmc::cpu
