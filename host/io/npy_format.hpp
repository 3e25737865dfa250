// Internal: the NumPy .npy format as the readers and writers of host/io/ share it: the header
// (npy_header.cpp), the element types and the conversion of data to and from float64
// (npy_data.cpp), and the reading of one .npy stream from a file or a zip entry (npy.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lrsmc/io.hpp"

namespace lrsmc::io::detail {

inline constexpr char npy_magic[] = "\x93NUMPY";
inline constexpr std::size_t magic_length = 6;

// --- shapes, messages and bytes (npy_header.cpp) ----------------------------------------------

inline bool is_digit(char character) { return character >= '0' && character <= '9'; }

/// numpy's repr of a shape tuple: "()", "(5,)", "(2, 3)".
[[nodiscard]] std::string shape_text(const std::vector<std::int64_t>& shape);

/// Number of elements of `shape`; throws when an extent is negative or the product of the
/// non-zero extents overflows int64 (so Array::element_count can never overflow either).
[[nodiscard]] std::size_t checked_element_count(const std::vector<std::int64_t>& shape,
                                                const std::string& label);

/// Stores `value` at `destination` as sizeof(Bits) little-endian bytes.
template <typename Bits>
void store_little_endian(Bits value, char* destination) {
  for (std::size_t index = 0; index < sizeof(Bits); ++index) {
    destination[index] =
        static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * index)) & 0xFFU);
  }
}

// --- the header (npy_header.cpp) --------------------------------------------------------------

struct NpyHeader {
  std::string descr;
  bool structured = false;  // descr was a list (a structured dtype)
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
};

/// The header's dictionary literal, parsed and checked; throws InvalidInput naming `label`.
[[nodiscard]] NpyHeader interpret_header(const std::string& header_text, const std::string& label);

/// The header numpy writes for a C-order array: magic, version, length, the dict padded with
/// spaces (plus room for the first axis to grow) and a final newline, 64-byte aligned.
[[nodiscard]] std::string npy_header(const std::string& descr,
                                     const std::vector<std::int64_t>& shape);

// --- element types and data (npy_data.cpp) ----------------------------------------------------

enum class ElementKind { floating, signed_integer, unsigned_integer, boolean, unicode, bytes };

struct ElementType {
  ElementKind kind = ElementKind::floating;
  std::size_t item_size = 8;
  bool little_endian = true;
};

/// The element type of `header`'s descr; text types ('<U', '|S') only with `allow_text`. Throws
/// InvalidInput naming `label` for any other.
[[nodiscard]] ElementType parse_descr(const NpyHeader& header, const std::string& label,
                                      bool allow_text);

/// Converts `count` elements of a numeric type to double.
void decode_elements(const ElementType& type, const unsigned char* bytes, std::size_t count,
                     double* output);

/// Reorders Fortran-order (first axis fastest) values into C order.
[[nodiscard]] std::vector<double> fortran_to_c_order(const std::vector<double>& fortran,
                                                     const std::vector<std::int64_t>& shape);

/// The text of one element of a text type (UTF-8, trailing NULs removed); throws InvalidInput
/// naming `label` for an invalid code point.
[[nodiscard]] std::string decode_text_element(const std::string& bytes, const ElementType& type,
                                              const std::string& label);

/// The complete .npy file for `array`, after checking that its data matches its shape.
[[nodiscard]] std::string encode_array(const Array& array, StoredType stored_type,
                                       const std::string& label);

/// A 0-d numpy unicode ('<U<n>') array holding `text` (UTF-8).
[[nodiscard]] std::string encode_text(const std::string& text, const std::string& label);

// --- reading (npy.cpp) ------------------------------------------------------------------------

/// A sequential stream of bytes: a file or a zip archive entry.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Reads up to `count` bytes; returns fewer only at the end of the data.
  virtual std::size_t read(unsigned char* buffer, std::size_t count) = 0;
  /// Bytes certainly left to read (0 when unknown); used only to reserve memory.
  [[nodiscard]] virtual std::size_t known_remaining() const { return 0; }
};

/// One .npy stream: a numeric array, or (when allowed) a text value.
struct ParsedEntry {
  bool is_text = false;
  Array array;
  std::string text;
};

/// The largest .npy header read.
inline constexpr std::size_t max_header_length = std::size_t{1} << 20;

/// Reads one .npy stream from `source`; throws InvalidInput naming `label` for a malformed or
/// unsupported one (text only with `allow_text`), or one whose header declares more than
/// `max_values` values or a text longer than `max_text_bytes`.
/// With `rows`, only the first-axis indices it picks are kept (RowChooser), and `max_values`
/// applies to them.
[[nodiscard]] ParsedEntry read_npy_stream(
    ByteSource& source, const std::string& label, bool allow_text,
    std::size_t max_values = std::numeric_limits<std::size_t>::max(),
    std::size_t max_text_bytes = std::numeric_limits<std::size_t>::max(),
    const RowChooser& rows = nullptr);

}  // namespace lrsmc::io::detail
