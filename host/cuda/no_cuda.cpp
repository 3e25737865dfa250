// Stand-in for builds configured with -DLRSMC_ENABLE_CUDA=OFF: no device is ever available.
#include "cuda/cuda_backend.hpp"
#include "cuda/trial_gather.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc {

bool cuda_available() { return false; }

namespace cuda {
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions&) {
  throw Error("lrsmc was built without CUDA; rebuild with -DLRSMC_ENABLE_CUDA=ON");
}
int device_count() { return 0; }
bool nccl_usable(std::string* why) {
  if (why != nullptr) *why = "lrsmc was built without CUDA";
  return false;
}
}  // namespace cuda

}  // namespace lrsmc
