// POSIX file access for the .npy and .npz readers and writers (posix_file.hpp): opening a file to
// read, and atomic writing: a temporary file in the same folder, fsync, rename.
#include "io/posix_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <system_error>

#include "lrsmc/errors.hpp"

namespace lrsmc::io::detail {
namespace {

using lrsmc::detail::concat;

constexpr int max_temporary_attempts = 100;

std::atomic<unsigned long> temporary_counter{0};

std::string temporary_path_for(const std::string& path) {
  return concat(path, ".tmp-", ::getpid(), "-", temporary_counter.fetch_add(1));
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

}  // namespace

std::string error_text(int error_number) { return std::generic_category().message(error_number); }

int open_retrying(const std::string& path, int flags, mode_t mode) {
  int descriptor = -1;
  do {
    descriptor = ::open(path.c_str(), flags, mode);
  } while (descriptor < 0 && errno == EINTR);
  return descriptor;
}

FileDescriptor open_for_reading(const std::string& path, off_t* size) {
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

}  // namespace lrsmc::io::detail
