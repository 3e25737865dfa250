// Seeded, reproducible edits of a file's bytes for the robustness tests: the same seed gives
// the same edits on every platform (std::mt19937_64 drawn without the library's distributions).
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace lrsmc::robustness {

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : random_(seed) {}

  /// `bytes` after one to four random edits: truncation, bit flips, byte insertions and
  /// deletions, overwrites with boundary values (0, 0xFF, 0x7FFFFFFF, ...), repeated chunks
  /// and long digit runs. Half of the edits fall in the first 256 bytes, where the headers are.
  /// `description` (when given) receives a short account of the edits, for failure messages.
  [[nodiscard]] std::string mutate(const std::string& bytes, std::string* description = nullptr);

  /// A number in [0, bound) (0 when bound is 0).
  std::uint64_t below(std::uint64_t bound) { return bound == 0 ? 0 : random_() % bound; }

 private:
  std::size_t position(std::size_t size);
  std::mt19937_64 random_;
};

}  // namespace lrsmc::robustness
