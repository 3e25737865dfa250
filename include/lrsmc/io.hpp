// Reading and writing numpy .npy and .npz files (NumPy format 1.0-3.0), the data and model
// file formats of lrsmc. Writes are atomic: a temporary file in the same folder, fsync, rename
// (a character device or a FIFO is written into; a symbolic link is followed to its target).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "lrsmc/array.hpp"

namespace lrsmc::io {

/// Element type written to disk. Arrays are always float64 in memory; int32 stores integers
/// (indices, counts) exactly and refuses any other value.
enum class StoredType { float32, float64, int32 };

/// Contents of an .npz archive: numeric arrays, plus text entries (numpy unicode '<U' or bytes
/// '|S' arrays of zero or one dimension, decoded to UTF-8).
struct NpzContents {
  std::map<std::string, Array> arrays;
  std::map<std::string, std::string> strings;
  std::vector<std::string> names;  ///< every entry of the archive, read or not, in its order
};

/// Picks, from an array's full shape, which indices of its first axis to keep (ascending, each
/// within the axis); the reader streams past the others without storing them, so that a process
/// holds only its share of a large array. The array read has that many indices on its first axis.
using RowChooser = std::function<std::vector<std::int64_t>(const std::vector<std::int64_t>& shape)>;

/// Which entries of an .npz archive to read, and how large they may be. The limits are checked
/// against the sizes the archive and each entry's header declare, before anything is decoded.
struct NpzSelection {
  std::vector<std::string> entries;  ///< names to read (without ".npy"); empty: every entry
  /// The most values one numeric entry may hold (the product of its shape).
  std::size_t max_values = std::numeric_limits<std::size_t>::max() / 16;
  std::size_t max_text_bytes = std::size_t{16} << 20;  ///< the longest text entry, in bytes
  /// When set, only these first-axis indices of each numeric entry are kept (and max_values
  /// applies to what is kept).
  RowChooser rows;
};

/// Reads an .npy file of dtype float16/32/64, (u)int8..64 or bool, C or Fortran order, into a
/// C-order float64 Array. Throws IoError (missing/unreadable file) or InvalidInput (bad header,
/// unsupported dtype, truncated data), naming the file.
[[nodiscard]] Array read_npy(const std::string& path);
/// read_npy keeping only the first-axis indices `rows` picks (the others are read past, not
/// stored); throws InvalidInput naming the file when the array has no axis or an index is out of
/// range or out of order.
[[nodiscard]] Array read_npy(const std::string& path, const RowChooser& rows);

/// Reads every entry of an .npz archive (stored or deflated, as numpy.savez and
/// numpy.savez_compressed write). Entry names drop the ".npy" suffix.
[[nodiscard]] NpzContents read_npz(const std::string& path);

/// Reads only the selected entries of an .npz archive (the others are listed in `names` but
/// never decompressed); an entry larger than the selection's limits is refused by name before
/// it is decoded. A selected entry that the archive lacks is simply absent from the result.
[[nodiscard]] NpzContents read_npz(const std::string& path, const NpzSelection& selection);

/// The names of an .npz archive's entries (without ".npy"), in the archive's order; nothing is
/// decompressed.
[[nodiscard]] std::vector<std::string> list_npz(const std::string& path);

/// Writes one array as .npy (little-endian, C order), atomically.
void write_npy(const std::string& path, const Array& array,
               StoredType stored_type = StoredType::float32);

/// Writes an uncompressed .npz (like numpy.savez), atomically. Text entries are written as
/// 0-d numpy unicode ('<U') arrays, so Python reads them with str(archive["name"]).
/// `stored_types` gives some arrays another element type than `stored_type`.
void write_npz(const std::string& path, const std::map<std::string, Array>& arrays,
               const std::map<std::string, std::string>& strings = {},
               StoredType stored_type = StoredType::float64,
               const std::map<std::string, StoredType>& stored_types = {});

/// Writes a text file atomically (JSON outputs, for example).
void write_text_file(const std::string& path, const std::string& text);

/// Why an output could not be written at `path`, or an empty string when it can: the folder is
/// missing or not writable, the name is too long, or the path (after symbolic links) is a folder,
/// a block device or a socket. Checked by the command line before any work; the writers write
/// regular files atomically and write straight into character devices and FIFOs.
[[nodiscard]] std::string output_problem(const std::string& path);

/// Removes the temporary files of the writes in progress, which would otherwise be left behind
/// when the process ends before they complete. Async-signal-safe: for a handler of SIGINT or
/// SIGTERM that then ends the process.
void remove_unfinished_outputs() noexcept;

/// True when `path` ends with the given extension (case-insensitive), e.g. ".npz".
[[nodiscard]] bool has_extension(const std::string& path, const std::string& extension);

}  // namespace lrsmc::io
