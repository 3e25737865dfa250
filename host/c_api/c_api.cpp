// The C API (include/lrsmc/lrsmc.h) over the C++ API: every entry point checks its pointers,
// runs the C++ call inside LRSMC_C_CATCH, and turns any exception into a status plus a
// thread-local message (faiss's CATCH_AND_HANDLE). Nothing escapes into C.
#include "lrsmc/lrsmc.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/fixed_points.hpp"
#include "lrsmc/params.hpp"
#include "lrsmc/trainer.hpp"

#ifndef LRSMC_VERSION_STRING
#define LRSMC_VERSION_STRING "unknown"
#endif

struct lrsmc_model {
  lrsmc::Model model;
};

namespace {

thread_local std::string last_error;

lrsmc_status fail(lrsmc_status status, std::string message) {
  last_error = std::move(message);
  return status;
}

/// Maps the exception in flight to a status and records its message.
lrsmc_status handle_exception() noexcept {
  try {
    throw;
  } catch (const lrsmc::InvalidInput& error) {
    return fail(LRSMC_INVALID_INPUT, error.what());
  } catch (const lrsmc::IoError& error) {
    return fail(LRSMC_IO_ERROR, error.what());
  } catch (const lrsmc::OutOfMemory& error) {
    return fail(LRSMC_OUT_OF_MEMORY, error.what());
  } catch (const lrsmc::CudaError& error) {
    return fail(LRSMC_CUDA_ERROR, error.what());
  } catch (const lrsmc::NumericalError& error) {
    return fail(LRSMC_NUMERICAL_ERROR, error.what());
  } catch (const lrsmc::Error& error) {
    return fail(LRSMC_ERROR, error.what());
  } catch (const std::bad_alloc&) {
    return fail(LRSMC_OUT_OF_MEMORY, "out of host memory (std::bad_alloc)");
  } catch (const std::exception& error) {
    return fail(LRSMC_ERROR, error.what());
  } catch (...) {
    return fail(LRSMC_ERROR, "unknown exception");
  }
}

/// Throws InvalidInput naming `function` and `argument` when `pointer` is NULL.
void require_pointer(const void* pointer, const char* function, const char* argument) {
  LRSMC_REQUIRE(pointer != nullptr, function, ": argument '", argument,
                "' is NULL; expected a valid pointer");
}

void require_positive(int value, const char* function, const char* argument) {
  LRSMC_REQUIRE(value >= 1, function, ": argument '", argument, "' must be positive; got ", value,
                ", expected ≥ 1");
}

/// Elements in a (a, b, c) array, rejecting sizes that overflow.
std::size_t element_count(int a, int b, int c, const char* function) {
  const auto count = static_cast<unsigned long long>(a) * static_cast<unsigned long long>(b) *
                     static_cast<unsigned long long>(c);
  LRSMC_REQUIRE(count <= std::numeric_limits<std::size_t>::max() / sizeof(double), function, ": array of ", a, " x ", b, " x ", c, " elements is too large");
  return static_cast<std::size_t>(count);
}

/// The model's inputs (trials, steps, inputs) from `inputs`: empty for a model without inputs
/// (which must then be given NULL), refused as NULL for a model with them.
std::vector<double> read_inputs(const lrsmc::Model& model, const double* inputs, int trials,
                                int steps, const char* function) {
  const int U = model.config.num_inputs;
  if (U == 0) {
    LRSMC_REQUIRE(inputs == nullptr, function,
                  ": inputs given, but the model takes none (lrsmc_model_set_inputs adds them)");
    return {};
  }
  LRSMC_REQUIRE(inputs != nullptr, function, ": the model takes ", U,
                " inputs; inputs must not be NULL (trials, steps, ", U, ")");
  const std::size_t count = element_count(trials, steps, U, function);
  return std::vector<double>(inputs, inputs + count);
}

lrsmc::SequenceBatch make_batch(const lrsmc::Model& model, const double* observations,
                                const double* inputs, int trials, int steps, int channels,
                                const char* function) {
  require_pointer(observations, function, "observations");
  require_positive(trials, function, "trials");
  require_positive(steps, function, "steps");
  require_positive(channels, function, "channels");
  LRSMC_REQUIRE(channels == model.config.num_channels, function, ": channels does not match the "
                "model; got ", channels, ", expected ", model.config.num_channels);
  lrsmc::SequenceBatch batch;
  batch.num_trials = trials;
  batch.num_steps = steps;
  batch.num_channels = channels;
  batch.num_inputs = model.config.num_inputs;
  batch.inputs = read_inputs(model, inputs, trials, steps, function);
  const std::size_t count = element_count(trials, steps, channels, function);
  batch.observations.assign(observations, observations + count);
  return batch;
}

lrsmc::FilterOptions make_filter_options(const lrsmc::ModelConfig& config, int particles,
                                         const char* proposal, const char* function) {
  lrsmc::FilterOptions options;
  options.num_particles = particles;
  const std::string text = proposal == nullptr ? "auto" : proposal;
  options.proposal = text == "auto"
                         ? lrsmc::default_proposal(config)
                         : lrsmc::parse_proposal(text, std::string(function) + ": proposal");
  lrsmc::validate(options, config, function);
  return options;
}

lrsmc::PiecewiseLinearNetwork latent_map(const lrsmc::Model& model) {
  const lrsmc::ModelConfig& config = model.config;
  lrsmc::PiecewiseLinearNetwork network;
  network.rank = config.rank;
  network.num_hidden = config.num_hidden;
  network.decay = model.decay();
  network.nonlinearity = config.nonlinearity;
  network.m = model.get("m");
  network.n = model.get("n");
  network.h = model.get("h");
  network.constant_current.assign(static_cast<std::size_t>(config.num_hidden), 0.0);
  return network;
}

}  // namespace

/// Runs `body` and returns LRSMC_OK, or the status of the exception it threw.
/// (Variadic: commas inside the body's braces would otherwise split the macro argument.)
#define LRSMC_C_CATCH(...)     \
  try {                        \
    __VA_ARGS__                \
    return LRSMC_OK;           \
  } catch (...) {              \
    return handle_exception(); \
  }

extern "C" {

const char* lrsmc_last_error(void) { return last_error.c_str(); }

const char* lrsmc_status_string(lrsmc_status status) {
  switch (status) {
    case LRSMC_OK: return "LRSMC_OK";
    case LRSMC_INVALID_INPUT: return "LRSMC_INVALID_INPUT";
    case LRSMC_IO_ERROR: return "LRSMC_IO_ERROR";
    case LRSMC_OUT_OF_MEMORY: return "LRSMC_OUT_OF_MEMORY";
    case LRSMC_CUDA_ERROR: return "LRSMC_CUDA_ERROR";
    case LRSMC_NUMERICAL_ERROR: return "LRSMC_NUMERICAL_ERROR";
    case LRSMC_ERROR: return "LRSMC_ERROR";
  }
  return "LRSMC_UNKNOWN_STATUS";
}

const char* lrsmc_version(void) { return LRSMC_VERSION_STRING; }

lrsmc_status lrsmc_model_initialise(int rank, int hidden, int channels, const char* nonlinearity,
                                    uint64_t seed, lrsmc_model** model) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_initialise", "model");
    *model = nullptr;
    lrsmc::ModelConfig config;
    config.rank = rank;
    config.num_hidden = hidden;
    config.num_channels = channels;
    config.num_inputs = 0;
    config.nonlinearity =
        lrsmc::parse_nonlinearity(nonlinearity == nullptr ? "clipped_relu" : nonlinearity,
                                  "lrsmc_model_initialise: nonlinearity");
    lrsmc::validate(config, "lrsmc_model_initialise");
    auto* handle = new lrsmc_model{lrsmc::Model::initialise(config, seed)};
    *model = handle;
  })
}

lrsmc_status lrsmc_model_set_encoder(lrsmc_model* model, const int* kernels, int num_kernels,
                                     const int* channels, const char* activation,
                                     const char* padding, const char* padding_mode,
                                     double init_scale, uint64_t seed) {
  LRSMC_C_CATCH({
    const char* function = "lrsmc_model_set_encoder";
    require_pointer(model, function, "model");
    require_pointer(kernels, function, "kernels");
    LRSMC_REQUIRE(num_kernels >= 1 && num_kernels <= 64, function,
                  ": num_kernels is out of range; got ", num_kernels, ", expected 1 to 64");
    lrsmc::EncoderConfig encoder;
    encoder.kernels.assign(kernels, kernels + num_kernels);
    if (channels != nullptr)
      encoder.channels.assign(channels, channels + num_kernels - 1);
    else
      encoder.channels = lrsmc::default_encoder_channels(std::size_t(num_kernels));
    const std::string label = function;
    encoder.activation = lrsmc::parse_encoder_activation(
        activation == nullptr ? "gelu" : activation, label + ": activation");
    encoder.padding = lrsmc::parse_encoder_padding(padding == nullptr ? "causal" : padding,
                                                   label + ": padding");
    encoder.padding_mode = lrsmc::parse_padding_mode(
        padding_mode == nullptr ? "zeros" : padding_mode, label + ": padding_mode");
    encoder.init_scale = init_scale;
    lrsmc::ModelConfig config = model->model.config;
    config.encoder = encoder;
    lrsmc::validate(config, function);
    // The model's own blocks keep their values; the encoder's come from its initialisation.
    lrsmc::Model updated = lrsmc::Model::initialise(config, seed);
    const lrsmc::ParameterLayout old_layout = model->model.layout();
    for (const auto& block : old_layout.blocks())
      if (block.name.rfind("encoder_", 0) != 0) updated.set(block.name, model->model.get(block.name));
    model->model = std::move(updated);
  })
}

lrsmc_status lrsmc_model_set_readout(lrsmc_model* model, const char* readout_from,
                                     uint64_t seed) {
  LRSMC_C_CATCH({
    const char* function = "lrsmc_model_set_readout";
    require_pointer(model, function, "model");
    require_pointer(readout_from, function, "readout_from");
    lrsmc::ModelConfig config = model->model.config;
    config.readout_from =
        lrsmc::parse_readout_from(readout_from, std::string(function) + ": readout_from");
    lrsmc::validate(config, function);
    // Every block but the read-out's weights and gains keeps its values.
    lrsmc::Model updated = lrsmc::Model::initialise(config, seed);
    const lrsmc::ParameterLayout layout = updated.layout(), old_layout = model->model.layout();
    for (const auto& block : old_layout.blocks())
      if (block.name != "readout_weight" && block.name != "readout_gain" && layout.has(block.name))
        updated.set(block.name, model->model.get(block.name));
    model->model = std::move(updated);
  })
}

lrsmc_status lrsmc_model_set_inputs(lrsmc_model* model, int inputs, uint64_t seed) {
  LRSMC_C_CATCH({
    const char* function = "lrsmc_model_set_inputs";
    require_pointer(model, function, "model");
    LRSMC_REQUIRE(inputs >= 0 && inputs <= 100000, function,
                  ": inputs must be 0 to 100000; got ", inputs);
    lrsmc::ModelConfig config = model->model.config;
    config.num_inputs = inputs;
    lrsmc::validate(config, function);
    // Every block whose shape does not depend on the inputs keeps its values.
    lrsmc::Model updated = lrsmc::Model::initialise(config, seed);
    const lrsmc::ParameterLayout layout = updated.layout(), old_layout = model->model.layout();
    for (const auto& block : old_layout.blocks())
      if (block.name != "w_u" && layout.has(block.name) &&
          layout.block(block.name).size == block.size)
        updated.set(block.name, model->model.get(block.name));
    model->model = std::move(updated);
  })
}

lrsmc_status lrsmc_model_load(const char* path, lrsmc_model** model) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_load", "model");
    *model = nullptr;
    require_pointer(path, "lrsmc_model_load", "path");
    auto* handle = new lrsmc_model{lrsmc::load_model(path)};
    *model = handle;
  })
}

lrsmc_status lrsmc_model_save(const lrsmc_model* model, const char* path) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_save", "model");
    require_pointer(path, "lrsmc_model_save", "path");
    lrsmc::save_model(path, model->model);
  })
}

void lrsmc_model_free(lrsmc_model* model) { delete model; }

lrsmc_status lrsmc_model_rank(const lrsmc_model* model, int* rank) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_rank", "model");
    require_pointer(rank, "lrsmc_model_rank", "rank");
    *rank = model->model.config.rank;
  })
}

lrsmc_status lrsmc_model_hidden(const lrsmc_model* model, int* hidden) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_hidden", "model");
    require_pointer(hidden, "lrsmc_model_hidden", "hidden");
    *hidden = model->model.config.num_hidden;
  })
}

lrsmc_status lrsmc_model_channels(const lrsmc_model* model, int* channels) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_channels", "model");
    require_pointer(channels, "lrsmc_model_channels", "channels");
    *channels = model->model.config.num_channels;
  })
}

lrsmc_status lrsmc_model_inputs(const lrsmc_model* model, int* inputs) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_inputs", "model");
    require_pointer(inputs, "lrsmc_model_inputs", "inputs");
    *inputs = model->model.config.num_inputs;
  })
}

lrsmc_status lrsmc_model_parameter_count(const lrsmc_model* model, int64_t* count) {
  LRSMC_C_CATCH({
    require_pointer(model, "lrsmc_model_parameter_count", "model");
    require_pointer(count, "lrsmc_model_parameter_count", "count");
    *count = static_cast<int64_t>(model->model.parameters.size());
  })
}

lrsmc_status lrsmc_filter(const lrsmc_model* model, const double* observations, int trials,
                          int steps, int channels, int particles, const char* proposal,
                          uint64_t seed, double* elbo_per_trial, double* filtered_mean) {
  return lrsmc_filter_with_inputs(model, observations, nullptr, trials, steps, channels,
                                  particles, proposal, seed, elbo_per_trial, filtered_mean);
}

lrsmc_status lrsmc_filter_with_inputs(const lrsmc_model* model, const double* observations,
                                      const double* inputs, int trials, int steps, int channels,
                                      int particles, const char* proposal, uint64_t seed,
                                      double* elbo_per_trial, double* filtered_mean) {
  LRSMC_C_CATCH({
    const char* function = inputs == nullptr ? "lrsmc_filter" : "lrsmc_filter_with_inputs";
    require_pointer(model, function, "model");
    require_pointer(elbo_per_trial, function, "elbo_per_trial");
    const lrsmc::Model& m = model->model;
    const lrsmc::SequenceBatch batch =
        make_batch(m, observations, inputs, trials, steps, channels, function);
    const lrsmc::FilterOptions options = make_filter_options(m.config, particles, proposal, function);
    lrsmc::FilterRequest request;
    request.filtered_mean = filtered_mean != nullptr;
    auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu);
    const lrsmc::FilterResult result = backend->filter(m, batch, options, seed, request);
    LRSMC_ASSERT(result.elbo_per_trial.size() == static_cast<std::size_t>(trials));
    std::memcpy(elbo_per_trial, result.elbo_per_trial.data(),
                result.elbo_per_trial.size() * sizeof(double));
    if (filtered_mean != nullptr) {
      LRSMC_ASSERT(result.filtered_mean.size() == element_count(trials, steps, m.config.rank,
                                                                function));
      std::memcpy(filtered_mean, result.filtered_mean.data(),
                  result.filtered_mean.size() * sizeof(double));
    }
  })
}

lrsmc_status lrsmc_fit(lrsmc_model* model, const double* observations, int trials, int steps,
                       int channels, int epochs, int batch_size, int particles,
                       double learning_rate, uint64_t seed, double* final_elbo) {
  return lrsmc_fit_with_inputs(model, observations, nullptr, trials, steps, channels, epochs,
                               batch_size, particles, learning_rate, seed, final_elbo);
}

lrsmc_status lrsmc_fit_with_inputs(lrsmc_model* model, const double* observations,
                                   const double* inputs, int trials, int steps, int channels,
                                   int epochs, int batch_size, int particles,
                                   double learning_rate, uint64_t seed, double* final_elbo) {
  LRSMC_C_CATCH({
    const char* function = inputs == nullptr ? "lrsmc_fit" : "lrsmc_fit_with_inputs";
    require_pointer(model, function, "model");
    require_positive(epochs, function, "epochs");
    require_positive(batch_size, function, "batch_size");
    LRSMC_REQUIRE(std::isfinite(learning_rate) && learning_rate > 0, function,
                  ": learning_rate must be positive and finite; got ", learning_rate);
    const lrsmc::SequenceBatch batch =
        make_batch(model->model, observations, inputs, trials, steps, channels, function);
    lrsmc::Dataset data;
    data.source = function;
    data.num_trials = trials;
    data.num_steps = steps;
    data.num_channels = channels;
    data.num_inputs = batch.num_inputs;
    data.observations = batch.observations;
    data.inputs = batch.inputs;
    lrsmc::Dataset held_out;
    held_out.source = function;
    held_out.num_steps = steps;
    held_out.num_channels = channels;
    held_out.num_inputs = batch.num_inputs;

    lrsmc::TrainingOptions options;
    options.epochs = epochs;
    options.batch_size = batch_size;
    options.learning_rate = learning_rate;
    options.learning_rate_end = learning_rate * 1e-3;
    options.optimizer = lrsmc::Optimizer::radam;
    options.filter = make_filter_options(model->model.config, particles, "auto", function);
    options.seed = seed;
    lrsmc::validate(options, function);

    auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu);
    lrsmc::Trainer trainer(*backend, options);
    lrsmc::TrainingResult result = trainer.fit(model->model, data, held_out);
    model->model = std::move(result.model);
    if (final_elbo != nullptr)
      *final_elbo = result.history.empty() ? std::numeric_limits<double>::quiet_NaN()
                                           : result.history.back().train_elbo;
    if (!result.completed)
      throw lrsmc::NumericalError(std::string(function) + ": " + result.stop_reason);
  })
}

lrsmc_status lrsmc_sample(const lrsmc_model* model, int trials, int steps, uint64_t seed,
                          double* observations, double* latents) {
  return lrsmc_sample_with_inputs(model, nullptr, trials, steps, seed, observations, latents);
}

lrsmc_status lrsmc_sample_with_inputs(const lrsmc_model* model, const double* inputs, int trials,
                                      int steps, uint64_t seed, double* observations,
                                      double* latents) {
  LRSMC_C_CATCH({
    const char* function = inputs == nullptr ? "lrsmc_sample" : "lrsmc_sample_with_inputs";
    require_pointer(model, function, "model");
    require_pointer(observations, function, "observations");
    require_positive(trials, function, "trials");
    require_positive(steps, function, "steps");
    const lrsmc::Model& m = model->model;
    const std::vector<double> input_values = read_inputs(m, inputs, trials, steps, function);
    element_count(trials, steps, m.config.num_channels, function);
    auto backend = lrsmc::make_backend(lrsmc::BackendKind::cpu);
    const lrsmc::SampleResult result = backend->sample(m, trials, steps, input_values, seed);
    LRSMC_ASSERT(result.observations.size() ==
                 element_count(trials, steps, m.config.num_channels, function));
    std::memcpy(observations, result.observations.data(),
                result.observations.size() * sizeof(double));
    if (latents != nullptr) {
      LRSMC_ASSERT(result.latents.size() == element_count(trials, steps, m.config.rank, function));
      std::memcpy(latents, result.latents.data(), result.latents.size() * sizeof(double));
    }
  })
}

lrsmc_status lrsmc_fixed_points(const lrsmc_model* model, int* count, double* points,
                                int capacity) {
  LRSMC_C_CATCH({
    const char* function = "lrsmc_fixed_points";
    require_pointer(model, function, "model");
    require_pointer(count, function, "count");
    LRSMC_REQUIRE(capacity >= 0, function, ": capacity must be ≥ 0; got ", capacity);
    if (capacity > 0) require_pointer(points, function, "points");
    const lrsmc::PiecewiseLinearNetwork network = latent_map(model->model);
    const lrsmc::FixedPointResult result =
        network.nonlinearity == lrsmc::Nonlinearity::tanh
            ? lrsmc::find_fixed_points_numerical(network, 256, 0)
            : lrsmc::find_fixed_points(network);
    const auto found = result.fixed_points.size();
    LRSMC_REQUIRE(found <= static_cast<std::size_t>(std::numeric_limits<int>::max()), function,
                  ": too many fixed points to count in an int; got ", found);
    *count = static_cast<int>(found);
    const std::size_t rank = static_cast<std::size_t>(network.rank);
    for (std::size_t i = 0; i < found && i < static_cast<std::size_t>(capacity); ++i)
      std::memcpy(points + i * rank, result.fixed_points[i].z.data(), rank * sizeof(double));
  })
}

}  // extern "C"
