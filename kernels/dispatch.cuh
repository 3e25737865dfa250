// Maps the launchers' run-time choices to kernel template arguments, in one place (style.md,
// "Kernels"). Host code, included by the .cu files only.
#pragma once

#include <type_traits>

namespace lrsmc::kernels {

/// Calls `launch(std::integral_constant<int, Rank>{})` with the forward kernels' specialisation
/// for `rank`: the demo's 2 and the paper's 3 are compiled with a constant rank (their
/// per-particle arrays live in registers); every other rank runs the generic Rank = 0 kernels.
/// Few instantiations on purpose: CI compiles them on two cores.
template <typename Launch>
void dispatch_rank(int rank, const Launch& launch) {
  switch (rank) {
    case 2: launch(std::integral_constant<int, 2>{}); return;
    case 3: launch(std::integral_constant<int, 3>{}); return;
    default: launch(std::integral_constant<int, 0>{}); return;
  }
}

}  // namespace lrsmc::kernels
