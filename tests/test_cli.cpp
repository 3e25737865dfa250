// End-to-end tests of the lrsmc command: the main workflow, the demo's headline, and bad input
// giving a clear message, a non-zero exit and no damage to existing files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cuda/cuda_backend.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/demo.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/params.hpp"
#include "lrsmc/smoother.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { folder_ = testing::make_temp_dir("lrsmc-cli"); }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string path(const std::string& name) const { return folder_ + "/" + name; }

  int run(const std::string& arguments) {
    return testing::run_command(std::string(LRSMC_CLI_PATH) + " " + arguments, output_);
  }

  /// Runs a command that must fail with exit code 2 and a message containing `expected`.
  void expect_bad_input(const std::string& arguments, const std::string& expected) {
    SCOPED_TRACE(arguments);
    EXPECT_EQ(run(arguments), 2) << output_;
    EXPECT_NE(output_.find("lrsmc: error:"), std::string::npos) << output_;
    EXPECT_NE(output_.find(expected), std::string::npos) << output_;
  }

  static std::string read_file(const std::string& file) {
    std::ifstream stream(file, std::ios::binary);
    std::stringstream buffer;
    buffer << stream.rdbuf();
    return buffer.str();
  }

  void write_teacher_data(int trials, int steps) {
    save_model(path("teacher.npz"), oscillator_teacher());
    ASSERT_EQ(
        run("simulate --model " + path("teacher.npz") + " --trials " + std::to_string(trials) +
            " --steps " + std::to_string(steps) + " --seed 3 --out " + path("data.npz")),
        0)
        << output_;
  }

  std::string folder_;
  std::string output_;
};

TEST_F(CliTest, SimulateFitFilterSampleWorkflow) {
  write_teacher_data(20, 25);
  const auto data = io::read_npz(path("data.npz"));
  ASSERT_EQ(data.arrays.at("observations").shape, (std::vector<std::int64_t>{20, 25, 20}));
  ASSERT_EQ(run("fit --data " + path("data.npz") +
                " --field observations --rank 2 --hidden 8 "
                "--nonlinearity relu --epochs 3 --batch-size 10 --particles 4 --held-out 0.2 "
                "--lr 1e-2 --out " +
                path("model.npz") + " --device cpu --threads 2"),
            0)
      << output_;
  EXPECT_NE(output_.find("epoch 3/3"), std::string::npos) << output_;
  EXPECT_NE(output_.find("held-out ELBO"), std::string::npos) << output_;
  const Model fitted = load_model(path("model.npz"));
  EXPECT_EQ(fitted.config.rank, 2);
  EXPECT_EQ(fitted.config.num_hidden, 8);
  ASSERT_EQ(run("filter --model " + path("model.npz") + " --data " + path("data.npz") +
                " --field observations --particles 50 --out-latents " + path("latents.npy") +
                " --out-elbo " + path("elbo.npy") + " --out-particles " + path("particles.npz")),
            0)
      << output_;
  EXPECT_EQ(io::read_npy(path("latents.npy")).shape, (std::vector<std::int64_t>{20, 25, 2}));
  EXPECT_EQ(io::read_npy(path("elbo.npy")).shape, (std::vector<std::int64_t>{20}));
  // Ancestor indices are stored as integers (float32 is exact only up to 2^24).
  const std::string archive = read_file(path("particles.npz"));
  const std::size_t ancestors_entry = archive.find("ancestors.npy\x93NUMPY");
  ASSERT_NE(ancestors_entry, std::string::npos);
  EXPECT_EQ(archive.compare(archive.find("'descr': '", ancestors_entry) + 10, 3, "<i4"), 0);
  EXPECT_EQ(io::read_npz(path("particles.npz")).arrays.at("particles").shape,
            (std::vector<std::int64_t>{20, 25, 50, 2}));
  ASSERT_EQ(run("sample --model " + path("model.npz") +
                " --trials 3 --steps 40 --burn-in 10 "
                "--out " +
                path("samples.npz")),
            0)
      << output_;
  EXPECT_EQ(io::read_npz(path("samples.npz")).arrays.at("observations").shape,
            (std::vector<std::int64_t>{3, 40, 20}));
  // A checkpoint resumes only its own run (the full-disk test below resumes one).
  ASSERT_EQ(run("fit --data " + path("data.npz") +
                " --field observations --rank 2 --hidden 8 "
                "--epochs 2 --particles 4 --checkpoint-every 1 --quiet --out " +
                path("m2.npz")),
            0)
      << output_;
  ASSERT_TRUE(std::filesystem::exists(path("m2.npz.checkpoint.npz")));
  expect_bad_input("fit --data " + path("data.npz") +
                       " --field observations --rank 2 --hidden 8 "
                       "--epochs 4 --particles 4 --resume --quiet --out " +
                       path("m2.npz"),
                   "the checkpoint belongs to another run: it was made with --epochs 2, this run "
                   "has 4");
}

TEST_F(CliTest, HelpListsEveryCommand) {
  ASSERT_EQ(run("--help"), 0);
  for (const char* command : {"simulate", "fit", "filter", "sample", "fixed-points", "demo"})
    EXPECT_NE(output_.find(command), std::string::npos) << command;
  ASSERT_EQ(run("fit --help"), 0);
  EXPECT_NE(output_.find("--particles"), std::string::npos);
  EXPECT_EQ(run("fit --no-such-option 3"), 2);
}

TEST_F(CliTest, MissingFile) { expect_bad_input("fit --data " + path("absent.npy"), "absent.npy"); }

// A recording in a format the engine does not read names the file and the way to convert it.
TEST_F(CliTest, UnsupportedFormatsNameTheConversion) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"recording.edf", ".edf"}, {"session.NWB", ".nwb"}, {"data.txt", ".txt"}};
  for (const auto& [name, extension] : files) {
    std::ofstream(path(name)) << "0 1 2\n";
    expect_bad_input("fit --data " + path(name),
                     name + ": " + extension + " files are not read directly");
    EXPECT_NE(output_.find("python -m lrsmc.convert"), std::string::npos) << output_;
  }
  std::ofstream(path("recording.dat")) << "0 1 2\n";
  expect_bad_input("fit --data " + path("recording.dat"), "not a .npy file");
  EXPECT_NE(output_.find("the engine reads .npy and .npz"), std::string::npos) << output_;
}

TEST_F(CliTest, OneDimensionalArray) {
  io::write_npy(path("flat.npy"), Array({100}, std::vector<double>(100, 1.0)));
  expect_bad_input("fit --data " + path("flat.npy"), "1 dimension(s)");
}

TEST_F(CliTest, NanInData) {
  std::vector<double> values(2 * 10 * 3, 0.5);
  values[17] = std::nan("");
  io::write_npy(path("nan.npy"), Array({2, 10, 3}, values));
  expect_bad_input("fit --data " + path("nan.npy"), "step 5, channel 2 is NaN");
}

TEST_F(CliTest, RankZero) {
  io::write_npy(path("ok.npy"), Array({2, 10, 3}, std::vector<double>(60, 0.5)));
  expect_bad_input("fit --data " + path("ok.npy") + " --rank 0", "rank is out of range; got 0");
}

TEST_F(CliTest, ZeroParticles) {
  write_teacher_data(4, 10);
  expect_bad_input("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                       " --field observations --particles 0",
                   "particles must be at least 1; got 0");
}

// The help shows the defaults the command uses and what --out-elbo holds.
TEST_F(CliTest, FilterHelpStatesItsDefaults) {
  ASSERT_EQ(run("filter --help"), 0) << output_;
  EXPECT_NE(output_.find("--particles INT=1000"), std::string::npos) << output_;
  EXPECT_NE(output_.find("ELBO per time step of each trial (trials) .npy"), std::string::npos)
      << output_;
  EXPECT_NE(output_.find("--precision TEXT=float32"), std::string::npos) << output_;
}

TEST_F(CliTest, UnknownPrecision) {
  write_teacher_data(4, 10);
  expect_bad_input("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                       " --field observations --device cpu --precision half",
                   "--precision is not recognised; got 'half', expected one of float32, float64, "
                   "float32-device");
}

// A wrong --layout names the file, the layout assumed and the layout that would match.
TEST_F(CliTest, ChannelMismatchNamesTheLayoutAndTheOneThatFits) {
  write_teacher_data(4, 30);  // (4 trials, 30 steps, 20 channels)
  expect_bad_input("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                       " --field observations --layout trials,channels,time",
                   path("data.npz") +
                       ": channel count does not match the model; got 30 (layout "
                       "trials,channels,time), expected 20; --layout trials,time,channels reads "
                       "20 channels");
}

// How the data was read is the fit's first line; counts with a Gaussian read-out and a time
// axis far shorter than the channel axis are announced, and the fit still runs.
TEST_F(CliTest, SuspiciousDataIsAnnounced) {
  std::vector<double> counts(std::size_t(6) * 5 * 40);
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = double(i % 4);
  io::write_npy(path("counts.npy"), Array({6, 5, 40}, counts));
  ASSERT_EQ(run("fit --data " + path("counts.npy") +
                " --rank 1 --hidden 4 --epochs 1 --particles 4 --batch-size 6 --out " +
                path("counts_model.npz")),
            0)
      << output_;
  EXPECT_NE(output_.find("lrsmc fit: " + path("counts.npy") +
                         ": 6 trials × 5 steps × 40 channels (layout trials,time,channels)"),
            std::string::npos)
      << output_;
  EXPECT_NE(output_.find("lrsmc: warning: " + path("counts.npy") +
                         ": every value is a non-negative integer, as spike counts are, but the "
                         "read-out is Gaussian; counts are fitted with --observation poisson"),
            std::string::npos)
      << output_;
  EXPECT_NE(output_.find("lrsmc: warning: " + path("counts.npy") +
                         ": 5 steps against 40 channels (read as 5 steps × 40 channels, layout "
                         "trials,time,channels); if the file holds channels before time, use "
                         "--layout trials,channels,time"),
            std::string::npos)
      << output_;
  // The same counts fitted as counts, in the layout that reads 5 channels, raise neither.
  ASSERT_EQ(run("fit --data " + path("counts.npy") +
                " --layout trials,channels,time --observation poisson --rank 1 --hidden 4 "
                "--epochs 1 --particles 4 --batch-size 6 --out " +
                path("counts_model2.npz")),
            0)
      << output_;
  EXPECT_EQ(output_.find("lrsmc: warning: " + path("counts.npy")), std::string::npos) << output_;
}

// A recording far from unit scale (raw microvolts) with a Gaussian read-out is announced; the
// same values z-scored are not.
TEST_F(CliTest, UnscaledRecordingIsAnnounced) {
  std::vector<double> microvolts(std::size_t(200) * 3), unit(microvolts.size());
  for (std::size_t i = 0; i < microvolts.size(); ++i) {
    unit[i] = std::sin(0.37 * double(i)) * std::sqrt(2.0);  // std 1 per channel, mean 0
    microvolts[i] = 40 + 85 * unit[i];
  }
  io::write_npy(path("raw.npy"), Array({200, 3}, microvolts));
  io::write_npy(path("zscored.npy"), Array({200, 3}, unit));
  const std::string fit = " --layout time,channels --rank 1 --hidden 4 --epochs 1 --particles 2 "
                          "--window 20 --windows-per-epoch 2 --out " + path("m.npz");
  ASSERT_EQ(run("fit --data " + path("raw.npy") + fit), 0) << output_;
  EXPECT_NE(output_.find("lrsmc: warning: " + path("raw.npy") +
                         ": the channels' typical standard deviation is 8"),
            std::string::npos)
      << output_;
  EXPECT_NE(output_.find("z-score each channel first"), std::string::npos) << output_;
  ASSERT_EQ(run("fit --data " + path("zscored.npy") + fit), 0) << output_;
  EXPECT_EQ(output_.find("standard deviation"), std::string::npos) << output_;
}

// One step per trial (trials whose time axis was lost) is announced.
TEST_F(CliTest, OneStepPerTrialIsAnnounced) {
  save_model(path("teacher.npz"), oscillator_teacher());
  std::vector<double> values(std::size_t(30) * 20);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.1 * double(i));
  io::write_npy(path("flat.npy"), Array({30, 1, 20}, values));
  ASSERT_EQ(run("filter --model " + path("teacher.npz") + " --data " + path("flat.npy") +
                " --particles 8 --out-latents " + path("l.npy") + " --out-elbo " + path("e.npy")),
            0)
      << output_;
  EXPECT_NE(output_.find("lrsmc: warning: " + path("flat.npy") +
                         ": one step per trial (read as 1 step × 20 channels, layout "
                         "trials,time,channels); the model needs time series: check --layout"),
            std::string::npos)
      << output_;
}

TEST_F(CliTest, ModelFileOfAnotherRank) {
  write_teacher_data(4, 10);
  // A file whose arrays are rank 3 while its config says rank 2.
  Model rank3 = oscillator_teacher();
  rank3.config.rank = 3;
  rank3 = Model::initialise(rank3.config, 1);
  std::map<std::string, Array> arrays;
  const ParameterLayout layout = rank3.layout();
  for (const auto& block : layout.blocks())
    arrays[block.name] = Array(block.shape, rank3.get(block.name));
  io::write_npz(path("mixed.npz"), arrays,
                {{"config", config_to_json(oscillator_teacher().config)}});
  expect_bad_input("filter --model " + path("mixed.npz") + " --data " + path("data.npz") +
                       " --field observations",
                   "entry 'm' has the wrong shape; got (20, 3), expected (20, 2)");
  // --init with a model of one rank while asking for another.
  expect_bad_input("fit --data " + path("data.npz") + " --field observations --init " +
                       path("teacher.npz") + " --rank 3",
                   "--rank cannot be combined with --init");
}

TEST_F(CliTest, WindowLongerThanRecording) {
  io::write_npy(path("recording.npy"), Array({100, 4}, std::vector<double>(400, 0.1)));
  expect_bad_input("fit --data " + path("recording.npy") + " --layout time,channels --window 500",
                   "--window 500 is longer than the recording; got 100 steps");
}

// "auto" fits a new model to counts with the encoder proposal at the learning rates the encoder
// is stable at, and with the bootstrap proposal above them or when asked.
TEST_F(CliTest, AutoTrainsAnEncoderForCountsAtStableLearningRates) {
  io::write_npy(path("counts.npy"), Array({4, 10, 3}, std::vector<double>(120, 1.0)));
  const std::string fit = "fit --data " + path("counts.npy") +
                          " --observation poisson --rank 2 --hidden 4 --epochs 1 --particles 4 "
                          "--encoder-kernels 3,1 --encoder-channels 4 --out " +
                          path("m.npz") + " ";
  struct Case {
    std::string options;
    bool encoder;
  };
  for (const Case& which : {Case{"", true}, Case{"--lr 2e-3", true}, Case{"--lr 1e-2", false},
                            Case{"--proposal bootstrap", false},
                            Case{"--preset small", false}}) {
    ASSERT_EQ(run(fit + which.options), 0) << which.options << ": " << output_;
    EXPECT_EQ(load_model(path("m.npz")).config.encoder.has_value(), which.encoder)
        << which.options;
    EXPECT_EQ(output_.find("encoder proposal") != std::string::npos, which.encoder)
        << which.options << ": " << output_;
  }
}

TEST_F(CliTest, EncoderOptionsThatDoNotFitTheDataAreRefusedBeforeTraining) {
  io::write_npy(path("counts.npy"), Array({4, 10, 3}, std::vector<double>(120, 1.0)));
  const std::string fit =
      "fit --data " + path("counts.npy") + " --observation poisson --proposal encoder --out " +
      path("m.npz") + " ";
  expect_bad_input(fit + "--encoder-kernels 12,1 --encoder-padding-mode reflect",
                   "encoder proposal: encoder kernel 1 of 12 taps pads 11 steps by reflection, "
                   "which needs trials longer than 11 steps; got 10");
  expect_bad_input(fit + "--encoder-kernels 5,1 --encoder-channels 0",
                   "encoder channel count 1 is out of range; got 0");
  expect_bad_input(fit + "--encoder-kernels 5,3 --encoder-channels 8,8",
                   "the encoder has 2 kernels and 2 channel counts");
  expect_bad_input(fit + "--encoder-padding sideways",
                   "--encoder-padding is not recognised; got 'sideways'");
  expect_bad_input(fit + "--encoder-init-scale 0", "encoder init_scale must be positive; got 0");
  expect_bad_input(fit + "--t-forward 10",
                   "--t-forward must leave at least one step before the forecast; got 10 of 10 "
                   "steps per trial");
  // Forecast steps leave the encoder fewer steps: 7 here, too few for 9 reflected taps.
  expect_bad_input(fit + "--t-forward 3 --encoder-kernels 9,1 --encoder-padding-mode reflect",
                   "needs trials longer than 8 steps; got 7");
  EXPECT_FALSE(std::filesystem::exists(path("m.npz")));
  // A learning rate the encoder does not survive is announced, before training.
  ASSERT_EQ(run(fit + "--encoder-kernels 3,1 --encoder-channels 4 --hidden 4 --rank 2 "
                      "--epochs 1 --particles 2 --lr 1e-2"),
            0)
      << output_;
  EXPECT_NE(output_.find("warning: the encoder proposal at learning rate 0.01: above about 2e-3"),
            std::string::npos)
      << output_;
  // A model without an encoder cannot be filtered with one.
  const Model plain = oscillator_teacher();
  save_model(path("plain.npz"), plain);
  const int channels = plain.config.num_channels;
  io::write_npy(path("recording.npy"),
                Array({2, 10, channels}, std::vector<double>(std::size_t(20 * channels), 0.1)));
  expect_bad_input("filter --model " + path("plain.npz") + " --data " + path("recording.npy") +
                       " --proposal encoder",
                   "the encoder proposal needs a model with an encoder");
}

// A one-to-one read-out fits with a unit per channel; the options that do not fit are refused
// before anything is written.
TEST_F(CliTest, ReadoutFromOptions) {
  io::write_npy(path("counts.npy"), Array({4, 10, 3}, std::vector<double>(120, 1.0)));
  const std::string fit = "fit --data " + path("counts.npy") +
                          " --observation poisson --rank 2 --epochs 1 --particles 4 --out " +
                          path("m.npz") + " ";
  expect_bad_input(fit + "--readout-from rates",
                   "--readout-from rates reads each unit one to one, so --hidden must equal the "
                   "data's channels; got --hidden 512 and 3 channels (pass --hidden 3)");
  expect_bad_input(fit + "--readout-from z_and_v",
                   "readout_from 'z_and_v' reads the inputs, so the model needs inputs");
  expect_bad_input(fit + "--readout-from spikes",
                   "--readout-from is not recognised; got 'spikes', expected one of z, z_and_v, "
                   "currents, rates");
  EXPECT_FALSE(std::filesystem::exists(path("m.npz")));
  ASSERT_EQ(run(fit + "--readout-from rates --hidden 3"), 0) << output_;
  const Model fitted = load_model(path("m.npz"));
  EXPECT_EQ(fitted.config.readout_from, ReadoutFrom::rates);
  EXPECT_EQ(fitted.get("readout_gain").size(), 3u);
}

// --smooth: the latents file holds the backward-simulation means, which differ from the
// filtered ones before the last step and equal the trajectories' mean; the trajectories are
// written on request; options that do not fit are refused before anything is written.
TEST_F(CliTest, FilterSmoothsOnRequest) {
  write_teacher_data(3, 12);
  save_model(path("teacher.npz"), oscillator_teacher());
  const std::string filter = "filter --model " + path("teacher.npz") + " --data " +
                             path("data.npz") + " --field observations --particles 64 --seed 2 ";
  ASSERT_EQ(run(filter + "--out-latents " + path("filtered.npy")), 0) << output_;
  ASSERT_EQ(run(filter + "--smooth --trajectories 7 --out-latents " + path("smoothed.npy") +
                " --out-trajectories " + path("paths.npy")),
            0)
      << output_;
  EXPECT_NE(output_.find("smoothed means of 7 trajectories per trial"), std::string::npos)
      << output_;
  const Array filtered = io::read_npy(path("filtered.npy")), smoothed = io::read_npy(path("smoothed.npy")),
              paths = io::read_npy(path("paths.npy"));
  const std::int64_t rank = oscillator_teacher().config.rank;
  EXPECT_EQ(smoothed.shape, filtered.shape);
  EXPECT_EQ(paths.shape, (std::vector<std::int64_t>{3, 7, 12, rank}));
  EXPECT_NE(smoothed.data, filtered.data);
  for (std::int64_t i = 0; i < 12 * rank; ++i) {  // the first trial's mean of its 7 paths
    double mean = 0.0;
    for (std::int64_t j = 0; j < 7; ++j) mean += paths.data[std::size_t(j * 12 * rank + i)] / 7;
    EXPECT_NEAR(smoothed.data[std::size_t(i)], mean, 1e-5 * (1 + std::fabs(mean)));  // float32
  }
  expect_bad_input(filter + "--out-trajectories " + path("x.npy"),
                   "--out-trajectories needs --smooth");
  expect_bad_input(filter + "--smooth --trajectories 0", "--trajectories is out of range; got 0");
  expect_bad_input(filter + "--smooth --out-particles " + path("p.npz"),
                   "--out-particles cannot be combined with --smooth");
  EXPECT_FALSE(std::filesystem::exists(path("x.npy")));
}

// --init posterior: one sequence per trial of the recording, each starting at a draw of its
// posterior at --init-step (the library's smoother, one trajectory, the same seed); options that
// do not fit are refused before anything is written.
TEST_F(CliTest, SampleStartsFromThePosteriorOfARecording) {
  write_teacher_data(3, 12);
  const Model teacher = oscillator_teacher();
  const std::string sample = "sample --model " + path("teacher.npz") + " --steps 5 --seed 4 ";
  const std::string data = "--data " + path("data.npz") + " --field observations ";
  for (const int step : {-1, 4}) {
    ASSERT_EQ(run(sample + "--init posterior " + data + "--particles 200 --init-step " +
                  std::to_string(step) + " --out " + path("s.npz")),
              0)
        << output_;
    const Array latents = io::read_npz(path("s.npz")).arrays.at("latents");
    ASSERT_EQ(latents.shape, (std::vector<std::int64_t>{3, 5, teacher.config.rank}));
    const auto recording = io::read_npz(path("data.npz")).arrays.at("observations");
    SequenceBatch batch;
    batch.num_trials = 3;
    batch.num_steps = 12;
    batch.num_channels = teacher.config.num_channels;
    batch.observations = recording.data;
    FilterOptions options;
    options.num_particles = 200;
    options.proposal = default_proposal(teacher.config);
    const SmoothResult smoothed = smooth(*make_backend(BackendKind::cpu), teacher, batch, options, 4, 1);
    const int at = step < 0 ? 11 : step, R = teacher.config.rank;
    for (int trial = 0; trial < 3; ++trial)
      for (int r = 0; r < R; ++r) {
        const double expected = smoothed.trajectories[(std::size_t(trial) * 12 + at) * R + r];
        EXPECT_NEAR(latents.data[std::size_t(trial) * 5 * R + r], expected,
                    1e-6 * (1 + std::fabs(expected)))  // stored as float32
            << "step " << step << ", trial " << trial;
      }
  }
  expect_bad_input(sample + data + "--out " + path("x.npz"), "--data needs --init posterior");
  expect_bad_input(sample + "--init posterior --out " + path("x.npz"),
                   "--init posterior needs --data");
  expect_bad_input(sample + "--init posterior " + data + "--trials 2 --out " + path("x.npz"),
                   "--trials 2 does not match the 3 trials of");
  expect_bad_input(sample + "--init posterior " + data + "--init-step 12 --out " + path("x.npz"),
                   "--init-step is out of range; got 12, expected 0 to 11");
  expect_bad_input(sample + "--init bogus --out " + path("x.npz"), "--init is not recognised");
  EXPECT_FALSE(std::filesystem::exists(path("x.npz")));
}

// evaluate writes every value with its baseline as JSON and a table; the teacher that generated
// the recording scores better than the baseline noise.
TEST_F(CliTest, EvaluateScoresAModelAgainstARecording) {
  write_teacher_data(10, 40);
  const std::string evaluate = "evaluate --model " + path("teacher.npz") + " --data " +
                               path("data.npz") + " --field observations --particles 100 ";
  ASSERT_EQ(run(evaluate + "--repeats 3 --out-json " + path("e.json")), 0) << output_;
  EXPECT_NE(output_.find("d_stsp_reference_float32"), std::string::npos) << output_;
  const auto json = nlohmann::json::parse(read_file(path("e.json")));
  EXPECT_EQ(json["trials"], 10);
  EXPECT_EQ(json["steps_scored"], 40);
  EXPECT_EQ(json["observation"], "gaussian");
  for (const char* name : {"d_stsp", "d_stsp_reference_float32", "d_h", "mean_rate_error"}) {
    SCOPED_TRACE(name);
    const auto& entry = json["metrics"][name];
    ASSERT_EQ(entry["values"].size(), 3u);
    ASSERT_EQ(entry["baseline"]["values"].size(), 3u);
    EXPECT_FALSE(entry["description"].get<std::string>().empty());
  }
  EXPECT_LT(json["metrics"]["d_h"]["median"].get<double>(),
            json["metrics"]["d_h"]["baseline"]["median"].get<double>());
  // The Hann pipeline on a recording that is not z-scored: a warning, still a result.
  ASSERT_EQ(run(evaluate + "--hann-window 15 --out-json " + path("h.json")), 0) << output_;
  EXPECT_NE(output_.find("is not z-scored"), std::string::npos) << output_;
  // Forward prediction and PSTHs by condition.
  io::write_npy(path("conditions.npy"), Array({10}, {0, 1, 0, 1, 0, 1, 0, 1, 0, 1}));
  ASSERT_EQ(run(evaluate + "--forward-steps 4 --conditions " + path("conditions.npy") +
                " --out-json " + path("f.json")),
            0)
      << output_;
  const auto forward = nlohmann::json::parse(read_file(path("f.json")));
  EXPECT_EQ(forward["metrics"]["forward_r2"]["values"].size(), 1u);
  EXPECT_EQ(forward["metrics"]["psth_r2"]["values"].size(), 1u);
  io::write_npy(path("bad_conditions.npy"), Array({3}, {0, 1, 0}));
  expect_bad_input(evaluate + "--conditions " + path("bad_conditions.npy") + " --out-json " +
                       path("f.json"),
                   "expected one condition label per trial, shape (10,); got shape (3,)");
  const std::string before = read_file(path("e.json"));
  expect_bad_input(evaluate + "--repeats 0 --out-json " + path("e.json"),
                   "repeats must be 1 to 10000; got 0");
  expect_bad_input(evaluate + "--stsp-samples 0 --out-json " + path("e.json"),
                   "D_stsp's samples must be between 1 and 10^7; got 0");
  EXPECT_EQ(read_file(path("e.json")), before);  // an existing output is left as it was
}

// sweep: one fit per seed and setting, each as `lrsmc fit` with those options gives it, a table
// of their results; one run alone (a job-array task); the table again from the folders.
TEST_F(CliTest, SweepRunsEveryFitAndTabulatesThem) {
  write_teacher_data(12, 10);
  const std::string fit_options = " -- --data " + path("data.npz") +
                                  " --field observations --rank 2 --hidden 6 --epochs 2 "
                                  "--particles 4 --held-out 0.25 --batch-size 4 --device cpu";
  const std::string sweep = "sweep --out-dir " + path("runs") + " --seeds 2 --vary lr=1e-2,3e-2 ";
  ASSERT_EQ(run(sweep + "-j 2" + fit_options), 0) << output_;
  const std::string table = read_file(path("runs/sweep.csv"));
  std::istringstream lines(table);
  std::string header, line;
  std::getline(lines, header);
  EXPECT_EQ(header,
            "run,seed,lr,status,epochs,train_elbo,held_out_elbo,best_held_out_elbo,seconds,model");
  int rows = 0;
  while (std::getline(lines, line)) {
    EXPECT_NE(line.find(",done,2,"), std::string::npos) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 4);
  // Run 3 (lr 3e-2, seed 1) is the fit of those options with the shared split.
  ASSERT_EQ(run("fit" + fit_options.substr(3) + " --lr 3e-2 --seed 1 --split-seed 0 -q --out " +
                path("direct.npz")),
            0)
      << output_;
  EXPECT_EQ(load_model(path("runs/run-003/model.npz")).parameters,
            load_model(path("direct.npz")).parameters);
  // A job-array task reruns one run; --merge rebuilds the table without running anything.
  std::filesystem::remove_all(path("runs/run-001"));
  ASSERT_EQ(run(sweep + "--merge"), 1) << output_;  // run 1 is missing
  EXPECT_NE(read_file(path("runs/sweep.csv")).find("1,1,1e-2,not run"), std::string::npos);
  ASSERT_EQ(run(sweep + "--task 1" + fit_options), 0) << output_;
  ASSERT_EQ(run(sweep + "--merge"), 0) << output_;
  EXPECT_EQ(read_file(path("runs/sweep.csv")).find("not run"), std::string::npos);
  expect_bad_input(sweep + "--task 4" + fit_options, "--task is out of range; got 4, expected 0 to 3");
  expect_bad_input(sweep + fit_options + " --seed 3", "sweep sets --seed and --out of each run");
  expect_bad_input("sweep --vary seed=1,2" + fit_options, "--vary seed: sweep sets --seed");
  expect_bad_input("sweep --vary lr" + fit_options, "--vary is not NAME=V1,V2,");
  expect_bad_input(sweep + fit_options + " --lr 1e-3", "which --vary sets");
}

// --split-seed is part of a checkpoint's run: resuming with another split is refused.
TEST_F(CliTest, SplitSeedIsPartOfTheRun) {
  write_teacher_data(12, 10);
  const std::string fit = "fit --data " + path("data.npz") +
                          " --field observations --rank 2 --hidden 6 --particles 4 --held-out "
                          "0.25 --batch-size 4 --device cpu -q --seed 0 --out " + path("m.npz") +
                          " --checkpoint-every 1 ";
  ASSERT_EQ(run(fit + "--epochs 2 --split-seed 7"), 0) << output_;
  expect_bad_input(fit + "--epochs 2 --split-seed 8 --resume",
                   "it was made with --split-seed 7, this run has 8");
  ASSERT_EQ(run(fit + "--epochs 2 --split-seed 7 --resume"), 0) << output_;
}

/// mpirun with its options up to the process count (oversubscribed, unbound: 2 or 3 processes
/// on CI's 2 cores), or empty with the reason in `why` when this build or machine has none.
std::string mpirun_command(std::string& why) {
#if !defined(LRSMC_WITH_MPI)
  why = "lrsmc built without MPI (-DLRSMC_ENABLE_MPI=OFF, or no MPI found): mpirun check skipped";
  return {};
#else
  std::string where;
  if (testing::run_command("command -v mpirun", where) != 0) {
    why = "mpirun is not on the PATH (apt install openmpi-bin): mpirun check skipped";
    return {};
  }
  // Open MPI refuses root unless told; CI's containers run as root.
  return std::string(geteuid() == 0 ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                                    : "") +
         "mpirun --oversubscribe --bind-to none -np ";
#endif
}

// mpirun -np 2 and -np 3 (oversubscribed on two cores): each process fits its share of every
// batch's trials, the per-trial results gathered in trial order, so the model is the one-process
// model bit for bit; process 0 alone reports and writes. Other commands refuse to run over MPI.
// Skips when this build has no MPI or mpirun is not on the PATH.
TEST_F(CliTest, MpiFitIsBitwiseTheOneProcessFit) {
  std::string why;
  const std::string mpirun = mpirun_command(why);
  if (mpirun.empty()) GTEST_SKIP() << why;
  write_teacher_data(22, 15);
  const std::string fit = "fit --data " + path("data.npz") +
                          " --field observations --rank 2 --hidden 6 --particles 6 --epochs 3 "
                          "--batch-size 8 --held-out 0.2 --device cpu --threads 1 --seed 4 "
                          "--checkpoint-every 1 --out ";
  ASSERT_EQ(run(fit + path("one.npz")), 0) << output_;
  for (const int processes : {2, 3}) {
    const std::string out = path("p" + std::to_string(processes) + ".npz");
    ASSERT_EQ(testing::run_command(mpirun + std::to_string(processes) + " " +
                                       std::string(LRSMC_CLI_PATH) + " " + fit + out,
                                   output_),
              0)
        << output_;
    EXPECT_NE(output_.find(std::to_string(processes) +
                           " MPI processes share each batch's trials (each gradient gathers "),
              std::string::npos)
        << output_;
    // One report, from process 0.
    EXPECT_EQ(output_.find("fitted "), output_.rfind("fitted ")) << output_;
    EXPECT_EQ(load_model(out).parameters, load_model(path("one.npz")).parameters)
        << processes << " processes";
    EXPECT_EQ(load_model(out + ".checkpoint.npz").parameters,
              load_model(path("one.npz.checkpoint.npz")).parameters);
  }
  EXPECT_NE(testing::run_command(mpirun + "2 " + std::string(LRSMC_CLI_PATH) + " filter --model " +
                                     path("one.npz") + " --data " + path("data.npz") +
                                     " --field observations --out-latents " + path("l.npy") +
                                     " --out-elbo " + path("e.npy"),
                                 output_),
            0);
  EXPECT_NE(output_.find("only lrsmc fit shares its work over MPI"), std::string::npos) << output_;
  EXPECT_FALSE(std::filesystem::exists(path("l.npy")));
  // An output only process 0 checks: every process ends with its error, none waits (the
  // timeout would say so with 124).
  EXPECT_EQ(testing::run_command("timeout 60 env " + mpirun + "2 " + std::string(LRSMC_CLI_PATH) +
                                     " " + fit + path("no/such/folder/m.npz"),
                                 output_),
            2)
      << output_;
  EXPECT_NE(output_.find("no/such"), std::string::npos) << output_;
}

// mpirun's processes, each reading only the observations of its share of the trials (--shard
// on), with inputs, which every process reads whole: the model, checkpoints and history are
// bitwise the one-process fit of the whole recording for 2 and 3 processes. --shard auto splits
// the recording when every batch holds every training trial; the encoder proposal and one long
// recording are refused with --shard on.
TEST_F(CliTest, MpiFitOnSharesOfTheRecordingIsBitwiseTheOneProcessFit) {
  std::string why;
  const std::string mpirun = mpirun_command(why);
  if (mpirun.empty()) GTEST_SKIP() << why;
  write_teacher_data(22, 15);
  std::vector<double> inputs(22 * 15);
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = double((i * 5) % 7) / 7.0 - 0.4;
  io::write_npy(path("inputs.npy"), Array({22, 15, 1}, inputs));
  const std::string fit = "fit --data " + path("data.npz") + " --field observations --inputs " +
                          path("inputs.npy") +
                          " --rank 2 --hidden 6 --particles 6 --epochs 3 --held-out 0.2 "
                          "--device cpu --threads 1 --seed 4 --checkpoint-every 1 ";
  const auto history = [](const std::string& model) {  // without its clock column
    std::istringstream lines(read_file(model + ".history.csv"));
    std::string line, kept;
    while (std::getline(lines, line)) kept += line.substr(0, line.rfind(',')) + "\n";
    return kept;
  };
  for (const std::string& batches :
       {std::string("--batch-size 8 --shard on"), std::string("--batch-size 18 --shard auto")}) {
    ASSERT_EQ(run(fit + batches + " --out " + path("one.npz")), 0) << output_;
    for (const int processes : {2, 3}) {
      const std::string out = path("p" + std::to_string(processes) + ".npz");
      ASSERT_EQ(testing::run_command(mpirun + std::to_string(processes) + " " +
                                         std::string(LRSMC_CLI_PATH) + " " + fit + batches +
                                         " --out " + out,
                                     output_),
                0)
          << output_;
      // 22 trials, 4 held out: process 0 holds its share of each set.
      EXPECT_NE(output_.find(processes == 2 ? "process 0 holds 9 of 18 training and 2 of 4 "
                                            : "process 0 holds 6 of 18 training and 1 of 4 "),
                std::string::npos)
          << batches << ": " << output_;
      EXPECT_EQ(output_.find("fitted "), output_.rfind("fitted ")) << output_;
      EXPECT_EQ(load_model(out).parameters, load_model(path("one.npz")).parameters)
          << batches << ", " << processes << " processes";
      EXPECT_EQ(load_model(out + ".checkpoint.npz").parameters,
                load_model(path("one.npz.checkpoint.npz")).parameters);
      EXPECT_EQ(history(out), history(path("one.npz"))) << batches;
    }
  }
  // Batches of some trials: auto reads the (small) recording whole.
  ASSERT_EQ(testing::run_command(mpirun + "2 " + std::string(LRSMC_CLI_PATH) + " " + fit +
                                     "--batch-size 8 --out " + path("auto.npz"),
                                 output_),
            0)
      << output_;
  EXPECT_EQ(output_.find("--shard"), std::string::npos) << output_;
  const auto refused = [&](const std::string& options, const std::string& message) {
    EXPECT_EQ(testing::run_command("timeout 60 env " + mpirun + "2 " + std::string(LRSMC_CLI_PATH) +
                                       " " + options + " --out " + path("refused.npz"),
                                   output_),
              2)
        << options << ": " << output_;
    EXPECT_NE(output_.find(message), std::string::npos) << output_;
    EXPECT_FALSE(std::filesystem::exists(path("refused.npz")));
  };
  refused(fit + "--shard on --proposal encoder --observation poisson",
          "--shard on: the encoder proposal's gradient reads every trial's observations");
  io::write_npy(path("long.npy"), Array({40, 3}, std::vector<double>(120, 0.5)));
  refused("fit --data " + path("long.npy") + " --layout time,channels --window 10 --shard on",
          "--shard on splits trials over the processes; got layout time,channels");
  // A value only process 1 reads (trial 5, not a count) stops both with its error.
  std::vector<double> counts(6 * 10 * 3, 1.0);
  counts.back() = 0.5;
  io::write_npy(path("counts.npy"), Array({6, 10, 3}, counts));
  refused("fit --data " + path("counts.npy") +
              " --observation poisson --proposal bootstrap --rank 2 --hidden 6 --particles 4 "
              "--epochs 1 --device cpu --threads 1 --shard on",
          "Poisson observations must be non-negative counts; got 0.5");
  // Two trials, one held out, over 3 processes: the last holds both, the others none.
  write_teacher_data(2, 15);
  const std::string tiny = "fit --data " + path("data.npz") +
                           " --field observations --rank 2 --hidden 6 --particles 6 --epochs 2 "
                           "--held-out 0.5 --device cpu --threads 1 --seed 4 --out ";
  ASSERT_EQ(run(tiny + path("tiny1.npz")), 0) << output_;
  ASSERT_EQ(testing::run_command("timeout 120 env " + mpirun + "3 " + std::string(LRSMC_CLI_PATH) +
                                     " " + tiny + path("tiny3.npz"),
                                 output_),
            0)
      << output_;
  EXPECT_NE(output_.find("process 0 holds 0 of 1 training and 0 of 1 held-out trials"),
            std::string::npos)
      << output_;
  EXPECT_EQ(load_model(path("tiny3.npz")).parameters, load_model(path("tiny1.npz")).parameters);
  EXPECT_EQ(history(path("tiny3.npz")), history(path("tiny1.npz")));
}

// The CUDA backend shared by mpirun's processes over NCCL (each runs its share of a batch on its
// device, every trial's results are gathered and summed in trial order): the model and
// checkpoints are bitwise the one-process CUDA fit for 2 and 3 processes, in the device-resident
// session (bootstrap proposal), there with each process holding only its share of the
// observations (--shard on), and in the host loop of the encoder proposal, and the held-out
// evaluation, shared likewise, is too. Each process needs a GPU of its own: on the emulated
// device LRSMC_EMULATED_DEVICES names three (one emulated device in fact, NCCL's broadcasts
// over MPI), and with one the command is refused on every process; on GPUs the counts the
// machine has GPUs for run.
TEST_F(CliTest, MpiCudaFitIsBitwiseTheOneProcessFit) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device answers: the NCCL fit is not checked";
  std::string why;
  const std::string mpirun = mpirun_command(why);
  if (mpirun.empty()) GTEST_SKIP() << why;
  const int gpus = testing::emulated_device ? 3 : cuda::device_count();
  if (gpus < 2) GTEST_SKIP() << "one GPU: processes sharing a fit need one each (NCCL check owed)";
  std::vector<double> counts(7 * 12 * 3);
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = double((i * 7 + i / 5) % 4);
  io::write_npy(path("counts.npy"), Array({7, 12, 3}, counts));
  // 7 trials, 2 held out: 3 processes share the held-out evaluation with one left empty.
  const std::string common = "fit --data " + path("counts.npy") +
                             " --observation poisson --rank 2 --hidden 6 --particles 6 "
                             "--epochs 2 --batch-size 5 --held-out 0.3 --device cuda --seed 4 ";
  // The history without its clock column: each epoch's training and held-out ELBO, %.17g.
  const auto history = [](const std::string& model) {
    std::istringstream lines(read_file(model + ".history.csv"));
    std::string line, kept;
    while (std::getline(lines, line)) kept += line.substr(0, line.rfind(',')) + "\n";
    return kept;
  };
  // Inputs, which every process reads whole, beside shares of the observations (--shard on):
  // each device holds its share of the training set's observations and every trial's inputs.
  std::vector<double> inputs(7 * 12);
  for (std::size_t i = 0; i < inputs.size(); ++i) inputs[i] = double((i * 3) % 5) / 5.0 - 0.3;
  io::write_npy(path("inputs.npy"), Array({7, 12, 1}, inputs));
  for (const std::string& proposal :
       {std::string("--proposal bootstrap --checkpoint-every 1 --shard off"),
        std::string("--proposal encoder --encoder-kernels 3,1 --encoder-channels 4"),
        "--proposal bootstrap --checkpoint-every 1 --shard on --inputs " + path("inputs.npy")}) {
    const std::string fit = common + proposal + " --out ";
    ASSERT_EQ(run(fit + path("one.npz")), 0) << output_;
    for (const int processes : {2, 3}) {
      if (processes > gpus) continue;
      const std::string out = path("p" + std::to_string(processes) + ".npz");
      ASSERT_EQ(testing::run_command("timeout 600 env LRSMC_EMULATED_DEVICES=3 " + mpirun +
                                         std::to_string(processes) + " " +
                                         std::string(LRSMC_CLI_PATH) + " " + fit + out,
                                     output_),
                0)
          << proposal << ": " << output_;
      EXPECT_NE(output_.find("cuda ("), std::string::npos) << output_;
      EXPECT_NE(output_.find(std::to_string(processes) + " MPI processes share each batch's"),
                std::string::npos)
          << output_;
      EXPECT_EQ(output_.find("fitted "), output_.rfind("fitted ")) << output_;
      EXPECT_EQ(output_.find("process 0 holds ") != std::string::npos,
                proposal.find("--shard on") != std::string::npos)
          << output_;
      EXPECT_EQ(load_model(out).parameters, load_model(path("one.npz")).parameters)
          << proposal << ", " << processes << " processes";
      EXPECT_EQ(history(out), history(path("one.npz")));
      if (proposal.find("checkpoint") != std::string::npos) {
        EXPECT_EQ(load_model(out + ".checkpoint.npz").parameters,
                  load_model(path("one.npz.checkpoint.npz")).parameters);
      }
    }
  }
  if (!testing::emulated_device) return;
  // Two processes, one device: refused on both, neither waits for the other.
  EXPECT_EQ(testing::run_command("timeout 60 env LRSMC_EMULATED_DEVICES=1 " + mpirun + "2 " +
                                     std::string(LRSMC_CLI_PATH) + " " + common + "--out " +
                                     path("shared.npz"),
                                 output_),
            2)
      << output_;
  EXPECT_NE(output_.find("each needs a GPU of its own"), std::string::npos) << output_;
  EXPECT_FALSE(std::filesystem::exists(path("shared.npz")));
}

TEST_F(CliTest, AbsurdOptionsAndLayouts) {
  io::write_npy(path("ok.npy"), Array({2, 10, 3}, std::vector<double>(60, 0.5)));
  expect_bad_input("fit --data " + path("ok.npy") + " --layout time,trials",
                   "--layout is not recognised");
  expect_bad_input("fit --data " + path("ok.npy") + " --nonlinearity sigmoid",
                   "--nonlinearity is not recognised; got 'sigmoid'");
  expect_bad_input("fit --data " + path("ok.npy") + " --lr -3", "learning rate");
  expect_bad_input("fit --data " + path("ok.npy") + " --observation poisson --proposal optimal",
                   "optimal proposal needs a linear-Gaussian read-out");
  expect_bad_input("fit --data " + path("ok.npy") + " --observation poisson",
                   "Poisson observations must be non-negative counts; got 0.5");
}

TEST_F(CliTest, FailedRunLeavesExistingFilesUntouched) {
  std::ofstream(path("model.npz")) << "precious";
  io::write_npy(path("nan.npy"), Array({2, 10, 3}, std::vector<double>(60, std::nan(""))));
  EXPECT_EQ(run("fit --data " + path("nan.npy") + " --out " + path("model.npz")), 2);
  EXPECT_EQ(read_file(path("model.npz")), "precious");
  // Output into a folder that does not exist: clear error, nothing half-written.
  write_teacher_data(4, 10);
  EXPECT_EQ(run("sample --model " + path("teacher.npz") + " --out " + path("no/such/dir/s.npz")),
            2);
  EXPECT_NE(output_.find("s.npz"), std::string::npos) << output_;
}

TEST_F(CliTest, OutputOnAnInputIsRefusedBeforeAnyWork) {
  write_teacher_data(4, 10);
  const std::string model = path("teacher.npz"), data = path("data.npz");
  const std::string model_bytes = read_file(model), data_bytes = read_file(data);
  // The same file under another spelling, and through a symbolic link.
  const std::string data_again = folder_ + "/./data.npz";
  std::filesystem::create_symlink(model, path("link.npz"));
  const std::pair<std::string, std::string> cases[] = {
      {"fit --epochs 1 --data " + data + " --out " + data_again,
       "--out '" + data_again + "' is the same file as --data"},
      {"fit --epochs 1 --data " + data + " --checkpoint " + path("x.npz") + " --out " +
           path("x.npz"),
       "--checkpoint '" + path("x.npz") + "' is the same file as --out"},
      {"fit --epochs 1 --data " + data + " --init " + model + " --out " + path("link.npz"),
       "is the same file as --init"},
      {"filter --model " + model + " --data " + data + " --out-elbo " + data,
       "--out-elbo '" + data + "' is the same file as --data"},
      {"filter --model " + model + " --data " + data + " --out-latents " + path("a.npy") +
           " --out-elbo " + path("a.npy"),
       "--out-elbo '" + path("a.npy") + "' is the same file as --out-latents"},
      {"sample --model " + model + " --out " + model,
       "--out '" + model + "' is the same file as --model"},
      {"simulate --model " + model + " --out " + path("link.npz"), "is the same file as --model"},
      {"fixed-points " + model + " --out-npy " + model, "is the same file as model"}};
  for (const auto& [arguments, expected] : cases) expect_bad_input(arguments, expected);
  EXPECT_EQ(read_file(model), model_bytes);
  EXPECT_EQ(read_file(data), data_bytes);
  EXPECT_FALSE(std::filesystem::exists(path("a.npy")));
}

TEST_F(CliTest, OutputsIntoDevicesAndThroughLinks) {
  write_teacher_data(4, 10);
  // Every output of a run may be /dev/null; it stays the device it is.
  ASSERT_EQ(run("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                " --out-latents /dev/null --out-elbo /dev/null --out-particles /dev/null"),
            0)
      << output_;
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
  // An output through a symbolic link is written into the link's target.
  std::filesystem::create_directory(path("store"));
  std::filesystem::create_symlink(path("store/latents.npy"), path("latents.npy"));
  ASSERT_EQ(run("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                " --out-latents " + path("latents.npy") + " --out-elbo " + path("elbo.npy")),
            0)
      << output_;
  EXPECT_TRUE(std::filesystem::is_symlink(path("latents.npy")));
  EXPECT_EQ(io::read_npy(path("store/latents.npy")).shape.size(), 3u);
}

TEST_F(CliTest, CheckpointOnAFullDiskStillSavesTheModelAndAResumableCheckpoint) {
  if (!std::filesystem::is_character_file("/dev/full"))
    GTEST_SKIP() << "/dev/full is absent here: it stands in for a full disk";
  write_teacher_data(4, 10);
  const std::string fit = "fit --epochs 3 --hidden 8 --particles 4 --data " + path("data.npz");
  ASSERT_EQ(run(fit + " --out " + path("full.npz")), 0) << output_;
  // Every checkpoint write fails (ENOSPC): the run ends after epoch 1 with its model in --out and
  // its checkpoint beside it, and --resume from there finishes as the uninterrupted run did.
  EXPECT_EQ(run(fit + " --out " + path("m.npz") + " --checkpoint /dev/full --checkpoint-every 1"),
            1)
      << output_;
  EXPECT_NE(output_.find("training failed after epoch 1 of 3"), std::string::npos) << output_;
  EXPECT_NE(output_.find("saved the model to " + path("m.npz")), std::string::npos) << output_;
  const std::string saved = "saved a checkpoint of epoch 1 to " + folder_ + "/lrsmc-rescued-";
  const std::size_t at = output_.find(saved);
  ASSERT_NE(at, std::string::npos) << output_;
  const std::size_t start = at + saved.size() - (folder_.size() + 15);
  const std::string rescued = output_.substr(start, output_.find(';', start) - start);
  EXPECT_EQ(rescued.substr(rescued.size() - 9), "-full.npz") << rescued;
  EXPECT_NE(output_.find("; continue with --resume --checkpoint " + rescued), std::string::npos)
      << output_;
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/full"));
  ASSERT_EQ(run(fit + " --out " + path("m.npz") + " --resume --checkpoint " + rescued), 0)
      << output_;
  EXPECT_TRUE(load_model(path("m.npz")).parameters == load_model(path("full.npz")).parameters);
}

/// Starts `arguments` in the background, sends SIGINT after `delay` seconds, and returns the
/// shell's report: "status=<exit status> ms=<milliseconds from the signal to the exit>". A
/// command still running 5 s after the signal is killed (status 137).
std::string interrupt_after(const std::string& arguments, double delay, const std::string& env) {
  std::string output;
  testing::run_command("bash -c '" + env + " " + std::string(LRSMC_CLI_PATH) + " " + arguments +
                           " >/dev/null 2>&1 & pid=$!; sleep " + std::to_string(delay) +
                           "; start=$(date +%s%N); kill -INT $pid; for i in $(seq 50); do "
                           "kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
                           "kill -KILL $pid 2>/dev/null; wait $pid; status=$?; "
                           "echo status=$status ms=$(( ($(date +%s%N) - start) / 1000000 ))'",
                       output);
  return output;
}

TEST_F(CliTest, CtrlCStopsEveryCommandWithinASecondLeavingNoOutput) {
  // fixed-points with ten million numerical starts would run for minutes.
  ModelConfig config = oscillator_teacher().config;
  config.nonlinearity = Nonlinearity::tanh;
  save_model(path("tanh.npz"), Model::initialise(config, 1));
  std::string report =
      interrupt_after("fixed-points " + path("tanh.npz") + " --numerical 10000000 --out-json " +
                          path("fp.json") + " --out-npy " + path("fp.npy"),
                      1.0, "");
  EXPECT_NE(report.find("status=130"), std::string::npos) << report;
  const auto milliseconds = [](const std::string& text) {
    const std::size_t at = text.find("ms=");
    return at == std::string::npos ? 1e9 : std::stod(text.substr(at + 3));
  };
  EXPECT_LT(milliseconds(report), 1000) << report;
  EXPECT_FALSE(std::filesystem::exists(path("fp.json")));
  // filter writing into a FIFO that nobody reads waits in the middle of writing its output.
  write_teacher_data(4, 10);
  ASSERT_EQ(::mkfifo(path("pipe").c_str(), 0600), 0);
  std::filesystem::create_directory(path("tmp"));
  report = interrupt_after("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                               " --out-latents " + path("pipe") + " --out-elbo " + path("elbo.npy"),
                           1.0, "TMPDIR=" + path("tmp"));
  EXPECT_NE(report.find("status=130"), std::string::npos) << report;
  EXPECT_LT(milliseconds(report), 1000) << report;
  EXPECT_TRUE(std::filesystem::is_fifo(path("pipe")));
  EXPECT_TRUE(std::filesystem::is_empty(path("tmp"))) << "a temporary file was left behind";
  EXPECT_FALSE(std::filesystem::exists(path("elbo.npy")));
  // fit stops after the current epoch and keeps the model and a checkpoint to resume from,
  // without --checkpoint or --checkpoint-every.
  report = interrupt_after("fit --data " + path("data.npz") + " --hidden 8 --particles 4 " +
                               "--epochs 1000000 --out " + path("m.npz"),
                           1.0, "");
  EXPECT_NE(report.find("status=130"), std::string::npos) << report;
  EXPECT_LT(milliseconds(report), 1000) << report;
  EXPECT_EQ(load_model(path("m.npz")).config.num_hidden, 8);
  EXPECT_EQ(load_model(path("m.npz.checkpoint.npz")).parameters,
            load_model(path("m.npz")).parameters);
}

TEST_F(CliTest, FixedPointsAnnounceTheirWorkAndRefuseTooMuch) {
  ModelConfig config = oscillator_teacher().config;
  config.rank = 3;
  config.num_hidden = 2000;
  save_model(path("big.npz"), Model::initialise(config, 1));
  // Σ_{k ≤ 3} C(2000, k) = 1 + 2000 + 1999000 + 1331334000.
  expect_bad_input("fixed-points " + path("big.npz") + " --max-regions 1000000",
                   "rank 3, 2000 relu units give 1333335001 candidate regions to test; expected at "
                   "most --max-regions 1000000");
  EXPECT_FALSE(std::filesystem::exists("fixed_points.json"));
  save_model(path("teacher.npz"), oscillator_teacher());
  ASSERT_EQ(run("fixed-points " + path("teacher.npz") + " --out-json " + path("fp.json") +
                " --out-npy " + path("fp.npy")),
            0)
      << output_;
  EXPECT_NE(output_.find("lrsmc fixed-points: rank 2, 20 relu units: 211 candidate regions on cpu"),
            std::string::npos)
      << output_;
}

// fixed-points takes its model with --model, as every other command, or positionally.
TEST_F(CliTest, FixedPointsTakeTheModelEitherWay) {
  save_model(path("teacher.npz"), oscillator_teacher());
  ASSERT_EQ(run("fixed-points --model " + path("teacher.npz") + " --out-npy " + path("a.npy") +
                " --out-json " + path("a.json")),
            0)
      << output_;
  ASSERT_EQ(run("fixed-points " + path("teacher.npz") + " --out-npy " + path("b.npy") +
                " --out-json " + path("b.json")),
            0)
      << output_;
  EXPECT_EQ(io::read_npy(path("a.npy")).data, io::read_npy(path("b.npy")).data);
  EXPECT_FALSE(io::read_npy(path("a.npy")).data.empty());
}

TEST_F(CliTest, FixedPointsOfANetworkWithoutRecurrence) {
  // m = 0: no unit depends on z, the map is affine everywhere; one region to test.
  Model model = oscillator_teacher();
  model.set("m", std::vector<double>(model.get("m").size(), 0.0));
  save_model(path("flat.npz"), model);
  ASSERT_EQ(run("fixed-points " + path("flat.npz") + " --out-json " + path("fp.json") +
                " --out-npy " + path("fp.npy")),
            0)
      << output_;
  EXPECT_EQ(io::read_npy(path("fp.npy")).shape, (std::vector<std::int64_t>{1, 2}));
}

TEST_F(CliTest, DivergentDrawsAreRefusedNotWrittenAsInf) {
  // Identity units with large loadings: z grows by a factor of about 100 per step.
  Model model = oscillator_teacher();
  model.config.nonlinearity = Nonlinearity::identity;
  model.set("m", std::vector<double>(model.get("m").size(), 3.0));
  model.set("n", std::vector<double>(model.get("n").size(), 3.0));
  save_model(path("divergent.npz"), model);
  expect_bad_input(
      "sample --model " + path("divergent.npz") + " --trials 2 --steps 200 --out " + path("s.npz"),
      ": the draw diverges: latents at trial 0, step ");
  expect_bad_input("simulate --model " + path("divergent.npz") + " --trials 2 --steps 200 --out " +
                       path("s.npz"),
                   "this model's dynamics grow without bound; nothing written");
  EXPECT_FALSE(std::filesystem::exists(path("s.npz")));
}

TEST_F(CliTest, FixedPointsWarnWhenTheInputSwampsTheNetwork) {
  ModelConfig config = oscillator_teacher().config;
  config.nonlinearity = Nonlinearity::clipped_relu;
  config.num_inputs = 1;
  save_model(path("driven.npz"), Model::initialise(config, 1));
  const std::string command = "fixed-points " + path("driven.npz") + " --out-json " +
                              path("fp.json") + " --out-npy " + path("fp.npy") + " --input ";
  ASSERT_EQ(run(command + "1"), 0) << output_;
  EXPECT_EQ(output_.find("warning"), std::string::npos) << output_;
  ASSERT_EQ(run(command + "1e50"), 0) << output_;
  EXPECT_NE(output_.find("lrsmc: warning: the input makes currents of up to"), std::string::npos)
      << output_;
}

TEST_F(CliTest, NumericalFailureOnAbsurdDataIsBadInput) {
  save_model(path("teacher.npz"), oscillator_teacher());
  io::write_npy(path("absurd.npy"), Array({2, 10, 20}, std::vector<double>(400, 1e300)),
                io::StoredType::float64);
  expect_bad_input("filter --model " + path("teacher.npz") + " --data " + path("absurd.npy") +
                       " --out-latents " + path("l.npy") + " --out-elbo " + path("e.npy"),
                   "every log-weight of trial 0 at step 0 is ");
}

TEST_F(CliTest, FilterShowsProgressOnATerminalWithTheSameNumbers) {
  if (testing::run_command("script --version", output_) != 0)
    GTEST_SKIP() << "util-linux's script, which gives the command a terminal, is absent";
  write_teacher_data(40, 10);
  const std::string filter = std::string(LRSMC_CLI_PATH) + " filter --model " +
                             path("teacher.npz") + " --data " + path("data.npz") +
                             " --particles 50 --out-particles ";
  ASSERT_EQ(testing::run_command(filter + path("plain.npz") + " --out-latents " +
                                     path("plain.npy") + " --out-elbo " + path("plain_elbo.npy"),
                                 output_),
            0)
      << output_;
  EXPECT_EQ(output_.find("lrsmc filter: trial"), std::string::npos) << output_;
  ASSERT_EQ(testing::run_command("script -qec '" + filter + path("tty.npz") + " --out-latents " +
                                     path("tty.npy") + " --out-elbo " + path("tty_elbo.npy") +
                                     "' /dev/null",
                                 output_),
            0)
      << output_;
  EXPECT_NE(output_.find("lrsmc filter: trial 40/40"), std::string::npos) << output_;
  EXPECT_EQ(read_file(path("tty.npy")), read_file(path("plain.npy")));
  EXPECT_EQ(read_file(path("tty_elbo.npy")), read_file(path("plain_elbo.npy")));
  const auto plain = io::read_npz(path("plain.npz")), tty = io::read_npz(path("tty.npz"));
  for (const char* name : {"particles", "log_weights", "ancestors", "resampled"})
    EXPECT_TRUE(plain.arrays.at(name).data == tty.arrays.at(name).data) << name;
}

TEST_F(CliTest, FitKeepsTheBestModelStopsEarlyAndWritesItsHistory) {
  write_teacher_data(24, 20);
  // Adam at 0.5 overshoots: the held-out ELBO rises, collapses and recovers only in part.
  const std::string fit = "fit --data " + path("data.npz") +
                          " --hidden 12 --particles 8 --epochs 12 --lr 0.5 --lr-end 0.5 "
                          "--optimizer adam --held-out 0.25 --quiet --out ";
  ASSERT_EQ(run(fit + path("best.npz") + " --keep best --patience 2"), 0) << output_;
  EXPECT_NE(output_.find("lrsmc: early stopping after epoch"), std::string::npos) << output_;
  EXPECT_NE(output_.find("kept the model of epoch"), std::string::npos) << output_;
  const std::string history = read_file(path("best.npz.history.csv"));
  EXPECT_EQ(history.rfind("epoch,train_elbo,held_out_elbo,learning_rate,elapsed_seconds\n1,", 0),
            0u)
      << history;
  expect_bad_input(fit + path("x.npz") + " --keep first", "--keep is not recognised; got 'first'");
  expect_bad_input(
      "fit --data " + path("data.npz") + " --epochs 2 --keep best --out " + path("x.npz"),
      "need a held-out set");
}

// A preset gives the options the command line does not; explicit options win, and with --init
// the model file's architecture does. Each preset's options exist (an unknown name would fail
// every run below), and the header shows what a run uses.
TEST_F(CliTest, PresetsSetTheOptionsNotGivenExplicitly) {
  write_teacher_data(20, 10);
  const std::string fit = "fit --data " + path("data.npz") + " --epochs 1 --out ";
  ASSERT_EQ(run(fit + path("small.npz") + " --preset small"), 0) << output_;
  EXPECT_NE(output_.find("lrsmc fit: preset small"), std::string::npos) << output_;
  EXPECT_NE(output_.find("rank 2, 20 units, relu; 16 particles"), std::string::npos) << output_;
  EXPECT_NE(output_.find("adam, learning rate 0.04 -> "), std::string::npos) << output_;
  EXPECT_NE(output_.find("held-out ELBO"), std::string::npos) << output_;  // held-out 0.2
  EXPECT_EQ(output_.find("a short run"), std::string::npos) << output_;

  ASSERT_EQ(run(fit + path("rank3.npz") + " --preset small --rank 3 --particles 8 --lr 0.01"), 0)
      << output_;
  EXPECT_NE(output_.find("rank 3, 20 units, relu; 8 particles"), std::string::npos) << output_;
  EXPECT_NE(output_.find("adam, learning rate 0.01 -> "), std::string::npos) << output_;

  ASSERT_EQ(run(fit + path("from_init.npz") + " --preset small --init " + path("rank3.npz")), 0)
      << output_;
  EXPECT_NE(output_.find("rank 3, 20 units, relu; 16 particles"), std::string::npos) << output_;

  ASSERT_EQ(run(fit + path("eeg.npz") + " --preset eeg --hidden 8"), 0) << output_;
  EXPECT_NE(output_.find("rank 3, 8 units, clipped_relu; 10 particles"), std::string::npos)
      << output_;
  EXPECT_NE(output_.find("radam, learning rate 0.001 -> 1e-06"), std::string::npos) << output_;

  // Counts for the Poisson read-out of the spikes preset.
  std::vector<double> counts(6 * 10 * 20);
  for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = double(i * 7 % 5);
  io::write_npy(path("counts.npy"), Array({6, 10, 20}, counts));
  ASSERT_EQ(run("fit --data " + path("counts.npy") + " --epochs 1 --hidden 8 --particles 4 " +
                "--batch-size 4 --preset spikes --out " + path("spikes.npz")),
            0)
      << output_;
  // At its learning rate "auto" trains an encoder for the counts.
  EXPECT_NE(output_.find("rank 3, 8 units, clipped_relu; 4 particles, encoder proposal"),
            std::string::npos)
      << output_;
  EXPECT_NE(output_.find("radam, learning rate 0.001 -> 1e-05"), std::string::npos) << output_;

  EXPECT_EQ(run(fit + path("x.npz") + " --preset bogus"), 2) << output_;
  EXPECT_NE(output_.find("bogus not in {eeg,spikes,small}"), std::string::npos) << output_;
  EXPECT_FALSE(std::filesystem::exists(path("x.npz")));
}

// Without a preset, a run far shorter than its learning rate's schedule says so and names the
// preset for short budgets.
TEST_F(CliTest, ShortRunWithoutPresetIsAnnounced) {
  write_teacher_data(20, 10);
  ASSERT_EQ(run("fit --data " + path("data.npz") + " --epochs 1 --hidden 8 --out " +
                path("m.npz")),
            0)
      << output_;
  EXPECT_NE(output_.find("lrsmc: warning: a short run: 2 optimizer steps at learning rate 0.001"),
            std::string::npos)
      << output_;
  EXPECT_NE(output_.find("1 epochs of 2 steps, radam, learning rate 0.001 -> 0.001 (--lr-end 0: "
                         "automatic)"),
            std::string::npos)
      << output_;
}

TEST_F(CliTest, DemoChecksItsOptionsBeforeTraining) {
  expect_bad_input("demo --device cpu --eval-particles 0 --out-dir " + path("demo"),
                   "--eval-particles: particles must be at least 1; got 0");
  EXPECT_FALSE(std::filesystem::exists(path("demo")));
}

TEST_F(CliTest, CountsAndSeedsAreRangeChecked) {
  save_model(path("teacher.npz"), oscillator_teacher());
  const std::string sample = "sample --model " + path("teacher.npz") + " --out " + path("s.npz");
  expect_bad_input(sample + " --steps -5 --burn-in 10", "--steps must be at least 1; got -5");
  expect_bad_input(sample + " --steps 0", "--steps must be at least 1; got 0");
  expect_bad_input(sample + " --trials 0", "--trials must be at least 1; got 0");
  expect_bad_input(sample + " --steps 2147483647 --burn-in 10", "is too long");
  expect_bad_input(sample + " --trials 10000000", "--trials 10000000 of 100 steps needs about");
  expect_bad_input(
      "simulate --model " + path("teacher.npz") + " --trials 10000000 --out " + path("s.npz"),
      "needs about");
  EXPECT_FALSE(std::filesystem::exists(path("s.npz")));
  for (const char* seed : {"-1", "18446744073709551616", "1e3", "3.5"}) {
    SCOPED_TRACE(seed);
    EXPECT_EQ(run(sample + " --seed " + seed), 2) << output_;
    EXPECT_NE(output_.find("--seed: expected an integer from 0 to 18446744073709551615"),
              std::string::npos)
        << output_;
  }
  EXPECT_EQ(run(sample + " --trials 1 --steps 2 --seed 18446744073709551615"), 0) << output_;
  expect_bad_input("fixed-points " + path("teacher.npz") + " --numerical -1",
                   "--numerical is out of range; got -1");
}

TEST_F(CliTest, TrainingLargerThanMemoryIsRefusedBeforeTheFirstEpoch) {
  write_teacher_data(4, 1000);
  const std::string fit =
      "fit --epochs 2 --hidden 8 --data " + path("data.npz") + " --out " + path("m.npz");
  expect_bad_input(fit + " --windows-per-epoch 2000000000",
                   "windows per epoch is out of range; got 2000000000");
  expect_bad_input(fit + " --particles 100000000",
                   "training (--batch-size 10, --particles 100000000) needs about");
  expect_bad_input(fit + " --held-out 0.5 --eval-particles 100000000",
                   "the held-out evaluation (--eval-particles 100000000, 2 trials of 1000 steps) "
                   "needs about");
  EXPECT_EQ(output_.find("epoch 1"), std::string::npos) << output_;
  EXPECT_FALSE(std::filesystem::exists(path("m.npz")));
}

TEST_F(CliTest, UnwritableOutputsAreRefusedBeforeTraining) {
  write_teacher_data(4, 10);
  const std::string fit = "fit --epochs 200 --hidden 8 --data " + path("data.npz");
  expect_bad_input(fit + " --out " + path("no/such/dir/m.npz"),
                   "--out '" + path("no/such/dir/m.npz") + "': the folder '" + path("no/such/dir") +
                       "' does not exist");
  EXPECT_EQ(output_.find("epoch"), std::string::npos) << "training started: " << output_;
  expect_bad_input(fit + " --out " + path("m.npz") + " --checkpoint " + path("none/c.npz"),
                   "--checkpoint '" + path("none/c.npz") + "': the folder");
  EXPECT_EQ(output_.find("epoch"), std::string::npos) << "training started: " << output_;
  expect_bad_input(fit + " --out " + folder_, "--out '" + folder_ + "': it is a folder");
  expect_bad_input("filter --model " + path("teacher.npz") + " --data " + path("data.npz") +
                       " --out-particles " + path("none/p.npz"),
                   "--out-particles '" + path("none/p.npz") + "': the folder");
  EXPECT_FALSE(std::filesystem::exists(path("m.npz")));
}

TEST_F(CliTest, FixedPointsOfTheTeacher) {
  save_model(path("teacher.npz"), oscillator_teacher());
  ASSERT_EQ(run("fixed-points " + path("teacher.npz") + " --out-json " + path("fp.json") +
                " --out-npy " + path("fp.npy")),
            0)
      << output_;
  // The oscillator's only fixed point is the unstable spiral at the origin inside its cycle.
  EXPECT_NE(read_file(path("fp.json")).find("unstable_spiral"), std::string::npos);
  EXPECT_EQ(io::read_npy(path("fp.npy")).shape, (std::vector<std::int64_t>{1, 2}));
  ModelConfig config = oscillator_teacher().config;
  config.nonlinearity = Nonlinearity::tanh;
  save_model(path("tanh.npz"), Model::initialise(config, 1));
  expect_bad_input("fixed-points " + path("tanh.npz"), "numerical");
  ASSERT_EQ(run("fixed-points " + path("tanh.npz") + " --numerical 50 --out-json " +
                path("fp2.json") + " --out-npy " + path("fp2.npy")),
            0)
      << output_;
}

// The README's headline: the demo's student, fitted with the demo's defaults, comes within 2%
// of the teacher's held-out ELBO (on the CPU: the claim is about the fit, not the device).
TEST_F(CliTest, DemoStudentComesWithinTwoPercentOfTheTeacher) {
  ASSERT_EQ(run("demo --device cpu --quiet --out-dir " + path("demo")), 0) << output_;
  EXPECT_NE(output_.find("(within 2%)"), std::string::npos) << output_;
  for (const char* file : {"teacher.npz", "student.npz", "data.npz", "summary.json"})
    EXPECT_TRUE(std::filesystem::exists(path("demo/") + file)) << file;
  const auto summary = nlohmann::json::parse(read_file(path("demo/summary.json")));
  const double teacher = summary.at("teacher_held_out_elbo").get<double>();
  const double student = summary.at("student_held_out_elbo").get<double>();
  EXPECT_LE(std::fabs(teacher - student) / std::fabs(teacher), 0.02)
      << "teacher " << teacher << ", student " << student;
  EXPECT_DOUBLE_EQ(summary.at("relative_gap").get<double>(),
                   (teacher - student) / std::fabs(teacher));
}

// --device auto runs a model the GPU cannot run (rank above the kernels' 16) on the CPU and says
// so; --device cuda refuses it with the reason. Without a GPU auto is the CPU anyway.
TEST_F(CliTest, AutoFallsBackToTheCpuForModelsTheGpuCannotRun) {
  write_teacher_data(4, 6);
  ASSERT_EQ(run("fit --data " + path("data.npz") +
                " --field observations --rank 17 --hidden 24 "
                "--epochs 1 --particles 4 --quiet --out " +
                path("rank17.npz")),
            0)
      << output_;
  const bool gpu = output_.find("device auto:") != std::string::npos;
  if (gpu) {
    EXPECT_NE(output_.find("cannot run this model (the CUDA kernels run ranks up to 16; got rank "
                           "17); running on the CPU"),
              std::string::npos)
        << output_;
    expect_bad_input("filter --model " + path("rank17.npz") + " --data " + path("data.npz") +
                         " --field observations --device cuda --out-latents " + path("z.npy") +
                         " --out-elbo " + path("elbo.npy"),
                     "the CUDA kernels run ranks up to 16; got rank 17");
  }
}

}  // namespace
}  // namespace lrsmc
