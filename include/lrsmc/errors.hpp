// Error types thrown by lrsmc. Every message names the source (file or option), the field and
// the offending value: "<source>: <field> <problem>; got <value>, expected <constraint>".
#pragma once

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

namespace lrsmc {

/// Base of every exception lrsmc throws. The library never calls exit or abort.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bad input from a user: a file's contents, an option, a shape, a value (CLI exit code 2).
class InvalidInput : public Error {
 public:
  using Error::Error;
};

/// A file could not be opened, read, written or renamed.
class IoError : public Error {
 public:
  using Error::Error;
};

/// The requested problem does not fit in (device) memory; the message says what would fit.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

/// A CUDA runtime or library call failed.
class CudaError : public Error {
 public:
  using Error::Error;
};

/// The objective or its gradient became NaN or infinite.
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {

/// Untrusted text as a message quotes it: bytes outside printable ASCII as '?', cut after
/// `limit` characters, saying how long the whole was ("abc... (8388608 bytes)").
inline std::string excerpt(const std::string& text, std::size_t limit = 40) {
  std::string quoted;
  for (const char character : text.substr(0, limit)) {
    const auto byte = static_cast<unsigned char>(character);
    quoted += (byte >= 0x20 && byte < 0x7f) ? character : '?';
  }
  if (text.size() > limit) quoted += "... (" + std::to_string(text.size()) + " bytes)";
  return quoted;
}

template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream stream;
  stream.precision(10);
  (stream << ... << parts);
  return stream.str();
}
}  // namespace detail

}  // namespace lrsmc

/// Throws lrsmc::InvalidInput with the streamed message parts when `condition` is false.
#define LRSMC_REQUIRE(condition, ...)                                      \
  do {                                                                     \
    if (!(condition)) throw ::lrsmc::InvalidInput(::lrsmc::detail::concat(__VA_ARGS__)); \
  } while (false)

/// Internal invariant; a failure is a bug in lrsmc, reported as lrsmc::Error.
#define LRSMC_ASSERT(condition)                                                       \
  do {                                                                                \
    if (!(condition))                                                                 \
      throw ::lrsmc::Error(::lrsmc::detail::concat("internal error: ", #condition,   \
                                                   " failed at ", __FILE__, ":", __LINE__)); \
  } while (false)
