// CPU emulation of NCCL's communicators and broadcasts (include/nccl.h). A broadcast is host
// work queued on its stream, as the runtime queues kernels; when the stream runs, the root's
// bytes reach every process of the communicator through MPI_Bcast on the communicator's own
// duplicate of MPI_COMM_WORLD. Every process runs its queued broadcasts in the order it
// enqueued them, which NCCL requires of its users too, so the MPI calls match.
#include <nccl.h>

#if defined(LRSMC_EMULATED_NCCL_MPI)
#include <mpi.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace lrsmc_emu {
cudaError_t enqueue_host_work(cudaStream_t stream, const char* name, std::function<void()> work);
cudaError_t check_device_range(const char* call, const char* argument, const void* pointer,
                               std::size_t bytes);
}  // namespace lrsmc_emu

struct ncclComm {
  int rank = 0, size = 1;
#if defined(LRSMC_EMULATED_NCCL_MPI)
  MPI_Comm processes = MPI_COMM_NULL;
#endif
};

namespace {

struct Broadcast {
  const void* send = nullptr;
  void* receive = nullptr;
  std::size_t bytes = 0;
  int root = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

thread_local int group_depth = 0;
thread_local std::vector<Broadcast> grouped;

ncclResult_t refuse(ncclResult_t result, const char* call, const std::string& why) {
  std::fprintf(stderr, "lrsmc NCCL emulation: %s: %s\n", call, why.c_str());
  return result;
}

std::size_t type_bytes(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
  }
  return 0;
}

/// What the device does when the stream reaches the broadcast.
void run(const Broadcast& broadcast) {
  const ncclComm& comm = *broadcast.comm;
  if (comm.rank == broadcast.root && broadcast.send != broadcast.receive)
    std::memmove(broadcast.receive, broadcast.send, broadcast.bytes);
#if defined(LRSMC_EMULATED_NCCL_MPI)
  if (comm.size == 1) return;
  auto* bytes = static_cast<char*>(broadcast.receive);
  constexpr std::size_t most = std::size_t(1) << 30;  // MPI counts are int
  for (std::size_t offset = 0; offset < broadcast.bytes; offset += most) {
    const int count = int(std::min(most, broadcast.bytes - offset));
    if (MPI_Bcast(bytes + offset, count, MPI_BYTE, broadcast.root, comm.processes) != MPI_SUCCESS) {
      std::fprintf(stderr, "lrsmc NCCL emulation: ncclBroadcast: MPI_Bcast failed\n");
      std::abort();  // a device fault: the processes cannot go on
    }
  }
#endif
}

ncclResult_t enqueue(const Broadcast& broadcast) {
  return lrsmc_emu::enqueue_host_work(broadcast.stream, "ncclBroadcast",
                                      [broadcast] { run(broadcast); }) == cudaSuccess
             ? ncclSuccess
             : ncclUnhandledCudaError;
}

}  // namespace

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
      return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
      return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
      return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
      return "invalid usage (run with NCCL_DEBUG=WARN for details)";
  }
  return "unknown result code";
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (id == nullptr) return refuse(ncclInvalidArgument, "ncclGetUniqueId", "id is null");
  static std::atomic<unsigned> made{0};
  std::memset(id->internal, 0, sizeof(id->internal));
  std::snprintf(id->internal, sizeof(id->internal), "lrsmc-emulated-nccl %ld %u",
                static_cast<long>(::getpid()), made++);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (comm == nullptr) return refuse(ncclInvalidArgument, "ncclCommInitRank", "comm is null");
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return refuse(ncclInvalidArgument, "ncclCommInitRank",
                  "rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  if (std::strncmp(id.internal, "lrsmc-emulated-nccl ", 20) != 0)
    return refuse(ncclInvalidArgument, "ncclCommInitRank", "the id is not from ncclGetUniqueId");
  auto made = new ncclComm;
  made->rank = rank;
  made->size = nranks;
  if (nranks > 1) {
#if defined(LRSMC_EMULATED_NCCL_MPI)
    int initialised = 0, size = 0, world_rank = 0;
    MPI_Initialized(&initialised);
    if (initialised != 0) {
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    }
    if (initialised == 0 || size != nranks || world_rank != rank) {
      delete made;
      return refuse(ncclInvalidUsage, "ncclCommInitRank",
                    "the emulation runs a communicator of several processes over "
                    "MPI_COMM_WORLD, which must hold them in the same order");
    }
    // Every process must have the id that process 0 made, and its own device: NCCL refuses
    // two processes of a communicator on one GPU ("Duplicate GPU detected"). Each process
    // learns what every one found, so that all refuse together.
    char first[NCCL_UNIQUE_ID_BYTES];
    std::memcpy(first, id.internal, sizeof(first));
    MPI_Bcast(first, int(sizeof(first)), MPI_CHAR, 0, MPI_COMM_WORLD);
    int device = 0;
    (void)cudaGetDevice(&device);
    struct Place {
      char host[MPI_MAX_PROCESSOR_NAME];
      int device;
      int same_id;
    } mine{};
    int length = 0;
    MPI_Get_processor_name(mine.host, &length);
    mine.device = device;
    mine.same_id = std::memcmp(first, id.internal, sizeof(first)) == 0 ? 1 : 0;
    std::vector<Place> places(static_cast<std::size_t>(nranks));
    MPI_Allgather(&mine, int(sizeof(Place)), MPI_BYTE, places.data(), int(sizeof(Place)), MPI_BYTE,
                  MPI_COMM_WORLD);
    for (int a = 0; a < nranks; ++a) {
      const Place& one = places[std::size_t(a)];
      if (one.same_id == 0) {
        delete made;
        return refuse(ncclInvalidUsage, "ncclCommInitRank",
                      "process " + std::to_string(a) + "'s id differs from process 0's");
      }
      for (int b = 0; b < a; ++b) {
        const Place& other = places[std::size_t(b)];
        if (other.device == one.device && std::strcmp(other.host, one.host) == 0) {
          delete made;
          return refuse(ncclInvalidUsage, "ncclCommInitRank",
                        "Duplicate GPU detected: processes " + std::to_string(b) + " and " +
                            std::to_string(a) + " both on device " + std::to_string(one.device) +
                            " of " + one.host);
        }
      }
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &made->processes);
#else
    delete made;
    return refuse(ncclInvalidUsage, "ncclCommInitRank",
                  "this emulation was built without MPI: one process only");
#endif
  }
  *comm = made;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return refuse(ncclInvalidArgument, "ncclCommDestroy", "comm is null");
#if defined(LRSMC_EMULATED_NCCL_MPI)
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (comm->processes != MPI_COMM_NULL && finalised == 0) MPI_Comm_free(&comm->processes);
#endif
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, std::size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  if (comm == nullptr) return refuse(ncclInvalidArgument, "ncclBroadcast", "comm is null");
  if (root < 0 || root >= comm->size)
    return refuse(ncclInvalidArgument, "ncclBroadcast",
                  "root " + std::to_string(root) + " of " + std::to_string(comm->size));
  const std::size_t size = type_bytes(datatype);
  if (size == 0) return refuse(ncclInvalidArgument, "ncclBroadcast", "unknown data type");
  Broadcast broadcast{sendbuff, recvbuff, count * size, root, comm, stream};
  if (broadcast.bytes > 0) {
    if (lrsmc_emu::check_device_range("ncclBroadcast", "recvbuff", recvbuff, broadcast.bytes) !=
            cudaSuccess ||
        (comm->rank == root && lrsmc_emu::check_device_range("ncclBroadcast", "sendbuff", sendbuff,
                                                             broadcast.bytes) != cudaSuccess))
      return ncclInvalidArgument;
  }
  if (group_depth > 0) {
    grouped.push_back(broadcast);
    return ncclSuccess;
  }
  return enqueue(broadcast);
}

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (group_depth == 0) return refuse(ncclInvalidUsage, "ncclGroupEnd", "no group was started");
  if (--group_depth > 0) return ncclSuccess;
  std::vector<Broadcast> work;
  work.swap(grouped);
  for (const Broadcast& broadcast : work)
    if (const ncclResult_t result = enqueue(broadcast); result != ncclSuccess) return result;
  return ncclSuccess;
}
