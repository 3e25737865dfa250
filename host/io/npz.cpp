// Reading and writing NumPy .npz archives (zip, via libzip): every entry read as a .npy stream
// (numeric arrays and text), and uncompressed archives written atomically, as numpy.savez does.
#include <zip.h>

#include <algorithm>
#include <cstddef>
#include <ctime>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/npy_format.hpp"
#include "io/posix_file.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::io {
namespace {

using detail::ByteSource;
using detail::commit_atomically;
using detail::encode_array;
using detail::encode_text;
using detail::FileDescriptor;
using detail::open_for_reading;
using detail::ParsedEntry;
using detail::read_npy_stream;
using detail::sync_file;
using detail::TemporaryExists;
using detail::write_new_file;
using lrsmc::detail::concat;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ZipArchiveDiscarder {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};
using ZipArchive = std::unique_ptr<zip_t, ZipArchiveDiscarder>;
using ZipFile = std::unique_ptr<zip_file_t, ZipFileCloser>;

class ZipEntrySource final : public ByteSource {
 public:
  ZipEntrySource(zip_file_t* file, const std::string& label) : file_(file), label_(label) {}

  std::size_t read(unsigned char* buffer, std::size_t count) override {
    std::size_t total = 0;
    while (total < count) {
      const zip_int64_t got = zip_fread(file_, buffer + total, count - total);
      if (got < 0) {
        throw InvalidInput(
            concat(label_, ": cannot read the entry (", zip_file_strerror(file_), ")"));
      }
      if (got == 0) break;
      total += static_cast<std::size_t>(got);
    }
    return total;
  }

  /// Reads to the end of the entry so that libzip verifies its CRC.
  void drain() {
    std::vector<unsigned char> buffer(64 * 1024);
    while (read(buffer.data(), buffer.size()) == buffer.size()) {
    }
  }

 private:
  zip_file_t* file_;
  const std::string& label_;
};

std::string zip_error_message(int error_code) {
  zip_error_t error;
  zip_error_init_with_code(&error, error_code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

/// Builds an uncompressed zip at `temporary` from (name, bytes) members and syncs it.
void write_new_zip(const std::string& temporary,
                   const std::vector<std::pair<std::string, std::string>>& members,
                   const std::string& label) {
  int error_code = 0;
  zip_t* archive = zip_open(temporary.c_str(), ZIP_CREATE | ZIP_EXCL | ZIP_TRUNCATE, &error_code);
  if (archive == nullptr) {
    if (error_code == ZIP_ER_EXISTS) throw TemporaryExists{};
    throw IoError(concat(label, ": cannot create the temporary archive '", temporary, "' (",
                         zip_error_message(error_code), ")"));
  }
  const auto fail = [&](const std::string& what) {
    const std::string message = zip_strerror(archive);
    zip_discard(archive);
    return IoError(concat(label, ": ", what, " (", message, ")"));
  };
  for (const auto& [name, bytes] : members) {
    zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
    if (source == nullptr) throw fail(concat("cannot add entry '", name, "'"));
    const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(source);
      throw fail(concat("cannot add entry '", name, "'"));
    }
    if (zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0) {
      throw fail(concat("cannot add entry '", name, "'"));
    }
    // A fixed modification time (2000-01-01 12:00 UTC) instead of the clock's: the archive's
    // bytes then depend only on its contents, so that the same run writes the same file.
    constexpr time_t fixed_mtime = 946728000;
    if (zip_file_set_mtime(archive, static_cast<zip_uint64_t>(index), fixed_mtime, 0) != 0)
      throw fail(concat("cannot add entry '", name, "'"));
  }
  if (zip_close(archive) != 0) throw fail("cannot write the archive");
  sync_file(temporary, label);
}

}  // namespace

namespace {

/// Lists the archive's entries and, when `decode`, reads the selected ones.
NpzContents read_archive(const std::string& path, const NpzSelection& selection, bool decode) {
  off_t size = 0;
  FileDescriptor file = open_for_reading(path, &size);
  LRSMC_REQUIRE(size > 0, path, ": not a .npz (zip) archive (the file is empty)");
  int error_code = 0;
  ZipArchive archive(zip_fdopen(file.get(), ZIP_RDONLY, &error_code));
  if (!archive) {
    throw InvalidInput(
        concat(path, ": not a valid .npz (zip) archive (", zip_error_message(error_code), ")"));
  }
  static_cast<void>(file.release());  // the archive owns the descriptor now

  // The most bytes a selected entry may expand to: its header, then its values (at most 8
  // bytes each) or its text.
  const std::size_t data_limit =
      std::max(selection.max_values > std::numeric_limits<std::size_t>::max() / 8
                   ? std::numeric_limits<std::size_t>::max() / 2
                   : selection.max_values * 8,
               selection.max_text_bytes);
  const std::size_t entry_limit = data_limit + detail::max_header_length + 16;
  const auto selected = [&](const std::string& key) {
    return selection.entries.empty() ||
           std::find(selection.entries.begin(), selection.entries.end(), key) !=
               selection.entries.end();
  };

  NpzContents contents;
  std::set<std::string> seen;
  const zip_int64_t entry_count = zip_get_num_entries(archive.get(), 0);
  LRSMC_REQUIRE(entry_count >= 0, path, ": not a valid .npz (zip) archive");
  for (zip_uint64_t index = 0; index < static_cast<zip_uint64_t>(entry_count); ++index) {
    zip_stat_t information;
    zip_stat_init(&information);
    if (zip_stat_index(archive.get(), index, 0, &information) != 0 ||
        (information.valid & ZIP_STAT_NAME) == 0 || information.name == nullptr) {
      throw InvalidInput(concat(path, ": cannot read the archive's entry list (",
                                zip_strerror(archive.get()), ")"));
    }
    const std::string entry_name = information.name;
    if (!entry_name.empty() && entry_name.back() == '/') continue;  // a folder
    const std::string key =
        ends_with(entry_name, ".npy") ? entry_name.substr(0, entry_name.size() - 4) : entry_name;
    const std::string label = concat(path, ": entry '", key, "'");
    LRSMC_REQUIRE(seen.insert(key).second, label, " appears more than once");
    contents.names.push_back(key);
    if (!decode || !selected(key)) continue;
    // With rows chosen the entry is streamed and only its chosen rows are kept (and limited).
    LRSMC_REQUIRE(selection.rows || (information.valid & ZIP_STAT_SIZE) == 0 ||
                      information.size <= entry_limit,
                  label, ": the archive declares ", information.size,
                  " bytes for it; expected at most ", entry_limit);
    ZipFile entry_file(zip_fopen_index(archive.get(), index, 0));
    if (!entry_file) {
      throw InvalidInput(
          concat(label, ": cannot open the entry (", zip_strerror(archive.get()), ")"));
    }
    ZipEntrySource source(entry_file.get(), label);
    ParsedEntry entry = read_npy_stream(source, label, true, selection.max_values,
                                        selection.max_text_bytes, selection.rows);
    source.drain();
    if (entry.is_text) {
      contents.strings.emplace(key, std::move(entry.text));
    } else {
      contents.arrays.emplace(key, std::move(entry.array));
    }
  }
  return contents;
}

}  // namespace

NpzContents read_npz(const std::string& path) { return read_archive(path, NpzSelection{}, true); }

NpzContents read_npz(const std::string& path, const NpzSelection& selection) {
  return read_archive(path, selection, true);
}

std::vector<std::string> list_npz(const std::string& path) {
  return read_archive(path, NpzSelection{}, false).names;
}

void write_npz(const std::string& path, const std::map<std::string, Array>& arrays,
               const std::map<std::string, std::string>& strings, StoredType stored_type,
               const std::map<std::string, StoredType>& stored_types) {
  std::vector<std::pair<std::string, std::string>> members;
  members.reserve(arrays.size() + strings.size());
  for (const auto& [name, array] : arrays) {
    const auto type = stored_types.find(name);
    members.emplace_back(
        name + ".npy",
        encode_array(array, type == stored_types.end() ? stored_type : type->second,
                     concat(path, ": entry '", name, "'")));
  }
  for (const auto& [name, text] : strings) {
    const std::string label = concat(path, ": entry '", name, "'");
    LRSMC_REQUIRE(arrays.count(name) == 0, label,
                  " is given both as an array and as text; expected distinct names");
    members.emplace_back(name + ".npy", encode_text(text, label));
  }
  if (members.empty()) {
    // libzip writes no file for an archive without entries; numpy.savez() writes this
    // 22-byte end-of-central-directory record.
    const std::string empty_zip = std::string("PK\x05\x06", 4) + std::string(18, '\0');
    commit_atomically(
        path, [&](const std::string& temporary) { write_new_file(temporary, empty_zip, path); });
    return;
  }
  commit_atomically(path,
                    [&](const std::string& temporary) { write_new_zip(temporary, members, path); });
}

}  // namespace lrsmc::io
