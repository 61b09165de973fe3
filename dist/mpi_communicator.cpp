// MPI collectives on CPU tensors: started non-blocking, completed by polling against the communicator's deadline.
#include "dist/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <thread>

#include "tensor/error.h"

namespace pt::dist {
namespace {

using Clock = std::chrono::steady_clock;

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  PT_FAIL("MPI ", what, " failed: ", std::string(text, size_t(std::max(len, 0))));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    case DType::f16:
    case DType::bf16: return MPI_UINT16_T;  // moved, never summed (the checks refuse)
  }
  return MPI_BYTE;
}

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g MB", double(bytes) / 1e6);
  return buf;
}

// Completes `requests`, testing until they are done; past the deadline this rank says what waited and ends every
// rank. Spins for the first 200 us (a small collective completes in microseconds), then sleeps between tests.
void wait_for(std::vector<MPI_Request>& requests, const Communicator& comm, const char* op, int64_t bytes,
              bool bounded) {
  const auto start = Clock::now();
  for (;;) {
    int done = 0;
    check_mpi(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), op);
    if (done) return;
    const auto waited = Clock::now() - start;
    if (bounded && waited > comm.timeout()) {
      std::fprintf(stderr,
                   "error: %s: %s of %s waited %.0f s for the other ranks (PT_DIST_TIMEOUT); one of them has died or "
                   "hung: ending every rank\n",
                   comm.describe().c_str(), op, megabytes(bytes).c_str(),
                   std::chrono::duration<double>(waited).count());
      const_cast<Communicator&>(comm).abort(3);
    }
    if (waited > std::chrono::microseconds(200))
      std::this_thread::sleep_for(waited > std::chrono::milliseconds(20) ? std::chrono::microseconds(1000)
                                                                       : std::chrono::microseconds(50));
  }
}

class MpiPending final : public PendingCollective {
 public:
  MpiPending(std::vector<MPI_Request> requests, const Communicator& comm, int64_t bytes)
      : requests_(std::move(requests)), comm_(comm), bytes_(bytes) {}
  ~MpiPending() override {
    try {
      wait();
    } catch (...) {  // an MPI failure here is already reported by the rank's error path
    }
  }
  void wait() override {
    if (requests_.empty()) return;
    wait_for(requests_, comm_, "all_reduce_sum", bytes_, true);
    requests_.clear();
  }

 private:
  std::vector<MPI_Request> requests_;
  const Communicator& comm_;
  int64_t bytes_;
};

}  // namespace

MpiCommunicator::Place MpiCommunicator::join_world() {
  Place p;
  int already = 0;
  check_mpi(MPI_Initialized(&already), "MPI_Initialized");
  if (!already) {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    p.initialised = true;
  }
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &p.rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &p.size), "MPI_Comm_size");
  return p;
}

MpiCommunicator::MpiCommunicator() : MpiCommunicator(join_world()) {}

MpiCommunicator::MpiCommunicator(const Place& p)
    : Communicator(p.rank, p.size), initialised_here_(p.initialised), max_count_(INT_MAX / 2) {}

void MpiCommunicator::set_max_count(int64_t elements) {
  PT_CHECK(elements >= 1 && elements <= INT_MAX, "MpiCommunicator::set_max_count: ", elements, " is not in [1, INT_MAX]");
  max_count_ = elements;
}

// The pieces [offset, offset + count) of n elements that one MPI call each can move.
template <class F>
void MpiCommunicator::for_each_piece(int64_t n, F&& f) const {
  for (int64_t at = 0; at < n; at += max_count_) f(at, int(std::min(max_count_, n - at)));
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (initialised_here_ && !finalized) MPI_Finalize();
}

void MpiCommunicator::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void MpiCommunicator::do_all_reduce_sum(const Tensor& t) { do_all_reduce_sum_async(t)->wait(); }

std::unique_ptr<PendingCollective> MpiCommunicator::do_all_reduce_sum_async(const Tensor& t) {
  std::vector<MPI_Request> requests;
  const size_t elem = dtype_size(t.dtype());
  char* base = static_cast<char*>(t.data_ptr());
  for_each_piece(t.numel(), [&](int64_t at, int count) {
    requests.emplace_back();
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, base + at * int64_t(elem), count, mpi_type(t.dtype()), MPI_SUM,
                             MPI_COMM_WORLD, &requests.back()),
              "MPI_Iallreduce");
  });
  return std::make_unique<MpiPending>(std::move(requests), *this, t.nbytes());
}

void MpiCommunicator::do_broadcast(const Tensor& t, int root) { broadcast_bytes(t.data_ptr(), t.nbytes(), root); }

void MpiCommunicator::broadcast_bytes(void* data, int64_t bytes, int root) {
  std::vector<MPI_Request> requests;
  for_each_piece(bytes, [&](int64_t at, int count) {
    requests.emplace_back();
    check_mpi(MPI_Ibcast(static_cast<char*>(data) + at, count, MPI_BYTE, root, MPI_COMM_WORLD, &requests.back()),
              "MPI_Ibcast");
  });
  wait_for(requests, *this, "broadcast", bytes, true);
}

void MpiCommunicator::do_all_gather(const Tensor& in, const Tensor& out) {
  const int64_t n = in.numel(), elem = int64_t(dtype_size(in.dtype()));
  std::vector<MPI_Request> requests;
  if (n <= max_count_) {
    requests.emplace_back();
    check_mpi(MPI_Iallgather(in.data_ptr(), int(n), mpi_type(in.dtype()), out.data_ptr(), int(n), mpi_type(in.dtype()),
                             MPI_COMM_WORLD, &requests.back()),
              "MPI_Iallgather");
  } else {  // each rank's block, piece by piece, broadcast from its owner
    char* dst = static_cast<char*>(out.data_ptr());
    for (int r = 0; r < size(); ++r) {
      if (r == rank()) std::copy_n(static_cast<const char*>(in.data_ptr()), n * elem, dst + r * n * elem);
      for_each_piece(n, [&](int64_t at, int count) {
        requests.emplace_back();
        check_mpi(MPI_Ibcast(dst + (r * n + at) * elem, count, mpi_type(in.dtype()), r, MPI_COMM_WORLD,
                             &requests.back()),
                  "MPI_Ibcast");
      });
    }
  }
  wait_for(requests, *this, "all_gather", out.nbytes(), true);
}

void MpiCommunicator::do_reduce_scatter_sum(const Tensor& in, const Tensor& out) {
  const int64_t n = out.numel(), elem = int64_t(dtype_size(in.dtype()));
  std::vector<MPI_Request> requests;
  if (n <= max_count_) {
    requests.emplace_back();
    check_mpi(MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), int(n), mpi_type(in.dtype()), MPI_SUM,
                                        MPI_COMM_WORLD, &requests.back()),
              "MPI_Ireduce_scatter_block");
  } else {  // each rank's block summed onto it, piece by piece
    const char* src = static_cast<const char*>(in.data_ptr());
    for (int r = 0; r < size(); ++r)
      for_each_piece(n, [&](int64_t at, int count) {
        requests.emplace_back();
        void* recv = r == rank() ? static_cast<char*>(out.data_ptr()) + at * elem : nullptr;
        check_mpi(MPI_Ireduce(src + (r * n + at) * elem, recv, count, mpi_type(in.dtype()), MPI_SUM, r,
                              MPI_COMM_WORLD, &requests.back()),
                  "MPI_Ireduce");
      });
  }
  wait_for(requests, *this, "reduce_scatter_sum", in.nbytes(), true);
}

void MpiCommunicator::do_barrier(bool bounded) {
  std::vector<MPI_Request> requests(1);
  check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &requests[0]), "MPI_Ibarrier");
  wait_for(requests, *this, "barrier", 0, bounded);
}

}  // namespace pt::dist
