// CPU-vs-CUDA comparisons of the GPU tests. The float CPU engine and the kernels run the same
// maths in the same order, so on the emulated device (the CPU emulation of tests/
// cuda_emulation) every output is compared bit for bit. A GPU rounds differently (its libm,
// nvcc's FMA contraction, CUB's reduction trees); there the CPU follows the GPU's own run one
// step at a time (cpu::ForcedPaths) and every quantity agrees within device_tolerance, and
// every ancestor the GPU chose must be consistent with the CPU's cumulative weights.
#pragma once

#include <cstdint>
#include <string>

#include "lrsmc/backend.hpp"

namespace lrsmc::testing {

/// True in the build whose CUDA backend runs on the CPU emulation of the device.
#if defined(LRSMC_CUDA_EMULATION)
constexpr bool emulated_device = true;
#else
constexpr bool emulated_device = false;
#endif

/// The relative difference allowed between a GPU and the CPU float engine for one step from the
/// same state (one documented derivation, engine_comparison.cpp): a particle, a log-weight or a
/// log-evidence increment, relative to max(1, |value|).
[[nodiscard]] double device_tolerance(const ModelConfig& config);

/// Every output of `result` equals `reference` (==, bit for bit but for the sign of zero):
/// ELBO per trial, filtered means, particles, log-weights, ancestors, resampling flags. Each
/// kind reports its first difference with its place and both values.
void expect_identical(const FilterResult& reference, const FilterResult& result,
                      const std::string& label);
/// The same for a gradient: the ELBO per trial and every gradient entry (with its block).
void expect_identical(const ModelConfig& config, const GradientResult& reference,
                      const GradientResult& result, const std::string& label);

/// `backend`'s filter (paths and filtered means stored) against the CPU float engine on the
/// same draws: bit for bit on the emulated device; on a GPU step by step along its own run
/// within device_tolerance, every ancestor checked. Returns the backend's result.
FilterResult expect_same_filter(Backend& backend, const Model& model, const SequenceBatch& batch,
                                const FilterOptions& options, std::uint64_t seed,
                                const std::string& label);

/// `backend`'s gradient against the CPU float engine's on the same draws: bit for bit on the
/// emulated device; on a GPU the CPU follows the GPU's ancestors and every parameter block
/// agrees to a relative norm of 1e-3 (the project's float32 target).
void expect_same_gradient(Backend& backend, const Model& model, const SequenceBatch& batch,
                          const FilterOptions& options, std::uint64_t seed,
                          const std::string& label);

/// The packed float32 engine following the float64 engine's run step by step (its states,
/// weights, ancestors and resampling decisions): every particle, log-weight, filtered mean and
/// ELBO within device_tolerance, as a GPU follows the CPU float engine.
void expect_packed_follows_reference(const Model& model, const SequenceBatch& batch,
                                     const FilterOptions& options, std::uint64_t seed,
                                     const std::string& label);

/// The packed engine's gradient along the float64 engine's ancestors: every parameter block
/// within a relative norm of 1e-3 of the float64 gradient, the comparison a GPU passes.
void expect_packed_gradient_follows_reference(const Model& model, const SequenceBatch& batch,
                                              const FilterOptions& options, std::uint64_t seed,
                                              const std::string& label);

}  // namespace lrsmc::testing
