// NCCL for the CUDA backend's shared batches; see trial_gather.hpp.
#include "cuda/trial_gather.hpp"

#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "core/shared_trials.hpp"
#include "kernels/device_memory.hpp"
#include "lrsmc/errors.hpp"

#if defined(LRSMC_WITH_NCCL)
#include <nccl.h>
#if !defined(LRSMC_CUDA_EMULATION)
#include "cuda/loaded_library.hpp"
#endif
#endif

namespace lrsmc::cuda {

#if defined(LRSMC_WITH_NCCL)

namespace {

/// The NCCL calls a gather makes. On a GPU NCCL is loaded when a shared fit first needs it, so
/// that lrsmc runs everything else where NCCL is absent; the emulated device links its own.
struct NcclCalls {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) init_rank = nullptr;
  decltype(&ncclCommDestroy) destroy = nullptr;
  decltype(&ncclBroadcast) broadcast = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string missing;  ///< why NCCL cannot be used here, or empty
};

const NcclCalls& nccl() {
  static const NcclCalls calls = [] {
    NcclCalls loaded;
#if defined(LRSMC_CUDA_EMULATION)
    loaded.get_unique_id = &ncclGetUniqueId;
    loaded.init_rank = &ncclCommInitRank;
    loaded.destroy = &ncclCommDestroy;
    loaded.broadcast = &ncclBroadcast;
    loaded.group_start = &ncclGroupStart;
    loaded.group_end = &ncclGroupEnd;
    loaded.error_string = &ncclGetErrorString;
#else
    LoadedLibrary library("libnccl.so." + std::to_string(NCCL_MAJOR));
    library.find(loaded.get_unique_id, "ncclGetUniqueId");
    library.find(loaded.init_rank, "ncclCommInitRank");
    library.find(loaded.destroy, "ncclCommDestroy");
    library.find(loaded.broadcast, "ncclBroadcast");
    library.find(loaded.group_start, "ncclGroupStart");
    library.find(loaded.group_end, "ncclGroupEnd");
    library.find(loaded.error_string, "ncclGetErrorString");
    loaded.missing = library.missing();
#endif
    return loaded;
  }();
  return calls;
}

void check(ncclResult_t result, const char* call) {
  if (result != ncclSuccess)
    throw CudaError(detail::concat(call, " failed: ", nccl().error_string(result)));
}

}  // namespace

bool nccl_usable(std::string* why) {
  const std::string& missing = nccl().missing;
  if (why != nullptr) *why = missing;
  return missing.empty();
}

struct TrialGather::Handle {
  ncclComm_t comm = nullptr;
};

TrialGather::TrialGather(Communicator& world, int device) : world_(world) {
  // Every process learns whether any cannot start, so that none waits in NCCL's set-up alone.
  ncclUniqueId id{};
  detail::on_every_process(&world, [&] {
    std::string why;
    if (!nccl_usable(&why))
      throw CudaError(detail::concat("the CUDA backend shares trials over NCCL, and ", why,
                                     "; use --device cpu, or run one process"));
    LRSMC_CUDA_CHECK(cudaSetDevice(device));
    if (world.rank() == 0) check(nccl().get_unique_id(&id), "ncclGetUniqueId");
  });
  const std::string bytes = world.broadcast(std::string(id.internal, sizeof(id.internal)), 0);
  LRSMC_ASSERT(bytes.size() == sizeof(id.internal));
  std::memcpy(id.internal, bytes.data(), sizeof(id.internal));
  handle_ = std::make_unique<Handle>();
  check(nccl().init_rank(&handle_->comm, world.size(), id, world.rank()), "ncclCommInitRank");
}

TrialGather::~TrialGather() {
  if (handle_ != nullptr && handle_->comm != nullptr) (void)nccl().destroy(handle_->comm);
}

void TrialGather::gather(const std::vector<int>& bounds, std::initializer_list<TrialValues> parts) {
  LRSMC_ASSERT(bounds.size() == std::size_t(world_.size()) + 1);
  const NcclCalls& calls = nccl();
  check(calls.group_start(), "ncclGroupStart");
  for (const TrialValues& part : parts)
    for (int process = 0; process < world_.size(); ++process) {
      const TrialShare share = share_in(bounds, process);
      if (share.count() == 0 || part.bytes_per_trial == 0) continue;
      auto* const values = static_cast<unsigned char*>(part.values) +
                           std::size_t(share.first) * std::size_t(part.bytes_per_trial);
      // In place: the root sends from where every process receives.
      const ncclResult_t result = calls.broadcast(
          values, values, std::size_t(share.count()) * std::size_t(part.bytes_per_trial), ncclUint8,
          process, handle_->comm, nullptr);
      if (result != ncclSuccess) {
        (void)calls.group_end();
        check(result, "ncclBroadcast");
      }
    }
  check(calls.group_end(), "ncclGroupEnd");
}

#else  // no NCCL in this build

bool nccl_usable(std::string* why) {
  if (why != nullptr)
    *why =
        "this build of lrsmc has no NCCL (it is configured with it when CUDA's nccl.h is "
        "found)";
  return false;
}

struct TrialGather::Handle {};

TrialGather::TrialGather(Communicator& world, int /*device*/) : world_(world) {
  std::string why;
  (void)nccl_usable(&why);
  throw CudaError(detail::concat("the CUDA backend shares trials over NCCL, and ", why,
                                 "; use --device cpu, or run one process"));
}

TrialGather::~TrialGather() = default;

void TrialGather::gather(const std::vector<int>&, std::initializer_list<TrialValues>) {}

#endif

TrialShare TrialGather::share(const std::vector<int>& bounds) const {
  return share_in(bounds, world_.rank());
}

int device_of_this_process(const Communicator& world, int first_device, int device_count) {
  LRSMC_ASSERT(device_count >= 1);
  return (first_device + world.local_rank()) % device_count;
}

}  // namespace lrsmc::cuda
