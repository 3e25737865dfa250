// The file readers the robustness tests and the fuzz target drive: each takes a path, and on bad
// input must throw an lrsmc::Error (never crash, abort or throw anything else).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lrsmc::robustness {

/// The longest error message a reader may give (a message quotes only excerpts of a file).
inline constexpr std::size_t message_limit = 2000;

enum class Reader { npy, npz, model, dataset };
inline constexpr std::array<Reader, 4> all_readers = {Reader::npy, Reader::npz, Reader::model,
                                                      Reader::dataset};

[[nodiscard]] const char* reader_name(Reader reader);

/// Reads `path` with `reader`; the dataset reader uses layout number `variant` % 4 (all four
/// layouts of lrsmc::DataLayout) and, for an .npz, the default field. Throws what it throws.
void call_reader(Reader reader, const std::string& path, std::uint64_t variant = 0);

}  // namespace lrsmc::robustness
