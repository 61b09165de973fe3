// main of pt_dist_tests, the suite that runs on several ranks (mpirun -np 2, through tests/dist/mpirun_test.sh):
// one MPI communicator for the whole program (MPI starts once per process), made before the tests and ended
// after them. Each rank prints its own gtest report; a failure on any rank makes mpirun exit non-zero.
#include <gtest/gtest.h>

#include "tests/dist/world_fixture.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  pt::dist::test::start_world();
  const int rc = RUN_ALL_TESTS();
  pt::dist::test::end_world();
  return rc;
}
