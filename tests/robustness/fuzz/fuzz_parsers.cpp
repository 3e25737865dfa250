// libFuzzer target for the .npy, .npz, model-file and dataset readers (scripts/fuzz.sh builds
// and runs it; seed corpus in tests/robustness/corpus/, written by make_corpus.py). The first
// byte picks the reader (robustness/readers.hpp); the rest is written to a temporary file,
// because the readers take paths. Any exception other than an lrsmc::Error, an over-long
// message, a crash or a sanitizer report is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lrsmc/errors.hpp"
#include "robustness/readers.hpp"

namespace {

/// The temporary file's name without extension: in /dev/shm when there is one (no disk writes),
/// else in TMPDIR or /tmp, one per process.
const std::string& scratch_stem() {
  static const std::string stem = [] {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string folder = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                         : tmpdir != nullptr && *tmpdir != '\0' ? tmpdir
                                                                : "/tmp";
    return folder + "/lrsmc-fuzz-" + std::to_string(getpid());
  }();
  return stem;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using lrsmc::robustness::Reader;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const Reader reader = lrsmc::robustness::all_readers[mode % 4];
  const bool npz = reader == Reader::npz || reader == Reader::model ||
                   (reader == Reader::dataset && (mode / 16) % 2 == 1);
  const std::string path = scratch_stem() + (npz ? ".npz" : ".npy");
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) std::abort();
  if (size > 1 && std::fwrite(data + 1, 1, size - 1, file) != size - 1) std::abort();
  std::fclose(file);
  try {
    lrsmc::robustness::call_reader(reader, path, mode / 4);
  } catch (const lrsmc::Error& error) {
    if (std::string(error.what()).size() > lrsmc::robustness::message_limit) {
      std::fprintf(stderr, "message of %zu characters from %s\n", std::string(error.what()).size(),
                   lrsmc::robustness::reader_name(reader));
      std::abort();
    }
  }
  std::remove(path.c_str());
  return 0;
}
