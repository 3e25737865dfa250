// POSIX file access for the .npy and .npz readers and writers (posix_file.hpp): opening a file to
// read, and writing an output: atomically (a temporary file in the same folder, fsync, rename)
// over a regular file or a missing path, straight into a character device or a FIFO, through a
// symbolic link into its target.
#include "io/posix_file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <vector>

#include "lrsmc/errors.hpp"

namespace lrsmc::io::detail {

std::string folder_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

std::string name_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

namespace {

using lrsmc::detail::concat;

constexpr int max_temporary_attempts = 100;

/// The most symbolic links followed from an output path to its target (Linux's own limit).
constexpr int max_link_depth = 40;

/// The longest file name (one path component) the writers create. libzip appends ".XXXXXX" to
/// the name of the archive it writes, so temporary names leave room for those 7 characters.
constexpr std::size_t max_name_length = NAME_MAX;
constexpr std::size_t zip_suffix_length = 7;

/// The marker between an output's name and the process and counter of its temporary file.
constexpr const char* temporary_marker = ".tmp-";

std::atomic<unsigned long> temporary_counter{0};

/// The temporary files being written now, for remove_unfinished_outputs (a signal handler): a
/// fixed table of NUL-terminated paths, each slot claimed and released through its flag.
constexpr int max_unfinished = 64;
struct UnfinishedSlot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 holds a path
  char path[PATH_MAX] = {};
};
UnfinishedSlot unfinished[max_unfinished];

/// Records `path` as a temporary being written until the returned slot is released (-1 when the
/// table is full or the path too long: such a file is left for remove_stale_temporaries).
int register_unfinished(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  for (int slot = 0; slot < max_unfinished; ++slot) {
    int expected = 0;
    if (unfinished[slot].state.compare_exchange_strong(expected, 1)) {
      std::copy(path.begin(), path.end(), unfinished[slot].path);
      unfinished[slot].path[path.size()] = '\0';
      unfinished[slot].state.store(2);
      return slot;
    }
  }
  return -1;
}

void release_unfinished(int slot) {
  if (slot >= 0) unfinished[slot].state.store(0);
}

/// Holds a temporary's slot in the table from the moment it is created until the output is
/// complete (renamed, or copied into its device).
class UnfinishedOutput {
 public:
  UnfinishedOutput() = default;
  UnfinishedOutput(const UnfinishedOutput&) = delete;
  UnfinishedOutput& operator=(const UnfinishedOutput&) = delete;
  ~UnfinishedOutput() { release_unfinished(slot_); }

  void track(const std::string& path) {
    release_unfinished(slot_);
    slot_ = register_unfinished(path);
  }

 private:
  int slot_ = -1;
};

std::string join(const std::string& folder, const std::string& name) {
  return folder == "/" ? "/" + name : folder + "/" + name;
}

/// A temporary name next to `path`: the output's name (shortened when the whole would exceed a
/// file name's length), the marker, this process and a counter.
std::string temporary_path_for(const std::string& path) {
  const std::string suffix =
      concat(temporary_marker, ::getpid(), "-", temporary_counter.fetch_add(1));
  std::string name = name_of(path);
  const std::size_t room = max_name_length - zip_suffix_length - suffix.size();
  if (name.size() > room) name.resize(room);
  return join(folder_of(path), name + suffix);
}

/// Whether `text` is one or more decimal digits.
bool all_digits(const std::string& text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// The process id in `entry` when it is a temporary file of our naming for the output `name`
/// (temporary_path_for, possibly with libzip's ".XXXXXX"); 0 otherwise.
long temporary_owner(const std::string& entry, const std::string& name) {
  const std::size_t marker = entry.rfind(temporary_marker);
  if (marker == std::string::npos || marker == 0) return 0;
  if (marker > name.size() || name.compare(0, marker, entry, 0, marker) != 0) return 0;
  std::string suffix = entry.substr(marker);
  const std::size_t dot = suffix.find('.', 1);
  if (dot != std::string::npos) {
    if (suffix.size() - dot != zip_suffix_length) return 0;
    suffix.resize(dot);
  }
  // A shortened name is exactly as long as temporary_path_for makes it.
  if (marker != name.size() && marker + suffix.size() + zip_suffix_length != max_name_length) {
    return 0;
  }
  const std::string rest = suffix.substr(std::char_traits<char>::length(temporary_marker));
  const std::size_t dash = rest.find('-');
  if (dash == std::string::npos) return 0;
  const std::string pid = rest.substr(0, dash);
  if (!all_digits(pid) || !all_digits(rest.substr(dash + 1)) || pid.size() > 9) return 0;
  return std::strtol(pid.c_str(), nullptr, 10);
}

/// Removes the temporary files that a killed lrsmc process left next to `path`: regular files of
/// our naming for this output, owned by this user, whose process no longer exists.
void remove_stale_temporaries(const std::string& path) {
  const std::string folder = folder_of(path);
  const std::string name = name_of(path);
  DIR* listing = ::opendir(folder.c_str());
  if (listing == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(listing)) {
    const std::string entry_name = entry->d_name;
    const long owner = temporary_owner(entry_name, name);
    if (owner <= 0 || owner == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(owner), 0) == 0 || errno != ESRCH) continue;
    stale.push_back(entry_name);
  }
  ::closedir(listing);
  for (const std::string& entry_name : stale) {
    const std::string stale_path = join(folder, entry_name);
    struct stat information {};
    if (::lstat(stale_path.c_str(), &information) == 0 && S_ISREG(information.st_mode) &&
        information.st_uid == ::geteuid()) {
      static_cast<void>(::unlink(stale_path.c_str()));
    }
  }
}

/// Best effort: makes the rename durable by syncing the folder that holds `path`.
void sync_parent_directory(const std::string& path) {
  FileDescriptor folder(open_retrying(folder_of(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (folder.get() >= 0) static_cast<void>(::fsync(folder.get()));
}

/// Copies the file at `source_path` into the open descriptor `target`; throws IoError naming
/// `path`.
void copy_into(const std::string& source_path, int target, const std::string& path) {
  FileDescriptor source = open_for_reading(source_path);
  std::vector<char> buffer(std::size_t{1} << 20);
  for (;;) {
    const ssize_t got = ::read(source.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      throw IoError(concat(path, ": cannot read the temporary file '", source_path, "' (",
                           error_text(errno), ")"));
    }
    if (got == 0) return;
    const int write_error = write_all(target, buffer.data(), static_cast<std::size_t>(got));
    if (write_error != 0)
      throw IoError(concat(path, ": cannot write (", error_text(write_error), ")"));
  }
}

/// Runs `produce` on a fresh temporary name next to `beside` (another name when one is taken)
/// and returns that name; on failure removes the temporary file and rethrows. Errors name `path`.
std::string produce_temporary(const std::string& beside, const std::string& path,
                              const std::function<void(const std::string&)>& produce,
                              UnfinishedOutput& tracker) {
  for (int attempt = 0;; ++attempt) {
    const std::string temporary = temporary_path_for(beside);
    tracker.track(temporary);
    try {
      produce(temporary);
      return temporary;
    } catch (const TemporaryExists&) {
      if (attempt + 1 < max_temporary_attempts) continue;
      throw IoError(concat(path, ": cannot create a temporary file (", error_text(EEXIST), ")"));
    } catch (...) {
      static_cast<void>(::unlink(temporary.c_str()));
      throw;
    }
  }
}

/// Writes into a character device or a FIFO at `path`: the producer fills a temporary file in
/// the system's temporary folder, whose bytes are then written into `path` as one stream.
void write_into_stream(const std::string& path,
                       const std::function<void(const std::string&)>& produce) {
  const char* folder = std::getenv("TMPDIR");
  UnfinishedOutput tracker;
  const std::string temporary = produce_temporary(
      join(folder != nullptr && *folder != '\0' ? folder : "/tmp", "lrsmc-stream"), path, produce,
      tracker);
  try {
    FileDescriptor target(open_retrying(path, O_WRONLY | O_CLOEXEC));
    if (target.get() < 0) {
      throw IoError(concat(path, ": cannot open for writing (", error_text(errno), ")"));
    }
    copy_into(temporary, target.get(), path);
    const int close_error = target.close_now();
    if (close_error != 0)
      throw IoError(concat(path, ": cannot write (", error_text(close_error), ")"));
  } catch (...) {
    static_cast<void>(::unlink(temporary.c_str()));
    throw;
  }
  static_cast<void>(::unlink(temporary.c_str()));
}

}  // namespace

OutputTarget resolve_output(const std::string& path) {
  if (path.empty()) throw IoError("an output path is empty; expected a file name");
  std::string current = path;
  for (int depth = 0;; ++depth) {
    struct stat information {};
    if (::lstat(current.c_str(), &information) != 0) {
      if (errno == ENOENT) return {current, OutputKind::new_file};
      throw IoError(concat(path, ": cannot examine the output path (", error_text(errno), ")"));
    }
    if (S_ISLNK(information.st_mode)) {
      if (depth >= max_link_depth) {
        throw IoError(concat(path, ": cannot follow the symbolic link (", error_text(ELOOP), ")"));
      }
      std::vector<char> target(static_cast<std::size_t>(PATH_MAX) + 1);
      const ssize_t length = ::readlink(current.c_str(), target.data(), target.size() - 1);
      if (length < 0 || static_cast<std::size_t>(length) >= target.size() - 1) {
        throw IoError(concat(path, ": cannot read the symbolic link '", current, "' (",
                             error_text(length < 0 ? errno : ENAMETOOLONG), ")"));
      }
      const std::string link(target.data(), static_cast<std::size_t>(length));
      current = link.front() == '/' ? link : join(folder_of(current), link);
      continue;
    }
    if (S_ISREG(information.st_mode)) return {current, OutputKind::regular_file};
    if (S_ISCHR(information.st_mode) || S_ISFIFO(information.st_mode)) {
      return {current, OutputKind::stream};
    }
    const char* what = S_ISDIR(information.st_mode)    ? "a folder"
                       : S_ISBLK(information.st_mode)  ? "a block device"
                       : S_ISSOCK(information.st_mode) ? "a socket"
                                                       : "a special file";
    throw IoError(concat(
        path, ": ", current == path ? std::string("it") : concat("its link target '", current, "'"),
        " is ", what,
        "; expected a regular file, a character device such as "
        "/dev/null, a FIFO, or a name that does not exist yet"));
  }
}

std::string error_text(int error_number) { return std::generic_category().message(error_number); }

int write_all(int descriptor, const char* data, std::size_t size) {
  std::size_t written = 0;
  while (written < size) {
    const ssize_t result =
        ::write(descriptor, data + written, std::min(size - written, max_io_chunk));
    if (result < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    written += static_cast<std::size_t>(result);
  }
  return 0;
}

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
  const int write_error = write_all(file.get(), bytes.data(), bytes.size());
  if (write_error != 0) {
    throw IoError(concat(label, ": cannot write the temporary file '", temporary, "' (",
                         error_text(write_error), ")"));
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

void commit_atomically(const std::string& requested_path,
                       const std::function<void(const std::string&)>& produce) {
  const OutputTarget target = resolve_output(requested_path);
  if (target.kind == OutputKind::stream) {
    write_into_stream(requested_path, produce);
    return;
  }
  const std::string& path = target.path;
  remove_stale_temporaries(path);
  UnfinishedOutput tracker;
  const std::string temporary = produce_temporary(path, path, produce, tracker);
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int rename_error = errno;
    static_cast<void>(::unlink(temporary.c_str()));
    throw IoError(concat(path, ": cannot rename the temporary file '", temporary, "' over it (",
                         error_text(rename_error), ")"));
  }
  sync_parent_directory(path);
}

}  // namespace lrsmc::io::detail

namespace lrsmc::io {

using lrsmc::detail::concat;

void remove_unfinished_outputs() noexcept {
  for (auto& slot : detail::unfinished) {
    if (slot.state.load() == 2) static_cast<void>(::unlink(slot.path));
  }
}

namespace {

std::string name_too_long(const std::string& name) {
  return concat("the file name is ", name.size(), " characters long; at most ", NAME_MAX,
                " are allowed");
}

}  // namespace

std::string output_problem(const std::string& path) {
  if (detail::name_of(path).size() > NAME_MAX) return name_too_long(detail::name_of(path));
  try {
    const detail::OutputTarget target = detail::resolve_output(path);
    if (target.kind == detail::OutputKind::stream) {
      if (::access(target.path.c_str(), W_OK) != 0) {
        return concat("cannot write to '", target.path, "' (", detail::error_text(errno), ")");
      }
      return {};
    }
    const std::string name = detail::name_of(target.path);
    if (name.empty() || name == "." || name == "..") return "expected a file name, not a folder";
    if (name.size() > NAME_MAX) return name_too_long(name);
    const std::string folder = detail::folder_of(target.path);
    struct stat information {};
    if (::stat(folder.c_str(), &information) != 0 || !S_ISDIR(information.st_mode)) {
      return concat("the folder '", folder, "' does not exist; expected an existing folder");
    }
    if (::access(folder.c_str(), W_OK | X_OK) != 0) {
      return concat("the folder '", folder, "' is not writable (", detail::error_text(errno), ")");
    }
    return {};
  } catch (const IoError& error) {
    const std::string text = error.what();
    return text.compare(0, path.size() + 2, path + ": ") == 0 ? text.substr(path.size() + 2) : text;
  }
}

}  // namespace lrsmc::io
