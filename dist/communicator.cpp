// The checked public side of every communicator: argument checks, host-value helpers, shares of n items.
#include "dist/communicator.h"

#include <cstdlib>
#include <string>

#include "tensor/error.h"

namespace pt::dist {

std::chrono::milliseconds default_timeout() {
  const char* env = std::getenv("PT_DIST_TIMEOUT");
  if (env && *env) {
    char* end = nullptr;
    const double seconds = std::strtod(env, &end);
    PT_CHECK(end && *end == '\0' && seconds > 0 && seconds < 1e7, "PT_DIST_TIMEOUT = '", env,
             "': expected a number of seconds > 0 (how long a collective may wait for the other ranks)");
    return std::chrono::milliseconds(int64_t(seconds * 1000));
  }
  return std::chrono::minutes(30);
}

Communicator::Communicator(int rank, int size) : rank_(rank), size_(size), timeout_(default_timeout()) {
  PT_CHECK(size >= 1 && rank >= 0 && rank < size, "Communicator: rank ", rank, " of ", size, " is not a rank");
}

std::string Communicator::describe() const {
  return detail::concat("rank ", rank_, " of ", size_, " (", backend(), ")");
}

void Communicator::check_tensor(const char* op, const Tensor& t, const char* what) const {
  PT_CHECK(t.defined(), op, ": ", what, " is undefined");
  PT_CHECK(t.is_contiguous(), op, ": ", what, " ", t.describe(), " is not contiguous");
  PT_CHECK(takes(t.device()), op, ": ", what, " ", t.describe(), " is not on ", device_name(device()), ", where the ",
           backend(), " communicator works", device() == Device::cpu ? " (MPI moves CPU tensors; NCCL moves CUDA ones)" : "");
}

void Communicator::check_sum_dtype(const char* op, const Tensor& t) const {
  const DType d = t.dtype();
  const bool ok = d == DType::f32 || d == DType::f64 || d == DType::i32 || d == DType::i64 ||
                  (device() == Device::cuda && is_half(d));
  PT_CHECK(ok, op, ": cannot sum ", t.describe(), " (f32, f64, i32, i64", device() == Device::cuda ? ", f16, bf16" : "",
           " are summed)");
}

void Communicator::all_reduce_sum(const Tensor& t) {
  check_tensor("all_reduce_sum", t, "the tensor");
  check_sum_dtype("all_reduce_sum", t);
  if (t.numel() > 0) do_all_reduce_sum(t);
}

std::unique_ptr<PendingCollective> Communicator::all_reduce_sum_async(const Tensor& t) {
  check_tensor("all_reduce_sum_async", t, "the tensor");
  check_sum_dtype("all_reduce_sum_async", t);
  return do_all_reduce_sum_async(t);
}

void Communicator::broadcast(const Tensor& t, int root) {
  check_tensor("broadcast", t, "the tensor");
  PT_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " is not a rank (", size_, " ranks)");
  if (t.numel() > 0) do_broadcast(t, root);
}

void Communicator::all_gather(const Tensor& in, const Tensor& out) {
  check_tensor("all_gather", in, "input");
  check_tensor("all_gather", out, "output");
  PT_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "all_gather: output ", out.describe(),
           " must hold ", size_, " x ", in.numel(), " elements of ", dtype_name(in.dtype()), " (input ", in.describe(), ")");
  if (in.numel() > 0) do_all_gather(in, out);
}

void Communicator::reduce_scatter_sum(const Tensor& in, const Tensor& out) {
  check_tensor("reduce_scatter_sum", in, "input");
  check_tensor("reduce_scatter_sum", out, "output");
  check_sum_dtype("reduce_scatter_sum", in);
  PT_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, "reduce_scatter_sum: input ", in.describe(),
           " must hold ", size_, " x ", out.numel(), " elements of ", dtype_name(out.dtype()), " (output ",
           out.describe(), ")");
  if (out.numel() > 0) do_reduce_scatter_sum(in, out);
}

void Communicator::barrier() { do_barrier(true); }
void Communicator::barrier_unbounded() { do_barrier(false); }

std::vector<double> Communicator::all_reduce_sum(const std::vector<double>& values) {
  if (values.empty()) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}, device());
  all_reduce_sum(t);
  return t.to_vector<double>();
}

std::vector<double> Communicator::broadcast(const std::vector<double>& values, int root) {
  if (values.empty()) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}, device());
  broadcast(t, root);
  return t.to_vector<double>();
}

std::vector<double> Communicator::all_gather(double value) {
  Tensor in = Tensor::from_vector(std::vector<double>{value}, {1}, device());
  Tensor out = Tensor::empty({int64_t(size_)}, DType::f64, device());
  all_gather(in, out);
  return out.to_vector<double>();
}

Range Communicator::share(int64_t n) const {
  PT_CHECK(n >= 0, "Communicator::share: ", n, " items");
  return {n * rank_ / size_, n * (rank_ + 1) / size_};
}

}  // namespace pt::dist
