// The extension module lrsmc._core: pybind11 bindings of the public C++ API (include/lrsmc/).
// numpy float64 arrays in and out, the GIL released while the engine runs, and the engine's
// error types raised as Python exceptions carrying its message. The Python package lrsmc
// (python/lrsmc/) builds the user-facing interface on top of this module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <complex>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lrsmc/array.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/config.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/encoder.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/fixed_points.hpp"
#include "lrsmc/params.hpp"
#include "lrsmc/presets.hpp"
#include "lrsmc/smoother.hpp"
#include "lrsmc/evaluation.hpp"
#include "lrsmc/metrics.hpp"
#include "lrsmc/trainer.hpp"

#ifndef LRSMC_VERSION_STRING
#define LRSMC_VERSION_STRING "unknown"
#endif

namespace py = pybind11;
using namespace py::literals;

namespace lrsmc::python {
namespace {

// --- arrays ------------------------------------------------------------------------------------

/// What the bindings accept as an array: float64 in C order. pybind11 converts any other dtype
/// or layout with one copy; a float64 C-contiguous array is read where it lies.
using InputArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

/// The engine's owning Array. The public API holds data in std::vector, so this is the one copy
/// of the values into the engine (no conversion copy on the Python side).
Array to_array(const InputArray& array) {
  Array result;
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis)
    result.shape.push_back(std::int64_t{array.shape(axis)});
  const double* first = array.data();
  result.data.assign(first, first + array.size());
  return result;
}

/// Moves `values` into a numpy array without copying them: the array's base is a capsule that
/// owns the vector and frees it with the array.
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& values, const std::vector<py::ssize_t>& shape) {
  py::ssize_t count = 1;
  for (const auto extent : shape) count *= extent;
  LRSMC_ASSERT(count == static_cast<py::ssize_t>(values.size()));
  auto owned = std::make_unique<std::vector<T>>(std::move(values));
  T* data = owned->data();
  const py::capsule owner(owned.get(),
                          [](void* pointer) { delete static_cast<std::vector<T>*>(pointer); });
  owned.release();  // the capsule owns it now
  return py::array_t<T>(shape, data, owner);
}

/// A read-only numpy view of `values`, kept alive by `owner` (the Python object holding them).
py::array_t<double> read_only_view(const std::vector<double>& values,
                                   const std::vector<py::ssize_t>& shape, const py::handle owner) {
  py::array_t<double> view(shape, values.data(), owner);
  view.attr("setflags")("write"_a = false);
  return view;
}

/// "(a, b, c)" for messages, as Array::shape_string writes it.
std::string shape_string(const py::array& array) {
  std::string text = "(";
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis)
    text += (axis > 0 ? ", " : "") + std::to_string(array.shape(axis));
  return text + (array.ndim() == 1 ? ",)" : ")");
}

py::tuple shape_tuple(const std::vector<std::int64_t>& shape) {
  py::tuple result(shape.size());
  for (std::size_t axis = 0; axis < shape.size(); ++axis) result[axis] = py::int_(shape[axis]);
  return result;
}

// --- errors ------------------------------------------------------------------------------------

/// Python classes of the engine's errors (errors.hpp), created once at import and kept for the
/// life of the process.
struct ExceptionTypes {
  PyObject* error = nullptr;          ///< lrsmc::Error            → lrsmc.Error(RuntimeError)
  PyObject* invalid_input = nullptr;  ///< lrsmc::InvalidInput     → also ValueError
  PyObject* io_error = nullptr;       ///< lrsmc::IoError          → also OSError
  PyObject* out_of_memory = nullptr;  ///< lrsmc::OutOfMemory      → also MemoryError
  PyObject* cuda_error = nullptr;     ///< lrsmc::CudaError
  PyObject* numerical = nullptr;      ///< lrsmc::NumericalError   → also ArithmeticError
};

ExceptionTypes& exception_types() {
  static ExceptionTypes types;
  return types;
}

PyObject* add_exception(py::module_& module, const char* name, const char* doc,
                        std::initializer_list<PyObject*> bases) {
  py::tuple base_tuple(bases.size());
  std::size_t index = 0;
  for (PyObject* base : bases) base_tuple[index++] = py::handle(base);
  const std::string qualified = std::string("lrsmc.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  module.add_object(name, py::handle(type));  // the module takes its own reference
  return type;
}

void register_exceptions(py::module_& module) {
  ExceptionTypes& types = exception_types();
  types.error = add_exception(module, "Error", "Base of every error the lrsmc engine raises.",
                              {PyExc_RuntimeError});
  types.invalid_input = add_exception(
      module, "InvalidInputError",
      "Bad input: a shape, value, option or file content (the command line's exit status 2).",
      {types.error, PyExc_ValueError});
  types.io_error =
      add_exception(module, "IoError", "A file could not be opened, read, written or renamed.",
                    {types.error, PyExc_OSError});
  types.out_of_memory =
      add_exception(module, "OutOfMemoryError",
                    "The problem does not fit in (device) memory; the message says what would fit.",
                    {types.error, PyExc_MemoryError});
  types.cuda_error = add_exception(
      module, "CudaError", "A CUDA call failed, or no CUDA device is available.", {types.error});
  types.numerical = add_exception(module, "NumericalError",
                                  "The objective or its gradient became NaN or infinite.",
                                  {types.error, PyExc_ArithmeticError});
  py::register_exception_translator([](std::exception_ptr pointer) {
    const ExceptionTypes& known = exception_types();
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const InvalidInput& error) {
      PyErr_SetString(known.invalid_input, error.what());
    } catch (const IoError& error) {
      PyErr_SetString(known.io_error, error.what());
    } catch (const OutOfMemory& error) {
      PyErr_SetString(known.out_of_memory, error.what());
    } catch (const CudaError& error) {
      PyErr_SetString(known.cuda_error, error.what());
    } catch (const NumericalError& error) {
      PyErr_SetString(known.numerical, error.what());
    } catch (const Error& error) {
      PyErr_SetString(known.error, error.what());
    }
    // Anything else propagates to pybind11's own translators (std::bad_alloc → MemoryError).
  });
}

// --- engine helpers ----------------------------------------------------------------------------

/// The backend of `device` for this model: "auto" falls back to the CPU (with a warning on
/// stderr) where the GPU cannot run it, as the command line does.
std::unique_ptr<Backend> make_device_backend(const std::string& device, int threads,
                                             const std::string& precision,
                                             const ModelConfig& config,
                                             const FilterOptions& filter) {
  BackendOptions options;
  options.num_threads = threads;
  options.cpu_precision = parse_cpu_precision(precision, "precision");
  std::string note;
  auto backend =
      make_backend_for(parse_backend_kind(device, "device"), options, config, filter, &note);
  if (!note.empty()) std::fprintf(stderr, "lrsmc: %s\n", note.c_str());
  return backend;
}

/// Filter options as the command line builds them (host/cli/options.cpp): "auto" is
/// default_proposal(config, every_observation).
FilterOptions make_filter_options(const ModelConfig& config, int particles,
                                  const std::string& proposal, const std::string& resampling,
                                  double resample_threshold, int t_forward,
                                  bool every_observation = true) {
  FilterOptions options;
  options.num_particles = particles;
  options.proposal = proposal == "auto" ? default_proposal(config, every_observation)
                                        : parse_proposal(proposal, "proposal");
  options.resampling = parse_resampling(resampling, "resampling");
  options.resample_threshold = resample_threshold;
  options.t_forward = t_forward;
  validate(options, config, "filter options");
  return options;
}

/// A dataset from observations (and optional inputs) in `layout`, as load_dataset builds one
/// from files: the same checks and messages, naming `source`.
Dataset make_dataset(const InputArray& observations, const std::string& layout,
                     const std::optional<InputArray>& inputs, const std::string& source,
                     bool allow_missing) {
  const Array observation_array = to_array(observations);
  std::optional<Array> input_array;
  if (inputs) input_array = to_array(*inputs);
  py::gil_scoped_release release;
  const DataLayout data_layout = parse_data_layout(layout, "layout");
  Dataset data = dataset_from_array(observation_array, data_layout, source, allow_missing);
  if (!input_array) return data;
  const std::string inputs_source = source + " inputs";
  Dataset input_data = dataset_from_array(*input_array, data_layout, inputs_source);
  LRSMC_REQUIRE(input_data.num_trials == data.num_trials && input_data.num_steps == data.num_steps,
                inputs_source, ": inputs do not match the data; got ", input_data.num_trials,
                " trials × ", input_data.num_steps, " steps, expected ", data.num_trials, " × ",
                data.num_steps, " (layout ", to_string(data_layout), ")");
  data.num_inputs = input_data.num_channels;
  data.inputs = std::move(input_data.observations);
  return data;
}

/// Filters trials [first_trial, first_trial + num_trials) of `data` (num_trials < 0: to the
/// last). Each trial keeps its own random-number address (SequenceBatch::trial_ids), so filtering
/// the trials in parts gives the same numbers as one call; the Python package does so to report
/// progress on long calls.
py::dict filter(const Model& model, const Dataset& data, int particles, const std::string& proposal,
                const std::string& resampling, double resample_threshold, int t_forward,
                std::uint64_t seed, const std::string& device, int threads,
                const std::string& precision, bool store_particles, int first_trial,
                int num_trials) {
  require_channels(data, model.config.num_channels);
  LRSMC_REQUIRE(first_trial >= 0 && first_trial < data.num_trials,
                "filter: first_trial is out of range; got ", first_trial, ", expected 0 to ",
                data.num_trials - 1);
  const int count = num_trials < 0 ? data.num_trials - first_trial : num_trials;
  LRSMC_REQUIRE(count >= 1 && count <= data.num_trials - first_trial,
                "filter: num_trials is out of range; got ", num_trials, ", expected 1 to ",
                data.num_trials - first_trial, " (or -1: to the last trial)");
  FilterResult result;
  int num_particles = 0;
  {
    py::gil_scoped_release release;
    const FilterOptions options = make_filter_options(model.config, particles, proposal,
                                                      resampling, resample_threshold, t_forward,
                                                      !data.has_missing());
    num_particles = options.num_particles;
    auto backend = make_device_backend(device, threads, precision, model.config, options);
    FilterRequest request;
    request.filtered_mean = true;
    request.particles = store_particles;
    SequenceBatch batch = trials_batch(data, first_trial, count);
    batch.trial_ids.resize(static_cast<std::size_t>(count));
    std::iota(batch.trial_ids.begin(), batch.trial_ids.end(),
              static_cast<std::uint32_t>(first_trial));
    result = backend->filter(model, batch, options, seed, request);
  }
  const py::ssize_t trials = count, steps = data.num_steps, rank = model.config.rank,
                    k = num_particles;
  py::dict out;
  out["elbo"] = result.elbo;
  out["elbo_per_trial"] = to_numpy(std::move(result.elbo_per_trial), {trials});
  out["latents"] = to_numpy(std::move(result.filtered_mean), {trials, steps, rank});
  if (store_particles) {
    out["particles"] = to_numpy(std::move(result.particles), {trials, steps, k, rank});
    out["log_weights"] = to_numpy(std::move(result.log_weights), {trials, steps, k});
    out["ancestors"] = to_numpy(std::move(result.ancestors), {trials, steps, k});
    out["resampled"] = to_numpy(std::move(result.resampled), {trials, steps});
  }
  return out;
}

py::dict smooth(const Model& model, const Dataset& data, int particles, const std::string& proposal,
                const std::string& resampling, double resample_threshold, int t_forward,
                std::uint64_t seed, const std::string& device, int threads,
                const std::string& precision, int trajectories) {
  require_channels(data, model.config.num_channels);
  SmoothResult result;
  {
    py::gil_scoped_release release;
    const FilterOptions options = make_filter_options(model.config, particles, proposal,
                                                      resampling, resample_threshold, t_forward,
                                                      !data.has_missing());
    auto backend = make_device_backend(device, threads, precision, model.config, options);
    result = lrsmc::smooth(*backend, model, trials_batch(data, 0, data.num_trials), options, seed,
                           trajectories);
  }
  const py::ssize_t trials = data.num_trials, steps = data.num_steps, rank = model.config.rank;
  py::dict out;
  out["elbo"] = result.elbo;
  out["elbo_per_trial"] = to_numpy(std::move(result.elbo_per_trial), {trials});
  out["latents"] = to_numpy(std::move(result.smoothed_mean), {trials, steps, rank});
  out["trajectories"] =
      to_numpy(std::move(result.trajectories), {trials, py::ssize_t(trajectories), steps, rank});
  return out;
}

py::dict sample(const Model& model, int trials, int steps, const std::optional<InputArray>& inputs,
                std::uint64_t seed, const std::string& device, int threads,
                const std::string& precision, int first_trial,
                const std::optional<InputArray>& initial_states) {
  std::vector<double> input_values;
  if (inputs) {
    LRSMC_REQUIRE(inputs->ndim() == 3 && inputs->shape(0) == trials && inputs->shape(1) == steps &&
                      inputs->shape(2) == model.config.num_inputs,
                  "sample: inputs have shape ", shape_string(*inputs), "; expected (", trials, ", ",
                  steps, ", ", model.config.num_inputs, ") (trials, steps, inputs)");
    input_values = to_array(*inputs).data;
  }
  std::vector<double> states;
  if (initial_states) {
    LRSMC_REQUIRE(initial_states->ndim() == 2 && initial_states->shape(0) == trials &&
                      initial_states->shape(1) == model.config.rank,
                  "sample: initial_states have shape ", shape_string(*initial_states),
                  "; expected (", trials, ", ", model.config.rank, ") (trials, rank)");
    states = to_array(*initial_states).data;
  }
  SampleResult result;
  {
    py::gil_scoped_release release;
    auto backend = make_device_backend(device, threads, precision, model.config, FilterOptions{});
    result = backend->sample(model, trials, steps, input_values, seed, first_trial, states);
  }
  const py::ssize_t t = trials, s = steps;
  py::dict out;
  out["latents"] = to_numpy(std::move(result.latents), {t, s, model.config.rank});
  out["rates"] = to_numpy(std::move(result.rates), {t, s, model.config.num_channels});
  out["observations"] = to_numpy(std::move(result.observations), {t, s, model.config.num_channels});
  return out;
}

/// Trains with the engine's Trainer. The progress callback runs after every epoch with the GIL
/// held: it first lets Python handle pending signals (PyErr_CheckSignals: Ctrl-C raises
/// KeyboardInterrupt there), then calls `callback(report)` unless it is None. A false return
/// stops training cleanly; an exception (KeyboardInterrupt included) stops it too and is
/// returned, not raised, so that the caller keeps the model trained so far.
/// Returns (TrainingResult, exception or None).
py::tuple fit(const Model& model, const Dataset& train, const Dataset& held_out,
              TrainingOptions options, int particles, const std::string& proposal,
              const std::string& resampling, double resample_threshold, int t_forward,
              const std::string& optimizer, const std::string& resume_from,
              const std::string& device, int threads, const std::string& precision,
              const py::object& callback) {
  py::object pending_exception = py::none();
  const ProgressCallback progress = [&](const EpochReport& report) -> bool {
    py::gil_scoped_acquire acquire;
    try {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (callback.is_none()) return true;
      const py::object answer = callback(report);
      const int truth = answer.is_none() ? 1 : PyObject_IsTrue(answer.ptr());
      if (truth < 0) throw py::error_already_set();
      return truth == 1;
    } catch (py::error_already_set& error) {
      pending_exception = error.value();
      return false;
    }
  };
  TrainingResult result;
  {
    py::gil_scoped_release release;
    options.filter = make_filter_options(model.config, particles, proposal, resampling,
                                         resample_threshold, t_forward,
                                         !train.has_missing() && !held_out.has_missing());
    options.optimizer = parse_optimizer(optimizer, "optimizer");
    auto backend = make_device_backend(device, threads, precision, model.config, options.filter);
    Trainer trainer(*backend, options);
    result = trainer.fit(model, train, held_out, progress, resume_from);
  }
  return py::make_tuple(std::move(result), pending_exception);
}

/// Fixed points of the latent map F(z) = a z + n φ(m z + c; h) (fixed_points.hpp).
FixedPointResult fixed_points(const InputArray& m, const InputArray& n, const InputArray& h,
                              double decay, const std::string& nonlinearity,
                              const std::optional<InputArray>& constant_current,
                              const std::string& method, int num_starts, std::uint64_t seed,
                              double tolerance) {
  LRSMC_REQUIRE(m.ndim() == 2, "fixed points: m must be a (hidden, rank) matrix; got ", m.ndim(),
                " dimension(s)");
  PiecewiseLinearNetwork network;
  network.num_hidden = static_cast<int>(m.shape(0));
  network.rank = static_cast<int>(m.shape(1));
  LRSMC_REQUIRE(n.ndim() == 2 && n.shape(0) == network.rank && n.shape(1) == network.num_hidden,
                "fixed points: n has the wrong shape; got ", shape_string(n), ", expected (",
                network.rank, ", ", network.num_hidden, ") (rank, hidden)");
  network.decay = decay;
  network.nonlinearity = parse_nonlinearity(nonlinearity, "nonlinearity");
  network.m = to_array(m).data;
  network.n = to_array(n).data;
  network.h = to_array(h).data;
  if (constant_current) network.constant_current = to_array(*constant_current).data;
  py::gil_scoped_release release;
  if (method == "exact") {
    FixedPointOptions options;
    options.tolerance = tolerance;
    return find_fixed_points(network, options);
  }
  if (method == "brute_force") {
    FixedPointOptions options;
    options.tolerance = tolerance;
    return find_fixed_points_brute_force(network, options);
  }
  if (method == "numerical") return find_fixed_points_numerical(network, num_starts, seed);
  throw InvalidInput(detail::concat("fixed points: method is not recognised; got '", method,
                                    "', expected one of exact, numerical, brute_force"));
}

// --- module ------------------------------------------------------------------------------------

void bind_config(py::module_& module) {
  const ModelConfig defaults;  // the keyword defaults are the C++ (and command line) defaults
  py::class_<ModelConfig>(module, "ModelConfig",
                          "Architecture and initialisation of a model (config.hpp). Option "
                          "values are the command line's spellings.")
      .def(py::init([](int rank, int num_hidden, int num_channels, int num_inputs,
                       const std::string& nonlinearity, const std::string& transition_noise,
                       const std::string& initial_noise, const std::string& observation,
                       const std::string& link, const std::string& initial_state, double init_decay,
                       double init_transition_std, double init_initial_std,
                       double init_observation_std, std::optional<std::vector<int>> encoder_kernels,
                       std::optional<std::vector<int>> encoder_channels,
                       const std::string& encoder_activation, const std::string& encoder_padding,
                       const std::string& encoder_padding_mode, double encoder_init_scale,
                       bool encoder_constant_variance, const std::string& readout_from) {
             ModelConfig config;
             config.rank = rank;
             config.num_hidden = num_hidden;
             config.num_channels = num_channels;
             config.num_inputs = num_inputs;
             config.nonlinearity = parse_nonlinearity(nonlinearity);
             config.transition_noise = parse_noise_type(transition_noise, "transition_noise");
             config.initial_noise = parse_noise_type(initial_noise, "initial_noise");
             config.observation = parse_observation(observation);
             config.link = parse_link(link);
             config.readout_from = parse_readout_from(readout_from);
             config.initial_state = parse_initial_state(initial_state);
             config.init_decay = init_decay;
             config.init_transition_std = init_transition_std;
             config.init_initial_std = init_initial_std;
             config.init_observation_std = init_observation_std;
             if (encoder_kernels) {
               EncoderConfig encoder;
               encoder.kernels = *encoder_kernels;
               encoder.channels = encoder_channels
                                      ? *encoder_channels
                                      : default_encoder_channels(encoder.kernels.size());
               encoder.activation =
                   parse_encoder_activation(encoder_activation, "encoder_activation");
               encoder.padding = parse_encoder_padding(encoder_padding, "encoder_padding");
               encoder.padding_mode =
                   parse_padding_mode(encoder_padding_mode, "encoder_padding_mode");
               encoder.init_scale = encoder_init_scale;
               encoder.constant_variance = encoder_constant_variance;
               config.encoder = encoder;
             }
             validate(config);
             return config;
           }),
           "rank"_a = defaults.rank, "num_hidden"_a = defaults.num_hidden,
           "num_channels"_a = defaults.num_channels, "num_inputs"_a = defaults.num_inputs,
           "nonlinearity"_a = to_string(defaults.nonlinearity),
           "transition_noise"_a = to_string(defaults.transition_noise),
           "initial_noise"_a = to_string(defaults.initial_noise),
           "observation"_a = to_string(defaults.observation), "link"_a = to_string(defaults.link),
           "initial_state"_a = to_string(defaults.initial_state),
           "init_decay"_a = defaults.init_decay,
           "init_transition_std"_a = defaults.init_transition_std,
           "init_initial_std"_a = defaults.init_initial_std,
           "init_observation_std"_a = defaults.init_observation_std,
           "encoder_kernels"_a = py::none(), "encoder_channels"_a = py::none(),
           "encoder_activation"_a = "gelu", "encoder_padding"_a = "causal",
           "encoder_padding_mode"_a = "zeros", "encoder_init_scale"_a = 0.1,
           "encoder_constant_variance"_a = false,
           "readout_from"_a = to_string(defaults.readout_from),
           "readout_from is what the read-out reads: z (η = Bᵀz + b), z_and_v (the inputs and "
           "z, η = Bᵀ[v; z] + b), currents or rates (each unit one to one with a gain and a "
           "bias, num_channels = num_hidden). "
           "With encoder_kernels (e.g. [21, 11, 1]) the model has the convolutional encoder of "
           "the encoder proposal: encoder_channels (one fewer than the kernels; default 64 "
           "each), encoder_activation gelu | leaky_relu, encoder_padding causal | acausal | "
           "windowed, encoder_padding_mode zeros | reflect | replicate | circular, "
           "encoder_init_scale (its initial standard deviation) and encoder_constant_variance. "
           "Raises InvalidInputError when a value is out of range or an option is unknown.")
      .def_readonly("rank", &ModelConfig::rank)
      .def_readonly("num_hidden", &ModelConfig::num_hidden)
      .def_readonly("num_channels", &ModelConfig::num_channels)
      .def_readonly("num_inputs", &ModelConfig::num_inputs)
      .def_property_readonly("nonlinearity",
                             [](const ModelConfig& c) { return to_string(c.nonlinearity); })
      .def_property_readonly("transition_noise",
                             [](const ModelConfig& c) { return to_string(c.transition_noise); })
      .def_property_readonly("initial_noise",
                             [](const ModelConfig& c) { return to_string(c.initial_noise); })
      .def_property_readonly("observation",
                             [](const ModelConfig& c) { return to_string(c.observation); })
      .def_property_readonly("link", [](const ModelConfig& c) { return to_string(c.link); })
      .def_property_readonly("readout_from",
                             [](const ModelConfig& c) { return to_string(c.readout_from); })
      .def_property_readonly("initial_state",
                             [](const ModelConfig& c) { return to_string(c.initial_state); })
      .def_readonly("init_decay", &ModelConfig::init_decay)
      .def_readonly("init_transition_std", &ModelConfig::init_transition_std)
      .def_readonly("init_initial_std", &ModelConfig::init_initial_std)
      .def_readonly("init_observation_std", &ModelConfig::init_observation_std)
      .def_property_readonly(
          "encoder",
          [](const ModelConfig& c) -> py::object {
            if (!c.encoder) return py::none();
            const EncoderConfig& e = *c.encoder;
            return py::dict("kernels"_a = e.kernels, "channels"_a = e.channels,
                            "activation"_a = to_string(e.activation),
                            "padding"_a = to_string(e.padding),
                            "padding_mode"_a = to_string(e.padding_mode),
                            "init_scale"_a = e.init_scale,
                            "constant_variance"_a = e.constant_variance);
          },
          "The encoder's settings as a dict (None when the model has no encoder).")
      .def(
          "to_json", [](const ModelConfig& c) { return config_to_json(c); },
          "The configuration as the JSON text of a model file's 'config' entry.")
      .def("__repr__",
           [](const ModelConfig& c) { return "lrsmc.ModelConfig(" + config_to_json(c) + ")"; });
}

void bind_model(py::module_& module) {
  py::class_<Model>(module, "Model",
                    "A model: its configuration and its parameters (params.hpp), in the flat "
                    "order of the model file's entries.")
      .def_static("initialise", &Model::initialise, "config"_a, "seed"_a = 0,
                  "Initialisation of method.md §1.9, reproducible from seed.")
      .def_static(
          "load",
          [](const std::string& path) {
            py::gil_scoped_release release;
            return load_model(path);
          },
          "path"_a, "Reads a model file (.npz). Raises IoError or InvalidInputError.")
      .def(
          "save",
          [](const Model& model, const std::string& path) {
            py::gil_scoped_release release;
            save_model(path, model);
          },
          "path"_a, "Writes a model file (.npz) atomically, as the command line does.")
      .def_readonly("config", &Model::config)
      .def_property_readonly(
          "parameters",
          [](py::object self) {
            Model& model = self.cast<Model&>();
            // A writable view of the flat buffer; its size is fixed by the configuration.
            return py::array_t<double>({static_cast<py::ssize_t>(model.parameters.size())},
                                       model.parameters.data(), self);
          },
          "Flat parameter vector (a writable view, no copy).")
      .def_property_readonly(
          "parameter_shapes",
          [](const Model& model) {
            py::dict shapes;
            const ParameterLayout layout = model.layout();
            for (const auto& block : layout.blocks())
              shapes[py::str(block.name)] = shape_tuple(block.shape);
            return shapes;
          },
          "{name: shape} of every parameter block, in file order.")
      .def(
          "get",
          [](const Model& model, const std::string& name) {
            const ParameterBlock block = model.layout().block(name);
            std::vector<py::ssize_t> shape(block.shape.begin(), block.shape.end());
            return to_numpy(model.get(name), shape);
          },
          "name"_a, "A copy of one parameter block in its shape (e.g. 'm': (hidden, rank)).")
      .def(
          "set",
          [](Model& model, const std::string& name, const InputArray& values) {
            const ParameterBlock block = model.layout().block(name);
            const Array array = to_array(values);
            LRSMC_REQUIRE(array.shape == block.shape, "model: parameter '", name,
                          "' has the wrong shape; got ", array.shape_string(), ", expected ",
                          Array(block.shape).shape_string());
            model.set(name, array.data);
          },
          "name"_a, "values"_a, "Overwrites one parameter block (same shape).")
      .def_property_readonly("decay", &Model::decay, "a = exp(−exp(θ_a)).")
      .def(
          "validate", [](const Model& model) { model.validate(); },
          "Raises InvalidInputError when a parameter is not finite.")
      .def("copy", [](const Model& model) { return Model(model); })
      .def("__copy__", [](const Model& model) { return Model(model); })
      .def(
          "__deepcopy__", [](const Model& model, const py::dict&) { return Model(model); },
          "memo"_a)
      .def("__repr__",
           [](const Model& model) { return "lrsmc.Model(" + config_to_json(model.config) + ")"; });
}

void bind_data(py::module_& module) {
  py::class_<Dataset>(module, "Dataset",
                      "A recording as the engine holds it: (trials, steps, channels), float64.")
      .def_readonly("source", &Dataset::source)
      .def_readonly("num_trials", &Dataset::num_trials)
      .def_readonly("num_steps", &Dataset::num_steps)
      .def_readonly("num_channels", &Dataset::num_channels)
      .def_readonly("num_inputs", &Dataset::num_inputs)
      .def_readonly("allow_missing", &Dataset::allow_missing,
                    "NaN observations are missing values (as_dataset(..., allow_missing=True)).")
      .def_property_readonly("has_missing", &Dataset::has_missing,
                             "True when an observation is NaN (a missing value).")
      .def_property_readonly("continuous", &Dataset::continuous,
                    "True for one long recording (training draws random windows).")
      .def_property_readonly(
          "observations",
          [](py::object self) {
            const Dataset& data = self.cast<const Dataset&>();
            return read_only_view(data.observations,
                                  {data.num_trials, data.num_steps, data.num_channels}, self);
          },
          "(trials, steps, channels), a read-only view.")
      .def_property_readonly(
          "inputs",
          [](py::object self) {
            const Dataset& data = self.cast<const Dataset&>();
            return read_only_view(data.inputs, {data.num_trials, data.num_steps, data.num_inputs},
                                  self);
          },
          "(trials, steps, inputs), a read-only view.")
      .def("describe", &describe,
           "How the data was read: '<source>: 10 trials × 50 steps × 64 channels (layout "
           "trials,time,channels)'.")
      .def("__repr__", [](const Dataset& data) {
        return detail::concat("lrsmc.Dataset(", data.source, ": ", data.num_trials, " × ",
                              data.num_steps, " × ", data.num_channels,
                              data.continuous() ? ", one recording" : "", ")");
      });

  module.def("make_dataset", &make_dataset, "observations"_a, "layout"_a = "trials,time,channels",
             "inputs"_a = py::none(), "source"_a = "data", "allow_missing"_a = false,
             "A Dataset from an array in one of the layouts trials,time,channels | "
             "trials,channels,time | time,channels | channels,time. Raises InvalidInputError "
             "(naming source, the shape and the layout) for a wrong rank or a non-finite value.");
  module.def(
      "load_dataset",
      [](const std::string& path, const std::string& layout, const std::string& field,
         const std::string& inputs_path, const std::string& inputs_field, bool allow_missing) {
        py::gil_scoped_release release;
        return load_dataset(path, parse_data_layout(layout, "layout"), field, inputs_path,
                            inputs_field, allow_missing);
      },
      "path"_a, "layout"_a = "trials,time,channels", "field"_a = "", "inputs_path"_a = "",
      "inputs_field"_a = "", "allow_missing"_a = false,
      "Reads a recording as `lrsmc fit --data` does (.npy, or an .npz entry; any numeric dtype, "
      "C or Fortran order). Raises IoError or InvalidInputError naming the file.");
  module.def(
      "split_held_out",
      [](const Dataset& data, double fraction, int window, std::uint64_t seed) {
        py::gil_scoped_release release;
        return split_held_out(data, fraction, window, seed);
      },
      "data"_a, "fraction"_a, "window"_a, "seed"_a,
      "(train, held_out) as `lrsmc fit --held-out` splits them (seeded shuffle of trials, or "
      "the end of one recording).");
  module.def(
      "data_warnings",
      [](const Dataset& data, const Model& model) {
        require_channels(data, model.config.num_channels);
        return data_warnings(data, model.config.observation);
      },
      "data"_a, "model"_a,
      "Raises InvalidInputError when the data's channels do not match the model (naming the "
      "layout and the one that would match); returns the readings that look like a mistake "
      "(counts with a Gaussian read-out, time much shorter than channels, one step per trial) "
      "as the command line's warnings.");
}

void bind_training(py::module_& module) {
  py::class_<EpochReport>(module, "EpochReport", "Progress after one training epoch.")
      .def_readonly("epoch", &EpochReport::epoch, "1-based epoch number")
      .def_readonly("epochs", &EpochReport::epochs, "epochs of the run")
      .def_readonly("train_elbo", &EpochReport::train_elbo, "mean ELBO per step over the batches")
      .def_readonly("held_out_elbo", &EpochReport::held_out_elbo, "NaN when not evaluated")
      .def_readonly("learning_rate", &EpochReport::learning_rate)
      .def_readonly("elapsed_seconds", &EpochReport::elapsed_seconds)
      .def_readonly("remaining_seconds", &EpochReport::remaining_seconds)
      .def("__repr__", [](const EpochReport& r) {
        return detail::concat("lrsmc.EpochReport(epoch=", r.epoch, "/", r.epochs,
                              ", train_elbo=", r.train_elbo, ", held_out_elbo=", r.held_out_elbo,
                              ", learning_rate=", r.learning_rate, ")");
      });
  py::class_<TrainingResult>(module, "TrainingResult")
      .def_readonly("model", &TrainingResult::model, "the last good parameters")
      .def_readonly("history", &TrainingResult::history, "one EpochReport per epoch")
      .def_readonly("completed", &TrainingResult::completed, "all epochs ran")
      .def_readonly("stop_reason", &TrainingResult::stop_reason, "'' when completed")
      .def_readonly("stopped_early", &TrainingResult::stopped_early,
                    "completed by early stopping (stop_reason says when)")
      .def_readonly("best_epoch", &TrainingResult::best_epoch,
                    "the epoch of the best held-out ELBO (0: none evaluated)")
      .def_readonly("failed", &TrainingResult::failed,
                    "stopped by an error after training started (stop_reason says which)");

  const TrainingOptions defaults;
  const FilterOptions filter_defaults;
  module.def(
      "presets",
      [] {
        py::list table;
        for (const Preset& preset : presets()) {
          py::list settings;
          for (const auto& [option, value] : preset.settings)
            settings.append(py::make_tuple(option, value));
          table.append(py::dict("name"_a = preset.name, "purpose"_a = preset.purpose,
                                "settings"_a = settings));
        }
        return table;
      },
      "The fit presets (presets.hpp): dicts of 'name', 'purpose' and 'settings', a list of "
      "(option, value) in the command line's spelling without '--'.");
  module.def(
      "auto_trains_encoder",
      [](const std::string& observation, double learning_rate) {
        return auto_trains_encoder(parse_observation(observation), learning_rate);
      },
      "observation"_a, "learning_rate"_a,
      "Whether a new model fitted with proposal 'auto' gets an encoder and trains with the "
      "encoder proposal (trainer.hpp): Poisson observations at a learning rate of at most "
      "2e-3.");
  module.def(
      "training_warnings",
      [](const Dataset& train, int epochs, int batch_size, int windows_per_epoch,
         double learning_rate, bool encoder_proposal) {
        TrainingOptions options;
        if (encoder_proposal) options.filter.proposal = Proposal::encoder;
        options.epochs = epochs;
        options.batch_size = batch_size;
        options.windows_per_epoch = windows_per_epoch;
        options.learning_rate = learning_rate;
        validate(options, "training options");
        return training_warnings(options, train);
      },
      "train"_a, py::kw_only(), "epochs"_a, "batch_size"_a, "windows_per_epoch"_a,
      "learning_rate"_a, "encoder_proposal"_a = false,
      "The readings of these training options that look like a mistake for this training set "
      "(trainer.hpp), one sentence each.");
  module.def(
      "fit",
      [](const Model& model, const Dataset& train, const Dataset& held_out, int epochs,
         int batch_size, int window, int windows_per_epoch, double learning_rate,
         double learning_rate_end, const std::string& optimizer, double gradient_clip,
         int particles, const std::string& proposal, const std::string& resampling,
         double resample_threshold, int t_forward, int eval_particles, int eval_every,
         double held_out_fraction,
         std::uint64_t seed, const std::string& checkpoint_path, int checkpoint_every,
         const std::string& keep, int patience, const std::string& resume_from,
         const std::string& device, int threads, const std::string& precision,
         const py::object& callback) {
        LRSMC_REQUIRE(keep == "last" || keep == "best", "keep is not recognised; got '", keep,
                      "', expected 'last' or 'best'");
        TrainingOptions options;
        options.keep_best = keep == "best";
        options.patience = patience;
        options.epochs = epochs;
        options.batch_size = batch_size;
        options.window = window;
        options.windows_per_epoch = windows_per_epoch;
        options.learning_rate = learning_rate;
        options.learning_rate_end = learning_rate_end;
        options.gradient_clip = gradient_clip;
        options.eval_particles = eval_particles;
        options.eval_every = eval_every;
        options.held_out_fraction = held_out_fraction;
        options.seed = seed;
        options.checkpoint_path = checkpoint_path;
        options.checkpoint_every = checkpoint_every;
        return fit(model, train, held_out, options, particles, proposal, resampling,
                   resample_threshold, t_forward, optimizer, resume_from, device, threads, precision,
                   callback);
      },
      "model"_a, "train"_a, "held_out"_a, py::kw_only(), "epochs"_a = defaults.epochs,
      "batch_size"_a = defaults.batch_size, "window"_a = defaults.window,
      "windows_per_epoch"_a = defaults.windows_per_epoch,
      "learning_rate"_a = defaults.learning_rate,
      "learning_rate_end"_a = defaults.learning_rate_end,
      "optimizer"_a = to_string(defaults.optimizer), "gradient_clip"_a = defaults.gradient_clip,
      "particles"_a = filter_defaults.num_particles, "proposal"_a = "auto",
      "resampling"_a = to_string(filter_defaults.resampling),
      "resample_threshold"_a = filter_defaults.resample_threshold,
      "t_forward"_a = filter_defaults.t_forward, "eval_particles"_a = defaults.eval_particles, "eval_every"_a = defaults.eval_every,
      "held_out_fraction"_a = defaults.held_out_fraction, "seed"_a = defaults.seed,
      "checkpoint_path"_a = "", "checkpoint_every"_a = defaults.checkpoint_every, "keep"_a = "last",
      "patience"_a = defaults.patience, "resume_from"_a = "", "device"_a = "cpu", "threads"_a = 0,
      "precision"_a = "float32", "callback"_a = py::none(),
      "Trains from `model` (Trainer::fit). Returns (TrainingResult, exception or None): an "
      "exception raised by the callback or by Ctrl-C (KeyboardInterrupt) stops training "
      "after the epoch and is returned with the model trained so far.");
}

void bind_inference(py::module_& module) {
  module.def("filter", &filter, "model"_a, "data"_a, py::kw_only(), "particles"_a = 1000,
             "proposal"_a = "auto", "resampling"_a = "systematic", "resample_threshold"_a = 1.0,
             "t_forward"_a = 0, "seed"_a = 0, "device"_a = "auto", "threads"_a = 0, "precision"_a = "float32",
             "store_particles"_a = false, "first_trial"_a = 0, "num_trials"_a = -1,
             "Runs the particle filter on trials [first_trial, first_trial + num_trials) of "
             "`data` (num_trials -1: every trial from first_trial): {'elbo', 'elbo_per_trial', "
             "'latents'} and, with store_particles, 'particles', 'log_weights', 'ancestors', "
             "'resampled'. A trial gives the same numbers in any part. Arrays own their buffers "
             "(no copy).");
  module.def("smooth", &smooth, "model"_a, "data"_a, py::kw_only(), "particles"_a = 1000,
             "proposal"_a = "auto", "resampling"_a = "systematic", "resample_threshold"_a = 1.0,
             "t_forward"_a = 0, "seed"_a = 0, "device"_a = "auto", "threads"_a = 0,
             "precision"_a = "float32", "trajectories"_a = 100,
             "Backward-simulation smoothing (smoother.hpp) of every trial of `data`: {'elbo', "
             "'elbo_per_trial', 'latents' (the smoothed means), 'trajectories' (trials, "
             "trajectories, steps, rank)}.");
  module.def("sample", &sample, "model"_a, "trials"_a, "steps"_a, py::kw_only(),
             "inputs"_a = py::none(), "seed"_a = 0, "device"_a = "cpu", "threads"_a = 0,
             "precision"_a = "float32", "first_trial"_a = 0, "initial_states"_a = py::none(),
             "Draws {'latents', 'rates', 'observations'} (trials, steps, ·) from the model: "
             "trials first_trial … first_trial + trials − 1 of a larger draw, so a draw in parts "
             "equals one call's. With initial_states (trials, rank) each trial starts there "
             "(its first latent) instead of at a draw of the initial state's prior.");
  module.def("oscillator_teacher", &oscillator_teacher, "seed"_a = 7,
             "The demo's teacher: a rank-2 relu network (20 units, 20 Gaussian channels) whose "
             "latent state follows a noisy limit cycle (demo.hpp).");
  module.def(
      "cuda_available", [] { return cuda_available(); },
      "True when lrsmc was built with CUDA and a device answers.");
#ifdef LRSMC_WITH_CUDA
  module.attr("built_with_cuda") = true;
#else
  module.attr("built_with_cuda") = false;
#endif
}

// --- metrics -----------------------------------------------------------------------------------

py::array_t<double> array_to_numpy(Array&& array) {
  std::vector<py::ssize_t> shape(array.shape.begin(), array.shape.end());
  return to_numpy(std::move(array.data), shape);
}

py::dict metric_values(const MetricValues& metric) {
  py::dict out;
  out["description"] = metric.description;
  out["values"] = metric.values;
  out["median"] = median(metric.values);
  out["mad"] = median_absolute_deviation(metric.values);
  out["baseline"] = metric.baseline;
  out["baseline_values"] = metric.baseline_values;
  out["baseline_median"] = median(metric.baseline_values);
  out["note"] = metric.note;
  return out;
}

py::dict evaluate(const Model& model, const Dataset& data, int particles,
                  const std::string& proposal, int repeats, int burn_in, int max_steps,
                  int trajectories, int hann_window, double spectrum_smoothing,
                  std::int64_t frequency_cutoff, int stsp_samples, double bin_seconds,
                  const std::vector<int>& held_out_channels, int forward_steps,
                  const std::vector<int>& conditions, const std::optional<InputArray>& behaviour,
                  std::uint64_t seed,
                  const std::string& device, int threads, const std::string& precision) {
  require_channels(data, model.config.num_channels);
  Evaluation result;
  {
    py::gil_scoped_release release;
    EvaluationOptions options;
    options.filter =
        make_filter_options(model.config, particles, proposal, "systematic", 1.0, 0,
                            !data.has_missing() && held_out_channels.empty());
    options.held_out_channels = held_out_channels;
    options.forward_steps = forward_steps;
    options.conditions = conditions;
    if (behaviour) {
      LRSMC_REQUIRE(behaviour->ndim() == 3 && behaviour->shape(0) == data.num_trials &&
                        behaviour->shape(1) == data.num_steps,
                    "behaviour must be (trials, steps, dims) = (", data.num_trials, ", ",
                    data.num_steps, ", ·); got shape ", shape_string(*behaviour));
      options.behaviour.assign(behaviour->data(), behaviour->data() + behaviour->size());
      options.behaviour_dims = int(behaviour->shape(2));
    }
    options.repeats = repeats;
    options.burn_in = burn_in;
    options.max_steps = max_steps;
    options.trajectories = trajectories;
    options.hann_window = hann_window;
    options.spectrum.smoothing = spectrum_smoothing;
    options.spectrum.frequency_cutoff = frequency_cutoff;
    options.state_space.samples = stsp_samples;
    options.bin_seconds = bin_seconds;
    options.seed = seed;
    auto backend = make_device_backend(device, threads, precision, model.config, options.filter);
    result = lrsmc::evaluate(*backend, model, data, options);
  }
  py::dict metrics;
  for (const MetricValues& metric : result.metrics) metrics[py::str(metric.name)] = metric_values(metric);
  py::dict out;
  out["elbo"] = result.elbo;
  out["trials"] = result.trials;
  out["steps"] = result.steps;
  out["channels"] = result.channels;
  out["metrics"] = metrics;
  return out;
}

void bind_metrics(py::module_& module) {
  using namespace metrics;
  module.def(
      "state_space_divergence",
      [](const InputArray& truth, const InputArray& generated, int samples, double kernel_std,
         std::int64_t max_points, std::uint64_t seed, bool reference_float32) {
        StateSpaceOptions options{samples, kernel_std, max_points, seed, reference_float32};
        const auto result = state_space_divergence(to_array(truth), to_array(generated), options);
        return py::make_tuple(result.value, result.samples_used);
      },
      "truth"_a, "generated"_a, py::kw_only(), "samples"_a = 1000, "kernel_std"_a = 1.0,
      "max_points"_a = 10000, "seed"_a = 0, "reference_float32"_a = false,
      "D_stsp of two (time, dims) series (metrics.hpp): (value, samples used).");
  module.def(
      "power_spectrum_distance",
      [](const InputArray& truth, const InputArray& generated, double smoothing,
         std::int64_t frequency_cutoff) {
        const auto result = power_spectrum_distance(to_array(truth), to_array(generated),
                                                    SpectrumOptions{smoothing, frequency_cutoff});
        return py::make_tuple(result.value, result.per_dim);
      },
      "truth"_a, "generated"_a, py::kw_only(), "smoothing"_a = 20.0,
      "frequency_cutoff"_a = 10000,
      "D_H of two (time, dims) series (metrics.hpp): (value, per-dimension distances).");
  module.def(
      "normalised_spectrum",
      [](const InputArray& series, double smoothing) {
        LRSMC_REQUIRE(series.ndim() == 1, "the series must be 1-D; got shape ", shape_string(series));
        return normalised_spectrum(series.data(), series.shape(0), 1, smoothing);
      },
      "series"_a, py::kw_only(), "smoothing"_a = 20.0,
      "The normalised, Gaussian-smoothed power spectrum of a 1-D series (D_H's steps 1–3).");
  module.def(
      "hann_smooth_and_standardise",
      [](const InputArray& series, int window) {
        return array_to_numpy(hann_smooth_and_standardise(to_array(series), window));
      },
      "series"_a, "window"_a = 15, "Hann smoothing then z-scoring of each column (method.md §6.2).");
  module.def(
      "mean_rate_error",
      [](const InputArray& truth, const InputArray& generated) {
        return mean_rate_error(to_array(truth), to_array(generated));
      },
      "truth"_a, "generated"_a, "Mean over dims of T·(difference of the means)² (method.md §6.5).");
  module.def(
      "spike_statistics",
      [](const InputArray& counts, double bin_seconds, int min_isis) {
        const SpikeStatistics stats = spike_statistics(to_array(counts), bin_seconds, min_isis);
        py::dict out;
        out["mean_rate"] = stats.mean_rate;
        out["mean_isi"] = stats.mean_isi;
        out["isi_cv"] = stats.isi_cv;
        out["pair_correlation"] = stats.pair_correlation;
        return out;
      },
      "counts"_a, "bin_seconds"_a, "min_isis"_a = 2,
      "Per-neuron mean rate, mean ISI and ISI CV, and pairwise correlations of (trials, time, "
      "neurons) counts.");
  module.def(
      "pearson",
      [](const std::vector<double>& x, const std::vector<double>& y) { return pearson(x, y); },
      "x"_a, "y"_a, "Pearson r over the entries where both are finite.");
  module.def(
      "bits_per_spike",
      [](const InputArray& rates, const InputArray& counts) {
        return bits_per_spike(to_array(rates), to_array(counts));
      },
      "rates"_a, "counts"_a, "Poisson bits per spike of predicted rates over each neuron's mean rate.");
  module.def(
      "psth_r2",
      [](const InputArray& rates, const InputArray& counts, const std::vector<int>& conditions) {
        return psth_r2(to_array(rates), to_array(counts), conditions);
      },
      "rates"_a, "counts"_a, "conditions"_a, "R² of condition-averaged rates against PSTHs.");
  module.def(
      "ridge_decoding",
      [](const InputArray& train_x, const InputArray& train_y, const InputArray& test_x,
         const InputArray& test_y, const std::vector<double>& alphas, int folds) {
        RidgeDecoding result = ridge_decoding(to_array(train_x), to_array(train_y),
                                              to_array(test_x), to_array(test_y), alphas, folds);
        py::dict out;
        out["r2"] = result.r2;
        out["alpha"] = result.alpha;
        out["weights"] = array_to_numpy(std::move(result.weights));
        return out;
      },
      "train_features"_a, "train_targets"_a, "test_features"_a, "test_targets"_a,
      "alphas"_a = std::vector<double>{}, "folds"_a = 5,
      "Ridge decoding with a cross-validated penalty: {'r2', 'alpha', 'weights'}.");
  module.def("evaluate", &evaluate, "model"_a, "data"_a, py::kw_only(), "particles"_a = 1000,
             "proposal"_a = "auto", "repeats"_a = 1, "burn_in"_a = 0, "max_steps"_a = 10000,
             "trajectories"_a = 20, "hann_window"_a = 0, "spectrum_smoothing"_a = 20.0,
             "frequency_cutoff"_a = 10000, "stsp_samples"_a = 1000, "bin_seconds"_a = 1.0,
             "held_out_channels"_a = std::vector<int>{}, "forward_steps"_a = 0,
             "conditions"_a = std::vector<int>{}, "behaviour"_a = py::none(), "seed"_a = 0, "device"_a = "auto", "threads"_a = 0, "precision"_a = "float32",
             "lrsmc::evaluate (evaluation.hpp): {'elbo', 'trials', 'steps', 'channels', "
             "'metrics': {name: {'description', 'values', 'median', 'mad', 'baseline', "
             "'baseline_values', 'baseline_median'}}}.");
}

void bind_fixed_points(py::module_& module) {
  py::class_<FixedPoint>(module, "FixedPoint", "One fixed point z* = F(z*) (fixed_points.hpp).")
      .def_property_readonly(
          "z",
          [](const FixedPoint& p) {
            return to_numpy(std::vector<double>(p.z), {static_cast<py::ssize_t>(p.z.size())});
          },
          "latent position (rank,)")
      .def_property_readonly(
          "pattern",
          [](const FixedPoint& p) {
            return to_numpy(std::vector<std::int8_t>(p.pattern),
                            {static_cast<py::ssize_t>(p.pattern.size())});
          },
          "per-unit state (hidden,): relu 0 off / 1 on; clipped_relu 0 / 1 ramp / 2 saturated")
      .def_property_readonly(
          "eigenvalues",
          [](const FixedPoint& p) {
            std::vector<std::complex<double>> values(p.eigenvalues_real.size());
            for (std::size_t i = 0; i < values.size(); ++i)
              values[i] = {p.eigenvalues_real[i], p.eigenvalues_imag[i]};
            const auto count = static_cast<py::ssize_t>(values.size());
            return to_numpy(std::move(values), {count});
          },
          "Jacobian eigenvalues, by decreasing modulus")
      .def_property_readonly("stability",
                             [](const FixedPoint& p) { return to_string(p.stability); })
      .def_readonly("on_boundary", &FixedPoint::on_boundary)
      .def("__repr__", [](const FixedPoint& p) {
        std::string z;
        for (std::size_t r = 0; r < p.z.size(); ++r) z += (r ? ", " : "") + detail::concat(p.z[r]);
        return "lrsmc.FixedPoint(z=(" + z + "), " + to_string(p.stability) + ")";
      });
  py::class_<FixedPointResult>(module, "FixedPointResult")
      .def_readonly("fixed_points", &FixedPointResult::fixed_points)
      .def_readonly("num_vertices", &FixedPointResult::num_vertices)
      .def_readonly("num_regions", &FixedPointResult::num_regions)
      .def_readonly("num_solves", &FixedPointResult::num_solves)
      .def_readonly("num_singular_regions", &FixedPointResult::num_singular_regions);
  module.def("find_fixed_points", &fixed_points, "m"_a, "n"_a, "h"_a, "decay"_a, "nonlinearity"_a,
             "constant_current"_a = py::none(), py::kw_only(), "method"_a = "exact",
             "num_starts"_a = 100, "seed"_a = 0, "tolerance"_a = 1e-9,
             "Fixed points of F(z) = decay·z + n φ(m z + c; h): method 'exact' (relu, "
             "clipped_relu, identity; every fixed point), 'brute_force' (every activation "
             "pattern; small N) or 'numerical' (damped Newton from num_starts points; any "
             "nonlinearity).");
}

}  // namespace
}  // namespace lrsmc::python

PYBIND11_MODULE(_core, module) {
  module.doc() =
      "lrsmc's C++ engine (pybind11 bindings of include/lrsmc/). Use the lrsmc "
      "package rather than this module.";
  module.attr("__version__") = LRSMC_VERSION_STRING;
  lrsmc::python::register_exceptions(module);
  lrsmc::python::bind_config(module);
  lrsmc::python::bind_model(module);
  lrsmc::python::bind_data(module);
  lrsmc::python::bind_training(module);
  lrsmc::python::bind_inference(module);
  lrsmc::python::bind_fixed_points(module);
  lrsmc::python::bind_metrics(module);
}
