// Readable names of the option enums in GoogleTest output (parameter values in failure
// messages and in `--gtest_list_tests`, which ctest shows), instead of raw bytes.
#pragma once

#include <ostream>

#include "lrsmc/config.hpp"

namespace lrsmc {

inline void PrintTo(Nonlinearity value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Proposal value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Observation value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Link value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(NoiseType value, std::ostream* os) { *os << to_string(value); }
inline void PrintTo(Resampling value, std::ostream* os) { *os << to_string(value); }

}  // namespace lrsmc
