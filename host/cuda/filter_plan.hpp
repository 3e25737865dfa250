// Regime choice and device-memory plan of the CUDA forward filter (design.md, "GPU work shape"
// and "Errors"): pure arithmetic with no CUDA types, compiled in every build so that its unit
// tests (tests/test_cuda_plan.cpp) run on machines without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"
#include "lrsmc/math/weights.hpp"

namespace lrsmc::cuda {

/// Particles per trial from which the automatic choice is the many-particle regime. Below it
/// one block per trial runs the whole time loop in a single launch (no per-step launches, and
/// 256 threads hold at most 8 particles each); from it, each block of the block-per-trial
/// kernel would walk ≥ 8 particles per thread per step while most SMs idle unless there are
/// hundreds of trials, and the three graph-captured launches per step of the many-particle
/// regime cost less than that serial work. A starting value to be tuned on the device with
/// bench/bench_cuda_filter (both regimes are timed at every K there).
constexpr int many_particle_threshold = 2048;
/// Particles per block of the many-particle kernels: one tile of the weight sums.
constexpr int many_particle_tile = math::weight_tile;

enum class FilterRegime { block_per_trial, many_particles };
[[nodiscard]] std::string to_string(FilterRegime regime);

/// The regime a call with `num_particles` per trial runs in: `requested` unless automatic.
[[nodiscard]] FilterRegime choose_filter_regime(int num_particles, CudaFilterRegime requested);

/// One forward-filter call as the device sees it.
struct FilterShape {
  ModelConfig config;
  std::int64_t trials = 0, steps = 0, particles = 0;
  bool store_all = false;      ///< every step's particles, weights and ancestors are kept
  bool filtered_mean = false;  ///< the filtered mean is computed
  bool optimal = true;         ///< optimal-proposal constants are uploaded
  bool encoder = false;        ///< the encoder proposal's factors and products (every step)
};

/// Bytes of device memory CudaBackend::do_filter allocates for `shape` in `regime`: every
/// buffer rounded up to the allocation granularity, plus a fixed margin for the CUDA graph and
/// allocator slack. Monotone in trials, steps and particles.
[[nodiscard]] std::int64_t filter_device_bytes(const FilterShape& shape, FilterRegime regime);

/// The buffers' part of filter_device_bytes (the same rounded buffer list, without the fixed
/// margin): the size of the device workspace CudaBackend keeps between calls for `shape`.
[[nodiscard]] std::int64_t filter_buffer_bytes(const FilterShape& shape, FilterRegime regime);

/// The leading part of filter_buffer_bytes that CudaBackend::do_filter uploads each call (the
/// flat float64 parameters, observations, ln Γ(x + 1), inputs and trial ids, each rounded as in
/// the buffer list): the workspace's first bytes, which one host-to-device copy from a pinned
/// staging buffer of this size fills. Independent of the particle count, the regime and what
/// is stored.
[[nodiscard]] std::int64_t filter_upload_bytes(const FilterShape& shape);

/// The sizes of the device encoder's buffers (host/cuda/device_encoder.hpp) for `trials` trials
/// of `data_steps` encoder steps: model::encoder_block_starts' blocks, the batch's and the
/// largest block's rows, the hidden layers' channels per row, the widest input, hidden layer
/// and output of a convolution, the largest tap and all taps' weights, the encoder's parameters.
struct EncoderPlan {
  std::vector<int> first_trial;
  std::int64_t rows = 0, block_rows = 0, hidden_floats = 0;
  std::int64_t longest_block_rows = 0;  ///< the longest block at data_steps or fewer steps
  int widest_input = 0, widest_hidden = 0, widest_out = 0;
  std::int64_t largest_tap = 0, tap_floats = 0, encoder_size = 0;
};
[[nodiscard]] EncoderPlan encoder_plan(const ModelConfig& config, int trials, int data_steps);

/// Device bytes of the device encoder's buffers for that batch, or for the same trials with
/// fewer encoder steps (forecast steps), each rounded as the plan's, and its cuBLAS workspace.
[[nodiscard]] std::int64_t encoder_device_bytes(const ModelConfig& config, int trials,
                                                int data_steps);

/// The largest particle count per trial (at shape.trials trials) and the largest trial count
/// (at shape.particles particles) whose plan fits in `available` bytes, each at most the
/// shape's own value and 0 when not even one fits. With `requested` automatic, the regime is
/// chosen again for each candidate particle count.
struct FilterFit {
  std::int64_t particles = 0;
  std::int64_t trials = 0;
};
[[nodiscard]] FilterFit largest_fitting(const FilterShape& shape, CudaFilterRegime requested,
                                        std::int64_t available);

/// The OutOfMemory message for a call that does not fit:
/// "cuda backend: the forward filter (many-particle regime, storing every step) of 100000
///  particles × 10 trials × 50 steps needs 2345 MiB of GPU memory but only 1000 MiB are free;
///  at most 42000 particles per trial (or 4 trials of 100000 particles) would fit".
[[nodiscard]] std::string out_of_memory_message(const FilterShape& shape,
                                                CudaFilterRegime requested,
                                                std::int64_t available);

}  // namespace lrsmc::cuda
