// Reading and writing NumPy .npy (format 1.0-3.0) and .npz (zip, via libzip) files, converting
// every numeric dtype to C-order float64; all writes are atomic (temporary file, fsync, rename).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc::io {
namespace {

using detail::concat;

constexpr char npy_magic[] = "\x93NUMPY";
constexpr std::size_t magic_length = 6;
/// Largest header accepted when reading; numpy itself refuses more than 10000 bytes by default.
constexpr std::size_t max_header_length = std::size_t{1} << 20;
constexpr int max_header_nesting = 16;
constexpr std::size_t read_chunk_bytes = std::size_t{1} << 20;
constexpr std::size_t max_io_chunk = std::size_t{1} << 30;
/// numpy aligns the data of .npy files to 64 bytes.
constexpr std::size_t array_alignment = 64;
/// numpy reserves room in the header for the first axis to grow to this many digits.
constexpr std::size_t growth_axis_max_digits = 21;
/// Longest descr quoted back in an error message.
constexpr std::size_t max_quoted_length = 40;
constexpr int max_temporary_attempts = 100;

const char* const supported_numeric_types = "float32/float64/int/uint/bool";

std::string error_text(int error_number) { return std::generic_category().message(error_number); }

std::string quoted_excerpt(const std::string& text) {
  std::string excerpt;
  for (const char character : text.substr(0, max_quoted_length)) {
    const auto byte = static_cast<unsigned char>(character);
    excerpt += (byte >= 0x20 && byte < 0x7f) ? character : '?';
  }
  if (text.size() > max_quoted_length) excerpt += "...";
  return excerpt;
}

bool host_is_little_endian() {
  const std::uint16_t probe = 1;
  unsigned char first_byte = 0;
  std::memcpy(&first_byte, &probe, 1);
  return first_byte == 1;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// numpy's repr of a shape tuple: "()", "(5,)", "(2, 3)".
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(shape[axis]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

/// Number of elements of `shape`; throws when an extent is negative or the product of the
/// non-zero extents overflows int64 (so Array::element_count can never overflow either).
std::size_t checked_element_count(const std::vector<std::int64_t>& shape,
                                  const std::string& label) {
  std::int64_t nonzero_product = 1;
  bool has_zero_extent = false;
  for (const std::int64_t extent : shape) {
    LRSMC_REQUIRE(extent >= 0, label, ": shape ", shape_text(shape),
                  " has a negative extent; expected extents >= 0");
    if (extent == 0) {
      has_zero_extent = true;
      continue;
    }
    LRSMC_REQUIRE(nonzero_product <= std::numeric_limits<std::int64_t>::max() / extent, label,
                  ": shape ", shape_text(shape), " is too large; its element count overflows");
    nonzero_product *= extent;
  }
  return has_zero_extent ? 0 : static_cast<std::size_t>(nonzero_product);
}

// --- file descriptors and byte sources --------------------------------------------------------

/// Owns a POSIX file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int descriptor) : descriptor_(descriptor) {}
  FileDescriptor(FileDescriptor&& other) noexcept : descriptor_(other.release()) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      close_now();
      descriptor_ = other.release();
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { close_now(); }

  [[nodiscard]] int get() const { return descriptor_; }
  int release() {
    const int descriptor = descriptor_;
    descriptor_ = -1;
    return descriptor;
  }
  /// Closes the descriptor; returns 0 or the errno of a failed close.
  int close_now() {
    if (descriptor_ < 0) return 0;
    const int result = ::close(descriptor_);
    descriptor_ = -1;
    return result == 0 ? 0 : errno;
  }

 private:
  int descriptor_ = -1;
};

int open_retrying(const std::string& path, int flags, mode_t mode = 0) {
  int descriptor = -1;
  do {
    descriptor = ::open(path.c_str(), flags, mode);
  } while (descriptor < 0 && errno == EINTR);
  return descriptor;
}

/// Opens an existing file for reading; throws IoError naming the file when that fails.
FileDescriptor open_for_reading(const std::string& path, off_t* size = nullptr) {
  const int descriptor = open_retrying(path, O_RDONLY | O_CLOEXEC);
  if (descriptor < 0) throw IoError(concat(path, ": cannot open file (", error_text(errno), ")"));
  FileDescriptor file(descriptor);
  struct stat information {};
  if (::fstat(file.get(), &information) != 0) {
    throw IoError(concat(path, ": cannot read file (", error_text(errno), ")"));
  }
  if (S_ISDIR(information.st_mode)) {
    throw IoError(concat(path, ": cannot open file (", error_text(EISDIR), ")"));
  }
  if (size != nullptr) *size = information.st_size;
  return file;
}

/// A sequential stream of bytes: a file or a zip archive entry.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Reads up to `count` bytes; returns fewer only at the end of the data.
  virtual std::size_t read(unsigned char* buffer, std::size_t count) = 0;
  /// Bytes certainly left to read (0 when unknown); used only to reserve memory.
  [[nodiscard]] virtual std::size_t known_remaining() const { return 0; }
};

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

// --- header parsing ---------------------------------------------------------------------------

/// A Python literal from an .npy header.
struct HeaderValue {
  enum class Kind { string, integer, boolean, none, sequence, dictionary };
  Kind kind = Kind::none;
  std::string text;
  std::int64_t integer = 0;
  bool boolean = false;
  std::vector<HeaderValue> items;  // sequence elements, or dictionary values
  std::vector<std::string> keys;   // dictionary keys, parallel to items
};

bool is_header_space(char character) {
  return character == ' ' || character == '\t' || character == '\n' || character == '\r' ||
         character == '\0';
}
bool is_digit(char character) { return character >= '0' && character <= '9'; }
bool is_name_character(char character) {
  return (character >= 'a' && character <= 'z') || (character >= 'A' && character <= 'Z') ||
         is_digit(character) || character == '_';
}

/// Recursive-descent parser for the Python dict literal of an .npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& label) : text_(text), label_(label) {}

  HeaderValue parse_document() {
    HeaderValue value = parse_value(0);
    skip_space();
    if (position_ != text_.size()) fail("unexpected text after the dictionary");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw InvalidInput(
        concat(label_, ": malformed .npy header (", problem, " at offset ", position_, ")"));
  }

  [[nodiscard]] char peek() const { return position_ < text_.size() ? text_[position_] : '\0'; }
  [[nodiscard]] bool at_end() const { return position_ >= text_.size(); }

  void skip_space() {
    while (position_ < text_.size() && is_header_space(text_[position_])) ++position_;
  }

  HeaderValue parse_value(int depth) {
    if (depth > max_header_nesting) fail("values nested too deeply");
    skip_space();
    if (at_end()) fail("unexpected end of the header");
    const char character = text_[position_];
    if (character == '\'' || character == '"') return parse_string();
    if ((character == 'u' || character == 'b' || character == 'U' || character == 'B') &&
        position_ + 1 < text_.size() &&
        (text_[position_ + 1] == '\'' || text_[position_ + 1] == '"')) {
      ++position_;
      return parse_string();
    }
    if (character == '(') return parse_sequence(')', depth);
    if (character == '[') return parse_sequence(']', depth);
    if (character == '{') return parse_dictionary(depth);
    if (character == '-' || character == '+' || is_digit(character)) return parse_integer();
    if (is_name_character(character)) return parse_name();
    fail("unexpected character");
  }

  HeaderValue parse_string() {
    const char quote = text_[position_++];
    HeaderValue value;
    value.kind = HeaderValue::Kind::string;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char character = text_[position_++];
      if (character == quote) break;
      if (character != '\\') {
        value.text += character;
        continue;
      }
      if (at_end()) fail("unterminated string");
      const char escaped = text_[position_++];
      switch (escaped) {
        case 'n':
          value.text += '\n';
          break;
        case 't':
          value.text += '\t';
          break;
        case 'r':
          value.text += '\r';
          break;
        case '0':
          value.text += '\0';
          break;
        default:
          value.text += escaped;
          break;
      }
    }
    return value;
  }

  HeaderValue parse_integer() {
    bool negative = false;
    if (peek() == '-' || peek() == '+') {
      negative = peek() == '-';
      ++position_;
    }
    if (!is_digit(peek())) fail("expected a digit");
    std::int64_t magnitude = 0;
    while (is_digit(peek())) {
      const int digit = peek() - '0';
      if (magnitude > (std::numeric_limits<std::int64_t>::max() - digit) / 10) {
        fail("integer too large");
      }
      magnitude = magnitude * 10 + digit;
      ++position_;
    }
    if (peek() == 'L' || peek() == 'l') ++position_;  // Python 2 long literal, e.g. (3L, 4L)
    if (peek() == '.' || is_name_character(peek())) fail("expected an integer");
    HeaderValue value;
    value.kind = HeaderValue::Kind::integer;
    value.integer = negative ? -magnitude : magnitude;
    return value;
  }

  HeaderValue parse_name() {
    const std::size_t start = position_;
    while (is_name_character(peek())) ++position_;
    const std::string name = text_.substr(start, position_ - start);
    HeaderValue value;
    if (name == "True" || name == "False") {
      value.kind = HeaderValue::Kind::boolean;
      value.boolean = name == "True";
    } else if (name == "None") {
      value.kind = HeaderValue::Kind::none;
    } else {
      position_ = start;
      fail("unknown name '" + quoted_excerpt(name) + "'");
    }
    return value;
  }

  HeaderValue parse_sequence(char closing, int depth) {
    ++position_;
    HeaderValue value;
    value.kind = HeaderValue::Kind::sequence;
    while (true) {
      skip_space();
      if (peek() == closing && !at_end()) {
        ++position_;
        break;
      }
      value.items.push_back(parse_value(depth + 1));
      skip_space();
      if (peek() == ',' && !at_end()) {
        ++position_;
      } else if (peek() == closing && !at_end()) {
        ++position_;
        break;
      } else {
        fail(std::string("expected ',' or '") + closing + "'");
      }
    }
    return value;
  }

  HeaderValue parse_dictionary(int depth) {
    ++position_;
    HeaderValue value;
    value.kind = HeaderValue::Kind::dictionary;
    while (true) {
      skip_space();
      if (peek() == '}' && !at_end()) {
        ++position_;
        break;
      }
      HeaderValue key = parse_value(depth + 1);
      if (key.kind != HeaderValue::Kind::string) fail("dictionary keys must be strings");
      skip_space();
      if (peek() != ':' || at_end()) fail("expected ':'");
      ++position_;
      value.keys.push_back(std::move(key.text));
      value.items.push_back(parse_value(depth + 1));
      skip_space();
      if (peek() == ',' && !at_end()) {
        ++position_;
      } else if (peek() == '}' && !at_end()) {
        ++position_;
        break;
      } else {
        fail("expected ',' or '}'");
      }
    }
    return value;
  }

  const std::string& text_;
  const std::string& label_;
  std::size_t position_ = 0;
};

struct NpyHeader {
  std::string descr;
  bool structured = false;  // descr was a list (a structured dtype)
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
};

NpyHeader interpret_header(const std::string& header_text, const std::string& label) {
  const HeaderValue document = HeaderParser(header_text, label).parse_document();
  LRSMC_REQUIRE(document.kind == HeaderValue::Kind::dictionary, label,
                ": malformed .npy header (expected a dictionary)");
  NpyHeader header;
  bool has_descr = false;
  bool has_fortran_order = false;
  bool has_shape = false;
  for (std::size_t index = 0; index < document.keys.size(); ++index) {
    const std::string& key = document.keys[index];
    const HeaderValue& value = document.items[index];
    if (key == "descr") {
      has_descr = true;
      if (value.kind == HeaderValue::Kind::string) {
        header.descr = value.text;
        header.structured = false;
      } else if (value.kind == HeaderValue::Kind::sequence) {
        header.structured = true;
      } else {
        throw InvalidInput(concat(label, ": malformed .npy header ('descr' is not a string)"));
      }
    } else if (key == "fortran_order") {
      has_fortran_order = true;
      LRSMC_REQUIRE(value.kind == HeaderValue::Kind::boolean, label,
                    ": malformed .npy header ('fortran_order' is not True or False)");
      header.fortran_order = value.boolean;
    } else if (key == "shape") {
      has_shape = true;
      LRSMC_REQUIRE(value.kind == HeaderValue::Kind::sequence, label,
                    ": malformed .npy header ('shape' is not a tuple)");
      header.shape.clear();
      for (const HeaderValue& extent : value.items) {
        LRSMC_REQUIRE(extent.kind == HeaderValue::Kind::integer, label,
                      ": malformed .npy header ('shape' holds a value that is not an integer)");
        LRSMC_REQUIRE(extent.integer >= 0, label, ": malformed .npy header ('shape' extent ",
                      extent.integer, " is negative)");
        header.shape.push_back(extent.integer);
      }
    }
    // Other keys are ignored.
  }
  LRSMC_REQUIRE(has_descr, label, ": malformed .npy header (missing key 'descr')");
  LRSMC_REQUIRE(has_fortran_order, label, ": malformed .npy header (missing key 'fortran_order')");
  LRSMC_REQUIRE(has_shape, label, ": malformed .npy header (missing key 'shape')");
  return header;
}

// --- dtypes and element decoding --------------------------------------------------------------

enum class ElementKind { floating, signed_integer, unsigned_integer, boolean, unicode, bytes };

struct ElementType {
  ElementKind kind = ElementKind::floating;
  std::size_t item_size = 8;
  bool little_endian = true;
};

ElementType parse_descr(const NpyHeader& header, const std::string& label, bool allow_text) {
  const std::string expected = allow_text ? concat(supported_numeric_types, ", or text ('<U'/'|S')")
                                          : std::string(supported_numeric_types);
  if (header.structured) {
    throw InvalidInput(concat(label, ": structured dtypes are not supported; expected ", expected));
  }
  const std::string& descr = header.descr;
  const auto unsupported = [&]() {
    return InvalidInput(concat(label, ": dtype '", quoted_excerpt(descr),
                               "' is not supported; expected ", expected));
  };
  std::size_t position = 0;
  char byte_order = '=';
  if (!descr.empty() &&
      (descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '=')) {
    byte_order = descr[0];
    position = 1;
  }
  if (position >= descr.size()) throw unsupported();
  const char kind = descr[position++];
  const std::string digits = descr.substr(position);
  if (digits.empty() || digits.size() > 12 ||
      !std::all_of(digits.begin(), digits.end(), is_digit)) {
    throw unsupported();
  }
  const std::size_t size = static_cast<std::size_t>(std::stoull(digits));

  ElementType type;
  type.little_endian = byte_order == '<' || (byte_order != '>' && host_is_little_endian());
  type.item_size = size;
  switch (kind) {
    case 'f':
      if (size != 2 && size != 4 && size != 8) throw unsupported();
      type.kind = ElementKind::floating;
      break;
    case 'i':
    case 'u':
      if (size != 1 && size != 2 && size != 4 && size != 8) throw unsupported();
      type.kind = kind == 'i' ? ElementKind::signed_integer : ElementKind::unsigned_integer;
      break;
    case 'b':
      if (size != 1) throw unsupported();
      type.kind = ElementKind::boolean;
      break;
    case 'U':
      if (!allow_text) throw unsupported();
      type.kind = ElementKind::unicode;
      type.item_size = size * 4;  // at most 12 digits, so no overflow
      break;
    case 'S':
      if (!allow_text) throw unsupported();
      type.kind = ElementKind::bytes;
      break;
    default:
      throw unsupported();
  }
  return type;
}

template <typename Bits>
Bits load_bits(const unsigned char* bytes, bool little_endian) {
  Bits value = 0;
  for (std::size_t index = 0; index < sizeof(Bits); ++index) {
    const std::size_t byte_index = little_endian ? index : sizeof(Bits) - 1 - index;
    value = static_cast<Bits>(
        value | static_cast<Bits>(static_cast<Bits>(bytes[index]) << (8 * byte_index)));
  }
  return value;
}

template <typename Target, typename Bits>
Target reinterpret_bits(Bits bits) {
  static_assert(sizeof(Target) == sizeof(Bits));
  Target value;
  std::memcpy(&value, &bits, sizeof(Target));
  return value;
}

double half_to_double(std::uint16_t bits) {
  const bool negative = (bits & 0x8000U) != 0;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  double magnitude = 0.0;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  } else {
    magnitude = std::ldexp(static_cast<double>(mantissa + 1024), exponent - 25);
  }
  return negative ? -magnitude : magnitude;
}

template <typename Convert>
void decode_with(const unsigned char* bytes, std::size_t count, std::size_t item_size,
                 double* output, Convert convert) {
  for (std::size_t index = 0; index < count; ++index) {
    output[index] = convert(bytes + index * item_size);
  }
}

/// Converts `count` elements of a numeric type to double.
void decode_elements(const ElementType& type, const unsigned char* bytes, std::size_t count,
                     double* output) {
  const bool little = type.little_endian;
  const std::size_t size = type.item_size;
  switch (type.kind) {
    case ElementKind::floating:
      if (size == 2) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return half_to_double(load_bits<std::uint16_t>(element, little));
        });
      } else if (size == 4) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(
              reinterpret_bits<float>(load_bits<std::uint32_t>(element, little)));
        });
      } else {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return reinterpret_bits<double>(load_bits<std::uint64_t>(element, little));
        });
      }
      return;
    case ElementKind::signed_integer:
      if (size == 1) {
        decode_with(bytes, count, size, output, [](const unsigned char* element) {
          return static_cast<double>(reinterpret_bits<std::int8_t>(element[0]));
        });
      } else if (size == 2) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(
              reinterpret_bits<std::int16_t>(load_bits<std::uint16_t>(element, little)));
        });
      } else if (size == 4) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(
              reinterpret_bits<std::int32_t>(load_bits<std::uint32_t>(element, little)));
        });
      } else {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(
              reinterpret_bits<std::int64_t>(load_bits<std::uint64_t>(element, little)));
        });
      }
      return;
    case ElementKind::unsigned_integer:
      if (size == 1) {
        decode_with(bytes, count, size, output,
                    [](const unsigned char* element) { return static_cast<double>(element[0]); });
      } else if (size == 2) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(load_bits<std::uint16_t>(element, little));
        });
      } else if (size == 4) {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(load_bits<std::uint32_t>(element, little));
        });
      } else {
        decode_with(bytes, count, size, output, [little](const unsigned char* element) {
          return static_cast<double>(load_bits<std::uint64_t>(element, little));
        });
      }
      return;
    case ElementKind::boolean:
      decode_with(bytes, count, size, output,
                  [](const unsigned char* element) { return element[0] != 0 ? 1.0 : 0.0; });
      return;
    case ElementKind::unicode:
    case ElementKind::bytes:
      break;
  }
  LRSMC_ASSERT(false);
}

/// Reorders Fortran-order (first axis fastest) values into C order.
std::vector<double> fortran_to_c_order(const std::vector<double>& fortran,
                                       const std::vector<std::int64_t>& shape) {
  const std::size_t ndim = shape.size();
  std::vector<double> c_order(fortran.size());
  if (fortran.empty()) return c_order;
  std::vector<std::size_t> extents(ndim);
  std::vector<std::size_t> c_strides(ndim);
  std::size_t stride = 1;
  for (std::size_t axis = ndim; axis-- > 0;) {
    extents[axis] = static_cast<std::size_t>(shape[axis]);
    c_strides[axis] = stride;
    stride *= extents[axis];
  }
  std::vector<std::size_t> index(ndim, 0);
  std::size_t c_index = 0;
  for (std::size_t fortran_index = 0; fortran_index < fortran.size(); ++fortran_index) {
    c_order[c_index] = fortran[fortran_index];
    for (std::size_t axis = 0; axis < ndim; ++axis) {
      ++index[axis];
      c_index += c_strides[axis];
      if (index[axis] < extents[axis]) break;
      c_index -= c_strides[axis] * extents[axis];
      index[axis] = 0;
    }
  }
  return c_order;
}

void append_utf8(std::string& text, std::uint32_t code_point) {
  if (code_point < 0x80) {
    text += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    text += static_cast<char>(0xC0 | (code_point >> 6));
    text += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    text += static_cast<char>(0xE0 | (code_point >> 12));
    text += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    text += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    text += static_cast<char>(0xF0 | (code_point >> 18));
    text += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    text += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    text += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

/// Decodes UTF-8 into code points; throws InvalidInput on malformed input.
std::vector<std::uint32_t> decode_utf8(const std::string& text, const std::string& label) {
  std::vector<std::uint32_t> code_points;
  std::size_t position = 0;
  while (position < text.size()) {
    const auto lead = static_cast<unsigned char>(text[position]);
    std::size_t length = 1;
    std::uint32_t code_point = lead;
    std::uint32_t minimum = 0;
    if (lead >= 0x80) {
      if ((lead & 0xE0U) == 0xC0U) {
        length = 2;
        code_point = lead & 0x1FU;
        minimum = 0x80;
      } else if ((lead & 0xF0U) == 0xE0U) {
        length = 3;
        code_point = lead & 0x0FU;
        minimum = 0x800;
      } else if ((lead & 0xF8U) == 0xF0U) {
        length = 4;
        code_point = lead & 0x07U;
        minimum = 0x10000;
      } else {
        length = 0;
      }
    }
    bool valid = length > 0 && position + length <= text.size();
    for (std::size_t offset = 1; valid && offset < length; ++offset) {
      const auto continuation = static_cast<unsigned char>(text[position + offset]);
      valid = (continuation & 0xC0U) == 0x80U;
      code_point = (code_point << 6) | (continuation & 0x3FU);
    }
    valid = valid && code_point >= minimum && code_point <= 0x10FFFF &&
            (code_point < 0xD800 || code_point > 0xDFFF);
    LRSMC_REQUIRE(valid, label, ": text is not valid UTF-8 (at byte ", position, ")");
    code_points.push_back(code_point);
    position += length;
  }
  return code_points;
}

std::string decode_text_element(const std::string& bytes, const ElementType& type,
                                const std::string& label) {
  std::string text;
  if (type.kind == ElementKind::bytes) {
    text = bytes;
    while (!text.empty() && text.back() == '\0') text.pop_back();
    return text;
  }
  std::vector<std::uint32_t> code_points(bytes.size() / 4);
  for (std::size_t index = 0; index < code_points.size(); ++index) {
    code_points[index] = load_bits<std::uint32_t>(
        reinterpret_cast<const unsigned char*>(bytes.data()) + 4 * index, type.little_endian);
  }
  while (!code_points.empty() && code_points.back() == 0) code_points.pop_back();
  for (const std::uint32_t code_point : code_points) {
    LRSMC_REQUIRE(code_point <= 0x10FFFF && (code_point < 0xD800 || code_point > 0xDFFF), label,
                  ": text holds an invalid code point ", code_point);
    append_utf8(text, code_point);
  }
  return text;
}

// --- reading ----------------------------------------------------------------------------------

/// One .npy stream: a numeric array, or (when allowed) a text value.
struct ParsedEntry {
  bool is_text = false;
  Array array;
  std::string text;
};

ParsedEntry read_npy_stream(ByteSource& source, const std::string& label, bool allow_text) {
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
    entry.is_text = true;
    entry.text =
        decode_text_element(read_exactly(source, type.item_size, label, "data"), type, label);
    return entry;
  }

  const std::size_t item_size = type.item_size;
  LRSMC_REQUIRE(count <= std::numeric_limits<std::size_t>::max() / item_size, label, ": shape ",
                shape_text(header.shape), " is too large");
  const std::size_t chunk_elements = std::max<std::size_t>(1, read_chunk_bytes / item_size);
  std::vector<unsigned char> buffer(std::min(count, chunk_elements) * item_size);
  std::vector<double> values;
  if (source.known_remaining() >= count * item_size) values.reserve(count);
  std::size_t done = 0;
  while (done < count) {
    const std::size_t want = std::min(count - done, chunk_elements);
    const std::size_t got = source.read(buffer.data(), want * item_size);
    if (got != want * item_size) {
      throw InvalidInput(concat(label, ": truncated data; shape ", shape_text(header.shape),
                                " needs ", count * item_size, " bytes after the header, found ",
                                done * item_size + got));
    }
    values.resize(done + want);
    decode_elements(type, buffer.data(), want, values.data() + done);
    done += want;
  }
  if (header.fortran_order && header.shape.size() > 1) {
    values = fortran_to_c_order(values, header.shape);
  }
  entry.array = Array(header.shape, std::move(values));
  return entry;
}

std::string zip_error_message(int error_code) {
  zip_error_t error;
  zip_error_init_with_code(&error, error_code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

// --- writing ----------------------------------------------------------------------------------

template <typename Bits>
void store_little_endian(Bits value, char* destination) {
  for (std::size_t index = 0; index < sizeof(Bits); ++index) {
    destination[index] =
        static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * index)) & 0xFFU);
  }
}

/// The header numpy writes for a C-order array: magic, version, length, the dict padded with
/// spaces (plus room for the first axis to grow) and a final newline, 64-byte aligned.
std::string npy_header(const std::string& descr, const std::vector<std::int64_t>& shape) {
  std::string dictionary = concat("{'descr': '", descr,
                                  "', 'fortran_order': False, 'shape': ", shape_text(shape), ", }");
  if (!shape.empty()) {
    const std::size_t digits = std::to_string(shape[0]).size();
    if (digits < growth_axis_max_digits) dictionary.append(growth_axis_max_digits - digits, ' ');
  }
  unsigned major = 1;
  std::size_t length_bytes = 2;
  std::size_t padding = 0;
  std::size_t header_length = 0;
  for (;;) {
    // As numpy: padding = 64 - (prefix + dict + '\n') % 64, between 1 and 64 spaces.
    padding = array_alignment -
              (magic_length + 2 + length_bytes + dictionary.size() + 1) % array_alignment;
    header_length = dictionary.size() + padding + 1;
    if (major == 1 && header_length > 0xFFFF) {
      major = 2;
      length_bytes = 4;
      continue;
    }
    break;
  }
  LRSMC_ASSERT(header_length <= 0xFFFFFFFFU);
  std::string bytes(npy_magic, magic_length);
  bytes += static_cast<char>(major);
  bytes += '\0';
  char length_field[4] = {};
  if (length_bytes == 2) {
    store_little_endian(static_cast<std::uint16_t>(header_length), length_field);
  } else {
    store_little_endian(static_cast<std::uint32_t>(header_length), length_field);
  }
  bytes.append(length_field, length_bytes);
  bytes += dictionary;
  bytes.append(padding, ' ');
  bytes += '\n';
  return bytes;
}

/// The complete .npy file for `array`, after checking that its data matches its shape.
std::string encode_array(const Array& array, StoredType stored_type, const std::string& label) {
  const std::size_t count = checked_element_count(array.shape, label);
  LRSMC_REQUIRE(count == array.data.size(), label, ": array data has ", array.data.size(),
                " values; shape ", shape_text(array.shape), " needs ", count);
  const bool as_float32 = stored_type == StoredType::float32;
  std::string bytes = npy_header(as_float32 ? "<f4" : "<f8", array.shape);
  const std::size_t header_size = bytes.size();
  const std::size_t item_size = as_float32 ? 4 : 8;
  bytes.resize(header_size + count * item_size);
  char* output = &bytes[header_size];
  for (std::size_t index = 0; index < count; ++index) {
    if (as_float32) {
      const auto value = static_cast<float>(array.data[index]);
      store_little_endian(reinterpret_bits<std::uint32_t>(value), output + 4 * index);
    } else {
      store_little_endian(reinterpret_bits<std::uint64_t>(array.data[index]), output + 8 * index);
    }
  }
  return bytes;
}

/// A 0-d numpy unicode ('<U<n>') array holding `text` (UTF-8).
std::string encode_text(const std::string& text, const std::string& label) {
  const std::vector<std::uint32_t> code_points = decode_utf8(text, label);
  const std::size_t length = std::max<std::size_t>(1, code_points.size());
  std::string bytes = npy_header(concat("<U", length), {});
  const std::size_t header_size = bytes.size();
  bytes.resize(header_size + 4 * length, '\0');
  for (std::size_t index = 0; index < code_points.size(); ++index) {
    store_little_endian(code_points[index], &bytes[header_size + 4 * index]);
  }
  return bytes;
}

/// Thrown by a producer when its temporary file name is already taken; another name is tried.
struct TemporaryExists {};

std::atomic<unsigned long> temporary_counter{0};

std::string temporary_path_for(const std::string& path) {
  return concat(path, ".tmp-", ::getpid(), "-", temporary_counter.fetch_add(1));
}

void sync_file(const std::string& file_path, const std::string& label) {
  FileDescriptor file(open_retrying(file_path, O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) {
    throw IoError(concat(label, ": cannot open the temporary file '", file_path, "' (",
                         error_text(errno), ")"));
  }
  if (::fsync(file.get()) != 0) {
    throw IoError(concat(label, ": cannot sync the temporary file '", file_path, "' (",
                         error_text(errno), ")"));
  }
}

/// Best effort: makes the rename durable by syncing the folder that holds `path`.
void sync_parent_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::string directory = slash == std::string::npos
                                    ? std::string(".")
                                    : (slash == 0 ? std::string("/") : path.substr(0, slash));
  FileDescriptor folder(open_retrying(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (folder.get() >= 0) static_cast<void>(::fsync(folder.get()));
}

/// Creates a new file at `temporary` with `bytes` and syncs it.
void write_new_file(const std::string& temporary, const std::string& bytes,
                    const std::string& label) {
  const int descriptor = open_retrying(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (descriptor < 0) {
    if (errno == EEXIST) throw TemporaryExists{};
    throw IoError(concat(label, ": cannot create the temporary file '", temporary, "' (",
                         error_text(errno), ")"));
  }
  FileDescriptor file(descriptor);
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t result =
        ::write(file.get(), bytes.data() + written, std::min(bytes.size() - written, max_io_chunk));
    if (result < 0) {
      if (errno == EINTR) continue;
      throw IoError(concat(label, ": cannot write the temporary file '", temporary, "' (",
                           error_text(errno), ")"));
    }
    written += static_cast<std::size_t>(result);
  }
  if (::fsync(file.get()) != 0) {
    throw IoError(concat(label, ": cannot sync the temporary file '", temporary, "' (",
                         error_text(errno), ")"));
  }
  const int close_error = file.close_now();
  if (close_error != 0) {
    throw IoError(concat(label, ": cannot write the temporary file '", temporary, "' (",
                         error_text(close_error), ")"));
  }
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
  }
  if (zip_close(archive) != 0) throw fail("cannot write the archive");
  sync_file(temporary, label);
}

/// Runs `produce(temporary)` to create and fill a new file next to `path`, then renames it over
/// `path`. On any failure the temporary file is removed and `path` is left untouched.
void commit_atomically(const std::string& path,
                       const std::function<void(const std::string&)>& produce) {
  for (int attempt = 0;; ++attempt) {
    const std::string temporary = temporary_path_for(path);
    try {
      produce(temporary);
    } catch (const TemporaryExists&) {
      if (attempt + 1 < max_temporary_attempts) continue;
      throw IoError(concat(path, ": cannot create a temporary file (", error_text(EEXIST), ")"));
    } catch (...) {
      static_cast<void>(::unlink(temporary.c_str()));
      throw;
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
      const int rename_error = errno;
      static_cast<void>(::unlink(temporary.c_str()));
      throw IoError(concat(path, ": cannot rename the temporary file '", temporary, "' over it (",
                           error_text(rename_error), ")"));
    }
    sync_parent_directory(path);
    return;
  }
}

}  // namespace

Array read_npy(const std::string& path) {
  off_t size = 0;
  FileDescriptor file = open_for_reading(path, &size);
  FileSource source(file.get(), path, size);
  ParsedEntry entry = read_npy_stream(source, path, false);
  return std::move(entry.array);
}

NpzContents read_npz(const std::string& path) {
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

  NpzContents contents;
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
    LRSMC_REQUIRE(contents.arrays.count(key) == 0 && contents.strings.count(key) == 0, label,
                  " appears more than once");
    ZipFile entry_file(zip_fopen_index(archive.get(), index, 0));
    if (!entry_file) {
      throw InvalidInput(
          concat(label, ": cannot open the entry (", zip_strerror(archive.get()), ")"));
    }
    ZipEntrySource source(entry_file.get(), label);
    ParsedEntry entry = read_npy_stream(source, label, true);
    source.drain();
    if (entry.is_text) {
      contents.strings.emplace(key, std::move(entry.text));
    } else {
      contents.arrays.emplace(key, std::move(entry.array));
    }
  }
  return contents;
}

void write_npy(const std::string& path, const Array& array, StoredType stored_type) {
  const std::string bytes = encode_array(array, stored_type, path);
  commit_atomically(path,
                    [&](const std::string& temporary) { write_new_file(temporary, bytes, path); });
}

void write_npz(const std::string& path, const std::map<std::string, Array>& arrays,
               const std::map<std::string, std::string>& strings, StoredType stored_type) {
  std::vector<std::pair<std::string, std::string>> members;
  members.reserve(arrays.size() + strings.size());
  for (const auto& [name, array] : arrays) {
    members.emplace_back(name + ".npy",
                         encode_array(array, stored_type, concat(path, ": entry '", name, "'")));
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
