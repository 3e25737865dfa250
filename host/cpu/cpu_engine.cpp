// The CPU engines: the particle filter and its reverse sweep as loops over trials (OpenMP),
// steps and particles around the shared particle step (include/lrsmc/math/). Each trial's sums
// run in the order the CUDA kernels use — particles in index order, a step's weights tile by
// tile (math/weights.hpp), hidden units and channels split over lanes_per_particle(K) partial
// sums — so the float engine and the kernels compute the same bits on the same draws.
#include "cpu/cpu_engine.hpp"

#include <omp.h>
#include <algorithm>
#include <cmath>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "core/shared_trials.hpp"
#include "cpu/particle_pack.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/dynamics.hpp"
#include "lrsmc/math/encoder.hpp"
#include "lrsmc/math/gaussian_product.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "lrsmc/math/model_constants.hpp"
#include "lrsmc/math/observation.hpp"
#include "lrsmc/math/philox.hpp"
#include "lrsmc/math/proposal.hpp"
#include "lrsmc/math/weights.hpp"
#include "model/encoder_factors.hpp"
#include "model/model_constants.hpp"

namespace lrsmc::cpu {
namespace {

using math::DrawStream;
using math::widen;
constexpr math::HostRoundedProduct product{};

/// A trial's data in the working precision: observations, ln Γ(x + 1) (Poisson), the input
/// currents W_u u_t, the read-out's input offsets and the initial mean μ_0.
template <typename Scalar>
struct TrialData {
  int index = 0;                      // the trial's place in the batch
  std::uint32_t id = 0;               // random-number address
  std::vector<Scalar> observed;       // (steps, channels)
  std::vector<Scalar> log_factorial;  // (steps, channels) or empty
  const double* inputs = nullptr;     // (steps, inputs) or null
  std::vector<Scalar> currents;       // (steps, hidden) or empty
  std::vector<Scalar> readout_offsets;  // (steps, channels) B_vᵀ v_t (z_and_v) or empty
  std::vector<Scalar> initial_mean;   // (rank)
};

/// What the forward pass of one trial keeps, reused across the trials of a worker.
template <typename Scalar>
struct TrialStorage {
  std::vector<Scalar> particles;        // (steps, K, R) before resampling
  std::vector<Scalar> noise;            // (steps, K, R) the proposal's standard normals ξ
  std::vector<double> log_weights;      // (steps, K) normalised, before resampling
  std::vector<std::int32_t> ancestors;  // (steps, K)
  std::vector<std::uint8_t> resampled;  // (steps)
  std::vector<double> filtered_mean;    // (steps, R) when requested
  double log_evidence = 0;              // Σ_t c_t
  // Scratch.
  std::vector<double> carried, cumulative, tile_values, tile_mean;
};

/// The encoder proposal's constants of one trial and step (method.md §3.3): the Gaussian product
/// of the prior with the encoder's factor in float64 (math/gaussian_product.hpp), and the
/// working-precision copies the particle step reads.
template <typename Scalar>
struct EncoderStep {
  std::vector<double> values, scratch;
  math::GaussianProduct product{};
  double* gain_term = nullptr;  // G μ_e
  std::vector<Scalar> alpha, proposal_factor, working_gain_term;

  [[nodiscard]] math::GaussianProductView view() const {
    return {product.precision,       product.covariance,      product.gain,
            product.alpha,           product.proposal_factor, product.proposal_log_det};
  }

  explicit EncoderStep(int rank) {
    const std::size_t square = std::size_t(rank) * rank;
    values.assign(5 * square + 1 + std::size_t(rank), 0.0);
    scratch.assign(std::size_t(math::encoder_step_scratch_size(rank)), 0.0);
    double* next = values.data();
    for (double** pointer : {&product.precision, &product.covariance, &product.gain,
                             &product.alpha, &product.proposal_factor}) {
      *pointer = next;
      next += square;
    }
    product.proposal_log_det = next++;
    gain_term = next;
    alpha.resize(square);
    proposal_factor.resize(square);
    working_gain_term.resize(std::size_t(rank));
  }
};

/// What the reverse sweep of one trial gives the encoder: the adjoints of its mean and variance
/// at every step (steps, rank) each.
struct EncoderAdjoint {
  std::vector<double> mean, variance;
};

/// Scratch of one particle, or of one pack of particles (Value = Pack): lanes · max(R, 1)
/// values for the split sums, plus its vectors.
template <typename Value>
struct ParticleScratch {
  std::vector<Value> lanes, previous, mean, xi, z, proposal, grad_z, grad_mean, residual, scaled,
      grad_previous;
  void resize(int rank, int lanes_per_particle) {
    lanes.assign(std::size_t(lanes_per_particle) * std::max(rank, 1), Value(0));
    for (auto* vector : {&previous, &mean, &xi, &z, &proposal, &grad_z, &grad_mean, &residual,
                         &scaled, &grad_previous})
      vector->assign(std::size_t(rank), Value(0));
  }
};

/// The engine of one working precision. Value is Scalar (one particle at a time, the reference
/// and the kernels' order of operations) or Pack (pack_width particles in SIMD lanes, float32):
/// the particle loops run over blocks of lanes_of<Value> particles, the last block padded with
/// copies of its last particle whose results are dropped and whose adjoints are zero.
template <typename Scalar, typename Value = Scalar>
class Engine {
 public:
  static constexpr int width = lanes_of<Value>;
  using Total = math::Wide<Value>;  // a gradient accumulator

  /// `threads`: the call's OpenMP threads, for the encoder's blocks of trials.
  /// `observed`: the trials whose observations the batch holds (its rows, in order).
  Engine(const Model& model, const SequenceBatch& batch, const FilterOptions& options,
         std::uint64_t seed, int threads, const TrialShare& observed)
      : constants_(model, options.proposal),
        model_(constants_.particle_model()),
        parameters_(model.parameters.data()),
        parameter_count_(model.parameters.size()),
        batch_(batch),
        options_(options),
        seed_(seed),
        lanes_(width == 1 ? math::lanes_per_particle(options.num_particles) : 1),
        data_steps_(batch.num_steps - options.t_forward),
        encoder_(options.proposal == Proposal::encoder),
        observed_(observed) {
    phases_[0] = constants_.phase(0);
    phases_[1] = constants_.phase(1);
    if (encoder_) encoder_factors_.emplace(model, batch, data_steps_, threads);
  }

  /// Whether the proposal multiplies the prior with a Gaussian factor (optimal or encoder) at this
  /// step, the particle step's `optimal` branch with the step's constants; never in the t_forward
  /// steps, whose particles come from the transition.
  [[nodiscard]] bool product_step(int step) const {
    return (constants_.shape.optimal || encoder_) && step < data_steps_;
  }
  /// Whether the encoder's factor enters this step.
  [[nodiscard]] bool encoder_step(int step) const { return encoder_ && step < data_steps_; }

  [[nodiscard]] const math::ModelShape& shape() const { return constants_.shape; }

  TrialData<Scalar> prepare_trial(int trial) const {
    const math::ModelShape& shape = constants_.shape;
    const int steps = batch_.num_steps, channels = shape.channels, hidden = shape.hidden;
    TrialData<Scalar> data;
    data.index = trial;
    data.id =
        batch_.trial_ids.empty() ? std::uint32_t(trial) : batch_.trial_ids[std::size_t(trial)];
    const std::size_t cells = std::size_t(steps) * channels;
    // Another process's trial of a split batch: its inputs alone, for the finish's per-trial
    // terms.
    const bool held = trial >= observed_.first && trial < observed_.last;
    const double* observations =
        held ? batch_.observations.data() + std::int64_t(trial - observed_.first) * steps * channels
             : nullptr;
    if (held) data.observed.resize(cells);
    for (std::size_t i = 0; i < data.observed.size(); ++i)
      data.observed[i] = static_cast<Scalar>(observations[i]);
    if (held && shape.observation == Observation::poisson) {
      data.log_factorial.resize(cells);
      for (std::size_t i = 0; i < cells; ++i)
        data.log_factorial[i] = static_cast<Scalar>(std::lgamma(observations[i] + 1.0));
    }
    data.initial_mean.assign(std::size_t(shape.rank), Scalar(0));
    std::vector<double> projection(std::size_t(shape.rank));
    if (shape.inputs > 0) {
      data.inputs = batch_.inputs.data() + std::int64_t(trial) * steps * shape.inputs;
      data.currents.resize(std::size_t(steps) * hidden);
      for (int step = 0; step < steps; ++step)
        for (int i = 0; i < hidden; ++i)
          data.currents[std::size_t(step) * hidden + i] = math::input_current(
              shape, constants_.working.data(), data.inputs + std::int64_t(step) * shape.inputs, i);
      if (math::readout_input_rows(shape) > 0) {
        data.readout_offsets.resize(cells);
        for (int step = 0; step < steps; ++step)
          for (int i = 0; i < channels; ++i)
            data.readout_offsets[std::size_t(step) * channels + i] = math::readout_input_offset(
                shape, constants_.working.data(), data.inputs + std::int64_t(step) * shape.inputs,
                i);
      }
    }
    math::initial_mean(shape, parameters_, constants_.constants.data(),
                       data.currents.empty() ? nullptr : data.currents.data(),
                       data.initial_mean.data(), projection.data());
    return data;
  }

  const Scalar* currents_at(const TrialData<Scalar>& data, int step) const {
    return data.currents.empty() ? nullptr
                                 : data.currents.data() + std::size_t(step) * model_.hidden;
  }
  /// The read-out's offset at `step` (math::readout_response): B_vᵀ v_t (z_and_v), the currents
  /// W_u v_t (one to one), or null.
  const Scalar* readout_offset_at(const TrialData<Scalar>& data, int step) const {
    if (math::one_to_one(model_)) return currents_at(data, step);
    return data.readout_offsets.empty()
               ? nullptr
               : data.readout_offsets.data() + std::size_t(step) * model_.channels;
  }
  const Scalar* observed_at(const TrialData<Scalar>& data, int step) const {
    return data.observed.data() + std::size_t(step) * model_.channels;
  }
  const Scalar* log_factorial_at(const TrialData<Scalar>& data, int step) const {
    return data.log_factorial.empty()
               ? nullptr
               : data.log_factorial.data() + std::size_t(step) * model_.channels;
  }

  /// μ of the block of particles first … first + width − 1 at `step` (into scratch.mean): μ_0,
  /// or the transition from their ancestors at step − 1, gathered into scratch.previous (the
  /// forced run's states with forced particles).
  void mean_of(const TrialData<Scalar>& data, const TrialStorage<Scalar>& storage, int step,
               int first, int count, ParticleScratch<Value>& scratch,
               const double* forced_particles = nullptr) const {
    const int R = model_.rank, K = options_.num_particles;
    if (step == 0) {
      for (int r = 0; r < R; ++r)
        scratch.mean[std::size_t(r)] = Value(data.initial_mean[std::size_t(r)]);
      return;
    }
    for (int j = 0; j < width; ++j) {
      const int k = first + std::min(j, count - 1);
      const std::size_t ancestor =
          std::size_t(step - 1) * K + std::size_t(storage.ancestors[std::size_t(step - 1) * K + k]);
      for (int r = 0; r < R; ++r)
        set_lane(scratch.previous[std::size_t(r)], j,
                 forced_particles != nullptr
                     ? static_cast<Scalar>(forced_particles[ancestor * R + std::size_t(r)])
                     : storage.particles[ancestor * R + std::size_t(r)]);
    }
    math::transition_mean(model_, scratch.previous.data(), currents_at(data, step - 1), lanes_,
                          scratch.lanes.data(), scratch.mean.data());
  }

  /// Gathers `source` (K, R) of the block into `packed` (R), padding lanes from the last one.
  void gather(const Scalar* source, int first, int count, Value* packed) const {
    const int R = model_.rank;
    for (int j = 0; j < width; ++j) {
      const int k = first + std::min(j, count - 1);
      for (int r = 0; r < R; ++r) set_lane(packed[r], j, source[std::size_t(k) * R + r]);
    }
  }

  [[nodiscard]] std::size_t encoder_cell(const TrialData<Scalar>& data, int step) const {
    return (std::size_t(data.index) * std::size_t(data_steps_) + std::size_t(step)) * model_.rank;
  }

  /// The encoder's parameters' gradient from the adjoints of its means and variances at every
  /// trial and step, added to `gradient`.
  void add_encoder_gradient(const std::vector<EncoderAdjoint>& adjoints,
                            std::vector<double>& gradient) const {
    std::vector<double> grad_mean, grad_variance;
    for (const EncoderAdjoint& adjoint : adjoints) {
      grad_mean.insert(grad_mean.end(), adjoint.mean.begin(), adjoint.mean.end());
      grad_variance.insert(grad_variance.end(), adjoint.variance.begin(), adjoint.variance.end());
    }
    encoder_factors_->add_gradient(grad_mean, grad_variance, gradient);
  }

  /// The step's constants: the prior's factor from the phase, the product's from the encoder
  /// (phases_ itself without the encoder proposal).
  math::PhaseConstants<Scalar> step_phase(const TrialData<Scalar>& data, int step,
                                          EncoderStep<Scalar>& work) const {
    const int phase_index = math::phase_of(step);
    math::PhaseConstants<Scalar> phase = phases_[phase_index];
    if (!encoder_step(step)) return phase;
    const int R = model_.rank;
    const math::ConstantsLayout layout(constants_.shape);
    const std::size_t cell = encoder_cell(data, step);
    if (!math::encoder_step_constants(R, constants_.constants.data() + layout.factor[phase_index],
                                      encoder_factors_->mean().data() + cell,
                                      encoder_factors_->variance().data() + cell,
                                      work.product, work.gain_term, work.scratch.data()))
      model::throw_product_failure(data.index, step);
    for (int i = 0; i < R * R; ++i) {
      work.alpha[std::size_t(i)] = static_cast<Scalar>(work.product.alpha[i]);
      work.proposal_factor[std::size_t(i)] = static_cast<Scalar>(work.product.proposal_factor[i]);
    }
    for (int r = 0; r < R; ++r)
      work.working_gain_term[std::size_t(r)] = static_cast<Scalar>(work.gain_term[r]);
    phase.alpha = work.alpha.data();
    phase.proposal_factor = work.proposal_factor.data();
    phase.proposal_log_det = static_cast<Scalar>(*work.product.proposal_log_det);
    return phase;
  }

  /// The forward filter of one trial (method.md §3): fills `storage`. With `forced`, the
  /// resampling decisions and ancestors are taken from it. Each step's blocks of particles run
  /// on `block_threads` threads (every block writes only its own particles, so the result does
  /// not depend on the thread count).
  void forward_trial(int trial, const TrialData<Scalar>& data, bool filtered_mean,
                     TrialStorage<Scalar>& storage, const ForcedPaths* forced,
                     int block_threads = 1) const {
    const int steps = batch_.num_steps, R = model_.rank, K = options_.num_particles;
    const int tiles = math::weight_tiles(K);
    const std::size_t slice = std::size_t(K) * R;
    storage.particles.resize(std::size_t(steps) * slice);
    storage.noise.resize(std::size_t(steps) * slice);
    storage.log_weights.resize(std::size_t(steps) * K);
    storage.ancestors.resize(std::size_t(steps) * K);
    storage.resampled.assign(std::size_t(steps), 0);
    storage.filtered_mean.assign(filtered_mean ? std::size_t(steps) * R : 0, 0.0);
    storage.carried.assign(std::size_t(K), -std::log(double(K)));
    storage.cumulative.resize(std::size_t(K));
    storage.tile_values.resize(std::size_t(tiles) * 5);  // maximum, total, squares, scale, start
    storage.tile_mean.assign(filtered_mean ? std::size_t(tiles) * R : 0, 0.0);
    storage.log_evidence = 0;
    std::vector<ParticleScratch<Value>> scratches(static_cast<std::size_t>(block_threads));
    for (auto& scratch : scratches) scratch.resize(R, lanes_);
    std::vector<Scalar> gain_term(std::size_t(R), Scalar(0));
    EncoderStep<Scalar> work(R);
    const int blocks = (K + width - 1) / width;
    double* tile_maximum = storage.tile_values.data();
    double* tile_total = tile_maximum + tiles;
    double* tile_squares = tile_total + tiles;
    double* tile_scale = tile_squares + tiles;
    double* tile_start = tile_scale + tiles;

    for (int step = 0; step < steps; ++step) {
      const math::PhaseConstants<Scalar> phase = step_phase(data, step, work);
      const Scalar* observed = observed_at(data, step);
      if (constants_.shape.optimal && step < data_steps_)
        math::gain_observation(phase, R, model_.channels, observed, model_.readout_bias,
                               gain_term.data());
      const Scalar* step_gain_term =
          encoder_step(step) ? work.working_gain_term.data() : gain_term.data();
      Scalar* particles = storage.particles.data() + std::size_t(step) * slice;
      double* increments = storage.log_weights.data() + std::size_t(step) * K;
      const std::size_t trial_cells = std::size_t(trial) * steps;
      const double* forced_particles =
          forced && forced->particles ? forced->particles + trial_cells * slice : nullptr;
      if (forced && forced->log_weights && step > 0 && !storage.resampled[std::size_t(step - 1)])
        for (int k = 0; k < K; ++k)
          storage.carried[std::size_t(k)] = forced->log_weights[(trial_cells + step - 1) * K + k];
      Scalar* noise = storage.noise.data() + std::size_t(step) * slice;
#pragma omp parallel for num_threads(block_threads) if (block_threads > 1) schedule(static)
      for (int block = 0; block < blocks; ++block) {
        ParticleScratch<Value>& scratch = scratches[std::size_t(omp_get_thread_num())];
        const int first = block * width, count = std::min(width, K - first);
        mean_of(data, storage, step, first, count, scratch, forced_particles);
        for (int k = first; k < first + count; ++k)
          math::standard_normals(seed_, data.id, std::uint32_t(step), std::uint32_t(k),
                                 DrawStream::proposal_noise, R, noise + std::size_t(k) * R);
        gather(noise, first, count, scratch.xi.data());
        const Value proposal_term =
            math::propose(product_step(step), R, phase, step_gain_term, scratch.mean.data(),
                          scratch.xi.data(), scratch.proposal.data(), scratch.z.data());
        const Value log_weight =
            proposal_term +
            math::observation_log_likelihood(model_, observed, log_factorial_at(data, step),
                                             readout_offset_at(data, step), scratch.z.data(),
                                             lanes_, scratch.lanes.data());
        for (int j = 0; j < count; ++j) {
          const int k = first + j;
          for (int r = 0; r < R; ++r)
            particles[std::size_t(k) * R + r] = lane_of(scratch.z[std::size_t(r)], j);
          increments[k] = storage.carried[std::size_t(k)] + double(lane_of(log_weight, j));
        }
      }
      // The tiles' sums, in particle order (math/weights.hpp); tiles are independent.
#pragma omp parallel for num_threads(block_threads) if (block_threads > 1 && tiles > 1) \
    schedule(static)
      for (int b = 0; b < tiles; ++b) {
        const int begin = b * math::weight_tile, end = std::min(K, begin + math::weight_tile);
        double maximum = increments[begin];
        for (int k = begin + 1; k < end; ++k)
          maximum = math::maximum_ignoring_nan(maximum, increments[k]);
        const double shift = math::tile_shift(maximum);
        double running = 0.0, squares = 0.0;
        for (int k = begin; k < end; ++k) {
          running += math::tile_weight(increments[k], shift);
          storage.cumulative[std::size_t(k)] = running;
          squares += math::tile_square(increments[k], shift);
        }
        tile_maximum[b] = maximum;
        tile_total[b] = running;
        tile_squares[b] = squares;
        if (!filtered_mean) continue;
        for (int r = 0; r < R; ++r) {
          double sum = 0.0;
          for (int k = begin; k < end; ++k)
            sum += product(math::tile_weight(increments[k], shift),
                           double(particles[std::size_t(k) * R + r]));
          storage.tile_mean[std::size_t(b) * R + r] = sum;
        }
      }
      const math::StepWeights weights = math::combine_tiles(
          tiles, tile_maximum, tile_total, tile_squares,
          filtered_mean ? storage.tile_mean.data() : nullptr, R, tile_scale, tile_start,
          filtered_mean ? storage.filtered_mean.data() + std::size_t(step) * R : nullptr, product);
      if (weights.failed)
        throw NumericalError(detail::concat("particle filter: every log-weight of trial ", trial,
                                            " at step ", step, " is ", weights.maximum,
                                            " (parameters or data are extreme)"));
      storage.log_evidence += weights.increment;
      for (int k = 0; k < K; ++k) increments[k] -= weights.increment;  // now normalised
      const std::size_t cell = trial_cells + step;
      const bool resample =
          forced ? forced->resampled[cell] != 0
                 : math::should_resample(options_.resample_threshold, weights.squares, K);
      std::int32_t* ancestors = storage.ancestors.data() + std::size_t(step) * K;
      if (!resample) {
        for (int k = 0; k < K; ++k) {
          ancestors[k] = k;
          storage.carried[std::size_t(k)] = increments[k];
        }
        continue;
      }
      storage.resampled[std::size_t(step)] = 1;
      if (forced) {
        for (int k = 0; k < K; ++k) {
          ancestors[k] = forced->ancestors[cell * K + k];
          storage.carried[std::size_t(k)] = -std::log(double(K));
        }
        continue;
      }
#pragma omp parallel for num_threads(block_threads) if (block_threads > 1) schedule(static)
      for (int k = 0; k < K; ++k) {
        const int b = k / math::weight_tile;
        storage.cumulative[std::size_t(k)] =
            math::normalised_cumulative(tile_start[b], tile_scale[b],
                                        storage.cumulative[std::size_t(k)], weights.total, product);
      }
#pragma omp parallel for num_threads(block_threads) if (block_threads > 1) schedule(static)
      for (int k = 0; k < K; ++k) {
        const double position =
            math::resampling_position(options_.resampling, seed_, data.id, std::uint32_t(step),
                                      std::uint32_t(k), std::uint32_t(K));
        ancestors[k] = math::lower_bound_index(storage.cumulative.data(), K, position);
        storage.carried[std::size_t(k)] = -std::log(double(K));
      }
    }
  }

  /// Values of a trial's accumulator row, and of each of its encoder adjoints (0 without the
  /// encoder proposal), as backward_trial fills them.
  [[nodiscard]] std::size_t row_size() const {
    return std::size_t(math::GradientSlots(constants_.shape.parameters.total, constants_.shape.rank,
                                           constants_.shape.channels)
                           .row_size);
  }
  [[nodiscard]] std::size_t encoder_adjoint_size() const {
    return encoder_ ? std::size_t(data_steps_) * std::size_t(model_.rank) : 0;
  }

  /// The reverse sweep of one trial (method.md §10.2) into its accumulator row (math/
  /// gradient_row.hpp), given dℓ/dc_t (math::increment_adjoint). A packed engine accumulates
  /// one float64 per lane and sums the lanes at the end, slot by slot.
  void backward_trial(const TrialData<Scalar>& data, const TrialStorage<Scalar>& storage,
                      double grad_increment, std::vector<double>& row,
                      EncoderAdjoint& encoder_adjoint) const {
    if (encoder_) {
      encoder_adjoint.mean.assign(encoder_adjoint_size(), 0.0);
      encoder_adjoint.variance.assign(encoder_adjoint_size(), 0.0);
    }
    if constexpr (width == 1) {
      row.assign(row_size(), 0.0);
      reverse_sweep(data, storage, grad_increment, row, encoder_adjoint);
    } else {
      std::vector<Total> lanes(row_size());
      reverse_sweep(data, storage, grad_increment, lanes, encoder_adjoint);
      row.resize(lanes.size());
      for (std::size_t i = 0; i < lanes.size(); ++i) row[i] = lane_sum(lanes[i]);
    }
  }

  /// Packs sum a lane's unit and channel terms in float32 over this many blocks (of one step or
  /// of consecutive steps) before widening them into the float64 row: a partial sum of at most
  /// 8 terms per lane, and one widening per 8 blocks even when a step has a single block.
  static constexpr int blocks_per_flush = 8;

  /// The accumulators of the unit and channel terms: the row itself for one particle at a time,
  /// the float32 partial sums for packs.
  template <typename Partial>
  static auto& unit_totals(std::vector<Total>& row, Partial& partial) {
    if constexpr (width == 1) {
      return row;
    } else {
      return partial;
    }
  }

  /// Widens the packs' partial sums of the unit and channel terms into the row and clears them.
  void flush(std::vector<Value>& partial, std::vector<Total>& row) const {
    if constexpr (width > 1) {
      const math::ParameterOffsets& offsets = constants_.shape.parameters;
      const std::int64_t N = model_.hidden, R = model_.rank, D = model_.channels;
      const std::pair<std::int64_t, std::int64_t> ranges[] = {
          {offsets.n, R * N},
          {offsets.h, N},
          {offsets.m, N * R},
          {offsets.readout_bias, D},
          {offsets.readout_gain, offsets.readout_gain >= 0 ? D : 0},
          {offsets.observation_noise, offsets.observation_noise >= 0 ? D : 0},
          {math::latent_readout_weight(constants_.shape), offsets.readout_weight >= 0 ? R * D : 0}};
      for (const auto& [begin, size] : ranges)
        for (std::int64_t i = begin; i < begin + size; ++i) {
          math::accumulate(row[std::size_t(i)], partial[std::size_t(i)]);
          partial[std::size_t(i)] = Value(0);
        }
    }
  }

  void reverse_sweep(const TrialData<Scalar>& data, const TrialStorage<Scalar>& storage,
                     double grad_increment, std::vector<Total>& row,
                     EncoderAdjoint& encoder_adjoint) const {
    const math::ModelShape& shape = constants_.shape;
    const math::ParameterOffsets& offsets = shape.parameters;
    const math::GradientSlots slots(offsets.total, shape.rank, shape.channels);
    const int steps = batch_.num_steps, R = shape.rank, K = options_.num_particles,
              N = shape.hidden, D = shape.channels, U = shape.inputs;
    const std::size_t slice = std::size_t(K) * R;
    std::vector<Scalar> grad_post(slice, Scalar(0)), grad_pre(slice), grad_next(slice);
    std::vector<double> grad_carried(std::size_t(K), 0.0),
        grad_log_weight(static_cast<std::size_t>(K));
    std::vector<Value> current_sum(static_cast<std::size_t>(N));
    // The read-out: where its z-weights' adjoints go (B_z, or m one to one), and Σ_k dy_i at
    // steps whose read-out has an input offset (B_vᵀ v_t or W_u v_t).
    const bool one_to_one = math::one_to_one(model_),
               rates = model_.readout_from == ReadoutFrom::rates;
    const std::int64_t readout_weight = math::latent_readout_weight(constants_.shape);
    std::vector<Value> offset_sum(static_cast<std::size_t>(D));
    std::vector<Total> step_gain_sum(static_cast<std::size_t>(R));
    // The encoder proposal's per-step sums: Σ dμ_q μᵀ and dL_q (its constants change every step).
    std::vector<Total> step_mean_product(std::size_t(R) * R), step_proposal_factor(std::size_t(R) * R);
    EncoderStep<Scalar> work(R);
    std::vector<double> encoder_sums(encoder_ ? 3 * std::size_t(R) * R + R : 0);
    ParticleScratch<Value> scratch;
    scratch.resize(R, lanes_);
    Value* grad_z = scratch.grad_z.data();
    Value* grad_mean = scratch.grad_mean.data();
    const Value* previous = scratch.previous.data();
    const Value* mean = scratch.mean.data();
    const Value* z = scratch.z.data();
    const Value* xi = scratch.xi.data();
    std::vector<Value> partial(width > 1 ? row.size() : 0, Value(0));
    auto& totals = unit_totals(row, partial);
    int pending = 0;  // blocks added to `partial` since its last flush
    typename std::decay_t<decltype(totals)>::value_type unused_log_variance{};  // Poisson: no ρ_x

    for (int step = steps - 1; step >= 0; --step) {
      const int phase_index = math::phase_of(step);
      const math::PhaseConstants<Scalar> phase = step_phase(data, step, work);
      // The Kalman or encoder product at this step (not in the t_forward steps).
      const bool product_branch = product_step(step), optimal = shape.optimal && product_branch,
                 encoder = encoder_step(step);
      const std::int32_t* ancestors = storage.ancestors.data() + std::size_t(step) * K;
      const double* normalised = storage.log_weights.data() + std::size_t(step) * K;
      const bool resampled = storage.resampled[std::size_t(step)] != 0;
      // Route the adjoint of the particles after resampling to their ancestors.
      std::fill(grad_pre.begin(), grad_pre.end(), Scalar(0));
      for (int k = 0; k < K; ++k)
        for (int r = 0; r < R; ++r)
          grad_pre[std::size_t(ancestors[k]) * R + r] += grad_post[std::size_t(k) * R + r];
      // Adjoint of the log-weights through c_t and, without resampling, the carried weights.
      double carried_total = 0.0;
      if (!resampled) {
        for (int begin = 0; begin < K; begin += math::weight_tile) {
          double tile = 0.0;
          for (int k = begin; k < std::min(K, begin + math::weight_tile); ++k)
            tile += grad_carried[std::size_t(k)];
          carried_total += tile;
        }
      }
      for (int k = 0; k < K; ++k)
        grad_log_weight[std::size_t(k)] =
            math::log_weight_adjoint(normalised[k], grad_increment, resampled,
                                     grad_carried[std::size_t(k)], carried_total, product);
      const Scalar* particles = storage.particles.data() + std::size_t(step) * slice;
      const Scalar* observed = observed_at(data, step);
      const Scalar* readout_offset = readout_offset_at(data, step);
      const Scalar* currents = step > 0 ? currents_at(data, step - 1) : nullptr;
      std::fill(step_gain_sum.begin(), step_gain_sum.end(), Total{});
      std::fill(step_mean_product.begin(), step_mean_product.end(), Total{});
      std::fill(step_proposal_factor.begin(), step_proposal_factor.end(), Total{});
      std::fill(current_sum.begin(), current_sum.end(), Value(0));
      std::fill(offset_sum.begin(), offset_sum.end(), Value(0));
      for (int first = 0; first < K; first += width) {
        const int count = std::min(width, K - first);
        if (width > 1 && pending == blocks_per_flush) {
          flush(partial, row);
          pending = 0;
        }
        ++pending;
        // Padding lanes carry zero adjoints: they add nothing to any accumulator.
        Value weight(Scalar(0));
        for (int j = 0; j < count; ++j)
          set_lane(weight, j, static_cast<Scalar>(grad_log_weight[std::size_t(first + j)]));
        gather(particles, first, count, scratch.z.data());
        gather(storage.noise.data() + std::size_t(step) * slice, first, count, scratch.xi.data());
        mean_of(data, storage, step, first, count, scratch);
        // The read-out's parameters, channel by channel, and dz: the later steps' adjoint plus
        // the observation's, whose channels are split over the lanes (channel i in lane
        // i mod lanes, in order: observation_adjoint_partial's sums).
        std::fill(scratch.lanes.begin(), scratch.lanes.end(), Value(0));
        for (int i = 0; i < D; ++i) {
          const auto channel =
              math::channel_adjoint(model_, observed, readout_offset, z, weight, i);
          math::add_channel_gradient(
              channel, z, R, totals[std::size_t(offsets.readout_bias + i)],
              offsets.observation_noise >= 0 ? totals[std::size_t(offsets.observation_noise + i)]
                                             : unused_log_variance,
              one_to_one ? totals.data() + offsets.m + std::int64_t(i) * R
                         : totals.data() + readout_weight + i,
              one_to_one ? 1 : D);
          if (one_to_one)
            math::add_unit_readout_gradient(channel, rates,
                                            totals[std::size_t(offsets.readout_gain + i)],
                                            totals[std::size_t(offsets.h + i)]);
          if (readout_offset != nullptr) offset_sum[std::size_t(i)] += channel.grad_linear;
          math::add_readout_adjoint(model_, i, channel.grad_linear,
                                    scratch.lanes.data() + (i % lanes_) * R);
        }
        math::butterfly_sum(scratch.lanes.data(), lanes_, R);
        for (int r = 0; r < R; ++r) {
          Value later(Scalar(0));
          for (int j = 0; j < count; ++j)
            set_lane(later, j, grad_pre[std::size_t(first + j) * R + r]);
          grad_z[r] = later + scratch.lanes[std::size_t(r)];
        }
        math::propose_adjoint(
            product_branch, R, phase, z, mean, weight,
            math::ProposalRecord<Value>{grad_z, scratch.residual.data(), scratch.scaled.data()},
            grad_mean);
        // The slots (named accumulators finished once per call).
        for (int r = 0; r < R; ++r)
          for (int s = 0; s <= r; ++s) {
            row[std::size_t(slots.factor[phase_index] + r * R + s)] +=
                math::factor_adjoint_term(product_branch, R, phase, weight, grad_z, xi,
                                          scratch.residual.data(), scratch.scaled.data(), r, s);
            if (product_branch)
              (encoder ? step_proposal_factor[std::size_t(r * R + s)]
                        : row[std::size_t(slots.proposal_factor[phase_index] + r * R + s)]) +=
                  math::proposal_factor_adjoint_term(R, phase, weight, grad_z, xi, r, s);
          }
        if (product_branch) {
          for (int r = 0; r < R; ++r) {
            for (int s = 0; s < R; ++s)
              (encoder ? step_mean_product[std::size_t(r * R + s)]
                        : row[std::size_t(slots.mean_product[phase_index] + r * R + s)]) +=
                  math::mean_product_term(grad_z, mean, r, s);
            step_gain_sum[std::size_t(r)] += widen(grad_z[r]);
          }
        }
        if (step == 0) {
          for (int r = 0; r < R; ++r)
            row[std::size_t(slots.initial_mean + r)] += widen(grad_mean[r]);
          continue;
        }
        row[std::size_t(slots.decay)] += math::decay_adjoint_term(R, grad_mean, previous);
        // The transition's parameters, unit by unit, and dz_{t−1}, whose units are split over the
        // lanes (unit i in lane i mod lanes, in order: transition_adjoint_partial's sums).
        std::fill(scratch.lanes.begin(), scratch.lanes.end(), Value(0));
        for (int i = 0; i < N; ++i) {
          const auto unit = math::unit_adjoint(model_, previous, currents, grad_mean, i);
          current_sum[std::size_t(i)] += math::add_unit_gradient(
              unit, grad_mean, previous, R, totals.data() + offsets.n + i, N,
              totals[std::size_t(offsets.h + i)], totals.data() + offsets.m + std::int64_t(i) * R);
          math::add_current_adjoint(model_, i, unit.grad_current,
                                    scratch.lanes.data() + (i % lanes_) * R);
        }
        math::butterfly_sum(scratch.lanes.data(), lanes_, R);
        math::transition_adjoint_finish(model_, grad_mean, scratch.lanes.data(),
                                        scratch.grad_previous.data());
        for (int j = 0; j < count; ++j)
          for (int r = 0; r < R; ++r)
            grad_next[std::size_t(first + j) * R + r] =
                lane_of(scratch.grad_previous[std::size_t(r)], j);
      }
      if (optimal) {  // dG += (Σ_k dμ_q)(x_t − b)ᵀ and Σ dμ_q, once per step
        for (int r = 0; r < R; ++r) {
          const double gain_sum = lane_sum(step_gain_sum[std::size_t(r)]);
          for (int i = 0; i < D; ++i)
            add_scalar(
                row[std::size_t(slots.gain[phase_index] + r * D + i)],
                math::gain_adjoint_term(gain_sum, observed[i], model_.readout_bias[i], product));
          add_scalar(row[std::size_t(slots.gain_sum[phase_index] + r)], gain_sum);
        }
      }
      if (encoder) {  // the step's constants: dL, dμ_e and dσ_e²
        double* mean_product = encoder_sums.data();
        double* proposal_factor = mean_product + R * R;
        double* prior_factor = proposal_factor + R * R;
        double* mean_sum = prior_factor + R * R;
        for (int i = 0; i < R * R; ++i) {
          mean_product[i] = lane_sum(step_mean_product[std::size_t(i)]);
          proposal_factor[i] = lane_sum(step_proposal_factor[std::size_t(i)]);
          prior_factor[i] = 0.0;
        }
        for (int r = 0; r < R; ++r) mean_sum[r] = lane_sum(step_gain_sum[std::size_t(r)]);
        const std::size_t cell = encoder_cell(data, step), own = std::size_t(step) * R;
        const math::ConstantsLayout layout(shape);
        math::encoder_step_constants_backward(
            R, constants_.constants.data() + layout.factor[phase_index],
            encoder_factors_->mean().data() + cell, encoder_factors_->variance().data() + cell,
            work.view(),
            mean_product, mean_sum, proposal_factor, prior_factor,
            encoder_adjoint.mean.data() + own, encoder_adjoint.variance.data() + own,
            work.scratch.data());
        for (int i = 0; i < R * R; ++i)
          add_scalar(row[std::size_t(slots.factor[phase_index] + i)], prior_factor[i]);
      }
      if (readout_offset != nullptr) {  // y_t = … + o_t, o_t = B_vᵀ v_t or W_u v_t
        const double* input = data.inputs + std::int64_t(step) * U;
        for (int i = 0; i < D; ++i) {
          const double sum = double(lane_sum(offset_sum[std::size_t(i)]));
          for (int j = 0; j < U; ++j) {
            const std::int64_t slot = one_to_one ? offsets.w_u + std::int64_t(i) * U + j
                                                 : offsets.readout_weight + std::int64_t(j) * D + i;
            add_scalar(row[std::size_t(slot)], product(sum, input[j]));
          }
        }
      }
      if (U > 0 && step > 0) {  // X_t = m z + W_u u_{t−1}: dW_u += (Σ_k dX) u_{t−1}ᵀ
        const double* input = data.inputs + std::int64_t(step - 1) * U;
        for (int i = 0; i < N; ++i)
          for (int j = 0; j < U; ++j)
            add_scalar(row[std::size_t(offsets.w_u + i * U + j)],
                       product(double(lane_sum(current_sum[std::size_t(i)])), input[j]));
      }
      std::swap(grad_post, grad_next);
      grad_carried = grad_log_weight;
    }
    flush(partial, row);
  }

  /// Sums the rows in trial order and finishes the gradient: the once-per-call adjoints, the
  /// encoder's parameters from the adjoints of its outputs (encoder proposal), then each trial's
  /// adjoint through μ_0's projection (inputs), trials in order.
  std::vector<double> finish(const std::vector<std::vector<double>>& rows,
                             const std::vector<TrialData<Scalar>>& data,
                             const std::vector<EncoderAdjoint>& encoder_adjoints) const {
    const math::ModelShape& shape = constants_.shape;
    const math::ParameterOffsets& offsets = shape.parameters;
    const math::GradientSlots slots(offsets.total, shape.rank, shape.channels);
    std::vector<double> totals(std::size_t(slots.row_size), 0.0);
    for (const auto& row : rows)
      for (std::size_t i = 0; i < totals.size(); ++i) totals[i] += row[i];
    // Every parameter of the model: the engine's, then the encoder's (zero unless its proposal
    // runs).
    std::vector<double> gradient(parameter_count_, 0.0);
    std::vector<double> scratch(
        std::size_t(math::constants_scratch_size(shape.rank, shape.channels)));
    math::finish_gradient(shape, parameters_, constants_.constants.data(), totals.data(),
                          gradient.data(), scratch.data());
    if (encoder_) add_encoder_gradient(encoder_adjoints, gradient);
    if (shape.inputs == 0) return gradient;
    const int R = shape.rank, U = shape.inputs;
    std::vector<double> projection(static_cast<std::size_t>(R)),
        grad_source(static_cast<std::size_t>(R));
    for (std::size_t trial = 0; trial < rows.size(); ++trial) {
      math::initial_mean_adjoint(
          shape, parameters_, constants_.constants.data(), data[trial].currents.data(),
          rows[trial].data() + slots.initial_mean, projection.data(), grad_source.data());
      for (int i = 0; i < shape.hidden; ++i)
        math::add_initial_mean_unit_gradient(
            shape, parameters_, data[trial].currents.data(), data[trial].inputs, projection.data(),
            grad_source.data(), i, gradient.data() + offsets.m + std::int64_t(i) * R,
            gradient.data() + offsets.w_u + std::int64_t(i) * U, product);
    }
    return gradient;
  }

 private:
  model::HostConstants<Scalar> constants_;
  math::ParticleModel<Scalar> model_;
  math::PhaseConstants<Scalar> phases_[2];
  const double* parameters_;
  std::size_t parameter_count_;
  const SequenceBatch& batch_;
  FilterOptions options_;
  std::uint64_t seed_;
  int lanes_;
  // The encoder proposal: the encoder, its parameters and its outputs for the batch (trials,
  // steps, rank), the variance clamped and its slope to the log-variance.
  int data_steps_;  // the steps before the t_forward steps
  bool encoder_;
  TrialShare observed_;
  std::optional<model::EncoderFactors<Scalar>> encoder_factors_;  // encoder proposal
};

/// How a call's threads are shared: over trials when there are at least as many trials as
/// threads; otherwise the trials run one after another, each step's particle blocks on every
/// thread (a single long recording, or fewer trials than cores).
struct ThreadPlan {
  int trial_threads = 1, block_threads = 1;
  ThreadPlan(int trials, int threads) {
    if (trials >= threads) {
      trial_threads = threads;
    } else {
      block_threads = threads;
    }
  }
};

/// Runs `work(trial, storage)` for every trial on `num_threads` OpenMP threads; each thread
/// reuses one trial's storage. Exceptions are rethrown after the region, first trial first.
template <typename Scalar, typename Work>
void run_parallel(int trials, int num_threads, const Work& work) {
  if (num_threads == 1) {  // outside any parallel region: a trial's blocks may use the threads
    TrialStorage<Scalar> storage;
    for (int trial = 0; trial < trials; ++trial) work(trial, storage);
    return;
  }
  std::vector<std::string> errors(static_cast<std::size_t>(trials));
  std::vector<int> error_kind(std::size_t(trials), 0);
#pragma omp parallel num_threads(num_threads)
  {
    TrialStorage<Scalar> storage;
#pragma omp for schedule(dynamic, 1)
    for (int trial = 0; trial < trials; ++trial) {
      try {  // exceptions may not cross an OpenMP region
        work(trial, storage);
      } catch (const NumericalError& error) {
        errors[std::size_t(trial)] = error.what();
        error_kind[std::size_t(trial)] = 1;
      } catch (const std::exception& error) {
        errors[std::size_t(trial)] = error.what();
        error_kind[std::size_t(trial)] = 2;
      }
    }
  }
  for (int trial = 0; trial < trials; ++trial) {
    if (error_kind[std::size_t(trial)] == 1) throw NumericalError(errors[std::size_t(trial)]);
    if (error_kind[std::size_t(trial)] == 2) throw Error(errors[std::size_t(trial)]);
  }
}

/// Runs work(trial, storage) for this process's share of the trials (run_parallel). With a
/// communicator every process then agrees on failures (detail::agree_on_failure): all fail
/// alike, with the first failing share's error.
template <typename Scalar, typename Work>
void run_share(const TrialShare& share, int num_threads, Communicator* communicator,
               const Work& work) {
  detail::on_every_process(communicator, [&] {
    run_parallel<Scalar>(share.count(), num_threads, [&](int local, TrialStorage<Scalar>& storage) {
      work(share.first + local, storage);
    });
  });
}

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (const double value : values) sum += value;
  return values.empty() ? 0.0 : sum / double(values.size());
}

/// Gathers every trial's accumulator row (`row_width` values), ELBO and encoder adjoints
/// (`encoder_width` each) from the processes' shares (this process's `share` filled), in trial
/// order.
void gather_rows(Communicator& communicator, const std::vector<int>& bounds, std::size_t row_width,
                 std::size_t encoder_width, std::vector<std::vector<double>>& rows,
                 std::vector<double>& elbo_per_trial,
                 std::vector<EncoderAdjoint>& encoder_adjoints) {
  const int trials = int(rows.size());
  const TrialShare share = share_in(bounds, communicator.rank());
  detail::gather_trials(communicator, bounds, 1, elbo_per_trial);
  const std::size_t width = row_width + 2 * encoder_width;
  std::vector<double> packed(std::size_t(trials) * width, 0.0);
  for (int trial = share.first; trial < share.last; ++trial) {
    double* at = packed.data() + std::size_t(trial) * width;
    const std::vector<double>& row = rows[std::size_t(trial)];
    std::copy(row.begin(), row.end(), at);
    const EncoderAdjoint& adjoint = encoder_adjoints[std::size_t(trial)];
    std::copy(adjoint.mean.begin(), adjoint.mean.end(), at + row_width);
    std::copy(adjoint.variance.begin(), adjoint.variance.end(), at + row_width + encoder_width);
  }
  detail::gather_trials(communicator, bounds, std::int64_t(width), packed);
  for (int trial = 0; trial < trials; ++trial) {
    const double* at = packed.data() + std::size_t(trial) * width;
    rows[std::size_t(trial)].assign(at, at + row_width);
    encoder_adjoints[std::size_t(trial)].mean.assign(at + row_width,
                                                     at + row_width + encoder_width);
    encoder_adjoints[std::size_t(trial)].variance.assign(at + row_width + encoder_width,
                                                         at + width);
  }
}

template <typename Scalar, typename Value>
FilterResult filter_with(const Model& model, const SequenceBatch& batch,
                         const FilterOptions& options, std::uint64_t seed,
                         const FilterRequest& request, int num_threads, const ForcedPaths* forced,
                         Communicator* communicator) {
  const int trials = batch.num_trials, steps = batch.num_steps, R = model.config.rank,
            K = options.num_particles;
  // Stored particles are not gathered: such a call runs every trial on every process.
  if (request.particles) communicator = nullptr;
  const std::vector<int> bounds = detail::shares_of(batch, communicator);
  const TrialShare share = share_in(bounds, communicator == nullptr ? 0 : communicator->rank());
  const Engine<Scalar, Value> engine(model, batch, options, seed, num_threads,
                                     batch.shares.empty() ? TrialShare{0, trials} : share);
  FilterResult result;
  result.elbo_per_trial.assign(std::size_t(trials), 0.0);
  if (request.filtered_mean) result.filtered_mean.assign(std::size_t(trials) * steps * R, 0.0);
  if (request.particles) {
    result.particles.assign(std::size_t(trials) * steps * K * R, 0.0);
    result.log_weights.assign(std::size_t(trials) * steps * K, 0.0);
    result.ancestors.assign(std::size_t(trials) * steps * K, 0);
    result.resampled.assign(std::size_t(trials) * steps, 0);
  }
  const ThreadPlan plan(share.count(), num_threads);
  run_share<Scalar>(
      share, plan.trial_threads, communicator, [&](int trial, TrialStorage<Scalar>& storage) {
        const TrialData<Scalar> data = engine.prepare_trial(trial);
        engine.forward_trial(trial, data, request.filtered_mean, storage, forced,
                             plan.block_threads);
        result.elbo_per_trial[std::size_t(trial)] = storage.log_evidence / steps;
        if (request.filtered_mean)
          std::copy(storage.filtered_mean.begin(), storage.filtered_mean.end(),
                    result.filtered_mean.begin() + std::ptrdiff_t(trial) * steps * R);
        if (!request.particles) return;
        const std::size_t cells = std::size_t(steps) * K;
        std::copy(storage.particles.begin(), storage.particles.end(),
                  result.particles.begin() + std::ptrdiff_t(std::size_t(trial) * cells * R));
        std::copy(storage.log_weights.begin(), storage.log_weights.end(),
                  result.log_weights.begin() + std::ptrdiff_t(std::size_t(trial) * cells));
        std::copy(storage.ancestors.begin(), storage.ancestors.end(),
                  result.ancestors.begin() + std::ptrdiff_t(std::size_t(trial) * cells));
        std::copy(storage.resampled.begin(), storage.resampled.end(),
                  result.resampled.begin() + std::ptrdiff_t(trial) * steps);
      });
  if (communicator != nullptr) {
    detail::gather_trials(*communicator, bounds, 1, result.elbo_per_trial);
    if (request.filtered_mean)
      detail::gather_trials(*communicator, bounds, std::int64_t(steps) * R, result.filtered_mean);
  }
  result.elbo = mean_of(result.elbo_per_trial);
  return result;
}

template <typename Scalar, typename Value>
GradientResult gradient_with(const Model& model, const SequenceBatch& batch,
                             const FilterOptions& options, std::uint64_t seed, int num_threads,
                             const ForcedPaths* forced, Communicator* communicator) {
  const int trials = batch.num_trials, steps = batch.num_steps;
  const std::vector<int> bounds = detail::shares_of(batch, communicator);
  const TrialShare share = share_in(bounds, communicator == nullptr ? 0 : communicator->rank());
  const Engine<Scalar, Value> engine(model, batch, options, seed, num_threads,
                                     batch.shares.empty() ? TrialShare{0, trials} : share);
  GradientResult result;
  result.elbo_per_trial.assign(std::size_t(trials), 0.0);
  std::vector<std::vector<double>> rows(static_cast<std::size_t>(trials));
  std::vector<TrialData<Scalar>> data(static_cast<std::size_t>(trials));
  std::vector<EncoderAdjoint> encoder_adjoints(static_cast<std::size_t>(trials));
  // With fewer trials than threads the forward pass runs its blocks on every thread; the reverse
  // sweep, whose blocks add into shared accumulators, runs on one.
  const ThreadPlan plan(share.count(), num_threads);
  run_share<Scalar>(
      share, plan.trial_threads, communicator, [&](int trial, TrialStorage<Scalar>& storage) {
        data[std::size_t(trial)] = engine.prepare_trial(trial);
        engine.forward_trial(trial, data[std::size_t(trial)], false, storage, forced,
                             plan.block_threads);
        result.elbo_per_trial[std::size_t(trial)] = storage.log_evidence / steps;
        engine.backward_trial(data[std::size_t(trial)], storage,
                              math::increment_adjoint(trials, steps), rows[std::size_t(trial)],
                              encoder_adjoints[std::size_t(trial)]);
      });
  if (communicator != nullptr) {
    gather_rows(*communicator, bounds, engine.row_size(), engine.encoder_adjoint_size(), rows,
                result.elbo_per_trial, encoder_adjoints);
    // The other processes' trials' input currents, for the finish's per-trial terms.
    if (model.config.num_inputs > 0)
      for (int trial = 0; trial < trials; ++trial)
        if (trial < share.first || trial >= share.last)
          data[std::size_t(trial)] = engine.prepare_trial(trial);
  }
  result.elbo = mean_of(result.elbo_per_trial);
  result.gradient = engine.finish(rows, data, encoder_adjoints);
  return result;
}

}  // namespace

template <typename Scalar>
FilterResult filter_trials(const Model& model, const SequenceBatch& batch,
                           const FilterOptions& options, std::uint64_t seed,
                           const FilterRequest& request, int num_threads, const ForcedPaths* forced,
                           Communicator* communicator) {
  return filter_with<Scalar, Scalar>(model, batch, options, seed, request, num_threads, forced,
                                     communicator);
}

template <typename Scalar>
GradientResult gradient_of_trials(const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed, int num_threads,
                                  const ForcedPaths* forced, Communicator* communicator) {
  return gradient_with<Scalar, Scalar>(model, batch, options, seed, num_threads, forced,
                                       communicator);
}

FilterResult filter_trials_packed(const Model& model, const SequenceBatch& batch,
                                  const FilterOptions& options, std::uint64_t seed,
                                  const FilterRequest& request, int num_threads,
                                  const ForcedPaths* forced, Communicator* communicator) {
  return filter_with<float, Pack>(model, batch, options, seed, request, num_threads, forced,
                                  communicator);
}

GradientResult gradient_of_trials_packed(const Model& model, const SequenceBatch& batch,
                                         const FilterOptions& options, std::uint64_t seed,
                                         int num_threads, const ForcedPaths* forced,
                                         Communicator* communicator) {
  return gradient_with<float, Pack>(model, batch, options, seed, num_threads, forced, communicator);
}

template FilterResult filter_trials<float>(const Model&, const SequenceBatch&, const FilterOptions&,
                                           std::uint64_t, const FilterRequest&, int,
                                           const ForcedPaths*, Communicator*);
template FilterResult filter_trials<double>(const Model&, const SequenceBatch&,
                                            const FilterOptions&, std::uint64_t,
                                            const FilterRequest&, int, const ForcedPaths*,
                                            Communicator*);
template GradientResult gradient_of_trials<float>(const Model&, const SequenceBatch&,
                                                  const FilterOptions&, std::uint64_t, int,
                                                  const ForcedPaths*, Communicator*);
template GradientResult gradient_of_trials<double>(const Model&, const SequenceBatch&,
                                                   const FilterOptions&, std::uint64_t, int,
                                                   const ForcedPaths*, Communicator*);

}  // namespace lrsmc::cpu
