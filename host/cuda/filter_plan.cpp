// Regime choice and device-memory plan of the CUDA forward filter; see filter_plan.hpp. The
// buffer list mirrors CudaBackend::do_filter (host/cuda/cuda_backend.cpp) one for one.
#include "cuda/filter_plan.hpp"

#include <algorithm>

#include "kernels/launch.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "model/encoder_factors.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cuda {
namespace {

/// cudaMalloc hands out 256-byte-aligned blocks from 2 MiB pages; 512 bytes per buffer is a
/// safe rounding for the many small buffers, and the margin covers the page slack.
constexpr std::int64_t granularity = 512;
/// CUDA graph, its instantiation, and allocator slack.
constexpr std::int64_t margin = std::int64_t(64) << 20;
/// The workspace cuBLAS allocates for a handle (32 MiB on Hopper, less on older devices).
constexpr std::int64_t cublas_workspace_bytes = std::int64_t(32) << 20;

std::int64_t rounded(std::int64_t bytes) {
  return bytes <= 0 ? 0 : (bytes + granularity - 1) / granularity * granularity;
}

std::int64_t mebibytes(std::int64_t bytes) { return (bytes + (1 << 20) - 1) >> 20; }

/// Largest n in [0, high] with fits(n), for a monotone predicate with fits(0) possibly false
/// (then 0).
template <typename Fits>
std::int64_t largest(std::int64_t high, const Fits& fits) {
  std::int64_t low = 0;  // invariant: fits(low) or low == 0
  while (low < high) {
    const std::int64_t middle = low + (high - low + 1) / 2;
    if (fits(middle)) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

}  // namespace

std::string to_string(FilterRegime regime) {
  return regime == FilterRegime::many_particles ? "many-particle" : "block-per-trial";
}

FilterRegime choose_filter_regime(int num_particles, CudaFilterRegime requested) {
  switch (requested) {
    case CudaFilterRegime::block_per_trial: return FilterRegime::block_per_trial;
    case CudaFilterRegime::many_particles: return FilterRegime::many_particles;
    case CudaFilterRegime::automatic: break;
  }
  return num_particles >= many_particle_threshold ? FilterRegime::many_particles
                                                  : FilterRegime::block_per_trial;
}

std::int64_t filter_upload_bytes(const FilterShape& shape) {
  const ModelConfig& config = shape.config;
  const std::int64_t D = config.num_channels, U = config.num_inputs;
  const std::int64_t trials = shape.trials, cells = trials * shape.steps;
  std::int64_t total = 0;
  const auto add = [&total](std::int64_t bytes) { total += rounded(bytes); };
  add(ParameterLayout(config).total_size() * 8);  // the flat float64 parameters
  add(cells * D * 4);                              // observations
  if (config.observation == Observation::poisson) add(cells * D * 4);  // ln Γ(x + 1)
  if (U > 0) add(cells * U * 8);                   // inputs
  add(trials * 4);                                 // trial ids
  return total;
}

std::int64_t filter_device_bytes(const FilterShape& shape, FilterRegime regime) {
  const ModelConfig& config = shape.config;
  const std::int64_t R = config.rank, N = config.num_hidden;
  const std::int64_t trials = shape.trials, steps = shape.steps, K = shape.particles;
  const std::int64_t cells = trials * steps;
  const math::ModelShape model =
      model::model_shape(config, shape.optimal ? Proposal::optimal : Proposal::bootstrap);
  // The uploaded buffers come first (one contiguous region, filled by one copy), then what the
  // device computes from them, then the filter's own buffers.
  std::int64_t total = margin + filter_upload_bytes(shape);
  const auto add = [&total](std::int64_t bytes) { total += rounded(bytes); };
  add(math::ConstantsLayout(model).size * 8);              // float64 constants
  add(math::ParticleConstantsLayout(model).size * 4);      // their float copy
  add(math::constants_scratch_size(model.rank, model.channels) * 8);
  if (config.num_inputs > 0) add(cells * N * 4);           // input currents
  if (math::readout_input_rows(model) > 0) add(cells * config.num_channels * 4);  // B_vᵀ u_t
  add(trials * R * 4);                                     // initial means
  // The encoder itself (its own allocations, outside the workspace: filter_buffer_bytes).
  if (shape.encoder) add(encoder_device_bytes(config, int(trials), int(steps)));
  if (shape.encoder) {  // the encoder proposal's products, records, status and scratch
    add(cells * kernels::encoder_product_doubles(int(R)) * 8);
    add(cells * kernels::encoder_cell_floats(int(R)) * 4);
    add(cells);
    add(kernels::encoder_products_threads(cells) * math::encoder_step_scratch_size(int(R)) * 8);
  }
  // Particles (float32), normalised log-weights (float64), ancestors (int32): every step when
  // stored, else two particle slices and one weight/ancestor slice reused in place.
  const std::int64_t particle_slices = shape.store_all ? steps : 2;
  const std::int64_t weight_slices = shape.store_all ? steps : 1;
  add(trials * particle_slices * K * R * 4);
  add(trials * weight_slices * K * 8);
  add(trials * weight_slices * K * 4);
  if (shape.store_all) add(cells);  // resampling flags
  add(trials * 8);                  // log-evidence
  add(trials * 4);                  // failed step
  if (shape.filtered_mean) add(cells * R * 8);
  add(trials * std::int64_t((K + many_particle_tile - 1) / many_particle_tile) * (5 + R) * 8);  // tiles
  if (regime == FilterRegime::block_per_trial) {
    add(trials * K * 8);  // carried log-weights
    add(trials * K * 8);  // cumulative weights
  } else {
    add(trials * K * 8);  // cumulative weights, two step parities
    add(trials * K * 8);
    add(trials * 8);  // c_t
    add(trials * 8);  // cumulative total
    add(trials * 4);  // resampling decision
  }
  return total;
}

std::int64_t filter_buffer_bytes(const FilterShape& shape, FilterRegime regime) {
  return filter_device_bytes(shape, regime) - margin -
         (shape.encoder ? rounded(encoder_device_bytes(shape.config, int(shape.trials),
                                                       int(shape.steps)))
                        : 0);
}

EncoderPlan encoder_plan(const ModelConfig& config, int trials, int data_steps) {
  LRSMC_ASSERT(config.encoder.has_value());
  const EncoderConfig& encoder = *config.encoder;
  EncoderPlan plan;
  plan.first_trial = model::encoder_block_starts(trials, data_steps);
  plan.rows = std::int64_t(trials) * data_steps;
  for (std::size_t b = 0; b + 1 < plan.first_trial.size(); ++b)
    plan.block_rows = std::max<std::int64_t>(
        plan.block_rows,
        std::int64_t(plan.first_trial[b + 1] - plan.first_trial[b]) * data_steps);
  // A call may run the encoder over fewer steps (forecast steps): its blocks can be longer.
  for (int steps = 1; steps < data_steps; ++steps) {
    const int blocks = model::encoder_block_count(trials, steps);
    plan.longest_block_rows = std::max<std::int64_t>(
        plan.longest_block_rows, std::int64_t((trials + blocks - 1) / blocks) * steps);
  }
  plan.longest_block_rows = std::max(plan.longest_block_rows, plan.block_rows);
  int in = config.num_channels;
  const auto add_layer = [&](int out, int kernel) {
    plan.widest_input = std::max(plan.widest_input, in);
    plan.widest_out = std::max(plan.widest_out, out);
    plan.largest_tap = std::max(plan.largest_tap, std::int64_t(out) * in);
    plan.tap_floats += std::int64_t(kernel) * out * in;
  };
  for (std::size_t l = 0; l < encoder.channels.size(); ++l) {
    add_layer(encoder.channels[l], encoder.kernels[l]);
    plan.hidden_floats += encoder.channels[l];
    plan.widest_hidden = std::max(plan.widest_hidden, encoder.channels[l]);
    in = encoder.channels[l];
  }
  add_layer(config.rank, encoder.kernels.back());
  if (!encoder.constant_variance) add_layer(config.rank, encoder.kernels.back());
  plan.encoder_size = ParameterLayout(config).encoder_size;
  return plan;
}

std::int64_t encoder_device_bytes(const ModelConfig& config, int trials, int data_steps) {
  const EncoderPlan plan = encoder_plan(config, trials, data_steps);
  const std::int64_t R = config.rank;
  // Taps; every row's hidden pre-activations and outputs and the heads' values; one block's
  // gathered input, spread, two adjoints, the heads' adjoints and ones; sums and a tap's
  // gradient.
  // (At `data_steps` or fewer encoder steps: the longest block of any of them.)
  const std::int64_t floats = plan.tap_floats + plan.rows * (2 * plan.hidden_floats + 2 * R) +
                              plan.longest_block_rows * (2 * std::int64_t(plan.widest_input) +
                                                         2 * plan.widest_hidden + 2 * R + 1) +
                              plan.widest_out + plan.largest_tap;
  // The factors (mean, variance, slope) and the block's and the total gradient.
  const std::int64_t doubles = plan.rows * R * 3 + plan.encoder_size * 2;
  // Each buffer is its own allocation, one granule of rounding each: the taps of every
  // convolution (H hidden, the heads), every hidden layer's two, the heads' values, the factors,
  // the block's nine and the two gradients.
  const std::int64_t hidden = std::int64_t(config.encoder->channels.size()),
                     heads = config.encoder->constant_variance ? 1 : 2;
  const std::int64_t buffers = (hidden + heads) + 2 * hidden + heads + 3 + 9 + 2;
  return floats * 4 + doubles * 8 + buffers * granularity + cublas_workspace_bytes;
}

FilterFit largest_fitting(const FilterShape& shape, CudaFilterRegime requested,
                          std::int64_t available) {
  FilterFit fit;
  fit.particles = largest(shape.particles, [&](std::int64_t particles) {
    FilterShape candidate = shape;
    candidate.particles = particles;
    const FilterRegime regime =
        choose_filter_regime(int(std::min<std::int64_t>(particles, 1 << 30)), requested);
    return particles > 0 && filter_device_bytes(candidate, regime) <= available;
  });
  const FilterRegime regime = choose_filter_regime(int(shape.particles), requested);
  fit.trials = largest(shape.trials, [&](std::int64_t trials) {
    FilterShape candidate = shape;
    candidate.trials = trials;
    return trials > 0 && filter_device_bytes(candidate, regime) <= available;
  });
  return fit;
}

std::string out_of_memory_message(const FilterShape& shape, CudaFilterRegime requested,
                                  std::int64_t available) {
  const FilterRegime regime = choose_filter_regime(int(shape.particles), requested);
  const FilterFit fit = largest_fitting(shape, requested, available);
  std::string what = to_string(regime) + " regime";
  if (shape.store_all) what += ", storing every step";
  return detail::concat(
      "cuda backend: the forward filter (", what, ") of ", shape.particles, " particles × ",
      shape.trials, " trials × ", shape.steps, " steps needs ",
      mebibytes(filter_device_bytes(shape, regime)), " MiB of GPU memory but only ",
      available >> 20, " MiB are free; at most ", fit.particles, " particles per trial (or ",
      fit.trials, " trials of ", shape.particles, " particles) would fit",
      shape.store_all ? "; without stored particle paths more would" : "");
}

}  // namespace lrsmc::cuda
