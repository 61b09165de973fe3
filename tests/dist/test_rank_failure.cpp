// A rank that fails or stalls ends every rank with one clear line, without hanging. These cases end the program
// on purpose, so the normal run filters them out; ctest runs each alone through tests/dist/mpirun_test.sh
// --expect-failure, which checks that mpirun exits non-zero, in time, with the message.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "tests/dist/world_fixture.h"

namespace pt::dist::test {
namespace {

// Rank 1 fails (as the apps do when they catch an error) while rank 0 waits for it in a collective.
TEST(RankFailure, AFailingRankEndsEveryRank) {
  if (world().rank() == 1) {
    std::fprintf(stderr, "error: %s: a deliberate failure\n", world().describe().c_str());
    world().abort(2);
  }
  world().barrier();
  ADD_FAILURE() << "rank " << world().rank() << " passed a barrier that rank 1 never reached";
}

// Rank 1 stalls (alive but never arriving); rank 0's collective times out and ends the run.
TEST(RankFailure, AStalledRankIsEndedByTheOthersTimeout) {
  world().set_timeout(std::chrono::seconds(1));
  if (world().rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(30));
  Tensor t = Tensor::ones({8});
  world().all_reduce_sum(t);
  ADD_FAILURE() << "rank " << world().rank() << " finished an all-reduce that rank 1 never joined";
}

}  // namespace
}  // namespace pt::dist::test
