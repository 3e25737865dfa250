#include "robustness/mutator.hpp"

#include <algorithm>
#include <array>

namespace lrsmc::robustness {

std::size_t Mutator::position(std::size_t size) {
  if (size == 0) return 0;
  const std::size_t limit = below(2) == 0 ? std::min<std::size_t>(size, 256) : size;
  return static_cast<std::size_t>(below(limit));
}

std::string Mutator::mutate(const std::string& bytes, std::string* description) {
  static constexpr std::array<std::uint32_t, 8> boundary_words = {
      0x00000000U, 0xFFFFFFFFU, 0x7FFFFFFFU, 0x80000000U, 0x0000FFFFU, 0x00010000U,
      0x000000FFU, 0xFFFFFFFEU};
  static constexpr std::array<char, 8> boundary_bytes = {'\0', '\xff', '\x7f', '\x80',
                                                         '9',  '-',    '(',    '\''};
  std::string result = bytes;
  std::string account;
  const std::uint64_t edits = 1 + below(4);
  for (std::uint64_t edit = 0; edit < edits; ++edit) {
    const std::size_t at = position(result.size());
    switch (below(8)) {
      case 0:  // truncate
        result.resize(at);
        account += "truncate@" + std::to_string(at) + " ";
        break;
      case 1: {  // flip one to eight bits
        if (result.empty()) break;
        const std::uint64_t flips = 1 + below(8);
        for (std::uint64_t flip = 0; flip < flips; ++flip) {
          const std::size_t where = position(result.size());
          result[where] = static_cast<char>(result[where] ^ (1 << below(8)));
        }
        account += "flip" + std::to_string(flips) + "@" + std::to_string(at) + " ";
        break;
      }
      case 2: {  // insert random bytes
        std::string inserted(1 + below(16), '\0');
        for (char& character : inserted) character = static_cast<char>(below(256));
        result.insert(at, inserted);
        account += "insert" + std::to_string(inserted.size()) + "@" + std::to_string(at) + " ";
        break;
      }
      case 3: {  // delete a range
        const std::size_t count = std::min<std::size_t>(1 + below(32), result.size() - at);
        result.erase(at, count);
        account += "delete" + std::to_string(count) + "@" + std::to_string(at) + " ";
        break;
      }
      case 4:  // one boundary byte
        if (result.empty()) break;
        result[std::min(at, result.size() - 1)] = boundary_bytes[below(boundary_bytes.size())];
        account += "byte@" + std::to_string(at) + " ";
        break;
      case 5: {  // a little-endian boundary word (zip sizes, offsets, header lengths)
        if (result.size() < 4) break;
        const std::size_t where = std::min(at, result.size() - 4);
        const std::uint32_t word = boundary_words[below(boundary_words.size())];
        for (std::size_t index = 0; index < 4; ++index) {
          result[where + index] = static_cast<char>((word >> (8 * index)) & 0xFFU);
        }
        account += "word@" + std::to_string(where) + " ";
        break;
      }
      case 6: {  // repeat a chunk
        const std::size_t count = std::min<std::size_t>(1 + below(64), result.size() - at);
        result.insert(at, result.substr(at, count));
        account += "repeat" + std::to_string(count) + "@" + std::to_string(at) + " ";
        break;
      }
      default: {  // a long run of digits (huge shapes and lengths in text headers)
        result.insert(at, std::string(1 + below(40), static_cast<char>('0' + below(10))));
        account += "digits@" + std::to_string(at) + " ";
        break;
      }
    }
  }
  if (description != nullptr) *description = account;
  return result;
}

}  // namespace lrsmc::robustness
