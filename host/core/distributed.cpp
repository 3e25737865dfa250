// Trial shares, agreeing on failures and gathering per-trial results (shared_trials.hpp); the
// MPI communicator when this build has MPI (LRSMC_WITH_MPI).
#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "core/shared_trials.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/distributed.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/math/gradient_row.hpp"
#include "model/model_constants.hpp"

#if defined(LRSMC_WITH_MPI)
#include <mpi.h>
#endif

namespace lrsmc {

TrialShare trial_share(int trials, int rank, int size) {
  LRSMC_ASSERT(size >= 1 && rank >= 0 && rank < size && trials >= 0);
  TrialShare share;
  share.first = int(std::int64_t(trials) * rank / size);
  share.last = int(std::int64_t(trials) * (rank + 1) / size);
  return share;
}

std::vector<int> even_shares(int trials, int size) {
  std::vector<int> bounds(std::size_t(size) + 1, 0);
  for (int process = 0; process < size; ++process)
    bounds[std::size_t(process) + 1] = trial_share(trials, process, size).last;
  return bounds;
}

TrialShare share_in(const std::vector<int>& bounds, int rank) {
  LRSMC_ASSERT(rank >= 0 && std::size_t(rank) + 1 < bounds.size());
  return {bounds[std::size_t(rank)], bounds[std::size_t(rank) + 1]};
}

std::int64_t gathered_values_per_trial(const ModelConfig& config, const FilterOptions& options,
                                       int steps) {
  const math::ModelShape shape = model::model_shape(config, options.proposal);
  const std::int64_t row =
      math::GradientSlots(shape.parameters.total, config.rank, config.num_channels).row_size;
  const std::int64_t encoder = options.proposal == Proposal::encoder
                                   ? 2 * std::int64_t(steps - options.t_forward) * config.rank
                                   : 0;
  return row + 1 + encoder;
}

namespace detail {

std::vector<int> shares_of(const SequenceBatch& batch, const Communicator* communicator) {
  const int trials = batch.num_trials;
  const std::vector<int>& bounds = batch.shares;
  const int size = communicator == nullptr ? 1 : communicator->size();
  if (bounds.empty()) return even_shares(trials, size);
  LRSMC_REQUIRE(
      bounds.size() == std::size_t(size) + 1, "batch: shares has ", bounds.size(),
      " bounds; expected ", size + 1, " for ", size,
      size == 1 ? " process (a batch of a dataset split over processes needs them)" : " processes");
  LRSMC_REQUIRE(bounds.front() == 0 && bounds.back() == trials &&
                    std::is_sorted(bounds.begin(), bounds.end()),
                "batch: shares must rise from 0 to the ", trials, " trials");
  return bounds;
}

void agree_on_failure(Communicator& communicator, const std::exception_ptr& failure) {
  // 0: none; 1 NumericalError, 2 InvalidInput, 3 OutOfMemory, 4 any other error.
  int kind = 0;
  std::string message;
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const NumericalError& error) {
      kind = 1, message = error.what();
    } catch (const InvalidInput& error) {
      kind = 2, message = error.what();
    } catch (const OutOfMemory& error) {
      kind = 3, message = error.what();
    } catch (const std::exception& error) {
      kind = 4, message = error.what();
    } catch (...) {
      kind = 4, message = "an unknown error";
    }
  }
  const int size = communicator.size();
  std::vector<double> kinds;
  communicator.all_gather({double(kind)}, std::vector<std::int64_t>(std::size_t(size), 1), kinds);
  for (int process = 0; process < size; ++process) {
    const int failed = int(kinds[std::size_t(process)]);
    if (failed == 0) continue;
    const std::string text = communicator.broadcast(message, process);
    switch (failed) {
      case 1:
        throw NumericalError(text);
      case 2:
        throw InvalidInput(text);
      case 3:
        throw OutOfMemory(text);
      default:
        throw Error(text);
    }
  }
}

void gather_trials(Communicator& communicator, const std::vector<int>& bounds, std::int64_t width,
                   std::vector<double>& values) {
  const int size = communicator.size();
  LRSMC_ASSERT(bounds.size() == std::size_t(size) + 1 &&
               std::int64_t(values.size()) == std::int64_t(bounds.back()) * width);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(size));
  for (int process = 0; process < size; ++process)
    counts[std::size_t(process)] = share_in(bounds, process).count() * width;
  const TrialShare mine = share_in(bounds, communicator.rank());
  const std::vector<double> own(values.begin() + std::ptrdiff_t(mine.first * width),
                                values.begin() + std::ptrdiff_t(mine.last * width));
  communicator.all_gather(own, counts, values);
}

}  // namespace detail

namespace {

/// The number of processes a launcher started, from its environment: Open MPI's mpirun, PMI
/// (MPICH's hydra, srun --mpi=pmi2) or a Slurm job step (srun, whatever its --mpi); −1 for a
/// PMIx launcher, which does not say how many (MPI then tells); 0 when none started this one.
int launched_processes() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  if (std::getenv("PMIX_RANK") != nullptr) return -1;
  return 0;
}

#if defined(LRSMC_WITH_MPI)

void check(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw Error(detail::concat(call, " failed: ", std::string(text, std::size_t(length))));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int& argc, char**& argv) {
    // Only the main thread calls MPI; the OpenMP threads do not.
    int provided = MPI_THREAD_SINGLE;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw Error(
          "MPI_Init_thread: this MPI does not allow OpenMP threads beside it "
          "(MPI_THREAD_FUNNELED)");
    }
    // Errors come back as codes (check), not as an abort of every process.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // The processes on this machine, as MPI sees them (any launcher); the launcher's
    // environment where MPI cannot say.
    local_rank_ = Communicator::local_rank();
    local_size_ = Communicator::local_size();
    MPI_Comm machine = MPI_COMM_NULL;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &machine) ==
            MPI_SUCCESS &&
        machine != MPI_COMM_NULL) {
      MPI_Comm_rank(machine, &local_rank_);
      MPI_Comm_size(machine, &local_size_);
      MPI_Comm_free(&machine);
    }
  }
  ~MpiCommunicator() override { MPI_Finalize(); }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] int local_rank() const override { return local_rank_; }
  [[nodiscard]] int local_size() const override { return local_size_; }

  void all_gather(const std::vector<double>& mine, const std::vector<std::int64_t>& counts,
                  std::vector<double>& gathered) override {
    std::vector<int> sizes(static_cast<std::size_t>(size_)),
        offsets(static_cast<std::size_t>(size_));
    std::int64_t total = 0;
    for (int process = 0; process < size_; ++process) {
      const std::int64_t count = counts[std::size_t(process)];
      LRSMC_REQUIRE(count <= 0x7FFFFFFF && total <= 0x7FFFFFFF, "MPI: a gather of ", count,
                    " values from one process at offset ", total,
                    " is over MPI's 2^31 − 1; use fewer trials per batch or more processes");
      sizes[std::size_t(process)] = int(count);
      offsets[std::size_t(process)] = int(total);
      total += count;
    }
    LRSMC_ASSERT(std::int64_t(mine.size()) == counts[std::size_t(rank_)]);
    gathered.resize(std::size_t(total));
    check(MPI_Allgatherv(mine.data(), int(mine.size()), MPI_DOUBLE, gathered.data(), sizes.data(),
                         offsets.data(), MPI_DOUBLE, MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }

  [[nodiscard]] std::string broadcast(const std::string& text, int root) override {
    long long length = rank_ == root ? static_cast<long long>(text.size()) : 0;
    check(MPI_Bcast(&length, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
    std::string result = rank_ == root ? text : std::string(std::size_t(length), '\0');
    if (length > 0)
      check(MPI_Bcast(result.data(), int(length), MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
    return result;
  }

  void abort(int code) override { MPI_Abort(MPI_COMM_WORLD, code); }

  [[nodiscard]] bool any(bool mine) override {
    int value = mine ? 1 : 0, result = 0;
    check(MPI_Allreduce(&value, &result, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    return result != 0;
  }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

#endif

}  // namespace

namespace {

/// The first of the launcher variables `names` that is set to an integer of at least
/// `least`, or `fallback`.
int launcher_value(std::initializer_list<const char*> names, int least, int fallback) {
  for (const char* name : names)
    if (const char* value = std::getenv(name)) {
      const int number = std::atoi(value);
      if (number >= least) return number;
    }
  return fallback;
}

}  // namespace

int processes_on_this_machine() {
  return launcher_value({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"}, 1, 1);
}

int local_process_index() {
  return launcher_value({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}, 0, 0);
}

int Communicator::local_rank() const { return local_process_index(); }

int Communicator::local_size() const { return processes_on_this_machine(); }

bool mpi_available() {
#if defined(LRSMC_WITH_MPI)
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> mpi_world(int& argc, char**& argv) {
  const int processes = launched_processes();
  if (processes == 0 || processes == 1) return nullptr;
#if defined(LRSMC_WITH_MPI)
  auto world = std::make_shared<MpiCommunicator>(argc, argv);
  // srun without an MPI plugin starts every task as an MPI world of its own.
  LRSMC_REQUIRE(processes < 0 || world->size() == processes, "the launcher started ", processes,
                " processes but MPI sees ", world->size(),
                " (srun needs --mpi=pmix or --mpi=pmi2 for this MPI)");
  if (world->size() == 1) return nullptr;
  return world;
#else
  if (processes < 0) return nullptr;  // a PMIx launcher of one process, as far as can be told
  (void)argc;
  (void)argv;
  throw InvalidInput(detail::concat(
      "a launcher started ", processes,
      " processes, but this lrsmc was built without MPI; rebuild with -DLRSMC_ENABLE_MPI=ON "
      "(Open MPI: apt install libopenmpi-dev) or run one process"));
#endif
}

}  // namespace lrsmc
