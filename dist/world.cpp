// The launch from the launcher's environment, the rank's GPU, and the backend a run gets.
#include "dist/world.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "tensor/error.h"
#if PT_MPI
#include "dist/mpi_communicator.h"
#endif
#if PT_NCCL
#include "dist/nccl_communicator.h"
#endif
#if PT_CUDA
#include <cuda_runtime.h>
#endif

namespace pt::dist {
namespace {

// The integer in environment variable `name`, or `fallback` when it is not set.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  PT_CHECK(end && *end == '\0' && x >= 0 && x < (1 << 24), "environment variable ", name, " = '", v,
           "' is not a rank or a count");
  return int(x);
}

}  // namespace

Launch detect_launch() {
  Launch l;
  if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
    l.launcher = "OpenMPI";
    l.size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    l.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    l.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    l.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  } else if (std::getenv("PMI_SIZE")) {
    l.launcher = "PMI";
    l.size = env_int("PMI_SIZE", 1);
    l.rank = env_int("PMI_RANK", 0);
    l.local_rank = env_int("MPI_LOCALRANKID", 0);
    l.local_size = env_int("MPI_LOCALNRANKS", 1);
  }
  PT_CHECK(l.size >= 1 && l.rank < l.size && l.local_rank < std::max(l.local_size, 1), "the ", l.launcher,
           " launch says rank ", l.rank, " of ", l.size, " (local ", l.local_rank, " of ", l.local_size,
           "), which is not a rank");
  if (l.size == 1) l.launcher.clear();
  return l;
}

void select_rank_device(const Launch& launch) {
#if PT_CUDA
  if (launch.size == 1) return;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();  // no GPU here: a CPU run
    return;
  }
  if (cudaSetDevice(launch.local_rank % count) != cudaSuccess) {
    const cudaError_t e = cudaGetLastError();
    PT_FAIL("rank ", launch.rank, " could not select GPU ", launch.local_rank % count, " of ", count, ": ",
            cudaGetErrorString(e));
  }
#else
  (void)launch;
#endif
}

std::unique_ptr<Communicator> connect(const Launch& launch, Device device) {
  if (launch.size == 1) return new_one_process();
#if PT_MPI
  auto mpi = std::make_unique<MpiCommunicator>();
  PT_CHECK(mpi->size() == launch.size && mpi->rank() == launch.rank, launch.launcher, " launched rank ", launch.rank,
           " of ", launch.size, " but MPI says rank ", mpi->rank(), " of ", mpi->size(),
           ": launch with the mpirun of the MPI this program was built with");
  if (device == Device::cpu) return mpi;
#if PT_NCCL
  int gpus = 0;
  PT_CHECK(cudaGetDeviceCount(&gpus) == cudaSuccess && launch.local_size <= gpus, "this machine runs ",
           launch.local_size, " ranks on CUDA but has ", gpus, " GPUs: run one rank per GPU (mpirun -np ", gpus,
           " on one machine, or --map-by ppr:", gpus, ":node with a hostfile)");
  return std::make_unique<NcclCommunicator>(std::move(mpi));
#else
  PT_FAIL("launched with ", launch.size, " ranks on CUDA, but this build has no NCCL (CMake found no nccl.h / libnccl): "
          "rebuild with NCCL, or run on the CPU ([run] device = cpu)");
#endif
#else
  (void)device;
  PT_FAIL("launched by ", launch.launcher, " with ", launch.size,
          " ranks, but this build has no MPI: install libopenmpi-dev (make deps) and rebuild, or run one process");
#endif
}

std::string available_backends() {
  std::string s = "one process";
#if PT_MPI
  s += ", MPI";
#endif
#if PT_NCCL
  s += ", NCCL";
#endif
  return s;
}

}  // namespace pt::dist
