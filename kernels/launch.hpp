// Internal: launchers of the CUDA kernels of the particle filter, its reverse sweep and the
// per-call constants, callable from host C++ (no templates or CUDA types cross this header
// except cudaStream_t).
#pragma once

#include <cuda_runtime_api.h>
#include <cstddef>
#include <cstdint>

#include "lrsmc/config.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/weights.hpp"

namespace lrsmc::kernels {

/// Largest rank the CUDA kernels support (per-particle state lives in registers).
constexpr int max_rank = 16;

/// Floats of one cell's encoder-proposal record (FilterLaunch::encoder_cells): α (R²), L_q
/// (R²), the gain term G μ_e (R) and ln|L_q| (1), the working copy of encoder_products.
[[nodiscard]] constexpr int encoder_cell_floats(int rank) { return 2 * rank * rank + rank + 1; }
/// Doubles of one cell's product (math::GaussianProduct): Λ, Σ, G, α, L_q (R² each), ln|L_q|.
[[nodiscard]] constexpr int encoder_product_doubles(int rank) { return 5 * rank * rank + 1; }

/// The model of one call on the device (ModelShape: sizes, kinds, parameter offsets).
struct DeviceModel {
  math::ModelShape shape;
  const double* parameters = nullptr;  ///< flat float64 parameters
  double* constants = nullptr;         ///< math::ConstantsLayout, float64
  float* working = nullptr;            ///< math::ParticleConstantsLayout, float
  /// m, n and h fit in a block's shared memory next to the kernels' static storage; otherwise
  /// the kernels read them from global memory.
  bool loadings_in_shared = true;
};

/// Everything the forward filter reads and writes; pointers are device memory.
struct FilterLaunch {
  DeviceModel model;
  int num_particles = 0, steps = 0, trials = 0;
  int lanes = 1;  ///< math::lanes_per_particle(num_particles)
  Resampling resampling = Resampling::systematic;
  double resample_threshold = 1.0;
  std::uint64_t seed = 0;
  /// Steps before the t_forward ones: the later steps draw from the transition alone.
  int data_steps = 0;
  // Data.
  const float* observations = nullptr;       ///< (trials, steps, channels)
  const float* log_factorial = nullptr;      ///< (trials, steps, channels), Poisson only
  const float* currents = nullptr;           ///< (trials, steps, hidden) W_u u_t, or null
  const float* readout_offsets = nullptr;    ///< (trials, steps, channels) B_vᵀ u_t (z_and_v)
  const float* initial_mean = nullptr;       ///< (trials, rank)
  const std::uint32_t* trial_ids = nullptr;  ///< (trials)
  /// The encoder proposal's records (trials, data_steps, encoder_cell_floats), or null.
  const float* encoder_cells = nullptr;
  // Workspace and outputs. With store_all every step is kept (filter outputs, backward pass);
  // otherwise two particle slices and one weight/ancestor slice per trial are reused.
  bool store_all = false;
  float* particles = nullptr;           ///< (trials, store_all ? steps : 2, particles, rank)
  double* log_weights = nullptr;        ///< (trials, store_all ? steps : 1, particles)
  std::int32_t* ancestors = nullptr;    ///< (trials, store_all ? steps : 1, particles)
  std::uint8_t* resampled = nullptr;    ///< (trials, steps) or null
  double* carried = nullptr;            ///< (trials, particles): block-per-trial regime
  double* cumulative = nullptr;         ///< (trials, particles): block-per-trial regime
  double* tiles = nullptr;              ///< (trials, filter_tile_values): tile partials
  double* log_evidence = nullptr;       ///< (trials): Σ_t c_t, or the non-finite maximum
  std::int32_t* failed_step = nullptr;  ///< (trials): −1, or the step whose weights all failed
  double* filtered_mean = nullptr;      ///< (trials, steps, rank) or null
};

/// Doubles of FilterLaunch::tiles per trial: maximum, total, squares, scale and start of each
/// tile of math::weight_tile particles, and its rank mean sums.
[[nodiscard]] constexpr std::int64_t filter_tile_values(int num_particles, int rank) {
  return std::int64_t(math::weight_tiles(num_particles)) * (5 + rank);
}

/// Dynamic shared memory of the forward and backward kernels: the loadings m, n, h when they
/// are kept in shared memory (DeviceModel::loadings_in_shared), else none.
[[nodiscard]] std::size_t loadings_shared_bytes(const math::ModelShape& shape, bool in_shared);

/// Static shared memory (CUB storage and broadcasts) of the block-per-trial and the
/// many-particle forward kernels: with the loadings it must fit the device's opt-in limit.
[[nodiscard]] std::size_t filter_block_static_shared_bytes();
[[nodiscard]] std::size_t many_particle_static_shared_bytes();

// --- per-call constants (model_constants.cu) ------------------------------------------------

/// Builds model.constants (math::build_constants, one thread) and model.working (the float
/// copy, all threads of one block). `scratch` holds math::constants_scratch_size doubles. A
/// failed build leaves its status at ConstantsLayout::status; later kernels still run and the
/// host reports the status.
void build_constants(const DeviceModel& model, double* scratch, cudaStream_t stream);

/// Input currents (rows, steps, hidden) of (rows, steps, inputs) float64 inputs, or none
/// (`inputs` null), the read-out's input offsets (rows, steps, channels) of a z_and_v read-out
/// (`readout_offsets` not null), and the initial means μ_0 (rows, rank) (math::input_current,
/// math::readout_input_offset, math::initial_mean).
void input_terms(const DeviceModel& model, const double* inputs, int rows, int steps,
                 float* currents, float* readout_offsets, float* initial_mean,
                 cudaStream_t stream);

/// Threads of the encoder_products kernel for `cells` cells, each with its own scratch: blocks of
/// 256, at most 64.
[[nodiscard]] constexpr std::int64_t encoder_products_threads(std::int64_t cells) {
  const std::int64_t threads = (cells + 255) / 256 * 256;
  return threads < 64 * 256 ? threads : 64 * 256;
}

/// The encoder proposal's product of each cell's prior with the encoder's factor
/// (math::encoder_step_constants), for `cells` cells of `data_steps` steps each (a cell's step
/// is its index mod data_steps), from the encoder's means and variances (cells, rank): into
/// `products` (cells, encoder_product_doubles), their working copy `records` (cells,
/// encoder_cell_floats), and `status` (cells): 1 where the product is not positive definite.
/// `scratch` holds encoder_products_threads(cells) · math::encoder_step_scratch_size(rank)
/// doubles (one slice per thread). A failed cell's record is zeros.
void encoder_products(const DeviceModel& model, const double* mean, const double* variance,
                      int cells, int data_steps, double* products, float* records,
                      std::uint8_t* status, double* scratch, cudaStream_t stream);

// --- forward filter ------------------------------------------------------------------------

/// Runs the whole filter, one thread block per trial with the time loop inside the kernel
/// (design.md, "few particles" regime). Deterministic: no atomics, fixed reduction order.
void filter_block_per_trial(const FilterLaunch& launch, cudaStream_t stream);

/// Workspace of the many-particle regime (design.md, "GPU work shape"): the particles of a trial
/// are spread over one block per tile of math::weight_tile particles. Device memory.
/// FilterLaunch::carried and ::cumulative are not used: the carried weight is read back from
/// the previous step's normalised log-weights, and the cumulative weights need two slices (the
/// search of step t − 1 runs while step t's are written).
struct ManyParticleWorkspace {
  double* cumulative[2] = {nullptr, nullptr};  ///< (trials, K) each: step parity t % 2
  double* increment = nullptr;                 ///< (trials): c_t of the current step
  double* total = nullptr;           ///< (trials): the last unnormalised cumulative weight
  std::int32_t* resample = nullptr;  ///< (trials): 1 when the current step resamples
};

/// Many-particle regime, per step: enqueues on `stream`, without synchronising, (1) the
/// ancestor search of step − 1 fused with propagate and weigh of `step` and the tile sums, one
/// block per tile; (2) one thread per trial combining the tiles in order (math::combine_tiles:
/// c_t, ESS, resampling decision, filtered mean, tile offsets); (3) normalised log-weights and
/// cumulative weights. After the last step, filter_many_particles_finish enqueues the last
/// step's ancestor search. Deterministic and legal under stream capture, so the host captures
/// the whole time loop in one CUDA graph.
void filter_many_particles_step(const FilterLaunch& launch, const ManyParticleWorkspace& workspace,
                                int step, cudaStream_t stream);
void filter_many_particles_finish(const FilterLaunch& launch,
                                  const ManyParticleWorkspace& workspace, cudaStream_t stream);
/// Opts the many-particle kernels in to the shared memory they need and checks the launch
/// geometry (throws InvalidInput or CudaError); call before capturing.
void prepare_filter_many_particles(const FilterLaunch& launch);
/// Trials one many-particle call can hold (the grid's second dimension).
constexpr int max_many_particle_trials = 65535;

}  // namespace lrsmc::kernels
