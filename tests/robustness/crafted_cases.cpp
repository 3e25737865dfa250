#include "robustness/crafted_cases.hpp"

#include <cstdint>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

namespace lrsmc::robustness {
namespace {

std::string little_endian(std::uint64_t value, std::size_t width) {
  std::string bytes(width, '\0');
  for (std::size_t index = 0; index < width; ++index) {
    bytes[index] = static_cast<char>((value >> (8 * index)) & 0xFFU);
  }
  return bytes;
}

std::string dictionary(const std::string& descr, const std::string& fortran,
                       const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

/// `archive` with `width` bytes at `offset` replaced by `value` (unchanged when out of range).
std::string rewritten(std::string archive, std::size_t offset, std::size_t width,
                      std::uint64_t value) {
  if (offset + width <= archive.size()) archive.replace(offset, width, little_endian(value, width));
  return archive;
}

std::vector<std::size_t> find_all(const std::string& bytes, const std::string& signature) {
  std::vector<std::size_t> offsets;
  for (std::size_t at = bytes.find(signature); at != std::string::npos;
       at = bytes.find(signature, at + 1)) {
    offsets.push_back(at);
  }
  return offsets;
}

}  // namespace

std::string npy_file(const std::string& dictionary_text, const std::string& payload, int version) {
  const std::size_t length_width = version == 1 ? 2 : 4;
  const std::size_t prefix = 6 + 2 + length_width;
  std::string header = dictionary_text;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  return std::string("\x93NUMPY", 6) + static_cast<char>(version) + '\0' +
         little_endian(header.size(), length_width) + header + payload;
}

std::string float64_bytes(const std::vector<double>& values) {
  std::string bytes(values.size() * 8, '\0');
  for (std::size_t index = 0; index < values.size(); ++index) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &values[index], sizeof bits);
    bytes.replace(index * 8, 8, little_endian(bits, 8));
  }
  return bytes;
}

std::vector<FileCase> crafted_npy_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::string six = float64_bytes({1, 2, 3, 4, 5, 6});
  const std::string valid = npy_file(dictionary("<f8", "False", "(2, 3)"), six);
  std::vector<FileCase> cases = {
      {"empty file", ""},
      {"magic only", std::string("\x93NUMPY", 6)},
      {"wrong magic", "\x93NUMPZ" + valid.substr(6)},
      {"version 9.9", valid.substr(0, 6) + "\x09\x09" + valid.substr(8)},
      {"version 0.0", valid.substr(0, 6) + std::string(2, '\0') + valid.substr(8)},
      {"header length 0", valid.substr(0, 8) + std::string(2, '\0') + valid.substr(10)},
      {"header length past the end", valid.substr(0, 8) + "\xff\xff" + valid.substr(10)},
      {"version 2 header length 4 GiB",
       std::string("\x93NUMPY\x02\x00", 8) + little_endian(0xFFFFFFFFU, 4) + valid.substr(10)},
      {"header without newline", [&] {
         std::string bytes = valid;
         bytes[valid.size() - six.size() - 1] = ' ';
         return bytes;
       }()},
      {"header cut short", valid.substr(0, 40)},
      {"payload truncated", valid.substr(0, valid.size() - 5)},
      {"payload too long", valid + "extra bytes"},
      {"nan and inf values",
       npy_file(dictionary("<f8", "False", "(2, 3)"), float64_bytes({nan, inf, -inf, 0, 1, 2}))},
      {"version 2", npy_file(dictionary("<f8", "False", "(2, 3)"), six, 2)},
      {"version 3 non-ascii key", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': "
                                           "(2, 3), '\xc3\xa9': 1}", six, 3)},
      {"fortran order", npy_file(dictionary("<f8", "True", "(2, 3)"), six)},
      {"fortran order maybe", npy_file(dictionary("<f8", "Maybe", "(2, 3)"), six)},
      {"big-endian", npy_file(dictionary(">f8", "False", "(2, 3)"), six)},
      {"scalar shape", npy_file(dictionary("<f8", "False", "()"), six.substr(0, 8))},
      {"empty shape", npy_file(dictionary("<f8", "False", "(0,)"), "")},
      {"empty shape with huge extent", npy_file(dictionary("<f8", "False", "(0, 9223372036854775807)"), "")},
      {"negative extent", npy_file(dictionary("<f8", "False", "(-1,)"), six)},
      {"int64 minimum extent", npy_file(dictionary("<f8", "False", "(-9223372036854775808,)"), six)},
      {"extent above int64", npy_file(dictionary("<f8", "False", "(99999999999999999999,)"), six)},
      {"int64 maximum extent", npy_file(dictionary("<f8", "False", "(9223372036854775807,)"), six)},
      {"product overflows", npy_file(dictionary("<f8", "False", "(4294967296, 4294967296)"), six)},
      {"byte count overflows", npy_file(dictionary("<f8", "False", "(2305843009213693952,)"), six)},
      {"huge extent, short file", npy_file(dictionary("<f8", "False", "(100000000000,)"), six)},
      {"ten thousand axes", npy_file(dictionary("<f8", "False", "(" + [] {
                                                  std::string ones;
                                                  for (int axis = 0; axis < 10000; ++axis) ones += "1,";
                                                  return ones;
                                                }() + ")"), six.substr(0, 8))},
      {"nested shape", npy_file(dictionary("<f8", "False", "((2,), 3)"), six)},
      {"shape as list", npy_file(dictionary("<f8", "False", "[2, 3]"), six)},
      {"shape as text", npy_file(dictionary("<f8", "False", "'(2, 3)'"), six)},
      {"float extent", npy_file(dictionary("<f8", "False", "(2.5, 3)"), six)},
      {"text dtype", npy_file(dictionary("<U5", "False", "(2,)"), std::string(40, 'a'))},
      {"bytes dtype of size 0", npy_file(dictionary("|S0", "False", "(2,)"), "")},
      {"float of size 9", npy_file(dictionary("<f9", "False", "(2, 3)"), six)},
      {"float of size 0", npy_file(dictionary("<f0", "False", "(2, 3)"), six)},
      {"huge item size", npy_file(dictionary("<U99999999999999999999", "False", "(2,)"), six)},
      {"item size above int64", npy_file(dictionary("<f18446744073709551617", "False", "(2,)"), six)},
      {"unknown dtype", npy_file(dictionary("<x8", "False", "(2, 3)"), six)},
      {"object dtype", npy_file(dictionary("|O", "False", "(2, 3)"), six)},
      {"complex dtype", npy_file(dictionary("<c16", "False", "(3,)"), six)},
      {"datetime dtype", npy_file(dictionary("<M8[s]", "False", "(2, 3)"), six)},
      {"empty dtype", npy_file(dictionary("", "False", "(2, 3)"), six)},
      {"structured dtype", npy_file("{'descr': [('a', '<f8')], 'fortran_order': False, "
                                    "'shape': (6,), }", six)},
      {"bool", npy_file(dictionary("|b1", "False", "(6,)"), "\x00\x01\x02\xff\x01\x00")},
      {"float16 nan", npy_file(dictionary("<f2", "False", "(2,)"), "\x00\x7e\x00\x7c")},
      {"int64 extremes", npy_file(dictionary("<i8", "False", "(2,)"),
                                  little_endian(0x8000000000000000U, 8) +
                                      little_endian(0x7FFFFFFFFFFFFFFFU, 8))},
      {"missing shape", npy_file("{'descr': '<f8', 'fortran_order': False}", six)},
      {"missing descr", npy_file("{'fortran_order': False, 'shape': (6,)}", six)},
      {"duplicate key", npy_file("{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, "
                                 "'shape': (6,)}", six)},
      {"unknown key", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), "
                               "'extra': 1}", six)},
      {"unterminated dictionary", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (6,)",
                                           six)},
      {"unterminated string", npy_file("{'descr': '<f8", six)},
      {"not a dictionary", npy_file("[1, 2, 3]", six)},
      {"nul bytes in header", npy_file(std::string("{'descr': '<f8\0', 'fortran_order': False, "
                                                   "'shape': (6,)}", 55), six)},
      {"deeply nested tuple", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': " +
                                       std::string(5000, '(') + std::string(5000, ')') + "}", six)},
      {"long header", npy_file(dictionary("<f8", "False", "(6,)") + std::string(60000, ' '), six)},
  };
  return cases;
}

std::vector<FileCase> crafted_zip_cases(const std::string& archive) {
  std::vector<FileCase> cases;
  const auto add = [&](const std::string& name, std::size_t offset, std::size_t width,
                       std::uint64_t value) {
    cases.push_back({name, rewritten(archive, offset, width, value)});
  };
  const std::uint64_t lies[] = {0, 1, 0x7FFFFFFFU, 0xFFFFFFFFU};
  for (const std::size_t local : find_all(archive, std::string("PK\x03\x04", 4))) {
    const std::string where = " (local header at " + std::to_string(local) + ")";
    add("encrypted flag" + where, local + 6, 2, 1);
    for (const std::uint64_t method : {8, 12, 14, 99, 0xFFFF}) {
      add("compression method " + std::to_string(method) + where, local + 8, 2, method);
    }
    add("wrong crc" + where, local + 14, 4, 0xDEADBEEFU);
    for (const std::uint64_t lie : lies) {
      add("compressed size " + std::to_string(lie) + where, local + 18, 4, lie);
      add("uncompressed size " + std::to_string(lie) + where, local + 22, 4, lie);
    }
    add("name length 65535" + where, local + 26, 2, 0xFFFF);
    add("extra length 65535" + where, local + 28, 2, 0xFFFF);
  }
  const auto central = find_all(archive, std::string("PK\x01\x02", 4));
  for (const std::size_t entry : central) {
    const std::string where = " (directory entry at " + std::to_string(entry) + ")";
    add("encrypted flag" + where, entry + 8, 2, 1);
    for (const std::uint64_t method : {8, 12, 14, 99}) {
      add("compression method " + std::to_string(method) + where, entry + 10, 2, method);
    }
    add("wrong crc" + where, entry + 16, 4, 0);
    for (const std::uint64_t lie : lies) {
      add("compressed size " + std::to_string(lie) + where, entry + 20, 4, lie);
      add("uncompressed size " + std::to_string(lie) + where, entry + 24, 4, lie);
      add("local header offset " + std::to_string(lie) + where, entry + 42, 4, lie);
    }
    add("name length 0" + where, entry + 28, 2, 0);
    add("name length 65535" + where, entry + 28, 2, 0xFFFF);
    add("extra length 65535" + where, entry + 30, 2, 0xFFFF);
  }
  if (central.size() >= 2) {  // the second entry's name made the first's: a duplicate entry
    std::string duplicate = archive;
    const std::size_t first_name = central[0] + 46, second_name = central[1] + 46;
    const auto length = [&](std::size_t entry) {
      return static_cast<std::size_t>(static_cast<unsigned char>(archive[entry + 28])) |
             static_cast<std::size_t>(static_cast<unsigned char>(archive[entry + 29])) << 8;
    };
    if (length(central[0]) == length(central[1])) {
      duplicate.replace(second_name, length(central[1]),
                        archive.substr(first_name, length(central[0])));
      cases.push_back({"duplicate entry name", duplicate});
    }
  }
  for (const std::size_t end : find_all(archive, std::string("PK\x05\x06", 4))) {
    add("entry count 0 (end record)", end + 10, 2, 0);
    add("entry count 65535 (end record)", end + 10, 2, 0xFFFF);
    add("entries on this disk 65535 (end record)", end + 8, 2, 0xFFFF);
    for (const std::uint64_t lie : lies) {
      add("directory size " + std::to_string(lie) + " (end record)", end + 12, 4, lie);
      add("directory offset " + std::to_string(lie) + " (end record)", end + 16, 4, lie);
    }
    add("comment length 65535 (end record)", end + 20, 2, 0xFFFF);
    cases.push_back({"archive cut before the end record", archive.substr(0, end)});
  }
  cases.push_back({"end record only", std::string("PK\x05\x06", 4) + std::string(18, '\0')});
  cases.push_back({"zip64 end locator with garbage",
                   archive + std::string("PK\x06\x07", 4) + std::string(16, '\xff')});
  cases.push_back({"half the archive", archive.substr(0, archive.size() / 2)});
  cases.push_back({"not an archive", "this is plain text, not a zip archive\n"});
  return cases;
}

std::vector<ContentsCase> crafted_model_cases(const io::NpzContents& valid_model) {
  std::vector<ContentsCase> cases;
  const std::string valid_config = valid_model.strings.at("config");
  const auto with_config = [&](const std::string& name, const std::string& config) {
    io::NpzContents contents = valid_model;
    contents.strings["config"] = config;
    cases.push_back({name, std::move(contents)});
  };
  const auto with_key = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json config = nlohmann::json::parse(valid_config);
    config[key] = value;
    with_config("config " + key + " = " + value.dump(), config.dump());
  };
  for (const char* key : {"rank", "hidden", "channels", "inputs"}) {
    for (const nlohmann::json& value :
         {nlohmann::json(-1), nlohmann::json(0), nlohmann::json(3), nlohmann::json(1000000),
          nlohmann::json(2147483647), nlohmann::json(2147483648LL),
          nlohmann::json(-9223372036854775807LL - 1), nlohmann::json(18446744073709551615ULL),
          nlohmann::json(2.5), nlohmann::json(1e300), nlohmann::json("two"), nlohmann::json(nullptr),
          nlohmann::json::array({2}), nlohmann::json::object()}) {
      with_key(key, value);
    }
  }
  for (const char* key : {"format", "version", "nonlinearity", "transition_noise", "initial_noise",
                          "observation", "link", "initial_state"}) {
    with_key(key, "sigmoid");
    with_key(key, 99);
    with_key(key, nlohmann::json(nullptr));
  }
  {
    nlohmann::json config = nlohmann::json::parse(valid_config);
    config["rank"] = 100000;
    config["hidden"] = 100000;
    with_config("config rank and hidden 100000", config.dump());
    config["channels"] = 100000;
    config["inputs"] = 100000;
    with_config("config every size 100000", config.dump());
    config = nlohmann::json::parse(valid_config);
    config["unknown"] = 1;
    with_config("config with an unknown key", config.dump());
    config = nlohmann::json::parse(valid_config);
    config.erase("rank");
    with_config("config without rank", config.dump());
  }
  with_config("config empty", "");
  with_config("config not json", "{rank: 2");
  with_config("config null", "null");
  with_config("config an array", "[1, 2]");
  with_config("config a number", "2");
  with_config("config with a duplicate key",
              valid_config.substr(0, valid_config.size() - 1) + ", \"rank\": 3}");
  with_config("config with a lone surrogate escape",
              valid_config.substr(0, valid_config.size() - 1) + ", \"x\": \"\\ud800\"}");
  with_config("config nested 100000 arrays deep",
              std::string(100000, '[') + std::string(100000, ']'));
  {
    std::string objects;
    for (int depth = 0; depth < 50000; ++depth) objects += "{\"a\":";
    objects += "1" + std::string(50000, '}');
    with_config("config nested 50000 objects deep", objects);
  }
  with_config("config with 4 MB of spaces", std::string(4 << 20, ' ') + valid_config);
  with_config("config with a 4 MB value",
              valid_config.substr(0, valid_config.size() - 1) + ", \"x\": \"" +
                  std::string(4 << 20, 'x') + "\"}");
  with_config("config with a 4 MB key",
              "{\"" + std::string(4 << 20, 'k') + "\": 1, " + valid_config.substr(1));
  {
    io::NpzContents contents = valid_model;
    contents.strings.erase("config");
    cases.push_back({"no config", contents});
    contents.arrays["config"] = Array({1}, {2.0});
    cases.push_back({"config as a number array", contents});
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto& [name, array] : valid_model.arrays) {
    const std::pair<double, const char*> bad_values[] = {
        {nan, "nan"}, {inf, "inf"}, {-inf, "-inf"}, {1e308, "1e308"}, {-1e308, "-1e308"}};
    for (const auto& [bad, text] : bad_values) {
      io::NpzContents contents = valid_model;
      contents.arrays[name].data.front() = bad;
      cases.push_back({"parameter " + name + " holds " + text, contents});
    }
    io::NpzContents contents = valid_model;
    contents.arrays.erase(name);
    cases.push_back({"parameter " + name + " missing", contents});
    contents.strings[name] = "text";
    cases.push_back({"parameter " + name + " as text", contents});
    contents = valid_model;
    contents.arrays[name] = Array({1, 1, 1}, {0.0});
    cases.push_back({"parameter " + name + " misshapen", contents});
    contents.arrays[name] = Array({0}, {});
    cases.push_back({"parameter " + name + " empty", contents});
  }
  {
    io::NpzContents contents = valid_model;
    contents.arrays.begin()->second = Array(std::vector<std::int64_t>(10000, 1), {0.0});
    cases.push_back({"a parameter with 10000 axes", contents});
    contents = valid_model;
    contents.arrays["unknown_parameter"] = Array({1}, {0.0});
    cases.push_back({"an unknown parameter", contents});
    contents = valid_model;
    contents.arrays["checkpoint_state"] = Array({2}, {nan, inf});
    cases.push_back({"a checkpoint entry with nan", contents});
  }
  return cases;
}

std::vector<FileCase> crafted_data_cases() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const auto float64 = [](const std::string& shape, const std::string& payload) {
    return npy_file(dictionary("<f8", "False", shape), payload);
  };
  std::vector<double> values(24, 0.5);
  std::vector<FileCase> cases = {
      {"valid (2, 3, 4)", float64("(2, 3, 4)", float64_bytes(values))},
      {"valid (4, 6)", float64("(4, 6)", float64_bytes(values))},
      {"one value", float64("(1, 1, 1)", float64_bytes({1.0}))},
      {"scalar", float64("()", float64_bytes({1.0}))},
      {"rank 1", float64("(24,)", float64_bytes(values))},
      {"rank 4", float64("(1, 2, 3, 4)", float64_bytes(values))},
      {"empty trials", float64("(0, 3, 4)", "")},
      {"empty time", float64("(2, 0, 4)", "")},
      {"empty channels", float64("(2, 3, 0)", "")},
      {"empty 2-d", float64("(0, 0)", "")},
      {"extent above int", float64("(0, 3000000000, 2)", "")},
      {"extent above int, 2-d", float64("(3000000000, 0)", "")},
      {"extents above int", float64("(0, 2147483648, 2147483648)", "")},
      {"fortran order", npy_file(dictionary("<f8", "True", "(2, 3, 4)"), float64_bytes(values))},
      {"float16", npy_file(dictionary("<f2", "False", "(1, 1, 2)"), "\x00\x3c\x00\x7c")},
      {"int64 extremes", npy_file(dictionary("<i8", "False", "(1, 1, 2)"),
                                  std::string("\0\0\0\0\0\0\0\x80\xff\xff\xff\xff\xff\xff\xff\x7f", 16))},
  };
  for (const double bad : {nan, inf, -inf}) {
    for (const std::size_t index : {std::size_t{0}, std::size_t{23}}) {
      std::vector<double> with_bad = values;
      with_bad[index] = bad;
      cases.push_back({"value " + std::to_string(bad) + " at " + std::to_string(index),
                       float64("(2, 3, 4)", float64_bytes(with_bad))});
    }
  }
  return cases;
}

}  // namespace lrsmc::robustness
