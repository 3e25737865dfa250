// Internal: a library of the CUDA toolkit that lrsmc loads when it first needs it (dlopen)
// rather than links, so that its binaries run everything else where the library is absent, and
// the device bundle need not carry it (cuBLAS, NCCL).
#pragma once

#include <dlfcn.h>

#include <string>
#include <utility>

namespace lrsmc::cuda {

class LoadedLibrary {
 public:
  /// Opens `name` for the rest of the process's life; missing() says why it could not.
  explicit LoadedLibrary(std::string name) : name_(std::move(name)) {
    handle_ = ::dlopen(name_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      const char* why = ::dlerror();
      missing_ = name_ + " cannot be loaded: " + (why != nullptr ? why : "not found");
    }
  }

  /// Points `function` at the library's `symbol`; the first symbol missing is noted in
  /// missing().
  template <typename Function>
  void find(Function*& function, const char* symbol) {
    if (handle_ == nullptr) return;
    function = reinterpret_cast<Function*>(::dlsym(handle_, symbol));
    if (function == nullptr && missing_.empty()) missing_ = name_ + " has no " + symbol;
  }

  /// Why the library, or one of the symbols asked for, is not there; empty when all are.
  [[nodiscard]] const std::string& missing() const { return missing_; }

 private:
  std::string name_, missing_;
  void* handle_ = nullptr;
};

}  // namespace lrsmc::cuda
