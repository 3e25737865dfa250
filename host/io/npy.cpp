// Reading and writing NumPy .npy files (format 1.0-3.0): one .npy stream read from a file or a
// zip entry and converted to C-order float64, and the .npy and text-file entry points of
// lrsmc/io.hpp; all writes are atomic (temporary file, fsync, rename).
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "io/npy_format.hpp"
#include "io/posix_file.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::io {
namespace detail {
namespace {

using lrsmc::detail::concat;

/// Largest header accepted when reading; numpy itself refuses more than 10000 bytes by default.
constexpr std::size_t read_chunk_bytes = std::size_t{1} << 20;

/// Reads exactly `count` bytes (growing the buffer as data arrives, so a hostile size in a header
/// cannot force a huge allocation); throws InvalidInput when the data ends early.
std::string read_exactly(ByteSource& source, std::size_t count, const std::string& label,
                         const char* what) {
  std::string bytes;
  while (bytes.size() < count) {
    const std::size_t done = bytes.size();
    const std::size_t want = std::min(count - done, read_chunk_bytes);
    bytes.resize(done + want);
    const std::size_t got = source.read(reinterpret_cast<unsigned char*>(&bytes[done]), want);
    if (got != want) {
      throw InvalidInput(
          concat(label, ": truncated ", what, "; expected ", count, " bytes, found ", done + got));
    }
  }
  return bytes;
}

}  // namespace

ParsedEntry read_npy_stream(ByteSource& source, const std::string& label, bool allow_text,
                            std::size_t max_values, std::size_t max_text_bytes,
                            const RowChooser& rows) {
  unsigned char prefix[12] = {};
  const std::size_t prefix_read = source.read(prefix, 8);
  if (prefix_read < magic_length || std::memcmp(prefix, npy_magic, magic_length) != 0) {
    throw InvalidInput(concat(label, ": not a .npy file (missing the \\x93NUMPY magic string)"));
  }
  LRSMC_REQUIRE(prefix_read == 8, label, ": truncated .npy header (no format version)");
  const unsigned major = prefix[6];
  const unsigned minor = prefix[7];
  std::size_t length_bytes = 0;
  if (major == 1 && minor == 0) {
    length_bytes = 2;
  } else if ((major == 2 || major == 3) && minor == 0) {
    length_bytes = 4;
  } else {
    throw InvalidInput(concat(label, ": .npy format version ", major, ".", minor,
                              " is not supported; expected 1.0, 2.0 or 3.0"));
  }
  LRSMC_REQUIRE(source.read(prefix + 8, length_bytes) == length_bytes, label,
                ": truncated .npy header (no header length)");
  std::size_t header_length = 0;
  for (std::size_t index = 0; index < length_bytes; ++index) {
    header_length |= static_cast<std::size_t>(prefix[8 + index]) << (8 * index);
  }
  LRSMC_REQUIRE(header_length <= max_header_length, label, ": .npy header length ", header_length,
                " exceeds the limit of ", max_header_length, " bytes");
  const std::string header_text = read_exactly(source, header_length, label, ".npy header");
  const NpyHeader header = interpret_header(header_text, label);
  const ElementType type = parse_descr(header, label, allow_text);
  const std::size_t count = checked_element_count(header.shape, label);

  ParsedEntry entry;
  if (type.kind == ElementKind::unicode || type.kind == ElementKind::bytes) {
    LRSMC_REQUIRE(header.shape.empty() || (header.shape.size() == 1 && header.shape[0] == 1), label,
                  ": text array of shape ", shape_text(header.shape),
                  " is not supported; expected a 0-d or 1-element 1-d array");
    LRSMC_REQUIRE(type.item_size <= max_text_bytes, label, ": text of ", type.item_size,
                  " bytes declared; expected at most ", max_text_bytes);
    entry.is_text = true;
    entry.text =
        decode_text_element(read_exactly(source, type.item_size, label, "data"), type, label);
    return entry;
  }

  const std::size_t item_size = type.item_size;
  LRSMC_REQUIRE(count <= std::numeric_limits<std::size_t>::max() / item_size, label, ": shape ",
                shape_text(header.shape), " is too large");
  // The rows kept (every row without a chooser) and the values they hold.
  std::vector<std::int64_t> shape = header.shape;
  std::vector<char> keep;
  std::size_t kept = count;
  if (rows) {
    LRSMC_REQUIRE(!shape.empty(), label, ": a 0-d array has no rows to choose from");
    const std::vector<std::int64_t> chosen = rows(shape);
    keep.assign(std::size_t(shape[0]), 0);
    for (std::size_t index = 0; index < chosen.size(); ++index) {
      LRSMC_REQUIRE(chosen[index] >= 0 && chosen[index] < shape[0] &&
                        (index == 0 || chosen[index] > chosen[index - 1]),
                    label, ": row ", chosen[index], " is out of range or order (shape ",
                    shape_text(shape), ")");
      keep[std::size_t(chosen[index])] = 1;
    }
    kept = shape[0] == 0 ? 0 : count / std::size_t(shape[0]) * chosen.size();
    shape[0] = std::int64_t(chosen.size());
  }
  LRSMC_REQUIRE(kept <= max_values, label, ": shape ", shape_text(header.shape), " declares ", kept,
                rows ? " values in the rows read" : " values", "; expected at most ", max_values);
  // A value's row: the first index, which runs slowest in C order and fastest in Fortran order.
  const std::size_t row_values =
      header.shape.empty() || header.shape[0] == 0 ? 1 : count / std::size_t(header.shape[0]);
  const auto row_of = [&](std::size_t index) {
    return header.fortran_order ? index % std::size_t(header.shape[0]) : index / row_values;
  };
  const std::size_t chunk_elements = std::max<std::size_t>(1, read_chunk_bytes / item_size);
  std::vector<unsigned char> buffer(std::min(count, chunk_elements) * item_size);
  std::vector<double> decoded;
  std::vector<double> values;
  if (source.known_remaining() >= count * item_size) values.reserve(kept);
  std::size_t done = 0;
  while (done < count) {
    const std::size_t want = std::min(count - done, chunk_elements);
    const std::size_t got = source.read(buffer.data(), want * item_size);
    if (got != want * item_size) {
      throw InvalidInput(concat(label, ": truncated data; shape ", shape_text(header.shape),
                                " needs ", count * item_size, " bytes after the header, found ",
                                done * item_size + got));
    }
    if (rows) {
      decoded.resize(want);
      decode_elements(type, buffer.data(), want, decoded.data());
      for (std::size_t index = 0; index < want; ++index)
        if (keep[row_of(done + index)] != 0) values.push_back(decoded[index]);
    } else {
      values.resize(done + want);
      decode_elements(type, buffer.data(), want, values.data() + done);
    }
    done += want;
  }
  // Keeping whole rows keeps Fortran order within what is kept.
  if (header.fortran_order && shape.size() > 1) values = fortran_to_c_order(values, shape);
  entry.array = Array(shape, std::move(values));
  return entry;
}

}  // namespace detail

namespace {

using detail::ByteSource;
using detail::commit_atomically;
using detail::encode_array;
using detail::error_text;
using detail::FileDescriptor;
using detail::max_io_chunk;
using detail::open_for_reading;
using detail::ParsedEntry;
using detail::read_npy_stream;
using detail::write_new_file;
using lrsmc::detail::concat;

class FileSource final : public ByteSource {
 public:
  FileSource(int descriptor, const std::string& path, off_t size)
      : descriptor_(descriptor),
        path_(path),
        size_(size > 0 ? static_cast<std::size_t>(size) : 0) {}

  std::size_t read(unsigned char* buffer, std::size_t count) override {
    std::size_t total = 0;
    while (total < count) {
      const ssize_t got =
          ::read(descriptor_, buffer + total, std::min(count - total, max_io_chunk));
      if (got < 0) {
        if (errno == EINTR) continue;
        throw IoError(concat(path_, ": cannot read file (", error_text(errno), ")"));
      }
      if (got == 0) break;
      total += static_cast<std::size_t>(got);
    }
    position_ += total;
    return total;
  }

  [[nodiscard]] std::size_t known_remaining() const override {
    return position_ < size_ ? size_ - position_ : 0;
  }

 private:
  int descriptor_;
  const std::string& path_;
  std::size_t size_;
  std::size_t position_ = 0;
};

}  // namespace

Array read_npy(const std::string& path) { return read_npy(path, nullptr); }

Array read_npy(const std::string& path, const RowChooser& rows) {
  off_t size = 0;
  FileDescriptor file = open_for_reading(path, &size);
  FileSource source(file.get(), path, size);
  ParsedEntry entry = read_npy_stream(source, path, false, std::numeric_limits<std::size_t>::max(),
                                      std::numeric_limits<std::size_t>::max(), rows);
  return std::move(entry.array);
}

void write_npy(const std::string& path, const Array& array, StoredType stored_type) {
  const std::string bytes = encode_array(array, stored_type, path);
  commit_atomically(path,
                    [&](const std::string& temporary) { write_new_file(temporary, bytes, path); });
}

void write_text_file(const std::string& path, const std::string& text) {
  commit_atomically(path,
                    [&](const std::string& temporary) { write_new_file(temporary, text, path); });
}

bool has_extension(const std::string& path, const std::string& extension) {
  if (extension.size() > path.size()) return false;
  const auto lower = [](char character) {
    return (character >= 'A' && character <= 'Z') ? static_cast<char>(character - 'A' + 'a')
                                                  : character;
  };
  const std::size_t start = path.size() - extension.size();
  for (std::size_t index = 0; index < extension.size(); ++index) {
    if (lower(path[start + index]) != lower(extension[index])) return false;
  }
  return true;
}

}  // namespace lrsmc::io
