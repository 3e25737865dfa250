// Robustness of the file readers and the command line on damaged and hostile files: crafted
// cases (crafted_cases.hpp) and seeded random mutations (mutator.hpp) of valid files written
// here. Every reader must either succeed or throw an lrsmc::Error with a bounded message, never
// crash, abort or throw anything else, and never modify its input; the command line must exit
// with 0 or 2 and an "lrsmc: error:" line, never a signal or raw C++ exception text.
//
// The normal run is a fixed number of seeded cases (a few seconds). Release checks run more:
//   LRSMC_ROBUSTNESS_CASES=100000 build/tests/lrsmc_tests --gtest_filter='Robustness*'
// (random mutations in all; the command-line sample grows with it), and LRSMC_ROBUSTNESS_SEED
// picks another seed. A failure names the case, or the seed and edits that reproduce it.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <typeinfo>

#include "lrsmc/demo.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/params.hpp"
#include "robustness/crafted_cases.hpp"
#include "robustness/mutator.hpp"
#include "robustness/readers.hpp"
#include "support/test_models.hpp"

namespace lrsmc {
namespace {

using robustness::all_readers;
using robustness::call_reader;
using robustness::message_limit;
using robustness::Mutator;
using robustness::Reader;
using robustness::reader_name;

std::uint64_t environment_number(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  return text != nullptr && *text != '\0' ? std::strtoull(text, nullptr, 10) : fallback;
}

/// Random mutations in all (LRSMC_ROBUSTNESS_CASES, default 2000).
std::uint64_t mutation_count() { return environment_number("LRSMC_ROBUSTNESS_CASES", 2000); }
std::uint64_t base_seed() { return environment_number("LRSMC_ROBUSTNESS_SEED", 1); }

std::string read_bytes(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  std::stringstream buffer;
  buffer << stream.rdbuf();
  return buffer.str();
}

/// A file's contents and modification time, to check that reading left it alone.
struct Snapshot {
  std::string bytes;
  std::int64_t modified_ns = 0;
  bool operator==(const Snapshot& other) const {
    return bytes == other.bytes && modified_ns == other.modified_ns;
  }
};

Snapshot snapshot(const std::string& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return {};
  Snapshot result;
  result.modified_ns = std::int64_t{status.st_mtim.tv_sec} * 1000000000 + status.st_mtim.tv_nsec;
  if (S_ISREG(status.st_mode)) result.bytes = read_bytes(path);
  return result;
}

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override { folder_ = testing::make_temp_dir("lrsmc-robustness"); }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string path(const std::string& name) const { return folder_ + "/" + name; }

  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string file = path(name);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    return file;
  }

  /// Reads `file` with `reader`: success, or an lrsmc::Error with a bounded message; the file
  /// unchanged either way.
  static void expect_clean(Reader reader, const std::string& file, const std::string& what,
                           std::uint64_t variant = 0) {
    const Snapshot before = snapshot(file);
    try {
      call_reader(reader, file, variant);
    } catch (const Error& error) {
      const std::string message = error.what();
      EXPECT_LE(message.size(), message_limit)
          << what << ": " << reader_name(reader) << " gave a message of " << message.size()
          << " characters: " << detail::excerpt(message, 300);
      EXPECT_FALSE(message.empty()) << what << ": " << reader_name(reader);
    } catch (const std::exception& error) {
      ADD_FAILURE() << what << ": " << reader_name(reader) << " threw " << typeid(error).name()
                    << ", not an lrsmc::Error: " << detail::excerpt(error.what(), 300);
    } catch (...) {
      ADD_FAILURE() << what << ": " << reader_name(reader) << " threw a non-exception";
    }
    EXPECT_TRUE(snapshot(file) == before) << what << ": " << reader_name(reader)
                                          << " modified its input";
  }

  /// Every reader on `file`, the dataset reader in each of its four layouts.
  static void expect_all_clean(const std::string& file, const std::string& what) {
    for (const Reader reader : all_readers) {
      const std::uint64_t variants = reader == Reader::dataset ? 4 : 1;
      for (std::uint64_t variant = 0; variant < variants; ++variant) {
        expect_clean(reader, file, what, variant);
      }
    }
  }

  /// Runs the command line on `arguments`: a clean success, or exit code 2 with an
  /// "lrsmc: error:" line and no C++ internals (a model whose extreme but finite parameters make
  /// the arithmetic fail is bad input too); `inputs` unchanged.
  void expect_clean_command(const std::string& arguments, const std::vector<std::string>& inputs,
                            const std::string& what) {
    SCOPED_TRACE(what + ": lrsmc " + arguments);
    std::vector<Snapshot> before;
    for (const auto& input : inputs) before.push_back(snapshot(input));
    std::string output;
    // In the test's folder: no default output name lands anywhere else.
    const int status = testing::run_command(
        "cd '" + folder_ + "' && " + std::string(LRSMC_CLI_PATH) + " " + arguments, output);
    EXPECT_TRUE(status == 0 || status == 2)
        << "exit code " << status << "\n" << output;
    if (status != 0) {
      EXPECT_TRUE(output.rfind("lrsmc: error:", 0) == 0 ||
                  output.find("\nlrsmc: error:") != std::string::npos)
          << output;
    }
    for (const char* internal : {"std::", "basic_string", "terminate called", "internal error",
                                 "Sanitizer", "runtime error"}) {
      EXPECT_EQ(output.find(internal), std::string::npos) << internal << " in:\n" << output;
    }
    EXPECT_LE(output.size(), 2 * message_limit) << output.substr(0, 500);
    for (std::size_t index = 0; index < inputs.size(); ++index) {
      EXPECT_TRUE(snapshot(inputs[index]) == before[index]) << inputs[index] << " was modified";
    }
  }

  /// Seed files written by lrsmc's own writers: (file name, bytes).
  std::vector<std::pair<std::string, std::string>> seed_files() const {
    std::vector<std::pair<std::string, std::string>> seeds;
    const Array matrix({3, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    io::write_npy(path("seed32.npy"), matrix, io::StoredType::float32);
    io::write_npy(path("seed64.npy"), Array({2, 2, 3}, std::vector<double>(12, 0.25)),
                  io::StoredType::float64);
    io::write_npz(path("seed.npz"), {{"observations", matrix}, {"inputs", Array({3}, {1, 2, 3})}},
                  {{"note", "text entry"}});
    save_model(path("seed_model.npz"), oscillator_teacher());
    for (const char* name : {"seed32.npy", "seed64.npy", "seed.npz", "seed_model.npz"}) {
      seeds.emplace_back(name, read_bytes(path(name)));
    }
    return seeds;
  }

  std::string folder_;
};

TEST_F(Robustness, CraftedNpyFiles) {
  for (const auto& crafted : robustness::crafted_npy_cases()) {
    expect_all_clean(write("case.npy", crafted.bytes), crafted.name);
  }
}

TEST_F(Robustness, CraftedZipArchives) {
  for (const auto& [name, bytes] : seed_files()) {
    if (!io::has_extension(name, ".npz")) continue;
    for (const auto& crafted : robustness::crafted_zip_cases(bytes)) {
      expect_all_clean(write("case.npz", crafted.bytes), name + ": " + crafted.name);
    }
  }
}

TEST_F(Robustness, CraftedModelFiles) {
  save_model(path("valid.npz"), oscillator_teacher());
  const io::NpzContents valid = io::read_npz(path("valid.npz"));
  for (const auto& crafted : robustness::crafted_model_cases(valid)) {
    const std::string file = path("case.npz");
    ASSERT_NO_THROW(io::write_npz(file, crafted.contents.arrays, crafted.contents.strings))
        << crafted.name;
    expect_clean(Reader::model, file, crafted.name);
  }
}

TEST_F(Robustness, CraftedDataFiles) {
  for (const auto& crafted : robustness::crafted_data_cases()) {
    expect_all_clean(write("case.npy", crafted.bytes), crafted.name);
    // The same array as the only entry of an .npz.
    const std::string npy = write("observations.npy", crafted.bytes);
    try {
      const Array array = io::read_npy(npy);
      io::write_npz(path("case.npz"), {{"observations", array}});
      expect_all_clean(path("case.npz"), crafted.name + " (in an .npz)");
    } catch (const Error&) {
    }
  }
}

TEST_F(Robustness, EmptyFilesFoldersAndMissingFiles) {
  write("empty.npy", "");
  write("empty.npz", "");
  std::filesystem::create_directory(path("folder.npy"));
  std::filesystem::create_directory(path("folder.npz"));
  std::filesystem::create_symlink(path("nowhere.npz"), path("dangling.npz"));
  std::filesystem::create_symlink(path("loop.npy"), path("loop.npy"));
  for (const char* name : {"empty.npy", "empty.npz", "folder.npy", "folder.npz", "missing.npy",
                           "missing.npz", "dangling.npz", "loop.npy", ""}) {
    expect_all_clean(path(name), name);
  }
  expect_all_clean("", "an empty path");
  expect_all_clean("/dev/null", "/dev/null");
}

TEST_F(Robustness, RandomlyMutatedFiles) {
  const auto seeds = seed_files();
  const std::uint64_t cases = mutation_count();
  const std::uint64_t seed = base_seed();
  for (std::uint64_t index = 0; index < cases; ++index) {
    const auto& [name, bytes] = seeds[index % seeds.size()];
    Mutator mutator(seed * 1000003 + index);
    std::string edits;
    const std::string mutated = mutator.mutate(bytes, &edits);
    const bool npz = io::has_extension(name, ".npz");
    const std::string file = write(npz ? "mutated.npz" : "mutated.npy", mutated);
    const std::string what = name + " case " + std::to_string(index) + " (seed " +
                             std::to_string(seed) + ", edits " + edits + ")";
    if (npz) {
      expect_clean(Reader::npz, file, what);
      expect_clean(Reader::model, file, what);
    } else {
      expect_clean(Reader::npy, file, what);
    }
    expect_clean(Reader::dataset, file, what, index);
    if (::testing::Test::HasFailure()) break;  // the first failure is the one to reproduce
  }
}

// The command line on a sample of the same files: filter, sample and fixed-points.
TEST_F(Robustness, CommandLineOnBadFiles) {
  const std::string model = path("model.npz");
  save_model(model, oscillator_teacher());
  const std::string data = path("data.npz");
  io::write_npz(data, {{"observations", Array({2, 5, 20}, std::vector<double>(200, 0.1))}});
  const auto commands = [&](const std::string& model_file, const std::string& data_file) {
    return std::vector<std::string>{
        "filter --model " + model_file + " --data " + data_file + " --particles 4 --device cpu "
            "--threads 1 --out-latents " + path("latents.npy") + " --out-elbo " + path("elbo.npy"),
        "sample --model " + model_file + " --trials 1 --steps 5 --out " + path("samples.npz"),
        "fixed-points " + model_file + " --out-json " + path("fixed.json") + " --out-npy " +
            path("fixed.npy")};
  };
  // Each file goes through one command in turn: bad models through all three, bad data
  // through filter.
  std::size_t turn = 0;
  const auto run_model = [&](const std::string& file, const std::string& what) {
    const auto lines = commands(file, data);
    expect_clean_command(lines[turn++ % lines.size()], {file, data}, what);
  };
  const auto run_data = [&](const std::string& file, const std::string& what) {
    expect_clean_command(commands(model, file)[0], {model, file}, what);
  };

  const io::NpzContents valid = io::read_npz(model);
  const auto model_cases = robustness::crafted_model_cases(valid);
  const std::uint64_t extra = mutation_count() / 100;  // the long mode samples more
  const std::size_t model_stride = std::max<std::size_t>(1, model_cases.size() / (12 + extra));
  for (std::size_t index = 0; index < model_cases.size(); index += model_stride) {
    const auto& crafted = model_cases[index];
    const std::string file = path("bad_model.npz");
    io::write_npz(file, crafted.contents.arrays, crafted.contents.strings);
    run_model(file, crafted.name);
  }
  const auto npy_cases = robustness::crafted_npy_cases();
  const std::size_t npy_stride = std::max<std::size_t>(1, npy_cases.size() / (8 + extra));
  for (std::size_t index = 0; index < npy_cases.size(); index += npy_stride) {
    run_data(write("bad_data.npy", npy_cases[index].bytes), npy_cases[index].name);
  }
  for (const auto& crafted : robustness::crafted_data_cases()) {
    run_data(write("bad_data.npy", crafted.bytes), crafted.name);
  }
  std::filesystem::create_directory(path("folder.npz"));
  write("empty.npz", "");
  for (const char* name : {"folder.npz", "empty.npz", "missing.npz"}) {
    run_model(path(name), name);
    run_data(path(name), name);
  }
  const std::string model_bytes = read_bytes(model);
  for (std::uint64_t index = 0; index < 12 + extra; ++index) {
    Mutator mutator(base_seed() * 7919 + index);
    std::string edits;
    const std::string file = write("mutated_model.npz", mutator.mutate(model_bytes, &edits));
    run_model(file, "mutated model " + std::to_string(index) + " (edits " + edits + ")");
  }
}

}  // namespace
}  // namespace lrsmc
