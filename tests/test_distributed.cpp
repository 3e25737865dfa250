// Trials shared over several processes (lrsmc/distributed.hpp), with threads standing in for
// the processes (a Communicator over shared buffers): the CPU backend's gradient and filter,
// and whole fits, are bitwise the one-process ones for any number of processes, more
// processes than trials included; every process fails alike when one share fails. The same
// over real MPI processes: CliTest.MpiFitIsBitwiseTheOneProcessFit.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/shared_trials.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/dataset.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/distributed.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/trainer.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

/// What `size` threads share: one slot per thread and a reusable barrier.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {}
  [[nodiscard]] int size() const { return size_; }
  std::vector<double>& slot(int rank) { return slots_[std::size_t(rank)]; }
  std::string text;
  std::atomic<int> gathers{0};  // all_gather calls, over every process

  void barrier() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      condition_.notify_all();
      return;
    }
    condition_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  int size_;
  std::vector<std::vector<double>> slots_;
  std::mutex mutex_;
  std::condition_variable condition_;
  int arrived_ = 0;
  long generation_ = 0;
};

/// One thread's view of the group, as an MPI process's of its world.
class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return group_.size(); }

  void all_gather(const std::vector<double>& mine, const std::vector<std::int64_t>& counts,
                  std::vector<double>& gathered) override {
    EXPECT_EQ(std::int64_t(mine.size()), counts[std::size_t(rank_)]);
    ++group_.gathers;
    group_.slot(rank_) = mine;
    group_.barrier();
    gathered.clear();
    for (int rank = 0; rank < size(); ++rank)
      gathered.insert(gathered.end(), group_.slot(rank).begin(), group_.slot(rank).end());
    group_.barrier();
  }
  [[nodiscard]] std::string broadcast(const std::string& text, int root) override {
    if (rank_ == root) group_.text = text;
    group_.barrier();
    std::string result = group_.text;
    group_.barrier();
    return result;
  }
  void abort(int code) override {
    ADD_FAILURE() << "process " << rank_ << " aborted with " << code;
    std::terminate();
  }
  [[nodiscard]] bool any(bool mine) override {
    group_.slot(rank_) = {mine ? 1.0 : 0.0};
    group_.barrier();
    bool result = false;
    for (int rank = 0; rank < size(); ++rank) result = result || group_.slot(rank)[0] != 0;
    group_.barrier();
    return result;
  }

 private:
  ThreadGroup& group_;
  int rank_;
};

/// Runs work(communicator) on `processes` threads, each its own process; returns each one's
/// result (exceptions are test failures).
template <typename Result>
std::vector<Result> on_processes(int processes,
                                 const std::function<Result(std::shared_ptr<Communicator>)>& work,
                                 int* gathers = nullptr) {
  ThreadGroup group(processes);
  std::vector<Result> results(static_cast<std::size_t>(processes));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < processes; ++rank)
    threads.emplace_back([&, rank] {
      try {
        results[std::size_t(rank)] = work(std::make_shared<ThreadCommunicator>(group, rank));
      } catch (const std::exception& error) {
        ADD_FAILURE() << "process " << rank << " of " << processes << ": " << error.what();
      }
    });
  for (std::thread& thread : threads) thread.join();
  if (gathers != nullptr) *gathers = group.gathers;
  return results;
}

std::unique_ptr<Backend> cpu_backend(CpuPrecision precision,
                                     std::shared_ptr<Communicator> communicator) {
  BackendOptions options;
  options.num_threads = 1;
  options.cpu_precision = precision;
  options.communicator = std::move(communicator);
  return make_backend(BackendKind::cpu, options);
}

TEST(TrialShares, AreConsecutiveAndCoverEveryTrialOnce) {
  for (const int trials : {0, 1, 7, 64})
    for (const int size : {1, 2, 3, 8}) {
      int next = 0;
      for (int rank = 0; rank < size; ++rank) {
        const TrialShare share = trial_share(trials, rank, size);
        EXPECT_EQ(share.first, next);
        EXPECT_LE(share.count(), trials / size + 1);
        EXPECT_GE(share.count(), trials / size);
        next = share.last;
      }
      EXPECT_EQ(next, trials);
    }
}

// The processes on this machine come from the launcher's environment (1 without a launcher).
TEST(TrialShares, ProcessesOnThisMachineFollowTheLauncher) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"})
    if (std::getenv(name) != nullptr) GTEST_SKIP() << "running under a launcher (" << name << ")";
  EXPECT_EQ(processes_on_this_machine(), 1);
  ::setenv("MPI_LOCALNRANKS", "3", 1);
  EXPECT_EQ(processes_on_this_machine(), 3);
  ::setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
  EXPECT_EQ(processes_on_this_machine(), 2);
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  ::unsetenv("MPI_LOCALNRANKS");
}

// This process's index on its machine likewise (0 without a launcher); a communicator that
// does not know better takes both from there.
TEST(TrialShares, LocalIndexFollowsTheLauncher) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"})
    if (std::getenv(name) != nullptr) GTEST_SKIP() << "running under a launcher (" << name << ")";
  EXPECT_EQ(local_process_index(), 0);
  ::setenv("SLURM_LOCALID", "2", 1);
  EXPECT_EQ(local_process_index(), 2);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  ::setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
  EXPECT_EQ(local_process_index(), 1);
  const auto seen = on_processes<std::string>(2, [](std::shared_ptr<Communicator> c) {
    return std::to_string(c->local_rank()) + "/" + std::to_string(c->local_size());
  });
  for (const std::string& one : seen) EXPECT_EQ(one, "1/4");
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  ::unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  ::unsetenv("SLURM_LOCALID");
}

// Every precision, with inputs (their per-trial terms in the finish), the optimal, bootstrap
// and encoder proposals, on 2, 3, 5 and 9 processes for 7 trials (9: two with none).
TEST(SharedTrials, GradientIsBitwiseTheOneProcessGradient) {
  struct Case {
    std::string label;
    Model model;
    FilterOptions options;
  };
  std::vector<Case> cases;
  for (const Proposal proposal : {Proposal::optimal, Proposal::bootstrap}) {
    FilterOptions options;
    options.num_particles = 16;
    options.proposal = proposal;
    cases.push_back(
        {to_string(proposal),
         testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                      Observation::gaussian, Link::identity),
                               4),
         options});
  }
  const testing::EncoderCase encoder = testing::encoder_cases()[2];  // encoder, t_forward 3
  cases.push_back({encoder.label, encoder.model, encoder.options});
  cases.back().options.num_particles = 16;
  for (const Case& c : cases) {
    const SequenceBatch batch = testing::sampled_batch(c.model, 7, 12, 3);
    for (const CpuPrecision precision :
         {CpuPrecision::packed_float32, CpuPrecision::device_float32, CpuPrecision::float64}) {
      const GradientResult alone =
          cpu_backend(precision, nullptr)->elbo_gradient(c.model, batch, c.options, 17);
      for (const int processes : {2, 3, 5, 9}) {
        int gathers = 0;
        const auto results = on_processes<GradientResult>(
            processes,
            [&](std::shared_ptr<Communicator> communicator) {
              return cpu_backend(precision, communicator)
                  ->elbo_gradient(c.model, batch, c.options, 17);
            },
            &gathers);
        EXPECT_GT(gathers, 0) << "the processes ran every trial instead of their shares";
        for (int rank = 0; rank < processes; ++rank)
          testing::expect_identical(c.model.config, alone, results[std::size_t(rank)],
                                    c.label + ", " + to_string(precision) + ", process " +
                                        std::to_string(rank) + " of " + std::to_string(processes));
      }
    }
  }
}

TEST(SharedTrials, FilterIsBitwiseTheOneProcessFilter) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::tanh, NoiseType::diag,
                                                   Observation::poisson, Link::softplus),
                            6);
  const SequenceBatch batch = testing::sampled_batch(model, 5, 10, 2);
  FilterOptions options;
  options.num_particles = 32;
  options.proposal = Proposal::bootstrap;
  FilterRequest request;
  request.filtered_mean = true;
  const FilterResult alone =
      cpu_backend(CpuPrecision::packed_float32, nullptr)->filter(model, batch, options, 8, request);
  for (const int processes : {2, 4}) {
    const auto results =
        on_processes<FilterResult>(processes, [&](std::shared_ptr<Communicator> communicator) {
          return cpu_backend(CpuPrecision::packed_float32, communicator)
              ->filter(model, batch, options, 8, request);
        });
    for (int rank = 0; rank < processes; ++rank)
      testing::expect_identical(
          alone, results[std::size_t(rank)],
          "process " + std::to_string(rank) + " of " + std::to_string(processes));
  }
}

/// The oscillator teacher's draws, `trials` of `steps` steps, a quarter (rounded) held out.
std::pair<Dataset, Dataset> teacher_split(int trials, int steps, std::uint64_t seed) {
  const auto samples = cpu_backend(CpuPrecision::float64, nullptr)
                           ->sample(oscillator_teacher(), trials, steps, {}, seed);
  const Dataset data = dataset_from_array(Array({trials, steps, 20}, samples.observations),
                                          DataLayout::trials_time_channels, "teacher");
  return split_held_out(data, 0.25, steps, 1);
}

/// A fresh student of the teacher's architecture with `hidden` units.
Model student(int hidden, std::uint64_t seed) {
  ModelConfig config = oscillator_teacher().config;
  config.num_hidden = hidden;
  return Model::initialise(config, seed);
}

/// Four epochs of Adam at 2e-2, 8 particles.
TrainingOptions short_fit(int batch_size, std::uint64_t seed) {
  TrainingOptions options;
  options.epochs = 4;
  options.batch_size = batch_size;
  options.learning_rate = 2e-2;
  options.filter.num_particles = 8;
  options.seed = seed;
  return options;
}

// A fit's every optimizer step and held-out evaluation, shared over 3 processes: the same
// parameters and history as one process.
TEST(SharedTrials, FitIsBitwiseTheOneProcessFit) {
  const auto [train, held_out] = teacher_split(24, 20, 5);
  const Model start = student(12, 9);
  const TrainingOptions options = short_fit(7, 3);
  const auto fit = [&](std::shared_ptr<Communicator> communicator) {
    auto backend = cpu_backend(CpuPrecision::packed_float32, std::move(communicator));
    Trainer trainer(*backend, options);
    return trainer.fit(start, train, held_out);
  };
  const TrainingResult alone = fit(nullptr);
  ASSERT_EQ(alone.history.size(), 4u);
  const auto results = on_processes<TrainingResult>(3, fit);
  for (int rank = 0; rank < 3; ++rank) {
    const TrainingResult& shared = results[std::size_t(rank)];
    ASSERT_EQ(shared.history.size(), alone.history.size()) << "process " << rank;
    for (std::size_t epoch = 0; epoch < alone.history.size(); ++epoch) {
      EXPECT_EQ(shared.history[epoch].train_elbo, alone.history[epoch].train_elbo);
      EXPECT_EQ(shared.history[epoch].held_out_elbo, alone.history[epoch].held_out_elbo);
    }
    EXPECT_EQ(shared.model.parameters, alone.model.parameters) << "process " << rank;
  }
}

// A fit of 2 processes stopped by request after epoch 2 (its checkpoint written by process 0)
// resumes on 3 processes and ends where one process's uninterrupted fit ends.
TEST(SharedTrials, ResumesOnAnotherNumberOfProcesses) {
  const auto [train, held_out] = teacher_split(20, 15, 6);
  const Model start = student(10, 2);
  const TrainingOptions options = short_fit(6, 5);
  const std::string checkpoint = testing::make_temp_dir("lrsmc-shared") + "/checkpoint.npz";
  const auto fit = [&](std::shared_ptr<Communicator> communicator, const ProgressCallback& progress,
                       const std::string& resume_from) {
    TrainingOptions run = options;
    run.checkpoint_path = checkpoint;  // written by process 0
    run.communicator = communicator;
    auto backend = cpu_backend(CpuPrecision::packed_float32, communicator);
    Trainer trainer(*backend, run);
    return trainer.fit(start, train, held_out, progress, resume_from);
  };
  const TrainingResult alone = fit(nullptr, {}, "");
  std::filesystem::remove(checkpoint);
  (void)on_processes<TrainingResult>(2, [&](std::shared_ptr<Communicator> communicator) {
    // Process 1 alone asks to stop after epoch 2: the trainer stops them both there.
    return fit(
        communicator,
        [&](const EpochReport& report) { return communicator->rank() != 1 || report.epoch < 2; },
        "");
  });
  ASSERT_TRUE(std::filesystem::exists(checkpoint));
  const auto resumed = on_processes<TrainingResult>(
      3, [&](std::shared_ptr<Communicator> c) { return fit(c, {}, checkpoint); });
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_EQ(resumed[std::size_t(rank)].model.parameters, alone.model.parameters)
        << "process " << rank;
  std::filesystem::remove_all(std::filesystem::path(checkpoint).parent_path());
}

/// The teacher's draws of teacher_split, written to `path` as (trials, steps, channels).
void write_teacher(const std::string& path, int trials, int steps, std::uint64_t seed) {
  const auto samples = cpu_backend(CpuPrecision::float64, nullptr)
                           ->sample(oscillator_teacher(), trials, steps, {}, seed);
  io::write_npy(path, Array({trials, steps, 20}, samples.observations), io::StoredType::float64);
}

/// Process `rank` of `size`'s share of the recording at `path`, as a fit reads it: only the
/// observations of its trials (trials_to_read), split into training and held-out sets (a
/// quarter held out, split seed 1) that carry the split.
std::pair<Dataset, Dataset> read_share(const std::string& path, int rank, int size) {
  const Dataset read = load_dataset_trials(
      path, DataLayout::trials_time_channels, "", "", "", false,
      [&](const Dataset& shape) { return trials_to_read(shape, 0.25, 1, rank, size); });
  return split_held_out_in_shares(read, 0.25, 1, rank, size);
}

// Each process reads only the observations of its share of the recording and trains on them:
// every optimizer step and held-out evaluation is bitwise the one-process fit of the whole
// recording, with batches whose shares follow where the trials were read (uneven, some empty).
TEST(SharedTrials, FitOnEachProcesssShareOfTheRecordingIsBitwiseTheWholeFit) {
  const std::string folder = testing::make_temp_dir("lrsmc-shard");
  const std::string path = folder + "/teacher.npy";
  write_teacher(path, 24, 20, 5);
  const auto [train, held_out] =
      split_held_out(load_dataset(path, DataLayout::trials_time_channels), 0.25, 20, 1);
  const Model start = student(12, 9);
  const TrainingOptions options = short_fit(7, 3);
  const auto fit = [&](std::shared_ptr<Communicator> communicator, const Dataset& train_part,
                       const Dataset& held_part) {
    auto backend = cpu_backend(CpuPrecision::packed_float32, std::move(communicator));
    Trainer trainer(*backend, options);
    return trainer.fit(start, train_part, held_part);
  };
  const TrainingResult alone = fit(nullptr, train, held_out);
  const std::size_t row = 20 * 20;  // steps × channels of one trial
  // 7 processes: 18 training trials and 6 held out, so one holds no held-out trial.
  for (const int processes : {2, 3, 5, 7}) {
    const auto results = on_processes<TrainingResult>(processes, [&](auto communicator) {
      const int rank = communicator->rank();
      const auto [train_part, held_part] = read_share(path, rank, processes);
      // Only this process's trials were read, and they are the whole recording's.
      for (const auto& [part, whole] : {std::pair{&train_part, &train}, {&held_part, &held_out}}) {
        const TrialShare mine = trial_share(whole->num_trials, rank, processes);
        EXPECT_EQ(part->num_trials, whole->num_trials);
        EXPECT_EQ(
            part->observations,
            std::vector<double>(whole->observations.begin() + std::ptrdiff_t(mine.first * row),
                                whole->observations.begin() + std::ptrdiff_t(mine.last * row)));
      }
      return fit(communicator, train_part, held_part);
    });
    for (int rank = 0; rank < processes; ++rank) {
      const TrainingResult& shared = results[std::size_t(rank)];
      ASSERT_EQ(shared.history.size(), alone.history.size()) << "process " << rank;
      for (std::size_t epoch = 0; epoch < alone.history.size(); ++epoch) {
        EXPECT_EQ(shared.history[epoch].train_elbo, alone.history[epoch].train_elbo);
        EXPECT_EQ(shared.history[epoch].held_out_elbo, alone.history[epoch].held_out_elbo);
      }
      EXPECT_EQ(shared.model.parameters, alone.model.parameters)
          << "process " << rank << " of " << processes;
    }
  }
  std::filesystem::remove_all(folder);
}

// A fit of 2 processes on their shares of the recording, stopped after epoch 2, resumes from its
// checkpoint on 3 processes on theirs, and on one process reading the whole recording: the data
// digest a checkpoint keeps does not depend on the split, and both end where the uninterrupted
// fit ends.
TEST(SharedTrials, ResumesOnOtherSharesOfTheRecording) {
  const std::string folder = testing::make_temp_dir("lrsmc-shard");
  const std::string path = folder + "/teacher.npy", checkpoint = folder + "/checkpoint.npz";
  write_teacher(path, 20, 15, 6);
  const auto [train, held_out] =
      split_held_out(load_dataset(path, DataLayout::trials_time_channels), 0.25, 15, 1);
  const Model start = student(10, 2);
  const auto fit = [&](std::shared_ptr<Communicator> communicator, const Dataset& train_part,
                       const Dataset& held_part, const ProgressCallback& progress,
                       const std::string& resume_from) {
    TrainingOptions run = short_fit(6, 5);
    run.checkpoint_path = checkpoint;
    run.communicator = communicator;
    auto backend = cpu_backend(CpuPrecision::packed_float32, communicator);
    Trainer trainer(*backend, run);
    return trainer.fit(start, train_part, held_part, progress, resume_from);
  };
  const TrainingResult alone = fit(nullptr, train, held_out, {}, "");
  const auto stop_after_two = [](const EpochReport& report) { return report.epoch < 2; };
  const auto stopped = [&](int processes) {
    std::filesystem::remove(checkpoint);
    (void)on_processes<TrainingResult>(processes, [&](auto communicator) {
      const auto [train_part, held_part] = read_share(path, communicator->rank(), processes);
      return fit(communicator, train_part, held_part, stop_after_two, "");
    });
    ASSERT_TRUE(std::filesystem::exists(checkpoint));
  };
  stopped(2);
  const auto resumed = on_processes<TrainingResult>(3, [&](auto communicator) {
    const auto [train_part, held_part] = read_share(path, communicator->rank(), 3);
    return fit(communicator, train_part, held_part, {}, checkpoint);
  });
  for (int rank = 0; rank < 3; ++rank)
    EXPECT_EQ(resumed[std::size_t(rank)].model.parameters, alone.model.parameters)
        << "process " << rank;
  stopped(2);
  EXPECT_EQ(fit(nullptr, train, held_out, {}, checkpoint).model.parameters, alone.model.parameters);
  std::filesystem::remove_all(folder);
}

// What a process reads of its share: the chosen trials' observations only (a NaN elsewhere is
// never read), every trial's inputs, errors naming the trial by its index in the file; a share
// that is not the process's, and a dataset split over more processes than the backend has, are
// refused.
TEST(SharedTrials, ReadingAShareOfTheRecording) {
  const std::string folder = testing::make_temp_dir("lrsmc-shard");
  Array observations({6, 4, 2}), inputs({6, 4, 1});
  for (std::size_t i = 0; i < observations.data.size(); ++i) observations.data[i] = double(i);
  for (std::size_t i = 0; i < inputs.data.size(); ++i) inputs.data[i] = -double(i);
  observations.data[1 * 8 + 3] = std::numeric_limits<double>::quiet_NaN();  // trial 1
  io::write_npy(folder + "/o.npy", observations, io::StoredType::float64);
  io::write_npy(folder + "/i.npy", inputs, io::StoredType::float64);
  const auto read = [&](std::vector<int> trials) {
    return load_dataset_trials(folder + "/o.npy", DataLayout::trials_time_channels, "",
                               folder + "/i.npy", "", false, [&](const Dataset& shape) {
                                 EXPECT_EQ(shape.num_trials, 6);
                                 EXPECT_EQ(shape.num_steps, 4);
                                 EXPECT_EQ(shape.num_channels, 2);
                                 EXPECT_TRUE(shape.observations.empty());
                                 return trials;
                               });
  };
  const Dataset share = read({3, 5});
  EXPECT_EQ(share.num_trials, 6);
  EXPECT_EQ(share.held_trials, (std::vector<int>{3, 5}));
  ASSERT_EQ(share.observations.size(), 16u);
  EXPECT_EQ(share.observations[0], 24.0);  // trial 3, step 0, channel 0
  EXPECT_EQ(share.observations[8], 40.0);  // trial 5
  EXPECT_EQ(share.inputs, inputs.data);
  EXPECT_FALSE(share.has_missing());
  try {
    (void)read({1, 2});
    ADD_FAILURE() << "the NaN of trial 1 was not refused";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("o.npy: value at trial 1, step 1, channel 1 is NaN"),
              std::string::npos)
        << error.what();
  }
  // Trials of a split dataset that are not this process's share.
  Dataset shape;
  shape.source = "o.npy";
  shape.num_trials = 6;
  EXPECT_THROW((void)split_held_out_in_shares(read({0, 4}), 0.0, 1, 0, 2), InvalidInput);
  // Process 1 of 2's share of 6 trials, none held out: trials 3 to 5.
  EXPECT_EQ(trials_to_read(shape, 0.0, 1, 1, 2), (std::vector<int>{3, 4, 5}));
  const auto [train, held_out] = split_held_out_in_shares(read({3, 4, 5}), 0.0, 1, 1, 2);
  EXPECT_EQ(train.shares, (std::vector<int>{0, 3, 6}));
  // A batch holds the observations of this process's trials (3 and 4) and every trial's inputs.
  const SequenceBatch batch = trials_batch(train, {1, 3, 4});
  EXPECT_EQ(batch.shares, (std::vector<int>{0, 1, 3}));
  ASSERT_EQ(batch.observations.size(), 16u);
  EXPECT_EQ(batch.observations[0], 24.0);
  EXPECT_EQ(batch.observations[8], 32.0);
  EXPECT_EQ(batch.inputs.size(), 12u);
  EXPECT_EQ(batch.inputs[0], -4.0);                               // trial 1's
  EXPECT_THROW((void)trials_batch(train, {4, 3}), InvalidInput);  // not ascending
  // One process's backend cannot run a batch split over two.
  ModelConfig config = oscillator_teacher().config;
  config.num_channels = 2;
  config.num_inputs = 1;
  const Model model = Model::initialise(config, 1);
  FilterOptions options;
  options.num_particles = 4;
  try {
    (void)cpu_backend(CpuPrecision::float64, nullptr)->filter(model, batch, options, 1);
    ADD_FAILURE() << "a batch split over 2 processes ran on one";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("shares has 3 bounds; expected 2"), std::string::npos)
        << error.what();
  }
  std::filesystem::remove_all(folder);
}

// Process 0 cannot write its checkpoint: every process stops with its error after that epoch,
// none waits for the others.
TEST(SharedTrials, AFailedCheckpointStopsEveryProcess) {
  const auto [train, held_out] = teacher_split(16, 10, 7);
  TrainingOptions options = short_fit(8, 1);
  options.checkpoint_every = 1;
  options.checkpoint_path = "/nonexistent-lrsmc-folder/checkpoint.npz";
  const auto results = on_processes<TrainingResult>(3, [&](std::shared_ptr<Communicator> c) {
    TrainingOptions run = options;
    run.communicator = c;
    auto backend = cpu_backend(CpuPrecision::packed_float32, c);
    Trainer trainer(*backend, run);
    return trainer.fit(student(8, 1), train, held_out);
  });
  for (const TrainingResult& result : results) {
    EXPECT_TRUE(result.failed);
    EXPECT_NE(result.stop_reason.find("nonexistent-lrsmc-folder"), std::string::npos)
        << result.stop_reason;
    EXPECT_EQ(result.history.size(), 1u);
  }
}

// One process's share fails: every process throws its error, of its type, with its message.
TEST(SharedTrials, EveryProcessFailsWithTheFirstFailingShare) {
  const auto messages = on_processes<std::string>(4, [](std::shared_ptr<Communicator> c) {
    std::exception_ptr failure;
    if (c->rank() == 2) failure = std::make_exception_ptr(NumericalError("trial 5 diverged"));
    if (c->rank() == 3) failure = std::make_exception_ptr(InvalidInput("later"));
    try {
      detail::agree_on_failure(*c, failure);
    } catch (const NumericalError& error) {
      return std::string("numerical: ") + error.what();
    }
    return std::string("no error");
  });
  for (const std::string& message : messages) EXPECT_EQ(message, "numerical: trial 5 diverged");
  const auto none = on_processes<std::string>(3, [](std::shared_ptr<Communicator> c) {
    detail::agree_on_failure(*c, nullptr);
    return std::string("no error");
  });
  for (const std::string& message : none) EXPECT_EQ(message, "no error");
}

// Processes that share a fit take one backend together. Without a device on every process (and
// NCCL) auto takes the CPU for all of them, and cuda is refused on every one with the same
// message, so that none goes on alone into a collective call.
TEST(SharedTrials, ProcessesAgreeOnTheirBackend) {
  if (cuda_available())
    GTEST_SKIP() << "a CUDA device answers: the refusal without one is not checked";
  const auto names = on_processes<std::string>(2, [](std::shared_ptr<Communicator> c) {
    BackendOptions options;
    options.num_threads = 1;
    options.communicator = std::move(c);
    return make_backend(BackendKind::automatic, options)->name();
  });
  for (const std::string& name : names) EXPECT_EQ(name.rfind("cpu", 0), 0u) << name;
  const auto messages = on_processes<std::string>(2, [](std::shared_ptr<Communicator> c) {
    BackendOptions options;
    options.communicator = std::move(c);
    try {
      (void)make_backend(BackendKind::cuda, options);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("accepted");
  });
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0], messages[1]);
  EXPECT_NE(messages[0].find("cuda backend"), std::string::npos) << messages[0];
}

}  // namespace
}  // namespace lrsmc
