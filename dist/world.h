// How this process was launched, and the communicator of all the processes of the run.
//
//   ./train_prune --config X.ini                       one process: the one-rank communicator, MPI never starts
//   mpirun -np 4 ./train_prune --config X.ini          4 ranks: MPI on the CPU, NCCL on CUDA (one GPU per rank)
//   mpirun -np 16 --hostfile hosts ./train_prune ...   several machines: the same, ranks placed by the hostfile
//
// The launch is read from the environment the launcher sets (OpenMPI's OMPI_COMM_WORLD_*, MPICH/Hydra's PMI_* and
// MPI_LOCAL*), so a single process needs no MPI at run time and `mpirun -np 1` is a single process too.
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace pt::dist {

struct Launch {
  int rank = 0, size = 1;            // in the whole run
  int local_rank = 0, local_size = 1;  // on this machine
  std::string launcher;              // "OpenMPI", "PMI", or "" for a single process
};

Launch detect_launch();

// Several ranks on CUDA: makes GPU local_rank (modulo the GPUs this machine has) this process's device. Call it
// before any CUDA work; it does nothing for a single process or without a usable GPU.
void select_rank_device(const Launch& launch);

// The communicator of the run: one process when launch.size == 1; else MPI for a CPU run and NCCL (bootstrapped
// over MPI) for a CUDA run. Throws one line when the build lacks what the launch needs (MPI, NCCL) or when
// this machine runs more CUDA ranks than it has GPUs.
std::unique_ptr<Communicator> connect(const Launch& launch, Device device);

// What this build can do: "one process, MPI, NCCL".
std::string available_backends();

}  // namespace pt::dist
