// The CPU backend (design.md, "Backends share one interface"): the engines of cpu_engine.cpp,
// packed float32 (the default), float64 (the reference) or float32 in the kernels' order,
// multithreaded over trials.
#include "cpu/cpu_backend.hpp"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>

#include "cpu/cpu_engine.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::cpu {
namespace {

std::int64_t available_host_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value >> unit)
    if (key == "MemAvailable:") return value * 1024;
  return std::int64_t(16) << 30;
}

}  // namespace

CpuBackend::CpuBackend(const BackendOptions& options) : options_(options) {
  LRSMC_REQUIRE(options.num_threads >= 0 && options.num_threads <= 4096,
                "cpu backend: threads is out of range; got ", options.num_threads,
                ", expected 0 (all cores) to 4096");
}

std::string CpuBackend::name() const {
  return "cpu (" + to_string(options_.cpu_precision) + ")";
}

int CpuBackend::threads() const {
  if (options_.num_threads > 0) return options_.num_threads;
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  if (options_.communicator == nullptr) return cores;
  // Under MPI: the cores this process is bound to, or when it is not bound, the machine's
  // shared with the launch's other processes on it.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < cores)
    return std::max(1, CPU_COUNT(&set));
  return std::max(1, cores / options_.communicator->local_size());
}

std::int64_t CpuBackend::memory_estimate(const ModelConfig& config, int num_trials, int num_steps,
                                         int num_particles, bool with_gradient) const {
  // Each worker holds one trial: particles (R scalars), weights and ancestors per step; the
  // gradient adds every trial's data and float64 accumulator row.
  const std::int64_t scalar = options_.cpu_precision == CpuPrecision::float64 ? 8 : 4;
  const std::int64_t per_trial =
      std::int64_t(num_steps) * num_particles * (config.rank * scalar + 8 + 4);
  const std::int64_t workers = std::min<std::int64_t>(threads(), num_trials);
  std::int64_t total = workers * per_trial;
  if (with_gradient) {
    const std::int64_t data =
        std::int64_t(num_steps) *
        (config.num_channels * 2 + config.num_hidden * (config.num_inputs > 0)) * scalar;
    total += std::int64_t(num_trials) * (ParameterLayout(config).total_size() * 8 + data);
  }
  return total;
}

std::int64_t CpuBackend::memory_available() const { return available_host_memory(); }

FilterResult CpuBackend::do_filter(const Model& model, const SequenceBatch& batch,
                                   const FilterOptions& options, std::uint64_t seed,
                                   const FilterRequest& request) {
  switch (options_.cpu_precision) {
    case CpuPrecision::float64:
      return filter_trials<double>(model, batch, options, seed, request, threads(), nullptr,
                                   options_.communicator.get());
    case CpuPrecision::device_float32:
      return filter_trials<float>(model, batch, options, seed, request, threads(), nullptr,
                                  options_.communicator.get());
    case CpuPrecision::packed_float32: break;
  }
  return filter_trials_packed(model, batch, options, seed, request, threads(), nullptr,
                              options_.communicator.get());
}

GradientResult CpuBackend::do_elbo_gradient(const Model& model, const SequenceBatch& batch,
                                            const FilterOptions& options, std::uint64_t seed) {
  switch (options_.cpu_precision) {
    case CpuPrecision::float64:
      return gradient_of_trials<double>(model, batch, options, seed, threads(), nullptr,
                                        options_.communicator.get());
    case CpuPrecision::device_float32:
      return gradient_of_trials<float>(model, batch, options, seed, threads(), nullptr,
                                       options_.communicator.get());
    case CpuPrecision::packed_float32: break;
  }
  return gradient_of_trials_packed(model, batch, options, seed, threads(), nullptr,
                                   options_.communicator.get());
}

SampleResult CpuBackend::do_sample(const Model& model, int num_trials, int num_steps,
                                   const std::vector<double>& inputs, std::uint64_t seed,
                                   int first_trial, const std::vector<double>& initial_states) {
  // Generation is one particle per trial, cheap at any precision: float32 only where the
  // kernels' bits are asked for, float64 otherwise (long generated runs keep their accuracy).
  if (options_.cpu_precision == CpuPrecision::device_float32)
    return sample_trials<float>(model, num_trials, num_steps, inputs, seed, first_trial,
                                initial_states);
  return sample_trials<double>(model, num_trials, num_steps, inputs, seed, first_trial,
                               initial_states);
}

}  // namespace lrsmc::cpu
