// The engine's one interface: run the particle filter (ELBO, filtered latents, particle paths),
// its gradient, and sample from the generative model, on the CPU or on a CUDA device.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lrsmc/config.hpp"
#include "lrsmc/distributed.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc {

class TrainingSession;  // internal: device-resident training (not installed)
struct TrainingSetup;

/// A batch of equally long sequences, time-major within a trial.
struct SequenceBatch {
  int num_trials = 0;
  int num_steps = 0;
  int num_channels = 0;
  int num_inputs = 0;
  std::vector<double> observations;  ///< (trials, steps, channels)
  std::vector<double> inputs;        ///< (trials, steps, inputs); empty when num_inputs = 0
  /// Random-number address of each trial (design.md, "Random numbers"); empty means 0..B−1.
  std::vector<std::uint32_t> trial_ids;
  /// NaN observations are missing values, left out of the likelihood and its gradient (held-out
  /// channels, dropped entries); false: NaN is refused as bad input. The optimal and encoder
  /// proposals need every observation.
  bool allow_missing = false;
  /// Over the processes of a backend's communicator: process p runs trials [shares[p],
  /// shares[p + 1]) (P + 1 non-decreasing bounds from 0 to num_trials). Empty: the even split
  /// (trial_share). With shares given, `observations` holds only this process's trials (rows
  /// shares[rank] … shares[rank + 1] − 1, in order), as a batch of a dataset split over the
  /// processes does (Dataset::shares); `inputs` holds every trial. The split changes no result,
  /// only which process computes what.
  std::vector<int> shares;
};

/// What the filter stores besides the ELBO. Nothing is stored unless asked for.
struct FilterRequest {
  bool filtered_mean = false;  ///< Σ_k W_t^k z_t^k per trial and step
  bool particles = false;      ///< particles, normalised log-weights, ancestors, resampling flags
};

struct FilterResult {
  double elbo = 0.0;                     ///< mean over trials of ℓ_b (method.md §2)
  std::vector<double> elbo_per_trial;    ///< ℓ_b, log-evidence per time step
  std::vector<double> filtered_mean;     ///< (trials, steps, rank) if requested
  std::vector<double> particles;         ///< (trials, steps, K, rank): z_t before resampling
  std::vector<double> log_weights;       ///< (trials, steps, K): normalised, before resampling
  /// (trials, steps, K): particle k after resampling at step t is particle ancestors[k] of step t
  /// (the identity when the step did not resample).
  std::vector<std::int32_t> ancestors;
  std::vector<std::uint8_t> resampled;   ///< (trials, steps): 1 when step t resampled
};

struct GradientResult {
  double elbo = 0.0;
  std::vector<double> elbo_per_trial;
  /// d elbo / d parameters (ascent direction), in ParameterLayout order. Resampling indices
  /// carry no gradient (method.md §3.5, §3.6).
  std::vector<double> gradient;
};

struct SampleResult {
  std::vector<double> latents;       ///< (trials, steps, rank)
  std::vector<double> rates;         ///< (trials, steps, channels): λ = g(Bᵀz + b)
  std::vector<double> observations;  ///< (trials, steps, channels): sampled observations
};

/// The read-out's means λ = g(η) (method.md §1.7) at given latents (trials, steps, rank), with
/// the model's inputs (trials, steps, inputs) or none: (trials, steps, channels), in float64 on
/// the host. Throws InvalidInput when the sizes do not match the model.
[[nodiscard]] std::vector<double> observation_means(const Model& model, int trials, int steps,
                                                    const std::vector<double>& latents,
                                                    const std::vector<double>& inputs);

enum class BackendKind { cpu, cuda, automatic };
[[nodiscard]] std::string to_string(BackendKind kind);
/// "cpu", "cuda" or "auto".
[[nodiscard]] BackendKind parse_backend_kind(const std::string& text, const std::string& field = "device");

/// Forward-filter regime of the CUDA backend (design.md, "GPU work shape"). Both give the same
/// result on the same draws up to float64 rounding in the weight sums.
enum class CudaFilterRegime {
  automatic,        ///< many_particles from 2048 particles per trial (host/cuda/filter_plan.hpp)
  block_per_trial,  ///< one thread block per trial, the whole time loop in one launch
  many_particles,   ///< particles across blocks, three launches per step in one CUDA graph
};

/// The CPU backend's arithmetic.
enum class CpuPrecision {
  /// float32 particles, 16 at a time in SIMD lanes, float64 weights and gradient sums: the fast
  /// path, used by default.
  packed_float32,
  /// float64, one particle at a time: the reference that the gradient tests check against
  /// finite differences.
  float64,
  /// float32 in the CUDA kernels' order of operations: the emulated device's exact bits, for
  /// comparisons with the CUDA backend.
  device_float32,
};
/// "float32", "float64" or "float32-device".
[[nodiscard]] std::string to_string(CpuPrecision precision);
[[nodiscard]] CpuPrecision parse_cpu_precision(const std::string& text,
                                               const std::string& field = "precision");

struct BackendOptions {
  int num_threads = 0;  ///< CPU worker threads; 0 = all cores
  CpuPrecision cpu_precision = CpuPrecision::packed_float32;  ///< CPU only
  int device_index = 0;           ///< CUDA device
  /// CUDA only: the forward-filter regime; tests and benchmarks force one, users keep automatic.
  CudaFilterRegime cuda_filter_regime = CudaFilterRegime::automatic;
  /// CPU only: the processes that share each call's trials (lrsmc/distributed.hpp), or null for
  /// this process alone. Every filter and gradient call is then collective.
  std::shared_ptr<Communicator> communicator;
};

/// Non-virtual public calls validate once (identical checks and messages on every backend),
/// then dispatch to the implementation. A backend that threw stays usable.
class Backend {
 public:
  virtual ~Backend() = default;
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  /// Runs the filter. `seed` addresses every random draw.
  [[nodiscard]] FilterResult filter(const Model& model, const SequenceBatch& batch,
                                    const FilterOptions& options, std::uint64_t seed,
                                    const FilterRequest& request = {});
  /// ELBO and its gradient with respect to every parameter (mean over trials).
  [[nodiscard]] GradientResult elbo_gradient(const Model& model, const SequenceBatch& batch,
                                             const FilterOptions& options, std::uint64_t seed);
  /// Draws latents and observations from the generative model (method.md §6.1). `inputs` is
  /// (trials, steps, num_inputs) or empty when the model has no inputs. The trials are trials
  /// first_trial … first_trial + num_trials − 1 of a larger draw (their random-number
  /// addresses), so a draw made in parts equals the draw made at once. Each trial starts from a
  /// draw of the initial state's prior, or with `initial_states` (trials, rank) at the given
  /// state (for example a posterior draw, lrsmc/smoother.hpp): it is the first step's latent.
  [[nodiscard]] SampleResult sample(const Model& model, int num_trials, int num_steps,
                                    const std::vector<double>& inputs, std::uint64_t seed,
                                    int first_trial = 0,
                                    const std::vector<double>& initial_states = {});

  [[nodiscard]] virtual std::string name() const = 0;
  /// The processes that share this backend's calls (BackendOptions::communicator), or null.
  [[nodiscard]] virtual Communicator* communicator() const { return nullptr; }
  /// Bytes the filter (with_gradient: and its backward pass) needs for this problem size.
  [[nodiscard]] virtual std::int64_t memory_estimate(const ModelConfig& config, int num_trials,
                                                     int num_steps, int num_particles,
                                                     bool with_gradient) const = 0;
  /// Bytes this backend may use (free device memory, or available host memory).
  [[nodiscard]] virtual std::int64_t memory_available() const = 0;
  /// Why this backend cannot run a model of this configuration with these options (for
  /// example a rank above the CUDA kernels' limit), or "" when it can. make_backend_for falls
  /// back to the CPU when an automatic choice cannot run the model.
  [[nodiscard]] virtual std::string cannot_run(const ModelConfig& config,
                                               const FilterOptions& options) const;
  /// Internal hook of Trainer: device-resident training, where data, parameters and optimizer
  /// state stay on the device and Trainer only draws batches, logs and checkpoints. The
  /// default (CPU) returns null, and Trainer runs its host loop on elbo_gradient.
  [[nodiscard]] virtual std::unique_ptr<TrainingSession> start_training(const TrainingSetup& setup);

 private:
  /// Every check of a filter or gradient call that does not depend on memory: the model, the
  /// options, the batch, the encoder against the trial length, and cannot_run.
  void check_call(const Model& model, const SequenceBatch& batch,
                  const FilterOptions& options) const;
  /// check_call; of a batch split over processes, agreed by every process (each checks its own
  /// trials' observations).
  void checked_on_every_process(const Model& model, const SequenceBatch& batch,
                                const FilterOptions& options) const;
  void check_fits(const ModelConfig& config, int num_trials, int num_steps, int num_particles,
                  bool with_gradient) const;
  virtual FilterResult do_filter(const Model& model, const SequenceBatch& batch,
                                 const FilterOptions& options, std::uint64_t seed,
                                 const FilterRequest& request) = 0;
  virtual GradientResult do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                          const FilterOptions& options, std::uint64_t seed) = 0;
  virtual SampleResult do_sample(const Model& model, int num_trials, int num_steps,
                                 const std::vector<double>& inputs, std::uint64_t seed,
                                 int first_trial, const std::vector<double>& initial_states) = 0;
};

/// True when lrsmc was built with CUDA and a device answers.
[[nodiscard]] bool cuda_available();
/// Creates a backend; `automatic` picks CUDA when available. Throws Error when CUDA is asked
/// for but lrsmc was built without it or no device answers.
[[nodiscard]] std::unique_ptr<Backend> make_backend(BackendKind kind,
                                                    const BackendOptions& options = {});
/// make_backend for a model: `automatic` falls back to the CPU when the GPU cannot run this
/// configuration (Backend::cannot_run), and `note` (when given) receives one line saying why;
/// an explicit `cuda` that cannot run it throws InvalidInput with that reason.
[[nodiscard]] std::unique_ptr<Backend> make_backend_for(BackendKind kind,
                                                        const BackendOptions& options,
                                                        const ModelConfig& config,
                                                        const FilterOptions& filter,
                                                        std::string* note = nullptr);

/// Throws InvalidInput when the batch does not match the model (shapes, finiteness, counts).
/// `observed`: the trials whose observations the batch holds (SequenceBatch::shares), named by
/// their index in the batch; every trial when unset.
void validate_batch(const ModelConfig& config, const SequenceBatch& batch,
                    const std::string& source = "data",
                    const std::optional<TrialShare>& observed = std::nullopt);
/// Throws InvalidInput, naming `source` and the first missing entry, when `proposal` needs
/// every observation (optimal, encoder) and the batch has a missing value (NaN); `observed` as
/// for validate_batch.
void require_complete(const SequenceBatch& batch, Proposal proposal,
                      const std::string& source = "observations",
                      const std::optional<TrialShare>& observed = std::nullopt);

}  // namespace lrsmc
