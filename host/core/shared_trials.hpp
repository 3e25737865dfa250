// Internal: the pieces the engines use to split a call's trials over the processes of a
// Communicator (lrsmc/distributed.hpp) and to gather the per-trial results back.
#pragma once

#include <exception>
#include <vector>

#include "lrsmc/backend.hpp"
#include "lrsmc/distributed.hpp"

namespace lrsmc::detail {

/// The bounds of every process's share of `batch`'s trials: its own (SequenceBatch::shares,
/// checked against the communicator) or the even split; {0, trials} without a communicator.
/// Throws InvalidInput for bounds that do not fit the batch or the communicator.
[[nodiscard]] std::vector<int> shares_of(const SequenceBatch& batch,
                                         const Communicator* communicator);

/// Makes every process fail alike: when any process's share failed (`failure` set there), every
/// process throws the error of the lowest such process (its trials come first, so it is the
/// error one process running every trial would have thrown): NumericalError, InvalidInput or
/// Error as it was, with its message. Returns when no process failed.
void agree_on_failure(Communicator& communicator, const std::exception_ptr& failure);

/// Runs `work` on this process; with a communicator, a failure on any process becomes every
/// process's (agree_on_failure), so that none waits alone in a later collective call.
template <typename Work>
void on_every_process(Communicator* communicator, const Work& work) {
  std::exception_ptr failure;
  try {
    work();
  } catch (...) {
    if (communicator == nullptr) throw;
    failure = std::current_exception();
  }
  if (communicator != nullptr) agree_on_failure(*communicator, failure);
}

/// Every trial's `width` values, gathered in trial order from the processes' shares (`bounds`,
/// shares_of): `values` holds (trials, width) with this process's share filled; the others' are
/// filled in.
void gather_trials(Communicator& communicator, const std::vector<int>& bounds, std::int64_t width,
                   std::vector<double>& values);

}  // namespace lrsmc::detail
