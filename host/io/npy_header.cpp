// The .npy header (NumPy format 1.0-3.0): parsing the Python dictionary literal of a file read,
// and writing the header numpy writes; shapes and the text quoted in error messages.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "io/npy_format.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::io::detail {
namespace {

using lrsmc::detail::concat;

constexpr int max_header_nesting = 16;
/// numpy aligns the data of .npy files to 64 bytes.
constexpr std::size_t array_alignment = 64;
/// numpy reserves room in the header for the first axis to grow to this many digits.
constexpr std::size_t growth_axis_max_digits = 21;

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
      fail("unknown name '" + lrsmc::detail::excerpt(name) + "'");
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

}  // namespace

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t axis = 0; axis < shape.size(); ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(shape[axis]);
  }
  if (shape.size() == 1) text += ",";
  return text + ")";
}

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

}  // namespace lrsmc::io::detail
