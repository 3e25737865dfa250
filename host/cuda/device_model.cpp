// Host side of the CUDA backend shared by the filter and training; see device_model.hpp.
#include "cuda/device_model.hpp"

#include "cuda/cuda_backend.hpp"

#include <algorithm>

#include "kernels/device_memory.hpp"
#include "kernels/training_launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cuda {

std::size_t particle_kernels_static_shared_bytes() {
  return std::max({kernels::filter_block_static_shared_bytes(),
                   kernels::many_particle_static_shared_bytes(),
                   kernels::backward_static_shared_bytes()});
}

bool loadings_fit_in_shared(const math::ModelShape& shape, int device_index) {
  int limit = 0;
  LRSMC_CUDA_CHECK(
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
  return kernels::loadings_shared_bytes(shape, true) + particle_kernels_static_shared_bytes() <=
         std::size_t(limit);
}

kernels::DeviceModel device_model(const math::ModelShape& shape, const double* parameters,
                                  double* constants, float* working, int device_index) {
  kernels::DeviceModel model;
  model.shape = shape;
  model.parameters = parameters;
  model.constants = constants;
  model.working = working;
  model.loadings_in_shared = loadings_fit_in_shared(shape, device_index);
  return model;
}

void set_filter_settings(kernels::FilterLaunch& launch, const FilterOptions& options, int steps,
                         int trials, std::uint64_t seed) {
  launch.num_particles = options.num_particles;
  launch.steps = steps;
  launch.data_steps = steps - options.t_forward;
  launch.trials = trials;
  launch.lanes = math::lanes_per_particle(options.num_particles);
  launch.resampling = options.resampling;
  launch.resample_threshold = options.resample_threshold;
  launch.seed = seed;
}

std::string failure_of(double constants_status, const std::vector<std::int32_t>& failed,
                       const std::vector<double>& evidence, int first_trial) {
  if (constants_status != 0.0) return model::constants_error(int(constants_status));
  for (std::size_t trial = 0; trial < failed.size(); ++trial)
    if (failed[trial] >= 0)
      return detail::concat("particle filter: every log-weight of trial ",
                            std::size_t(first_trial) + trial, " at step ", failed[trial], " is ",
                            evidence[trial], " (parameters or data are extreme)");
  return {};
}

double elbo_per_trial(const std::vector<double>& evidence, int steps,
                      std::vector<double>& per_trial) {
  per_trial.resize(evidence.size());
  for (std::size_t trial = 0; trial < evidence.size(); ++trial)
    per_trial[trial] = evidence[trial] / steps;
  return elbo_of(per_trial);
}

double elbo_of(const std::vector<double>& per_trial) {
  double total = 0;
  for (const double value : per_trial) total += value;
  return total / double(per_trial.size());
}

}  // namespace lrsmc::cuda
