// One OpenMP thread (and so one OpenBLAS thread: the build's OpenBLAS is the OpenMP one and follows
// omp_get_max_threads()) for the scope, when asked: OpenBLAS's LAPACK potrf/potri choose their blocking by the
// thread count, so their bits change with it, and [prune] statistics_sum = exact promises masks that do not.
#pragma once
#include <omp.h>

namespace pt::prune {

class OneThreadScope {
 public:
  explicit OneThreadScope(bool active) : saved_(active ? omp_get_max_threads() : 0) {
    if (saved_ > 0) omp_set_num_threads(1);
  }
  ~OneThreadScope() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  OneThreadScope(const OneThreadScope&) = delete;
  OneThreadScope& operator=(const OneThreadScope&) = delete;

 private:
  int saved_;
};

}  // namespace pt::prune
