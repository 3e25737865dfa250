// Data-parallel work over several processes (MPI ranks): each process runs a consecutive share
// of a batch's trials, the per-trial results are gathered in trial order, and every process
// then finishes the call on the same numbers. A gradient is thus bitwise the same for any
// number of processes, and equal to one process's, so the processes of a fit take the same
// optimizer steps without exchanging parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lrsmc {

struct ModelConfig;
struct FilterOptions;

/// The processes that share the work. Every call is collective: every process makes it, in the
/// same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// This process's index (0 … size − 1) and the number of processes.
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  /// Every process's `mine` (counts[p] values from process p), concatenated in process order,
  /// into `gathered` on every process.
  virtual void all_gather(const std::vector<double>& mine, const std::vector<std::int64_t>& counts,
                          std::vector<double>& gathered) = 0;
  /// Process `root`'s text, on every process.
  [[nodiscard]] virtual std::string broadcast(const std::string& text, int root) = 0;
  /// Whether any process passed true.
  [[nodiscard]] virtual bool any(bool mine) = 0;
  /// Ends every process with `code` (an error that the others cannot learn of in time).
  virtual void abort(int code) = 0;
  /// This process's index among the processes on its machine (0 … local_size() − 1), and
  /// their number: the CUDA backend takes a GPU by the first, the CPU backend shares the cores
  /// by the second. By default from the launcher's environment (local_process_index,
  /// processes_on_this_machine).
  [[nodiscard]] virtual int local_rank() const;
  [[nodiscard]] virtual int local_size() const;
};

/// The trials [first, last) that process `rank` of `size` runs among `trials`: consecutive
/// shares, in process order, as even as the count allows (some may be empty).
struct TrialShare {
  int first = 0, last = 0;
  [[nodiscard]] int count() const { return last - first; }
};
[[nodiscard]] TrialShare trial_share(int trials, int rank, int size);

/// Every process's share at once, as bounds: process p runs trials [bounds[p], bounds[p + 1]).
/// even_shares gives trial_share's split; a batch may carry others (SequenceBatch::shares).
[[nodiscard]] std::vector<int> even_shares(int trials, int size);
/// Process `rank`'s share under `bounds`.
[[nodiscard]] TrialShare share_in(const std::vector<int>& bounds, int rank);

/// Values every process receives per trial of a shared gradient of `config`'s model under
/// `options` on trials of `steps` steps: the trial's accumulator row (every engine parameter and
/// the once-per-call slots), its ELBO, and with the encoder proposal its factors' adjoints.
[[nodiscard]] std::int64_t gathered_values_per_trial(const ModelConfig& config,
                                                     const FilterOptions& options, int steps);

/// The processes of this launch on this machine, from the launcher's environment (Open MPI,
/// MPICH's hydra, PMIx), or 1 when it does not say.
[[nodiscard]] int processes_on_this_machine();

/// This process's index among those of its launch on this machine (0 …
/// processes_on_this_machine() − 1), from the launcher's environment (Open MPI, MPICH's hydra,
/// Slurm), or 0 when it does not say. The CUDA backend picks its device by it.
[[nodiscard]] int local_process_index();

/// Whether this build of lrsmc can run over MPI.
[[nodiscard]] bool mpi_available();

/// The MPI processes this one was started with (mpirun, mpiexec or srun; the launcher's
/// environment says so): initialises MPI, and finalises it when the last reference goes. Null
/// for a process started on its own, or alone in its launch. Throws InvalidInput when a
/// launcher started several processes but this build has no MPI, or MPI does not see them all
/// (srun without an MPI plugin).
[[nodiscard]] std::shared_ptr<Communicator> mpi_world(int& argc, char**& argv);

}  // namespace lrsmc
