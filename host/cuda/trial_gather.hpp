// Internal: the CUDA backend's side of data-parallel work over several processes
// (lrsmc/distributed.hpp). Each process runs its consecutive share of a batch's trials on its
// own device; the per-trial results (accumulator rows, log-evidence, failed steps, the encoder
// factors' adjoints) are then gathered in place on every device with NCCL, one ncclBroadcast
// per process inside one group, each rooted at the process whose share it carries. Every
// process then runs the trial-ordered sum and the finishing adjoints on the same numbers, so
// that the gradient is bitwise the one-process gradient for any number of processes: a
// broadcast copies values, it adds nothing. (An ncclAllReduce would add partial sums in an
// order that depends on the number of processes and on NCCL's algorithm.)
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "lrsmc/distributed.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::cuda {

/// Whether this build gathers over NCCL and the library loads; otherwise `why` (when not null)
/// says what is missing.
[[nodiscard]] bool nccl_usable(std::string* why = nullptr);

/// The device a process of `world` uses: the processes on one machine take its devices in
/// turn from `first_device` (Communicator::local_rank).
[[nodiscard]] int device_of_this_process(const Communicator& world, int first_device,
                                         int device_count);

/// Runs `call`, a call shared with the other processes of `world` (null: none). Its
/// NumericalError and InvalidInput come from the data and parameters, which every process has
/// alike or checks with the others (detail::on_every_process, for the trials each holds of a
/// split batch), so every process throws them at the same point and they pass. Any other error (a
/// device or NCCL fault) is this process's alone while the others may already wait for it in
/// a collective call: it is reported on stderr and ends every process (Communicator::abort).
template <typename Call>
auto run_shared(Communicator* world, const Call& call) -> decltype(call()) {
  if (world == nullptr || world->size() == 1) return call();
  try {
    return call();
  } catch (const NumericalError&) {
    throw;
  } catch (const InvalidInput&) {
    throw;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "lrsmc: error: %s (process %d of %d; ending every process)\n",
                 error.what(), world->rank(), world->size());
    std::fflush(stderr);
    world->abort(1);
    throw;
  }
}

/// Values of every trial of a batch on the device, `bytes_per_trial` each, consecutive by trial.
struct TrialValues {
  void* values = nullptr;
  std::int64_t bytes_per_trial = 0;
};

/// An NCCL communicator over the processes of a Communicator, each on its own device.
class TrialGather {
 public:
  /// Collective over `world`: process 0 makes NCCL's id, every process receives it and joins on
  /// `device`. Throws CudaError naming NCCL's error.
  TrialGather(Communicator& world, int device);
  ~TrialGather();
  TrialGather(const TrialGather&) = delete;
  TrialGather& operator=(const TrialGather&) = delete;

  [[nodiscard]] Communicator& world() const { return world_; }
  /// This process's share under `bounds` (process p runs trials [bounds[p], bounds[p + 1])).
  [[nodiscard]] TrialShare share(const std::vector<int>& bounds) const;

  /// Enqueues on the legacy default stream the gather of every part's values of the trials of
  /// `bounds`: each process's share, from that process, to every process, in place.
  /// Collective: every process gathers the same parts under the same bounds.
  void gather(const std::vector<int>& bounds, std::initializer_list<TrialValues> parts);

 private:
  struct Handle;
  Communicator& world_;
  std::unique_ptr<Handle> handle_;
};

}  // namespace lrsmc::cuda
