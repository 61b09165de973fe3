// The communicator of pt_dist_tests and helpers shared by its files.
#pragma once
#include <cstdint>
#include <vector>

#include "dist/mpi_communicator.h"
#include "tensor/tensor.h"

namespace pt::dist::test {

void start_world();
void end_world();
MpiCommunicator& world();

// Rank r's input of a test: random values in [-1, 1) from (seed, r), so every rank can rebuild every other
// rank's input and compute the collective's expected result on its own. i32/i64 get integers in [-1000, 1000).
Tensor rank_input(const Shape& shape, DType dtype, uint64_t seed, int rank);

// Element-wise sum of every rank's rank_input(shape, dtype, seed, r), in double.
std::vector<double> expected_sum(const Shape& shape, DType dtype, uint64_t seed);

// True when `t` holds exactly the same bytes on every rank (rank 0's copy is broadcast and compared).
bool same_on_every_rank(const Tensor& t);

}  // namespace pt::dist::test
