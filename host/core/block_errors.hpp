// Internal: exceptions of the iterations of an OpenMP loop, which none may leave (a throw out of
// a parallel region terminates the program): each iteration's is kept, and the lowest
// iteration's is thrown after the loop, so the error does not depend on the threads.
#pragma once

#include <exception>
#include <vector>

namespace lrsmc::detail {

class BlockErrors {
 public:
  explicit BlockErrors(int iterations) : errors_(static_cast<std::size_t>(iterations)) {}
  /// Runs `work()` for iteration `index`, keeping what it throws.
  template <typename Work>
  void run(int index, const Work& work) noexcept {
    try {
      work();
    } catch (...) {
      errors_[std::size_t(index)] = std::current_exception();
    }
  }
  /// Throws the lowest iteration's exception, if any.
  void rethrow() const {
    for (const std::exception_ptr& error : errors_)
      if (error) std::rethrow_exception(error);
  }

 private:
  std::vector<std::exception_ptr> errors_;
};

}  // namespace lrsmc::detail
