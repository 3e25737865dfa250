// Tests of lrsmc::io: .npy/.npz round trips, hand-built numpy files (Fortran order, integer,
// bool, float16 and big-endian dtypes, deflated archives), error reporting and atomic writes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::io {
namespace {

namespace fs = std::filesystem;

/// A fresh folder for one test, removed with everything in it afterwards.
class ScratchFolder {
 public:
  ScratchFolder() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::ostringstream name;
    name << "lrsmc_npy_io_" << ::getpid() << "_" << test->test_suite_name() << "_" << test->name();
    path_ = fs::temp_directory_path() / name.str();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  ~ScratchFolder() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }

  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }
  [[nodiscard]] const fs::path& path() const { return path_; }
  /// Names of everything in the folder (to check that no temporary files are left behind).
  [[nodiscard]] std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>());
}

/// Replaces the file (removing it first: rewriting an ext4 file in place through O_TRUNC makes
/// close() flush it, which is slow in a loop).
void write_bytes(const std::string& path, const std::string& bytes) {
  std::error_code ignored;
  fs::remove(path, ignored);
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(stream.good());
}

/// Bytes of an unsigned value, least significant first (or most significant first).
template <typename Bits>
std::string integer_bytes(Bits value, bool big_endian = false) {
  std::string bytes(sizeof(Bits), '\0');
  for (std::size_t index = 0; index < sizeof(Bits); ++index) {
    const std::size_t position = big_endian ? sizeof(Bits) - 1 - index : index;
    bytes[position] = static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * index)) & 0xFFU);
  }
  return bytes;
}

std::string float64_bytes(const std::vector<double>& values, bool big_endian = false) {
  std::string bytes;
  for (const double value : values) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    bytes += integer_bytes(bits, big_endian);
  }
  return bytes;
}

std::string float32_bytes(const std::vector<float>& values, bool big_endian = false) {
  std::string bytes;
  for (const float value : values) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    bytes += integer_bytes(bits, big_endian);
  }
  return bytes;
}

/// A hand-built .npy file: magic, version, header length, `dictionary` padded with spaces and a
/// newline to a multiple of 64 bytes, then `payload`.
std::string npy_file(const std::string& dictionary, const std::string& payload, int major = 1) {
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  const std::size_t unpadded = 8 + length_bytes + dictionary.size() + 1;
  const std::size_t padding = (64 - unpadded % 64) % 64;
  const std::size_t header_length = dictionary.size() + padding + 1;
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  if (major == 1) {
    bytes += integer_bytes(static_cast<std::uint16_t>(header_length));
  } else {
    bytes += integer_bytes(static_cast<std::uint32_t>(header_length));
  }
  bytes += dictionary + std::string(padding, ' ') + "\n";
  return bytes + payload;
}

/// Writes a zip archive with libzip; members are compressed with `method`.
void write_zip(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& members,
               zip_int32_t method) {
  int error_code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error_code);
  ASSERT_NE(archive, nullptr) << error_code;
  for (const auto& [name, bytes] : members) {
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    ASSERT_NE(source, nullptr);
    const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_ENC_UTF_8);
    ASSERT_GE(index, 0);
    ASSERT_EQ(zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), method, 0), 0);
  }
  ASSERT_EQ(zip_close(archive), 0);
}

/// (name, compression method) of every member of a zip archive.
std::vector<std::pair<std::string, int>> zip_members(const std::string& path) {
  std::vector<std::pair<std::string, int>> members;
  int error_code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY, &error_code);
  if (archive == nullptr) return members;
  const zip_int64_t count = zip_get_num_entries(archive, 0);
  for (zip_int64_t index = 0; index < count; ++index) {
    zip_stat_t information;
    zip_stat_init(&information);
    if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &information) == 0) {
      members.emplace_back(information.name, static_cast<int>(information.comp_method));
    }
  }
  zip_discard(archive);
  return members;
}

/// Runs `action`, expecting `Exception` whose message contains every one of `parts`.
template <typename Exception, typename Action>
void expect_error(Action action, const std::vector<std::string>& parts) {
  try {
    action();
    ADD_FAILURE() << "no exception thrown";
  } catch (const Exception& error) {
    const std::string message = error.what();
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message '" << message << "' lacks '" << part << "'";
    }
  } catch (const std::exception& error) {
    ADD_FAILURE() << "wrong exception type: " << error.what();
  }
}

Array sequence_array(std::vector<std::int64_t> shape, double scale = 1.0, double offset = 0.0) {
  Array array(std::move(shape));
  for (std::size_t index = 0; index < array.data.size(); ++index) {
    array.data[index] = offset + scale * static_cast<double>(index);
  }
  return array;
}

// --- round trips ------------------------------------------------------------------------------

TEST(NpyIo, Float64RoundTripThreeDimensional) {
  const ScratchFolder folder;
  const Array array = sequence_array({2, 3, 4}, 0.1, -1.0 / 3.0);
  write_npy(folder.file("a.npy"), array, StoredType::float64);
  const Array read = read_npy(folder.file("a.npy"));
  EXPECT_EQ(read.shape, array.shape);
  EXPECT_EQ(read.data, array.data);  // bit-exact
}

TEST(NpyIo, Float32RoundTripRoundsToFloat) {
  const ScratchFolder folder;
  Array array = sequence_array({3, 2}, 0.1, 1.0 / 3.0);
  array.data[5] = std::numeric_limits<double>::infinity();
  write_npy(folder.file("a.npy"), array);  // float32 is the default
  const Array read = read_npy(folder.file("a.npy"));
  ASSERT_EQ(read.shape, array.shape);
  for (std::size_t index = 0; index < array.data.size(); ++index) {
    EXPECT_EQ(read.data[index], static_cast<double>(static_cast<float>(array.data[index])));
  }
  EXPECT_EQ(read_bytes(folder.file("a.npy")).size(), 128U + 6U * 4U);
}

TEST(NpyIo, ZeroDimensionalRoundTrip) {
  const ScratchFolder folder;
  const Array scalar({}, {2.5});
  write_npy(folder.file("s.npy"), scalar, StoredType::float64);
  const Array read = read_npy(folder.file("s.npy"));
  EXPECT_TRUE(read.shape.empty());
  EXPECT_EQ(read.size(), 1);
  EXPECT_EQ(read.data, std::vector<double>{2.5});
}

TEST(NpyIo, OneDimensionalAndEmptyRoundTrip) {
  const ScratchFolder folder;
  const Array vector_array({4}, {1.0, -2.0, 1e300, std::nan("")});
  write_npy(folder.file("v.npy"), vector_array, StoredType::float64);
  const Array read = read_npy(folder.file("v.npy"));
  EXPECT_EQ(read.shape, std::vector<std::int64_t>{4});
  ASSERT_EQ(read.data.size(), 4U);
  EXPECT_EQ(read.data[2], 1e300);
  EXPECT_TRUE(std::isnan(read.data[3]));

  const Array empty({0, 3});
  write_npy(folder.file("e.npy"), empty, StoredType::float32);
  const Array read_empty = read_npy(folder.file("e.npy"));
  EXPECT_EQ(read_empty.shape, (std::vector<std::int64_t>{0, 3}));
  EXPECT_TRUE(read_empty.data.empty());
}

TEST(NpyIo, OverwritesExistingFileAndLeavesNoTemporaries) {
  const ScratchFolder folder;
  write_text_file(folder.file("x.npy"), "old contents");
  write_npy(folder.file("x.npy"), Array({2}, {1.0, 2.0}), StoredType::float64);
  EXPECT_EQ(read_npy(folder.file("x.npy")).data, (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"x.npy"});
}

// --- exact bytes numpy writes -----------------------------------------------------------------

TEST(NpyIo, HeaderMatchesNumpyFloat32Matrix) {
  // np.save(path, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
  const ScratchFolder folder;
  write_npy(folder.file("m.npy"), Array({2, 3}, {1, 2, 3, 4, 5, 6}), StoredType::float32);
  const std::string bytes = read_bytes(folder.file("m.npy"));
  const std::string dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string expected_header = std::string("\x93NUMPY\x01\x00v\x00", 10) + dictionary +
                                      std::string(127 - 10 - dictionary.size(), ' ') + "\n";
  ASSERT_EQ(bytes.size(), 128U + 24U);
  EXPECT_EQ(bytes.substr(0, 128), expected_header);
  EXPECT_EQ(bytes.substr(128), float32_bytes({1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(bytes.substr(128, 8), std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8));
}

TEST(NpyIo, HeaderMatchesNumpyScalarAndVector) {
  const ScratchFolder folder;
  // np.save(path, np.float64(0.5)) and np.save(path, np.arange(5.0))
  write_npy(folder.file("s.npy"), Array({}, {0.5}), StoredType::float64);
  write_npy(folder.file("v.npy"), sequence_array({5}), StoredType::float64);
  const std::string scalar_dictionary = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
  const std::string vector_dictionary = "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }";
  const std::string magic = std::string("\x93NUMPY\x01\x00v\x00", 10);
  EXPECT_EQ(read_bytes(folder.file("s.npy")), magic + scalar_dictionary +
                                                  std::string(117 - scalar_dictionary.size(), ' ') +
                                                  "\n" + float64_bytes({0.5}));
  EXPECT_EQ(read_bytes(folder.file("v.npy")), magic + vector_dictionary +
                                                  std::string(117 - vector_dictionary.size(), ' ') +
                                                  "\n" + float64_bytes({0, 1, 2, 3, 4}));
}

TEST(NpyIo, HeaderIsAlignedForManyDimensions) {
  const ScratchFolder folder;
  const std::vector<std::int64_t> shape(30, 1);
  write_npy(folder.file("d.npy"), Array(shape, {7.0}), StoredType::float64);
  const std::string bytes = read_bytes(folder.file("d.npy"));
  ASSERT_GT(bytes.size(), 10U);
  const std::size_t header_length =
      static_cast<unsigned char>(bytes[8]) + 256U * static_cast<unsigned char>(bytes[9]);
  EXPECT_EQ((10 + header_length) % 64, 0U);
  EXPECT_EQ(bytes[10 + header_length - 1], '\n');
  EXPECT_EQ(bytes.size(), 10 + header_length + 8);
  EXPECT_EQ(read_npy(folder.file("d.npy")).shape, shape);
}

// --- hand-built numpy files -------------------------------------------------------------------

TEST(NpyIo, ReadsFortranOrder) {
  const ScratchFolder folder;
  // Element (i, j, k) = 100 i + 10 j + k, stored with the first axis fastest.
  std::vector<double> fortran_values;
  for (int k = 0; k < 4; ++k) {
    for (int j = 0; j < 3; ++j) {
      for (int i = 0; i < 2; ++i) fortran_values.push_back(100.0 * i + 10.0 * j + k);
    }
  }
  write_bytes(folder.file("f.npy"),
              npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }",
                       float64_bytes(fortran_values)));
  const Array read = read_npy(folder.file("f.npy"));
  ASSERT_EQ(read.shape, (std::vector<std::int64_t>{2, 3, 4}));
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) {
      for (int k = 0; k < 4; ++k) {
        EXPECT_EQ(read.data[static_cast<std::size_t>((i * 3 + j) * 4 + k)],
                  100.0 * i + 10.0 * j + k);
      }
    }
  }

  // A Fortran-order float32 matrix [[1, 2, 3], [4, 5, 6]] is stored as 1 4 2 5 3 6.
  write_bytes(folder.file("m.npy"),
              npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                       float32_bytes({1, 4, 2, 5, 3, 6})));
  EXPECT_EQ(read_npy(folder.file("m.npy")).data, (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

// Reading chosen rows of the first axis keeps exactly those rows of the whole array, from C and
// Fortran order, a .npy and stored and deflated .npz entries alike; the chooser sees the full
// shape; a bad choice is refused naming the file.
TEST(NpyIo, ReadsOnlyTheChosenRows) {
  const ScratchFolder folder;
  const Array whole = sequence_array({5, 3, 4}, 0.5, -2.0);
  const std::vector<std::int64_t> rows{0, 2, 3};
  Array expected({3, 3, 4});
  for (std::size_t kept = 0; kept < rows.size(); ++kept)
    for (std::size_t value = 0; value < 12; ++value)
      expected.data[kept * 12 + value] = whole.data[std::size_t(rows[kept]) * 12 + value];
  std::vector<std::vector<std::int64_t>> seen;
  const RowChooser choose = [&](const std::vector<std::int64_t>& shape) {
    seen.push_back(shape);
    return rows;
  };
  // Fortran order: the first axis fastest.
  std::vector<double> fortran;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 5; ++i) fortran.push_back(whole.data[std::size_t((i * 3 + j) * 4 + k)]);
  write_bytes(folder.file("f.npy"),
              npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (5, 3, 4), }",
                       float64_bytes(fortran)));
  write_npy(folder.file("c.npy"), whole, StoredType::float64);
  for (const char* name : {"c.npy", "f.npy"}) {
    const Array read = read_npy(folder.file(name), choose);
    EXPECT_EQ(read.shape, expected.shape) << name;
    EXPECT_EQ(read.data, expected.data) << name;
  }
  const std::string entry = read_bytes(folder.file("c.npy"));
  for (const zip_int32_t method : {ZIP_CM_STORE, ZIP_CM_DEFLATE}) {
    write_zip(folder.file("d.npz"), {{"x.npy", entry}, {"y.npy", entry}}, method);
    NpzSelection selection;
    selection.entries = {"x"};
    selection.rows = choose;
    const NpzContents read = read_npz(folder.file("d.npz"), selection);
    ASSERT_EQ(read.arrays.count("x"), 1u);
    EXPECT_EQ(read.arrays.count("y"), 0u);
    EXPECT_EQ(read.arrays.at("x").data, expected.data) << method;
    // The limit on values applies to the rows kept: 36 of the 60.
    selection.max_values = 36;
    EXPECT_NO_THROW((void)read_npz(folder.file("d.npz"), selection));
    selection.max_values = 35;
    expect_error<InvalidInput>([&] { (void)read_npz(folder.file("d.npz"), selection); },
                               {"d.npz", "36 values in the rows read", "at most 35"});
  }
  for (const auto& shape : seen) EXPECT_EQ(shape, whole.shape);
  // No rows: the other axes remain.
  EXPECT_EQ(
      read_npy(folder.file("c.npy"), [](const auto&) { return std::vector<std::int64_t>{}; }).shape,
      (std::vector<std::int64_t>{0, 3, 4}));
  for (const std::vector<std::int64_t>& bad :
       {std::vector<std::int64_t>{5}, std::vector<std::int64_t>{-1},
        std::vector<std::int64_t>{2, 1}, std::vector<std::int64_t>{1, 1}})
    expect_error<InvalidInput>(
        [&] { (void)read_npy(folder.file("c.npy"), [&](const auto&) { return bad; }); },
        {"c.npy", "out of range or order", "(5, 3, 4)"});
}

TEST(NpyIo, ReadsIntegerAndBoolTypes) {
  const ScratchFolder folder;
  struct Case {
    std::string descr;
    std::string payload;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {"|i1", std::string("\x05\xfb\x80\x7f", 4), {5, -5, -128, 127}},
      {"|u1", std::string("\x00\xff\x80\x01", 4), {0, 255, 128, 1}},
      {"<i2", integer_bytes<std::uint16_t>(0xFFFE) + integer_bytes<std::uint16_t>(300), {-2, 300}},
      {"<u2", integer_bytes<std::uint16_t>(0xFFFF) + integer_bytes<std::uint16_t>(7), {65535, 7}},
      {"<i4",
       integer_bytes<std::uint32_t>(0x80000000U) + integer_bytes<std::uint32_t>(123456),
       {-2147483648.0, 123456}},
      {"<u4",
       integer_bytes<std::uint32_t>(0xFFFFFFFFU) + integer_bytes<std::uint32_t>(9),
       {4294967295.0, 9}},
      {"<i8",
       integer_bytes<std::uint64_t>(~std::uint64_t{0}) + integer_bytes<std::uint64_t>(1ULL << 40),
       {-1, 1099511627776.0}},
      {"<u8",
       integer_bytes<std::uint64_t>(1ULL << 63) + integer_bytes<std::uint64_t>(42),
       {9223372036854775808.0, 42}},
      {"|b1", std::string("\x00\x01\x01\x00", 4), {0, 1, 1, 0}},
      {">i4",
       integer_bytes<std::uint32_t>(0xFFFFFFF9U, true) + integer_bytes<std::uint32_t>(258, true),
       {-7, 258}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.descr);
    const std::string shape = std::to_string(test_case.expected.size());
    write_bytes(folder.file("i.npy"),
                npy_file("{'descr': '" + test_case.descr + "', 'fortran_order': False, 'shape': (" +
                             shape + ",), }",
                         test_case.payload));
    const Array read = read_npy(folder.file("i.npy"));
    EXPECT_EQ(read.shape,
              std::vector<std::int64_t>{static_cast<std::int64_t>(test_case.expected.size())});
    EXPECT_EQ(read.data, test_case.expected);
  }
}

TEST(NpyIo, ReadsFloat16) {
  const ScratchFolder folder;
  const std::string payload =
      integer_bytes<std::uint16_t>(0x3C00) + integer_bytes<std::uint16_t>(0xC000) +
      integer_bytes<std::uint16_t>(0x7BFF) + integer_bytes<std::uint16_t>(0x0001) +
      integer_bytes<std::uint16_t>(0x7C00) + integer_bytes<std::uint16_t>(0x3555);
  write_bytes(folder.file("h.npy"),
              npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", payload));
  const Array read = read_npy(folder.file("h.npy"));
  ASSERT_EQ(read.data.size(), 6U);
  EXPECT_EQ(read.data[0], 1.0);
  EXPECT_EQ(read.data[1], -2.0);
  EXPECT_EQ(read.data[2], 65504.0);
  EXPECT_EQ(read.data[3], std::ldexp(1.0, -24));
  EXPECT_EQ(read.data[4], std::numeric_limits<double>::infinity());
  EXPECT_EQ(read.data[5], 0.333251953125);
}

TEST(NpyIo, ReadsBigEndianFloats) {
  const ScratchFolder folder;
  write_bytes(folder.file("b8.npy"),
              npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }",
                       float64_bytes({1.5, -0.1, 1e-300, 3.0}, true)));
  const Array read = read_npy(folder.file("b8.npy"));
  EXPECT_EQ(read.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(read.data, (std::vector<double>{1.5, -0.1, 1e-300, 3.0}));

  write_bytes(folder.file("b4.npy"),
              npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }",
                       float32_bytes({0.25F, -8.0F, 0.1F}, true)));
  EXPECT_EQ(read_npy(folder.file("b4.npy")).data,
            (std::vector<double>{0.25, -8.0, static_cast<double>(0.1F)}));
}

TEST(NpyIo, ParsesHeaderVariants) {
  const ScratchFolder folder;
  const std::string payload = float64_bytes({1, 2, 3, 4, 5, 6});
  const std::vector<std::string> dictionaries = {
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}",
      "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (2,3)}",
      "{ 'descr' : '<f8' ,'fortran_order':False,'shape':( 2 , 3 , ) , }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3], 'extra': {'a': (None, True)}}",
      "{u'descr': u'<f8', u'fortran_order': False, u'shape': (2, 3)}",
  };
  for (const std::string& dictionary : dictionaries) {
    SCOPED_TRACE(dictionary);
    for (int major = 1; major <= 3; ++major) {
      write_bytes(folder.file("h.npy"), npy_file(dictionary, payload, major));
      const Array read = read_npy(folder.file("h.npy"));
      EXPECT_EQ(read.shape, (std::vector<std::int64_t>{2, 3}));
      EXPECT_EQ(read.data, (std::vector<double>{1, 2, 3, 4, 5, 6}));
    }
  }
  // 0-d and 1-d shapes, and a header without the padding newline.
  write_bytes(
      folder.file("z.npy"),
      npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (), }", float64_bytes({9})));
  const Array scalar = read_npy(folder.file("z.npy"));
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.data, std::vector<double>{9});
  const std::string dictionary = "{'descr':'<f8','fortran_order':False,'shape':(1,)}";
  write_bytes(folder.file("n.npy"),
              std::string("\x93NUMPY\x01\x00", 8) +
                  integer_bytes(static_cast<std::uint16_t>(dictionary.size())) + dictionary +
                  float64_bytes({4}));
  EXPECT_EQ(read_npy(folder.file("n.npy")).data, std::vector<double>{4});
}

// --- npz --------------------------------------------------------------------------------------

TEST(NpzIo, StoredRoundTripWithText) {
  const ScratchFolder folder;
  const std::map<std::string, Array> arrays = {
      {"weights", sequence_array({2, 3}, 0.5, -1.0)},
      {"scalar", Array({}, {3.25})},
      {"vector", Array({3}, {1e-10, 0.0, -7.0})},
  };
  const std::map<std::string, std::string> strings = {
      {"config", "{\"name\": \"h\u00e9llo w\u00f6rld \u2713 \U0001F600\"}"},
      {"empty", ""},
  };
  write_npz(folder.file("m.npz"), arrays, strings);
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"m.npz"});

  const NpzContents contents = read_npz(folder.file("m.npz"));
  ASSERT_EQ(contents.arrays.size(), 3U);
  for (const auto& [name, array] : arrays) {
    SCOPED_TRACE(name);
    ASSERT_EQ(contents.arrays.count(name), 1U);
    EXPECT_EQ(contents.arrays.at(name).shape, array.shape);
    EXPECT_EQ(contents.arrays.at(name).data, array.data);  // float64 by default
  }
  EXPECT_EQ(contents.strings, strings);

  // Members are stored uncompressed and named "<name>.npy", as numpy.savez does.
  const auto members = zip_members(folder.file("m.npz"));
  ASSERT_EQ(members.size(), 5U);
  for (const auto& [name, method] : members) {
    EXPECT_EQ(name.substr(name.size() - 4), ".npy");
    EXPECT_EQ(method, ZIP_CM_STORE);
  }
}

TEST(NpzIo, TextEntryIsZeroDimensionalUnicode) {
  const ScratchFolder folder;
  // "é✓😀": 3 code points, so numpy dtype '<U3' and 12 bytes of UTF-32LE.
  write_npz(folder.file("t.npz"), {}, {{"t", "\u00e9\u2713\U0001F600"}});
  int error_code = 0;
  zip_t* archive = zip_open(folder.file("t.npz").c_str(), ZIP_RDONLY, &error_code);
  ASSERT_NE(archive, nullptr);
  zip_file_t* file = zip_fopen(archive, "t.npy", 0);
  ASSERT_NE(file, nullptr);
  std::string bytes(4096, '\0');
  const zip_int64_t got = zip_fread(file, bytes.data(), bytes.size());
  zip_fclose(file);
  zip_discard(archive);
  ASSERT_GT(got, 0);
  bytes.resize(static_cast<std::size_t>(got));
  const std::string dictionary = "{'descr': '<U3', 'fortran_order': False, 'shape': (), }";
  EXPECT_EQ(bytes, std::string("\x93NUMPY\x01\x00v\x00", 10) + dictionary +
                       std::string(117 - dictionary.size(), ' ') + "\n" +
                       integer_bytes<std::uint32_t>(0xE9) + integer_bytes<std::uint32_t>(0x2713) +
                       integer_bytes<std::uint32_t>(0x1F600));
}

TEST(NpzIo, Float32StoredType) {
  const ScratchFolder folder;
  write_npz(folder.file("f.npz"), {{"x", Array({2}, {0.1, 0.2})}}, {}, StoredType::float32);
  const NpzContents contents = read_npz(folder.file("f.npz"));
  EXPECT_EQ(contents.arrays.at("x").data,
            (std::vector<double>{static_cast<double>(0.1F), static_cast<double>(0.2F)}));
}

TEST(NpzIo, EmptyArchiveRoundTrip) {
  const ScratchFolder folder;
  write_npz(folder.file("e.npz"), {});
  const NpzContents contents = read_npz(folder.file("e.npz"));
  EXPECT_TRUE(contents.arrays.empty());
  EXPECT_TRUE(contents.strings.empty());
  EXPECT_EQ(read_bytes(folder.file("e.npz")).size(), 22U);
}

TEST(NpzIo, ReadsDeflatedArchive) {
  const ScratchFolder folder;
  std::vector<double> values(1000);
  for (std::size_t index = 0; index < values.size(); ++index)
    values[index] = static_cast<double>(index % 7);
  const std::vector<std::pair<std::string, std::string>> members = {
      {"big.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (10, 100), }",
                           float64_bytes(values))},
      {"flags.npy", npy_file("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                             std::string("\x01\x00\x01", 3))},
      {"label.npy", npy_file("{'descr': '|S8', 'fortran_order': False, 'shape': (), }",
                             std::string("abc\0\0\0\0\0", 8))},
      {"title.npy",
       npy_file("{'descr': '<U4', 'fortran_order': False, 'shape': (1,), }",
                integer_bytes<std::uint32_t>('N') + integer_bytes<std::uint32_t>(0xF6) +
                    integer_bytes<std::uint32_t>(0) + integer_bytes<std::uint32_t>(0))},
      {"unsuffixed", npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
                              integer_bytes<std::uint64_t>(17))},
  };
  write_zip(folder.file("c.npz"), members, ZIP_CM_DEFLATE);
  for (const auto& [name, method] : zip_members(folder.file("c.npz"))) {
    EXPECT_EQ(method, ZIP_CM_DEFLATE) << name;
  }
  const NpzContents contents = read_npz(folder.file("c.npz"));
  ASSERT_EQ(contents.arrays.count("big"), 1U);
  EXPECT_EQ(contents.arrays.at("big").shape, (std::vector<std::int64_t>{10, 100}));
  EXPECT_EQ(contents.arrays.at("big").data, values);
  EXPECT_EQ(contents.arrays.at("flags").data, (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(contents.arrays.at("unsuffixed").data, std::vector<double>{17});
  EXPECT_EQ(contents.strings,
            (std::map<std::string, std::string>{{"label", "abc"}, {"title", "N\u00f6"}}));
}

TEST(NpzIo, Int32EntriesStoreIntegersExactly) {
  const ScratchFolder folder;
  const Array indices({3}, {0.0, 16777217.0, -2147483648.0});  // 2^24 + 1 is not a float32
  write_npz(folder.file("i.npz"), {{"indices", indices}, {"values", Array({1}, {0.5})}}, {},
            StoredType::float32, {{"indices", StoredType::int32}});
  EXPECT_EQ(read_npz(folder.file("i.npz")).arrays.at("indices").data, indices.data);
  EXPECT_NE(read_bytes(folder.file("i.npz")).find("'descr': '<i4'"), std::string::npos);
  expect_error<InvalidInput>(
      [&] { write_npy(folder.file("bad.npy"), Array({2}, {1.0, 2.5}), StoredType::int32); },
      {"bad.npy: value 2.5 at element 1 is not an integer that int32 holds"});
  EXPECT_FALSE(fs::exists(folder.file("bad.npy")));
}

TEST(NpzIo, SelectionDecodesOnlyTheNamedEntries) {
  const ScratchFolder folder;
  write_zip(folder.file("a.npz"),
            {{"broken.npy", "this entry is not an .npy stream"},
             {"good.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                   float64_bytes({1.5, 2.5}))}},
            ZIP_CM_DEFLATE);
  expect_error<InvalidInput>([&] { (void)read_npz(folder.file("a.npz")); }, {"entry 'broken'"});
  NpzSelection selection;
  selection.entries = {"good", "absent"};
  const NpzContents contents = read_npz(folder.file("a.npz"), selection);
  EXPECT_EQ(contents.names, (std::vector<std::string>{"broken", "good"}));
  EXPECT_EQ(contents.arrays.size(), 1u);
  EXPECT_EQ(contents.arrays.at("good").data, (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(list_npz(folder.file("a.npz")), (std::vector<std::string>{"broken", "good"}));
}

TEST(NpzIo, DeclaredSizesAreCheckedBeforeDecoding) {
  const ScratchFolder folder;
  // 4 million zeros (32 MB) deflate to a few tens of kB: the entry's header declares them.
  const std::string zeros(std::size_t{4'000'000} * 8, '\0');
  write_zip(folder.file("bomb.npz"),
            {{"x.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4000000,), }",
                                zeros)}},
            ZIP_CM_DEFLATE);
  NpzSelection selection;
  selection.max_values = 1000;
  selection.max_text_bytes = 1000;
  expect_error<InvalidInput>([&] { (void)read_npz(folder.file("bomb.npz"), selection); },
                             {"entry 'x': the archive declares 32000128 bytes for it; expected "
                              "at most 1056592"});
  // The header's shape is checked even where the archive's size is within the limit.
  selection.max_values = 4'000'000 - 1;
  expect_error<InvalidInput>(
      [&] { (void)read_npz(folder.file("bomb.npz"), selection); },
      {"entry 'x': shape (4000000,) declares 4000000 values; expected at most 3999999"});
  write_zip(folder.file("text.npz"),
            {{"t.npy", npy_file("{'descr': '<U100', 'fortran_order': False, 'shape': (), }",
                                std::string(400, '\0'))}},
            ZIP_CM_STORE);
  selection.max_text_bytes = 399;
  expect_error<InvalidInput>([&] { (void)read_npz(folder.file("text.npz"), selection); },
                             {"entry 't': text of 400 bytes declared; expected at most 399"});
}

TEST(NpzIo, RejectsLongerTextArray) {
  const ScratchFolder folder;
  write_zip(folder.file("s.npz"),
            {{"names.npy",
              npy_file("{'descr': '<U1', 'fortran_order': False, 'shape': (2,), }",
                       integer_bytes<std::uint32_t>('a') + integer_bytes<std::uint32_t>('b'))}},
            ZIP_CM_STORE);
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("s.npz"))); },
                             {"s.npz: entry 'names'", "(2,)"});
}

TEST(NpzIo, RejectsBadEntries) {
  const ScratchFolder folder;
  write_zip(folder.file("j.npz"), {{"junk.npy", "not an array"}}, ZIP_CM_DEFLATE);
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("j.npz"))); },
                             {"j.npz: entry 'junk'", "not a .npy file"});

  write_zip(folder.file("c.npz"),
            {{"m.npy", npy_file("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                                std::string(8, '\0'))}},
            ZIP_CM_STORE);
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("c.npz"))); },
                             {"c.npz: entry 'm'", "dtype '<c8' is not supported"});

  write_zip(folder.file("t.npz"),
            {{"m.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
                                float64_bytes({1, 2}))}},
            ZIP_CM_DEFLATE);
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("t.npz"))); },
                             {"t.npz: entry 'm'", "truncated"});
}

TEST(NpzIo, RejectsNonZipFiles) {
  const ScratchFolder folder;
  write_bytes(folder.file("g.npz"), "this is certainly not a zip archive, just some text");
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("g.npz"))); },
                             {"g.npz", "zip"});
  write_bytes(folder.file("empty.npz"), "");
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("empty.npz"))); },
                             {"empty.npz"});
  write_npy(folder.file("a.npy"), Array({2}, {1, 2}));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npz(folder.file("a.npy"))); },
                             {"a.npy", "zip"});
  expect_error<IoError>([&] { static_cast<void>(read_npz(folder.file("missing.npz"))); },
                        {"missing.npz: cannot open file (No such file or directory)"});
  expect_error<IoError>([&] { static_cast<void>(read_npz(folder.path().string())); },
                        {folder.path().string(), "cannot open file"});
}

TEST(NpzIo, RejectsTextThatIsNotUtf8AndDuplicateNames) {
  const ScratchFolder folder;
  expect_error<InvalidInput>(
      [&] {
        write_npz(folder.file("u.npz"), {}, {{"bad", std::string("\xff\xfe", 2)}});
      },
      {"u.npz: entry 'bad'", "UTF-8"});
  expect_error<InvalidInput>(
      [&] {
        write_npz(folder.file("d.npz"), {{"x", Array({1}, {1.0})}}, {{"x", "text"}});
      },
      {"d.npz: entry 'x'"});
  EXPECT_TRUE(folder.listing().empty());
}

// --- errors -----------------------------------------------------------------------------------

TEST(NpyIoErrors, MissingFileIsIoError) {
  const ScratchFolder folder;
  const std::string path = folder.file("data.npy");
  expect_error<IoError>([&] { static_cast<void>(read_npy(path)); },
                        {path + ": cannot open file (No such file or directory)"});
  expect_error<IoError>([&] { static_cast<void>(read_npy(folder.path().string())); },
                        {"cannot open file"});
}

TEST(NpyIoErrors, GarbageIsInvalidInput) {
  const ScratchFolder folder;
  write_bytes(folder.file("g.npy"), "PK\x03\x04 definitely not numpy data");
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("g.npy"))); },
                             {"g.npy: not a .npy file"});
  write_bytes(folder.file("empty.npy"), "");
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("empty.npy"))); },
                             {"empty.npy: not a .npy file"});
}

TEST(NpyIoErrors, TruncatedDataIsInvalidInput) {
  const ScratchFolder folder;
  write_bytes(folder.file("t.npy"),
              npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                       float64_bytes({1, 2, 3, 4, 5})));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("t.npy"))); },
                             {"t.npy: truncated data", "needs 48 bytes", "found 40"});
  // A header length pointing past the end of the file.
  write_bytes(folder.file("h.npy"), std::string("\x93NUMPY\x01\x00\xff\x00{'descr'", 17));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("h.npy"))); },
                             {"h.npy: truncated .npy header"});
}

TEST(NpyIoErrors, UnsupportedDtype) {
  const ScratchFolder folder;
  for (const std::string descr : {"<c8", "<f16", "|O", "<U3", "<M8[ns]", "f", ""}) {
    SCOPED_TRACE(descr);
    write_bytes(folder.file("data.npy"),
                npy_file("{'descr': '" + descr + "', 'fortran_order': False, 'shape': (1,), }",
                         std::string(16, '\0')));
    expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("data.npy"))); },
                               {"data.npy: dtype '" + descr +
                                "' is not supported; expected float32/float64/int/uint/bool"});
  }
  write_bytes(folder.file("s.npy"),
              npy_file("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }",
                       std::string(8, '\0')));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("s.npy"))); },
                             {"s.npy: structured dtypes are not supported"});
}

TEST(NpyIoErrors, MalformedHeadersAreInvalidInput) {
  const ScratchFolder folder;
  const std::vector<std::string> dictionaries = {
      "",
      "{",
      "}",
      "[]",
      "{'descr': '<f8', 'fortran_order': False}",
      "{'descr': '<f8', 'shape': (2,)}",
      "{'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': 'no', 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': 2}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2.5,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': ('2',)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775807, 2)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} trailing",
      "{'descr': '<f8, 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,,)}",
      "{(1,): 2}",
      "{'x': " + std::string(5000, '(') + std::string(5000, ')') + "}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)\x01}",
  };
  for (const std::string& dictionary : dictionaries) {
    SCOPED_TRACE(dictionary.substr(0, 80));
    write_bytes(folder.file("bad.npy"), npy_file(dictionary, float64_bytes({1, 2})));
    expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("bad.npy"))); },
                               {"bad.npy"});
  }
  write_bytes(folder.file("v.npy"), std::string("\x93NUMPY\x04\x00\x10\x00", 10));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("v.npy"))); },
                             {"v.npy: .npy format version 4.0 is not supported"});
  write_bytes(folder.file("l.npy"), std::string("\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12));
  expect_error<InvalidInput>([&] { static_cast<void>(read_npy(folder.file("l.npy"))); },
                             {"l.npy: .npy header length", "exceeds the limit"});
}

TEST(NpyIoErrors, EveryTruncationAndCorruptionIsHandled) {
  const ScratchFolder folder;
  write_npy(folder.file("a.npy"), sequence_array({3, 4}), StoredType::float32);
  write_npz(folder.file("a.npz"), {{"x", sequence_array({2, 2})}}, {{"t", "text"}});
  const std::string npy = read_bytes(folder.file("a.npy"));
  const std::string npz = read_bytes(folder.file("a.npz"));
  for (std::size_t length = 0; length < npy.size(); ++length) {
    write_bytes(folder.file("cut.npy"), npy.substr(0, length));
    EXPECT_THROW(static_cast<void>(read_npy(folder.file("cut.npy"))), InvalidInput) << length;
  }
  for (std::size_t length = 0; length < npz.size(); ++length) {
    write_bytes(folder.file("cut.npz"), npz.substr(0, length));
    EXPECT_THROW(static_cast<void>(read_npz(folder.file("cut.npz"))), InvalidInput) << length;
  }
  // Flipping any byte must either read or throw InvalidInput, never anything else.
  const auto survives = [&](const std::string& bytes, bool archive) {
    const std::string path = folder.file(archive ? "flip.npz" : "flip.npy");
    write_bytes(path, bytes);
    try {
      if (archive) {
        static_cast<void>(read_npz(path));
      } else {
        static_cast<void>(read_npy(path));
      }
    } catch (const InvalidInput&) {
    }
  };
  for (std::size_t position = 0; position < npy.size(); ++position) {
    for (const unsigned flip : {0x01U, 0x20U, 0x80U, 0xFFU}) {
      std::string corrupted = npy;
      corrupted[position] =
          static_cast<char>(static_cast<unsigned char>(corrupted[position]) ^ flip);
      EXPECT_NO_THROW(survives(corrupted, false)) << position;
    }
  }
  for (std::size_t position = 0; position < npz.size(); ++position) {
    std::string corrupted = npz;
    corrupted[position] = static_cast<char>(static_cast<unsigned char>(corrupted[position]) ^ 0x5A);
    EXPECT_NO_THROW(survives(corrupted, true)) << position;
  }
}

TEST(NpyIoErrors, InconsistentArrayIsInvalidInput) {
  const ScratchFolder folder;
  expect_error<InvalidInput>(
      [&] {
        write_npy(folder.file("x.npy"), Array({2, 2}, {1.0, 2.0, 3.0}));
      },
      {"x.npy", "3 values", "(2, 2)"});
  expect_error<InvalidInput>([&] { write_npy(folder.file("x.npy"), Array({-1}, {})); },
                             {"x.npy", "negative"});
  EXPECT_TRUE(folder.listing().empty());
}

// --- atomic writes ----------------------------------------------------------------------------

TEST(NpyIoAtomicWrite, MissingFolderIsIoError) {
  const ScratchFolder folder;
  const std::string path = folder.file("no_such_folder/out.npy");
  expect_error<IoError>([&] { write_npy(path, Array({1}, {1.0})); }, {path, "No such file"});
  expect_error<IoError>(
      [&] {
        write_npz(folder.file("no_such_folder/out.npz"), {{"a", Array({1}, {1.0})}});
      },
      {"out.npz"});
  expect_error<IoError>([&] { write_text_file(folder.file("no_such_folder/out.json"), "{}"); },
                        {"out.json"});
  EXPECT_TRUE(folder.listing().empty());
}

TEST(NpyIoAtomicWrite, ParentThatIsAFileIsIoError) {
  const ScratchFolder folder;
  write_text_file(folder.file("plain"), "a file, not a folder");
  expect_error<IoError>([&] { write_npy(folder.file("plain/out.npy"), Array({1}, {1.0})); },
                        {"plain/out.npy"});
  expect_error<IoError>(
      [&] {
        write_npz(folder.file("plain/out.npz"), {{"a", Array({1}, {1.0})}});
      },
      {"plain/out.npz"});
  expect_error<IoError>([&] { write_text_file(folder.file("plain/out.txt"), "x"); },
                        {"plain/out.txt"});
  EXPECT_EQ(read_bytes(folder.file("plain")), "a file, not a folder");
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"plain"});
}

TEST(NpyIoAtomicWrite, FolderTargetIsRefusedAndLeftAlone) {
  const ScratchFolder folder;
  const std::string target = folder.file("target");
  fs::create_directories(target);
  write_text_file(target + "/inside.txt", "keep me");
  expect_error<IoError>([&] { write_npy(target, Array({1}, {1.0})); }, {target, "is a folder"});
  expect_error<IoError>(
      [&] {
        write_npz(target, {{"a", Array({1}, {1.0})}}, {{"s", "x"}});
      },
      {target, "is a folder"});
  expect_error<IoError>([&] { write_text_file(target, "text"); }, {target, "is a folder"});
  EXPECT_NE(output_problem(target).find("is a folder"), std::string::npos);
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"target"});
  EXPECT_EQ(read_bytes(target + "/inside.txt"), "keep me");
}

TEST(NpyIoAtomicWrite, FailedWriteLeavesExistingTargetUnchanged) {
  const ScratchFolder folder;
  const std::string target = folder.file("model.npz");
  write_npz(target, {{"a", Array({2}, {1.0, 2.0})}});
  const std::string original = read_bytes(target);
  expect_error<InvalidInput>(
      [&] {
        write_npz(target, {{"a", Array({2}, {1.0, 2.0})}, {"b", Array({3}, {1.0})}});
      },
      {"model.npz: entry 'b'"});
  EXPECT_EQ(read_bytes(target), original);
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"model.npz"});
  EXPECT_EQ(read_npz(target).arrays.at("a").data, (std::vector<double>{1.0, 2.0}));
}

TEST(NpyIoAtomicWrite, TextFileRoundTrip) {
  const ScratchFolder folder;
  write_text_file(folder.file("out.json"), "{\"a\": 1}\n");
  EXPECT_EQ(read_bytes(folder.file("out.json")), "{\"a\": 1}\n");
  write_text_file(folder.file("out.json"), "");
  EXPECT_EQ(read_bytes(folder.file("out.json")), "");
  EXPECT_EQ(folder.listing(), std::vector<std::string>{"out.json"});
}

TEST(NpyIoOutputs, SymbolicLinkIsFollowedToItsTarget) {
  const ScratchFolder folder;
  fs::create_directories(folder.file("real"));
  const std::string target = folder.file("real/model.npz");
  write_text_file(target, "old");
  fs::create_symlink("real/model.npz", folder.file("link.npz"));
  fs::create_symlink(folder.file("link.npz"), folder.file("link_to_link.npz"));
  write_npz(folder.file("link_to_link.npz"), {{"a", Array({2}, {1.0, 2.0})}});
  EXPECT_TRUE(fs::is_symlink(folder.file("link.npz")));
  EXPECT_TRUE(fs::is_symlink(folder.file("link_to_link.npz")));
  EXPECT_EQ(read_npz(target).arrays.at("a").data, (std::vector<double>{1.0, 2.0}));
  // A link to a name that does not exist yet creates that name.
  fs::create_symlink("real/new.npy", folder.file("dangling.npy"));
  write_npy(folder.file("dangling.npy"), Array({1}, {3.0}));
  EXPECT_TRUE(fs::is_symlink(folder.file("dangling.npy")));
  EXPECT_EQ(read_npy(folder.file("real/new.npy")).data, std::vector<double>{3.0});
  EXPECT_EQ(folder.listing(),
            (std::vector<std::string>{"dangling.npy", "link.npz", "link_to_link.npz", "real"}));
  // A loop of links is refused, naming the path.
  fs::create_symlink("loop_b", folder.file("loop_a"));
  fs::create_symlink("loop_a", folder.file("loop_b"));
  expect_error<IoError>([&] { write_text_file(folder.file("loop_a"), "x"); },
                        {"loop_a", "symbolic link"});
}

/// Everything one writer sends through the FIFO at `path`; gives up after 20 s without data so
/// that a writer that never opens the FIFO fails the test instead of hanging it.
std::string read_fifo(const std::string& path) {
  const int descriptor = ::open(path.c_str(), O_RDONLY | O_NONBLOCK);
  if (descriptor < 0) return "cannot open the FIFO";
  std::string bytes;
  char buffer[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t got = ::read(descriptor, buffer, sizeof buffer);
    if (got > 0) {
      bytes.append(buffer, static_cast<std::size_t>(got));
    } else if (got == 0 && !bytes.empty()) {
      break;  // the writer closed its end
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ::close(descriptor);
  return bytes;
}

// Entries carry a fixed modification time (2000-01-01), not the clock's: an archive's bytes
// depend only on its contents, whenever it is written.
TEST(NpyIoOutputs, NpzBytesDependOnlyOnTheContents) {
  const ScratchFolder folder;
  write_npz(folder.file("a.npz"), {{"a", Array({2}, {1.0, 2.0})}});
  const std::string bytes = read_bytes(folder.file("a.npz"));
  ASSERT_GT(bytes.size(), 14U);
  ASSERT_EQ(bytes.substr(0, 4), std::string("PK\x03\x04", 4));
  // Local header: DOS date at bytes 12–13, little-endian: year − 1980 in bits 9–15, month in 5–8.
  const unsigned date = unsigned(static_cast<unsigned char>(bytes[12])) |
                        unsigned(static_cast<unsigned char>(bytes[13])) << 8;
  EXPECT_EQ(date >> 9, 20U);          // 2000
  EXPECT_EQ((date >> 5) & 0xFU, 1U);  // January
}

TEST(NpyIoOutputs, FifoIsWrittenIntoAndStaysAFifo) {
  const ScratchFolder folder;
  const Array array({2, 3}, {1, 2, 3, 4, 5, 6});
  write_npy(folder.file("expected.npy"), array);
  write_npz(folder.file("expected.npz"), {{"a", array}});
  for (const std::string name : {"npy", "npz"}) {
    const std::string fifo = folder.file("pipe_" + name);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::string received;
    std::thread reader([&] { received = read_fifo(fifo); });
    if (name == "npy") {
      write_npy(fifo, array);
    } else {
      write_npz(fifo, {{"a", array}});
    }
    reader.join();
    EXPECT_TRUE(fs::is_fifo(fifo)) << name;
    EXPECT_EQ(received, read_bytes(folder.file("expected." + name))) << name;
    EXPECT_TRUE(output_problem(fifo).empty()) << output_problem(fifo);
  }
  EXPECT_EQ(folder.listing(),
            (std::vector<std::string>{"expected.npy", "expected.npz", "pipe_npy", "pipe_npz"}));
}

TEST(NpyIoOutputs, CharacterDeviceIsWrittenIntoAndStaysADevice) {
  ASSERT_TRUE(fs::is_character_file("/dev/null"));
  write_npy("/dev/null", Array({2}, {1.0, 2.0}));
  write_npz("/dev/null", {{"a", Array({1}, {1.0})}});
  write_text_file("/dev/null", "{}");
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  EXPECT_TRUE(output_problem("/dev/null").empty()) << output_problem("/dev/null");
}

TEST(NpyIoOutputs, ProblemsAreNamedBeforeWriting) {
  const ScratchFolder folder;
  EXPECT_TRUE(output_problem(folder.file("fine.npz")).empty());
  EXPECT_NE(output_problem(folder.file("missing/out.npz")).find("does not exist"),
            std::string::npos);
  EXPECT_NE(output_problem(folder.file(std::string(256, 'a'))).find("256 characters"),
            std::string::npos);
  EXPECT_EQ(folder.listing(), std::vector<std::string>{});
}

TEST(NpyIoOutputs, LongestNamesAreWritten) {
  // The temporary file's name is shortened to fit, not the output's.
  const ScratchFolder folder;
  for (const std::size_t length : {240, 241, 250, 255}) {
    const std::string name = std::string(length - 4, 'n') + ".npz";
    write_npz(folder.file(name), {{"a", Array({1}, {double(length)})}});
    EXPECT_EQ(read_npz(folder.file(name)).arrays.at("a").data, std::vector<double>{double(length)});
    write_npy(folder.file(name), Array({1}, {1.0}));
    EXPECT_EQ(read_npy(folder.file(name)).data, std::vector<double>{1.0});
  }
  EXPECT_EQ(folder.listing().size(), 4u);
}

/// The id of a process that has exited and been reaped.
pid_t finished_process() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

TEST(NpyIoOutputs, StaleTemporariesOfAKilledRunAreRemoved) {
  const ScratchFolder folder;
  const pid_t dead = finished_process();
  const std::string live = std::to_string(::getppid());
  const std::string stale = "out.npz.tmp-" + std::to_string(dead);
  for (const std::string& name : std::vector<std::string>{
           stale + "-0", stale + "-7.Ab3xYz", "other.npz.tmp-" + std::to_string(dead) + "-0",
           "out.npz.tmp-" + live + "-0", "out.npz.tmp-x-0", stale + "-1.toolongsuffix"}) {
    write_text_file(folder.file(name), "left over");
  }
  write_npz(folder.file("out.npz"), {{"a", Array({1}, {1.0})}});
  std::vector<std::string> kept{"other.npz.tmp-" + std::to_string(dead) + "-0", "out.npz",
                                "out.npz.tmp-" + live + "-0", stale + "-1.toolongsuffix",
                                "out.npz.tmp-x-0"};
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(folder.listing(), kept);
}

// --- has_extension ----------------------------------------------------------------------------

TEST(NpyIoHasExtension, IsCaseInsensitiveSuffixCheck) {
  EXPECT_TRUE(has_extension("model.npz", ".npz"));
  EXPECT_TRUE(has_extension("MODEL.NPZ", ".npz"));
  EXPECT_TRUE(has_extension("dir.v2/data.Npy", ".NPY"));
  EXPECT_TRUE(has_extension(".npz", ".npz"));
  EXPECT_FALSE(has_extension("model.npy", ".npz"));
  EXPECT_FALSE(has_extension("npz", ".npz"));
  EXPECT_FALSE(has_extension("model.npz.tmp", ".npz"));
  EXPECT_FALSE(has_extension("", ".npz"));
}

}  // namespace
}  // namespace lrsmc::io
