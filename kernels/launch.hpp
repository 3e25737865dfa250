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

/// Workspace of the many-particle regime (design.md, "GPU work shape"): particles of a trial are
/// spread over ceil(K / many_particle_tile) blocks. Device memory; sizes in the comments, with
/// B = many_particle_blocks(K). FilterLaunch::carried and ::cumulative are not used: the carried
/// weight is read back from the previous step's normalised log-weights, and the cumulative
/// weights need two slices (the search of step t − 1 runs while step t's are written).
struct ManyParticleWorkspace {
  int blocks_per_trial = 0;              // B
  double* cumulative[2] = {nullptr, nullptr};  // (trials, K) each: step parity t % 2
  double* block_maximum = nullptr;       // (trials, B): max_k of the block's log-weights
  double* block_total = nullptr;         // (trials, B): Σ_k exp(x_k − shift_b), shift_b = max or 0
  double* block_squares = nullptr;       // (trials, B): Σ_k exp(2 (x_k − shift_b))
  double* block_mean = nullptr;          // (trials, B, rank): Σ_k exp(x_k − shift_b) z_k, or null
  double* block_start = nullptr;         // (trials, B): cumulative weight before the block
  double* block_scale = nullptr;         // (trials, B): exp(shift_b − c_t)
  double* increment = nullptr;           // (trials): c_t of the current step
  double* cumulative_total = nullptr;    // (trials): last unnormalised cumulative weight
  std::int32_t* resample = nullptr;      // (trials): 1 when the current step resamples
};

/// Particles per block of the many-particle regime (one particle per thread).
constexpr int many_particle_tile = 256;
[[nodiscard]] constexpr int many_particle_blocks(int num_particles) {
  return (num_particles + many_particle_tile - 1) / many_particle_tile;
}

/// Many-particle regime, per step (design.md, "many particles"): enqueues on `stream`, without
/// synchronising, (1) the ancestor search of step − 1 fused with propagate and weigh of `step`,
/// with per-block partial log-sum-exp, ESS and filtered-mean sums and a block-local float64
/// prefix sum of the weights; (2) one block per trial combining the partials in a fixed order
/// (c_t, ESS, resampling decision, filtered mean, block offsets of the cumulative weights);
/// (3) normalised log-weights and the normalised cumulative weights. After the last step,
/// filter_many_particles_finish enqueues the last step's ancestor search. Every kernel is
/// deterministic (CUB block primitives in a fixed order, no atomics) and legal under stream
/// capture, so the host captures the whole time loop in one CUDA graph.
void filter_many_particles_step(const FilterLaunch& launch, const ManyParticleWorkspace& workspace,
                                int step, cudaStream_t stream);
void filter_many_particles_finish(const FilterLaunch& launch,
                                  const ManyParticleWorkspace& workspace, cudaStream_t stream);
/// Opts the many-particle kernels in to the shared memory they need and checks the launch
/// geometry (throws InvalidInput or CudaError); call before capturing.
void prepare_filter_many_particles(const FilterLaunch& launch);
/// Trials one many-particle call can hold (the grid's second dimension).
constexpr int max_many_particle_trials = 65535;
/// Static shared memory of the many-particle propagate kernel (CUB temporary storage), in bytes.
[[nodiscard]] std::size_t many_particle_static_shared_bytes();

/// Runs the whole filter, one thread block per trial with the time loop inside the kernel
/// (design.md, "few particles" regime). Deterministic: no atomics, fixed reduction order.
void filter_block_per_trial(const FilterLaunch& launch, cudaStream_t stream);

/// Dynamic shared memory the kernel needs (model loadings), in bytes.
[[nodiscard]] std::size_t filter_shared_bytes(int rank, int hidden);
/// Static shared memory of the kernel (CUB temporary storage), in bytes.
[[nodiscard]] std::size_t filter_static_shared_bytes();

}  // namespace lrsmc::kernels
