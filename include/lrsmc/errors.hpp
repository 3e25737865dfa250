// Error types thrown by lrsmc. Every message names the source (file or option), the field and
// the offending value: "<source>: <field> <problem>; got <value>, expected <constraint>".
#pragma once

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
