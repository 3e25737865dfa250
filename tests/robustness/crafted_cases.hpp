// Hand-made bad inputs for the file readers: each names what it breaks. Seed contents come from
// the caller (files the test writes with lrsmc's own writers), so no data file is needed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lrsmc/io.hpp"

namespace lrsmc::robustness {

struct FileCase {
  std::string name;
  std::string bytes;
};

/// An .npy file of format `version` (1, 2 or 3) whose header dictionary is `dictionary` (padded
/// and terminated as numpy does), followed by `payload`.
[[nodiscard]] std::string npy_file(const std::string& dictionary, const std::string& payload,
                                   int version = 1);

/// `values` as little-endian float64 bytes.
[[nodiscard]] std::string float64_bytes(const std::vector<double>& values);

/// Broken .npy files: bad magic and versions, lying header lengths, huge, negative and
/// overflowing shapes, unknown or text dtypes, malformed dictionaries, short and long payloads,
/// NaN and infinite values, an empty file.
[[nodiscard]] std::vector<FileCase> crafted_npy_cases();

/// A zip archive `archive` (as write_npz writes it) with its local, central-directory and
/// end-of-directory fields rewritten: lying sizes, CRCs, offsets and entry counts, unknown or
/// encrypted compression, duplicate entry names.
[[nodiscard]] std::vector<FileCase> crafted_zip_cases(const std::string& archive);

/// Contents of a model file (as read_npz returns them) with a broken configuration or
/// parameters: deeply nested and huge JSON, wrong types, absurd sizes, NaN and infinite
/// parameters, missing, extra and misshapen entries. The caller writes each with write_npz.
struct ContentsCase {
  std::string name;
  io::NpzContents contents;
};
[[nodiscard]] std::vector<ContentsCase> crafted_model_cases(const io::NpzContents& valid_model);

/// Data arrays the dataset reader must refuse or accept cleanly: NaN and infinite values, wrong
/// ranks, empty and int-overflowing extents.
[[nodiscard]] std::vector<FileCase> crafted_data_cases();

}  // namespace lrsmc::robustness
