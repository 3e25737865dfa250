// Model files and checkpoints read from untrusted text: the config's JSON is bounded in size and
// nesting, quoted only in excerpts, every field is required, integers never wrap, and a
// checkpoint's training state is range-checked and blamed on the entry at fault.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/params.hpp"
#include "lrsmc/trainer.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

/// Messages quote untrusted text in excerpts only; no message needs more than this.
constexpr std::size_t longest_message = 600;

class ModelFiles : public ::testing::Test {
 protected:
  void SetUp() override { folder_ = testing::make_temp_dir("lrsmc-model-files"); }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  /// A valid model's arrays with `config` as its config entry.
  std::string write_model(const std::string& config) {
    const Model model = oscillator_teacher();
    std::map<std::string, Array> arrays;
    const ParameterLayout layout = model.layout();
    for (const auto& block : layout.blocks())
      arrays[block.name] = Array(block.shape, model.get(block.name));
    const std::string path = folder_ + "/model.npz";
    io::write_npz(path, arrays, {{"config", config}});
    return path;
  }

  /// The message of the InvalidInput that loading `path` throws ("" when it loads).
  static std::string load_error(const std::string& path) {
    try {
      (void)load_model(path);
    } catch (const InvalidInput& error) {
      return error.what();
    }
    return "";
  }

  static nlohmann::ordered_json teacher_config() {
    return nlohmann::ordered_json::parse(config_to_json(oscillator_teacher().config));
  }

  std::string folder_;
};

TEST_F(ModelFiles, DeeplyNestedConfigIsRefusedWithoutOverflowingTheStack) {
  // Within the config's length limit, but nested far deeper than any config.
  const int depth = 32000;
  for (const std::string& config :
       {std::string(depth, '[') + std::string(depth, ']'), std::string(depth, '['),
        "{\"rank\": " + std::string(depth, '[') + std::string(depth, ']') + "}"}) {
    const std::string message = load_error(write_model(config));
    EXPECT_NE(message.find("nested too deeply"), std::string::npos) << message.substr(0, 300);
    EXPECT_LT(message.size(), longest_message);
  }
  // 80000 levels are refused by their declared length alone, before they are decoded.
  const std::string message =
      load_error(write_model(std::string(80000, '[') + std::string(80000, ']')));
  EXPECT_NE(message.find("entry 'config': text of 640000 bytes declared; expected at most"),
            std::string::npos)
      << message.substr(0, 300);
}

TEST_F(ModelFiles, ConfigIsCheckedBeforeAnyParameterIsDecoded) {
  const std::string path = write_model(teacher_config().dump());
  io::NpzContents contents = io::read_npz(path);
  contents.strings["config"] = "{\"rank\": \"two\"}";
  // A parameter entry far larger than the configuration allows (8 MB of zeros).
  contents.arrays["m"] = Array({1'000'000}, std::vector<double>(1'000'000, 0.0));
  io::write_npz(path, contents.arrays, contents.strings);
  std::string message = load_error(path);
  EXPECT_NE(message.find("config"), std::string::npos) << message;
  EXPECT_EQ(message.find("entry 'm'"), std::string::npos) << message;
  // With a valid config the oversized entry is refused by its declared size, not decoded.
  contents.strings["config"] = config_to_json(oscillator_teacher().config);
  io::write_npz(path, contents.arrays, contents.strings);
  message = load_error(path);
  EXPECT_NE(message.find("entry 'm': shape (1000000,) declares 1000000 values; expected at most"),
            std::string::npos)
      << message;
}

TEST_F(ModelFiles, LongValuesAreQuotedInExcerpts) {
  auto config = teacher_config();
  config["rank"] = std::string(10000, '7');
  std::string message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("'rank' must be an integer"), std::string::npos) << message;
  EXPECT_NE(message.find("(10002 bytes)"), std::string::npos) << message;
  EXPECT_LT(message.size(), longest_message);

  config = teacher_config();
  config["nonlinearity"] = std::string(10000, 'x');
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("'nonlinearity'"), std::string::npos) << message;
  EXPECT_LT(message.size(), longest_message);

  // A config far longer than any model's is refused by the size the archive declares for it.
  config = teacher_config();
  config["rank"] = std::string(8 << 20, '7');
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("entry 'config': the archive declares"), std::string::npos) << message;
  EXPECT_LT(message.size(), longest_message);
}

TEST_F(ModelFiles, IntegersOutsideTheirRangeAreRefusedNotWrapped) {
  for (const std::int64_t value : {std::int64_t{4294967298}, std::int64_t{-4294967294}}) {
    auto config = teacher_config();
    config["rank"] = value;  // wraps to rank 2 through a 32-bit conversion
    const std::string message = load_error(write_model(config.dump()));
    EXPECT_NE(message.find("'rank' is out of range"), std::string::npos) << message;
  }
  auto config = teacher_config();
  config["hidden"] = std::numeric_limits<std::uint64_t>::max();
  EXPECT_NE(load_error(write_model(config.dump())).find("'hidden' is out of range"),
            std::string::npos);
}

TEST_F(ModelFiles, EveryConfigFieldIsRequired) {
  const auto complete = teacher_config();
  ASSERT_EQ(load_error(write_model(complete.dump())), "");
  for (const auto& [key, value] : complete.items()) {
    if (key == "readout_from") continue;  // optional, below
    auto config = complete;
    config.erase(key);
    const std::string message = load_error(write_model(config.dump()));
    EXPECT_NE(message.find("config field '" + key + "' is missing"), std::string::npos)
        << key << ": " << message;
  }
}

// A config without readout_from reads as the read-out of the latent state, z.
TEST_F(ModelFiles, AMissingReadoutFromMeansTheLatentState) {
  auto config = teacher_config();
  ASSERT_EQ(config["readout_from"], "z");
  config.erase("readout_from");
  const std::string path = write_model(config.dump());
  ASSERT_EQ(load_error(path), "");
  EXPECT_EQ(load_model(path).config.readout_from, ReadoutFrom::z);
}

TEST_F(ModelFiles, EveryReadoutRoundTripsWithItsDocumentedEntries) {
  for (const ReadoutFrom readout_from :
       {ReadoutFrom::z, ReadoutFrom::z_and_v, ReadoutFrom::currents, ReadoutFrom::rates}) {
    const ModelConfig config =
        testing::with_readout(testing::small_config(Nonlinearity::tanh, NoiseType::full,
                                                    Observation::poisson, Link::softplus, 2),
                              readout_from);
    const Model model = testing::random_model(config, 5);
    const std::string path = folder_ + "/readout.npz";
    save_model(path, model);
    const Model loaded = load_model(path);
    EXPECT_EQ(loaded.config.readout_from, readout_from);
    EXPECT_EQ(loaded.parameters, model.parameters);
    const io::NpzContents contents = io::read_npz(path);
    const bool one_to_one =
        readout_from == ReadoutFrom::currents || readout_from == ReadoutFrom::rates;
    EXPECT_EQ(contents.arrays.count("readout_gain"), one_to_one ? 1u : 0u);
    EXPECT_EQ(contents.arrays.count("readout_weight"), one_to_one ? 0u : 1u);
    if (readout_from == ReadoutFrom::z_and_v) {  // (D_u + R, D), the input rows first
      EXPECT_EQ(contents.arrays.at("readout_weight").shape,
                (std::vector<std::int64_t>{2 + config.rank, config.num_channels}));
    }
  }
  // Gains start at one.
  const ModelConfig config = testing::with_readout(
      testing::small_config(Nonlinearity::relu, NoiseType::diag, Observation::gaussian,
                            Link::identity),
      ReadoutFrom::rates);
  for (const double gain : Model::initialise(config, 1).get("readout_gain")) EXPECT_EQ(gain, 1.0);
}

TEST_F(ModelFiles, ReadoutsThatDoNotFitTheModelAreRefused) {
  auto config = teacher_config();  // no inputs
  config["readout_from"] = "rates";
  config["hidden"] = config["channels"].get<int>() + 1;
  std::string message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("readout_from 'rates' reads each unit one to one, so channels must "
                         "equal hidden; got channels"),
            std::string::npos)
      << message;
  config["readout_from"] = "z_and_v";
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("readout_from 'z_and_v' reads the inputs, so the model needs inputs"),
            std::string::npos)
      << message;
  config["readout_from"] = "spikes";
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("config field 'readout_from' is not recognised; got 'spikes', expected "
                         "one of z, z_and_v, currents, rates"),
            std::string::npos)
      << message;
  // The optimal proposal needs Bᵀz.
  const ModelConfig rates = testing::with_readout(
      testing::small_config(Nonlinearity::relu, NoiseType::diag, Observation::gaussian,
                            Link::identity),
      ReadoutFrom::currents);
  EXPECT_EQ(default_proposal(rates), Proposal::bootstrap);
  FilterOptions options;
  options.proposal = Proposal::optimal;
  try {
    validate(options, rates);
    ADD_FAILURE() << "the optimal proposal ran with a one-to-one read-out";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("got readout_from 'currents', expected 'z'"),
              std::string::npos)
        << error.what();
  }
}

/// A model with an encoder: the teacher's configuration and a small encoder.
Model model_with_encoder() {
  ModelConfig config = oscillator_teacher().config;
  config.encoder = testing::small_encoder({5, 1}, {4});
  config.encoder->activation = EncoderActivation::leaky_relu;
  config.encoder->padding = EncoderPadding::acausal;
  config.encoder->padding_mode = PaddingMode::replicate;
  config.encoder->init_scale = 0.25;
  return Model::initialise(config, 3);
}

TEST_F(ModelFiles, EncoderConfigAndParametersRoundTrip) {
  const Model model = model_with_encoder();
  const std::string path = folder_ + "/encoder.npz";
  save_model(path, model);
  const Model loaded = load_model(path);
  ASSERT_TRUE(loaded.config.encoder.has_value());
  const EncoderConfig& encoder = *loaded.config.encoder;
  EXPECT_EQ(encoder.kernels, (std::vector<int>{5, 1}));
  EXPECT_EQ(encoder.channels, (std::vector<int>{4}));
  EXPECT_EQ(encoder.activation, EncoderActivation::leaky_relu);
  EXPECT_EQ(encoder.padding, EncoderPadding::acausal);
  EXPECT_EQ(encoder.padding_mode, PaddingMode::replicate);
  EXPECT_EQ(encoder.init_scale, 0.25);
  EXPECT_FALSE(encoder.constant_variance);
  EXPECT_EQ(loaded.parameters, model.parameters);
  // Every encoder block is an entry of the file, named as documented.
  const io::NpzContents contents = io::read_npz(path);
  for (const char* name : {"encoder_conv1_weight", "encoder_conv1_bias", "encoder_mean_weight",
                           "encoder_mean_bias", "encoder_log_variance_weight",
                           "encoder_log_variance_bias"})
    EXPECT_EQ(contents.arrays.count(name), 1u) << name;
  // The log-variance head starts at 2 ln(init_scale).
  for (const double bias : model.get("encoder_log_variance_bias"))
    EXPECT_NEAR(bias, 2 * std::log(0.25), 1.0 / std::sqrt(4.0));
}

TEST_F(ModelFiles, MissingEncoderEntriesAndFieldsAreNamed) {
  const Model model = model_with_encoder();
  const std::string path = folder_ + "/encoder.npz";
  save_model(path, model);
  io::NpzContents contents = io::read_npz(path);
  contents.arrays.erase("encoder_mean_weight");
  io::write_npz(path, contents.arrays, contents.strings);
  std::string message = load_error(path);
  EXPECT_NE(message.find("entry 'encoder_mean_weight' is missing; expected an array of shape "
                         "(2, 4, 1)"),
            std::string::npos)
      << message;

  const auto complete = nlohmann::ordered_json::parse(config_to_json(model.config));
  for (const auto& [key, value] : complete["encoder"].items()) {
    auto config = complete;
    config["encoder"].erase(key);
    message = load_error(write_model(config.dump()));
    EXPECT_NE(message.find("config field 'encoder': field '" + key + "' is missing"),
              std::string::npos)
        << key << ": " << message;
  }
  auto config = complete;
  config["encoder"]["padding"] = "sideways";
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("sideways"), std::string::npos) << message;
  config = complete;
  config["encoder"]["channels"] = nlohmann::json::array({0});
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("encoder channel count 1 is out of range; got 0"), std::string::npos)
      << message;
  config = complete;
  config["encoder"]["kernels"] = nlohmann::json::array();
  message = load_error(write_model(config.dump()));
  EXPECT_NE(message.find("encoder kernels are empty"), std::string::npos) << message;
}

/// A checkpoint of a short run, whose training entry and moments the tests then corrupt.
class Checkpoints : public ModelFiles {
 protected:
  void SetUp() override {
    ModelFiles::SetUp();
    const Model teacher = oscillator_teacher();
    auto backend = make_backend(BackendKind::cpu);
    const auto samples = backend->sample(teacher, 8, 10, {}, 5);
    data_ = dataset_from_array(Array({8, 10, teacher.config.num_channels}, samples.observations),
                               DataLayout::trials_time_channels, "teacher");
    options_.epochs = 2;
    options_.batch_size = 8;
    options_.filter.num_particles = 4;
    options_.checkpoint_path = folder_ + "/run.checkpoint.npz";
    start_ = Model::initialise(teacher.config, 9);
    ASSERT_TRUE(Trainer(*backend, options_).fit(start_, data_, Dataset{}).completed);
    contents_ = io::read_npz(options_.checkpoint_path);
  }

  /// Rewrites the checkpoint with `edit` applied to its contents; returns the resume error.
  template <typename Edit>
  std::string resume_error(Edit edit) {
    io::NpzContents contents = contents_;
    edit(contents);
    io::write_npz(options_.checkpoint_path, contents.arrays, contents.strings);
    return resume_error_with(options_, data_);
  }

  /// The error of resuming the untouched checkpoint with other options or data ("" if none).
  std::string resume_error_with(const TrainingOptions& options, const Dataset& data) {
    auto backend = make_backend(BackendKind::cpu);
    try {
      (void)Trainer(*backend, options).fit(start_, data, Dataset{}, {}, options_.checkpoint_path);
    } catch (const InvalidInput& error) {
      return error.what();
    }
    return "";
  }

  std::string with_training_field(const std::string& field, const nlohmann::json& value) {
    return resume_error([&](io::NpzContents& contents) {
      auto training = nlohmann::json::parse(contents.strings.at("checkpoint_training"));
      training[field] = value;
      contents.strings["checkpoint_training"] = training.dump();
    });
  }

  Dataset data_;
  TrainingOptions options_;
  Model start_;
  io::NpzContents contents_;
};

TEST_F(Checkpoints, UntouchedCheckpointResumes) {
  EXPECT_EQ(resume_error([](io::NpzContents&) {}), "");
}

TEST_F(Checkpoints, EpochThatWouldWrapIsRefused) {
  const std::string message = with_training_field("epoch", std::int64_t{1} << 40);
  EXPECT_NE(message.find("'epoch' is out of range"), std::string::npos) << message;
}

TEST_F(Checkpoints, NonPositiveLearningRateIsRefused) {
  for (const double rate : {-1e-3, 0.0}) {
    const std::string message = with_training_field("learning_rate", rate);
    EXPECT_NE(message.find("'learning_rate' is out of range"), std::string::npos) << message;
  }
}

TEST_F(Checkpoints, AnotherRunIsRefusedNamingTheOptionAndBothValues) {
  struct Change {
    const char* expected;
    void (*apply)(TrainingOptions&);
  };
  const Change changes[] = {
      {"--epochs 2, this run has 3", [](TrainingOptions& o) { o.epochs = 3; }},
      {"--particles 4, this run has 5", [](TrainingOptions& o) { o.filter.num_particles = 5; }},
      {"--batch-size 8, this run has 4", [](TrainingOptions& o) { o.batch_size = 4; }},
      {"--lr 0.001, this run has 0.002", [](TrainingOptions& o) { o.learning_rate = 2e-3; }},
      {"--clip 0.0, this run has 1.0", [](TrainingOptions& o) { o.gradient_clip = 1; }},
      {"--proposal \"optimal\", this run has \"bootstrap\"",
       [](TrainingOptions& o) { o.filter.proposal = Proposal::bootstrap; }},
      {"--held-out 0.0, this run has 0.25", [](TrainingOptions& o) { o.held_out_fraction = 0.25; }},
      {"--seed 0, this run has 18446744073709551615",
       [](TrainingOptions& o) { o.seed = ~std::uint64_t{0}; }},
      {"--optimizer \"radam\", this run has \"adam\"",
       [](TrainingOptions& o) { o.optimizer = Optimizer::adam; }},
  };
  for (const Change& change : changes) {
    TrainingOptions options = options_;
    change.apply(options);
    // --held-out changes the data the run trains on as well as the option.
    const std::string message = resume_error_with(options, data_);
    EXPECT_NE(message.find("checkpoint belongs to another run: it was made with " +
                           std::string(change.expected)),
              std::string::npos)
        << message;
  }
  // Where checkpoints go does not change the run.
  TrainingOptions moved = options_;
  moved.checkpoint_every = 1;
  EXPECT_EQ(resume_error_with(moved, data_), "");
  // The same shape with other values, and another shape.
  Dataset other = data_;
  other.observations[7] += 1e-9;
  EXPECT_NE(resume_error_with(options_, other).find("it was made with trial digest"),
            std::string::npos);
  Dataset fewer = data_;
  fewer.num_trials = 7;
  fewer.observations.resize(fewer.observations.size() / 8 * 7);
  EXPECT_NE(resume_error_with(options_, fewer)
                .find("training data \"8 trials, 10 steps, 20 channels\", this run has \"7 trials"),
            std::string::npos)
      << resume_error_with(options_, fewer);
}

// A checkpoint of an lrsmc whose run definition had a "data digest" (a digest of every value
// in order, before batches were drawn in ascending trial order) is refused as such.
TEST_F(Checkpoints, CheckpointOfAnEarlierDigestIsRefusedAsSuch) {
  const std::string message = resume_error([](io::NpzContents& contents) {
    auto training = nlohmann::json::parse(contents.strings.at("checkpoint_training"));
    training["run"]["data digest"] = training["run"]["trial digest"];
    training["run"].erase("trial digest");
    contents.strings["checkpoint_training"] = training.dump();
  });
  EXPECT_NE(message.find("the checkpoint was written by an earlier lrsmc"), std::string::npos)
      << message;
}

TEST_F(Checkpoints, RunDefinitionThatIsNotAnObjectIsRefused) {
  const std::string message = with_training_field("run", -1);
  EXPECT_NE(message.find("field 'run' must be a JSON object"), std::string::npos) << message;
}

TEST_F(Checkpoints, NonFiniteMomentsAreBlamedOnTheirEntry) {
  for (const char* name : {"checkpoint_first_moment", "checkpoint_second_moment"}) {
    const std::string message = resume_error([&](io::NpzContents& contents) {
      contents.arrays.at(name).data[3] = std::numeric_limits<double>::quiet_NaN();
    });
    EXPECT_NE(message.find(std::string("entry '") + name + "' is not finite"), std::string::npos)
        << message;
    EXPECT_EQ(message.find("parameter 'm'"), std::string::npos) << message;
  }
}

TEST_F(Checkpoints, NestedTrainingStateIsRefused) {
  const std::string message = resume_error([](io::NpzContents& contents) {
    contents.strings["checkpoint_training"] = std::string(1000, '[') + std::string(1000, ']');
  });
  EXPECT_NE(message.find("nested too deeply"), std::string::npos) << message.substr(0, 300);
}

}  // namespace
}  // namespace lrsmc
