// .npy element types and data: every numeric dtype (either byte order, C or Fortran order)
// converted to C-order float64, text elements to UTF-8, and arrays and text encoded for writing.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "io/npy_format.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::io::detail {
namespace {

using lrsmc::detail::concat;

const char* const supported_numeric_types = "float32/float64/int/uint/bool";

bool host_is_little_endian() {
  const std::uint16_t probe = 1;
  unsigned char first_byte = 0;
  std::memcpy(&first_byte, &probe, 1);
  return first_byte == 1;
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

}  // namespace

ElementType parse_descr(const NpyHeader& header, const std::string& label, bool allow_text) {
  const std::string expected = allow_text ? concat(supported_numeric_types, ", or text ('<U'/'|S')")
                                          : std::string(supported_numeric_types);
  if (header.structured) {
    throw InvalidInput(concat(label, ": structured dtypes are not supported; expected ", expected));
  }
  const std::string& descr = header.descr;
  const auto unsupported = [&]() {
    return InvalidInput(concat(label, ": dtype '", lrsmc::detail::excerpt(descr),
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

std::string encode_array(const Array& array, StoredType stored_type, const std::string& label) {
  const std::size_t count = checked_element_count(array.shape, label);
  LRSMC_REQUIRE(count == array.data.size(), label, ": array data has ", array.data.size(),
                " values; shape ", shape_text(array.shape), " needs ", count);
  const char* descr = stored_type == StoredType::float32 ? "<f4"
                      : stored_type == StoredType::int32 ? "<i4"
                                                         : "<f8";
  std::string bytes = npy_header(descr, array.shape);
  const std::size_t header_size = bytes.size();
  const std::size_t item_size = stored_type == StoredType::float64 ? 8 : 4;
  bytes.resize(header_size + count * item_size);
  char* output = &bytes[header_size];
  for (std::size_t index = 0; index < count; ++index) {
    const double value = array.data[index];
    switch (stored_type) {
      case StoredType::float32:
        store_little_endian(reinterpret_bits<std::uint32_t>(static_cast<float>(value)),
                            output + 4 * index);
        break;
      case StoredType::int32:
        LRSMC_REQUIRE(value == std::floor(value) && value >= -2147483648.0 && value <= 2147483647.0,
                      label, ": value ", value, " at element ", index,
                      " is not an integer that int32 holds");
        store_little_endian(static_cast<std::uint32_t>(static_cast<std::int32_t>(value)),
                            output + 4 * index);
        break;
      case StoredType::float64:
        store_little_endian(reinterpret_bits<std::uint64_t>(value), output + 8 * index);
        break;
    }
  }
  return bytes;
}

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

}  // namespace lrsmc::io::detail
