// Internal: launchers of the CUDA kernels, callable from host C++ (no templates or CUDA types
// cross this header except cudaStream_t).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "lrsmc/config.hpp"

namespace lrsmc::kernels {

/// Largest rank the CUDA kernels support (per-particle state lives in registers).
constexpr int max_rank = 16;

/// Everything the forward filter reads and writes; pointers are device memory.
struct FilterLaunch {
  int rank = 0, hidden = 0, channels = 0, num_particles = 0, steps = 0, trials = 0;
  Nonlinearity nonlinearity = Nonlinearity::relu;
  Observation observation = Observation::gaussian;
  Link link = Link::identity;
  bool optimal = false;
  Resampling resampling = Resampling::systematic;
  double resample_threshold = 1.0;
  float decay = 0.f;
  std::uint64_t seed = 0;
  // Model (float32).
  const float* m = nullptr;             // (hidden, rank)
  const float* n = nullptr;             // (rank, hidden)
  const float* h = nullptr;             // (hidden)
  const float* readout = nullptr;       // (rank, channels)
  const float* readout_bias = nullptr;  // (channels)
  const float* log_variance = nullptr;  // (channels), Gaussian only
  // Per-call constants: [0] initial step, [1] later steps. Lower-triangular (rank, rank).
  const float* noise_factor[2] = {nullptr, nullptr};
  float noise_log_det[2] = {0.f, 0.f};
  const float* gain[2] = {nullptr, nullptr};             // (rank, channels), optimal only
  const float* alpha[2] = {nullptr, nullptr};            // (rank, rank)
  const float* proposal_factor[2] = {nullptr, nullptr};  // (rank, rank)
  float proposal_log_det[2] = {0.f, 0.f};
  // Data.
  const float* observations = nullptr;   // (trials, steps, channels)
  const float* log_factorial = nullptr;  // (trials, steps, channels), Poisson only
  const float* currents = nullptr;       // (trials, steps, hidden) W_u u_t, or null
  const float* initial_mean = nullptr;   // (trials, rank)
  const std::uint32_t* trial_ids = nullptr;  // (trials)
  // Workspace and outputs. With store_all every step is kept (filter outputs, backward pass);
  // otherwise two particle slices and one weight/ancestor slice per trial are reused.
  bool store_all = false;
  float* particles = nullptr;            // (trials, store_all ? steps : 2, particles, rank)
  double* log_weights = nullptr;         // (trials, store_all ? steps : 1, particles)
  std::int32_t* ancestors = nullptr;     // (trials, store_all ? steps : 1, particles)
  std::uint8_t* resampled = nullptr;     // (trials, steps) or null
  double* carried = nullptr;             // (trials, particles)
  double* cumulative = nullptr;          // (trials, particles)
  double* log_evidence = nullptr;        // (trials): Σ_t c_t, or the non-finite maximum log-weight
  std::int32_t* failed_step = nullptr;   // (trials): −1, or the step whose log-weights were all ±inf/NaN
  double* filtered_mean = nullptr;       // (trials, steps, rank) or null
};

/// Runs the whole filter, one thread block per trial with the time loop inside the kernel
/// (design.md, "few particles" regime). Deterministic: no atomics, fixed reduction order.
void filter_block_per_trial(const FilterLaunch& launch, cudaStream_t stream);

/// Dynamic shared memory the kernel needs (model loadings), in bytes.
[[nodiscard]] std::size_t filter_shared_bytes(int rank, int hidden);
/// Static shared memory of the kernel (CUB temporary storage), in bytes.
[[nodiscard]] std::size_t filter_static_shared_bytes();

}  // namespace lrsmc::kernels
