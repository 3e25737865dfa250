// Readable names of the option enums in GoogleTest output (parameter values in failure
// messages and in `--gtest_list_tests`, which ctest shows), instead of raw bytes.
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "lrsmc/config.hpp"

namespace lrsmc {

inline void PrintTo(Nonlinearity value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Proposal value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Observation value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Link value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(NoiseType value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Resampling value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(EncoderPadding value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(PaddingMode value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(EncoderActivation value, std::ostream* os) { *os << to_string(value); }

namespace testing {

/// An observation model and its link, as one test parameter.
struct ObservationCase {
  Observation observation;
  Link link;
};
// Printed as "gaussian/identity" (GoogleTest would print the struct's raw bytes).
inline void PrintTo(const ObservationCase& value, std::ostream* os) {
  *os << to_string(value.observation) << "/" << to_string(value.link);
}

/// One combination of the options the CPU-vs-CUDA comparisons run over.
using OptionCombination = std::tuple<Nonlinearity, Proposal, ObservationCase, NoiseType, Resampling>;

/// The combination as a test name: relu_optimal_gaussian_full_systematic.
inline std::string combination_name(const ::testing::TestParamInfo<OptionCombination>& info) {
  const auto [nonlinearity, proposal, observation, noise, resampling] = info.param;
  return to_string(nonlinearity) + "_" + to_string(proposal) + "_" +
         to_string(observation.observation) + "_" + to_string(noise) + "_" + to_string(resampling);
}

/// Every combination of nonlinearity, proposal, observation (Gaussian with the identity link,
/// Poisson with softplus), noise and the given resampling schemes that the engine runs: the
/// optimal proposal needs Gaussian observations, so it is not combined with Poisson ones.
inline std::vector<OptionCombination> runnable_combinations(
    const std::vector<Resampling>& schemes) {
  std::vector<OptionCombination> combinations;
  for (const auto nonlinearity : {Nonlinearity::relu, Nonlinearity::clipped_relu,
                                  Nonlinearity::tanh, Nonlinearity::identity})
    for (const auto proposal : {Proposal::bootstrap, Proposal::optimal})
      for (const auto observation : {ObservationCase{Observation::gaussian, Link::identity},
                                     ObservationCase{Observation::poisson, Link::softplus}})
        for (const auto noise : {NoiseType::full, NoiseType::diag})
          for (const auto resampling : schemes) {
            if (proposal == Proposal::optimal && observation.observation != Observation::gaussian)
              continue;
            combinations.emplace_back(nonlinearity, proposal, observation, noise, resampling);
          }
  return combinations;
}

}  // namespace testing

}  // namespace lrsmc
