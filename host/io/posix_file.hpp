// Internal: POSIX file access for the .npy and .npz readers and writers of host/io/: an owned
// file descriptor, opening a file to read, and atomic writing (a temporary file in the same
// folder, fsync, rename).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <functional>
#include <string>

namespace lrsmc::io::detail {

/// The most bytes passed to one read or write call.
inline constexpr std::size_t max_io_chunk = std::size_t{1} << 30;

/// The folder part of `path` ("." when it has none, "/" for a name in the root folder).
[[nodiscard]] std::string folder_of(const std::string& path);

/// The last component of `path`.
[[nodiscard]] std::string name_of(const std::string& path);

/// The system's message for the errno value `error_number`.
[[nodiscard]] std::string error_text(int error_number);

/// write(2) of all `size` bytes, in chunks of max_io_chunk, retried when interrupted; returns 0,
/// or the errno of the write that failed.
[[nodiscard]] int write_all(int descriptor, const char* data, std::size_t size);

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

/// open(2), retried while it is interrupted by a signal; -1 (and errno) when it fails.
[[nodiscard]] int open_retrying(const std::string& path, int flags, mode_t mode = 0);

/// Opens an existing file for reading; throws IoError naming the file when that fails.
[[nodiscard]] FileDescriptor open_for_reading(const std::string& path, off_t* size = nullptr);

/// Thrown by a producer when its temporary file name is already taken; another name is tried.
struct TemporaryExists {};

/// Syncs the temporary file at `file_path` to disk; throws IoError naming `label`.
void sync_file(const std::string& file_path, const std::string& label);

/// Creates a new file at `temporary` with `bytes` and syncs it.
void write_new_file(const std::string& temporary, const std::string& bytes,
                    const std::string& label);

/// What an output path names, once symbolic links are followed.
enum class OutputKind {
  new_file,      ///< nothing exists there yet
  regular_file,  ///< an existing regular file, replaced atomically
  stream,        ///< a character device or a FIFO, written into as a stream
};

struct OutputTarget {
  std::string path;  ///< the path with every symbolic link followed
  OutputKind kind;
};

/// Follows the symbolic links from `path` to what it names; throws IoError naming `path` when
/// that is a folder, a block device, a socket, or a link that cannot be followed.
[[nodiscard]] OutputTarget resolve_output(const std::string& path);

/// Writes an output at `path`, never half of one: for a regular file or a missing name,
/// `produce(temporary)` creates and fills a new file next to it (named by temporary_path_for,
/// `path`'s name + ".tmp-PID-N"), which is renamed over it; for a character device or a FIFO the
/// bytes produced are written into it; a symbolic link is followed to its target, which is
/// written the same way. Temporary files of this naming left by a killed process are removed
/// first. On any failure the temporary file is removed and `path` is left untouched.
void commit_atomically(const std::string& path,
                       const std::function<void(const std::string&)>& produce);

}  // namespace lrsmc::io::detail
