// The CPU engines of the particle filter (method.md §3) and its reverse sweep (§3.6, §10.2):
// loops over trials, steps and particles around the shared particle step of
// include/lrsmc/math/. Scalar = double is the reference, float runs the CUDA kernels' arithmetic.
#pragma once

#include <cstdint>

#include "lrsmc/backend.hpp"
#include "lrsmc/distributed.hpp"

namespace lrsmc::cpu {

/// Another engine's run of the same filter (FilterResult's layouts), for the CPU engines to
/// follow instead of their own: its resampling decisions and ancestors and, when given, its
/// particles and normalised log-weights as the states and carried weights each step starts
/// from. Tests compare a GPU, whose rounding differs, with the CPU one step at a time this way.
struct ForcedPaths {
  const std::int32_t* ancestors = nullptr;  ///< (trials, steps, K)
  const std::uint8_t* resampled = nullptr;  ///< (trials, steps)
  const double* particles = nullptr;        ///< (trials, steps, K, R) or null
  const double* log_weights = nullptr;      ///< (trials, steps, K) or null
};

/// The forward filter of every trial, `num_threads` trials at a time.
template <typename Scalar>
[[nodiscard]] FilterResult filter_trials(const Model& model, const SequenceBatch& batch,
                                         const FilterOptions& options, std::uint64_t seed,
                                         const FilterRequest& request, int num_threads,
                                         const ForcedPaths* forced = nullptr,
                                         Communicator* communicator = nullptr);

/// The ELBO and its gradient: forward and reverse sweep of every trial, per-trial accumulator
/// rows summed in trial order, then finished once (results do not depend on the thread count).
/// With a communicator each process runs its share of the trials (trial_share) and the
/// per-trial results are gathered in trial order before the finish, so every process returns
/// the bits one process running every trial would; the filters likewise (their ELBO per trial
/// and filtered means gathered; a request for particles runs every trial on every process).
/// Calls with a communicator are collective.
template <typename Scalar>
[[nodiscard]] GradientResult gradient_of_trials(const Model& model, const SequenceBatch& batch,
                                                const FilterOptions& options, std::uint64_t seed,
                                                int num_threads,
                                                const ForcedPaths* forced = nullptr,
                                                Communicator* communicator = nullptr);

/// The packed float32 engine (the CPU's default): the same filter and gradient with
/// pack_width particles in SIMD lanes (cpu/particle_pack.hpp), gradient terms summed in float32
/// over at most eight consecutive packs, then in float64; its results differ from the reference by
/// float32 rounding only.
[[nodiscard]] FilterResult filter_trials_packed(const Model& model, const SequenceBatch& batch,
                                                const FilterOptions& options, std::uint64_t seed,
                                                const FilterRequest& request, int num_threads,
                                                const ForcedPaths* forced = nullptr,
                                                Communicator* communicator = nullptr);
[[nodiscard]] GradientResult gradient_of_trials_packed(const Model& model,
                                                       const SequenceBatch& batch,
                                                       const FilterOptions& options,
                                                       std::uint64_t seed, int num_threads,
                                                       const ForcedPaths* forced = nullptr,
                                                       Communicator* communicator = nullptr);

/// Draws from the generative model (method.md §6.1): from the initial state's prior, or from
/// `initial_states` (trials, rank) when given.
template <typename Scalar>
[[nodiscard]] SampleResult sample_trials(const Model& model, int num_trials, int num_steps,
                                         const std::vector<double>& inputs, std::uint64_t seed,
                                         int first_trial,
                                         const std::vector<double>& initial_states);

}  // namespace lrsmc::cpu
