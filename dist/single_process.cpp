// The one-rank communicator: a sum over one rank is the tensor itself, a gather is a copy. Its device is
// whatever the caller's tensors are on (it moves nothing), so it serves CPU and CUDA runs alike.
#include <cstdlib>

#include "dist/communicator.h"

namespace pt::dist {
namespace {

class DoneCollective final : public PendingCollective {
 public:
  void wait() override {}
};

class OneProcess final : public Communicator {
 public:
  OneProcess() : Communicator(0, 1) {}
  const char* backend() const override { return "one process"; }
  Device device() const override { return Device::cpu; }  // of the host-value helpers' tensors
  bool takes(Device) const override { return true; }
  [[noreturn]] void abort(int code) override { std::exit(code); }

 protected:
  void do_all_reduce_sum(const Tensor&) override {}
  std::unique_ptr<PendingCollective> do_all_reduce_sum_async(const Tensor&) override {
    return std::make_unique<DoneCollective>();
  }
  void do_broadcast(const Tensor&, int) override {}
  void do_all_gather(const Tensor& in, const Tensor& out) override {
    Tensor o = out.view(in.shape());
    o.copy_(in);
  }
  void do_reduce_scatter_sum(const Tensor& in, const Tensor& out) override {
    Tensor o = out;
    o.copy_(in.view(out.shape()));
  }
  void do_barrier(bool) override {}
};

}  // namespace

Communicator& one_process() {
  static OneProcess instance;
  return instance;
}

std::unique_ptr<Communicator> new_one_process() { return std::make_unique<OneProcess>(); }

}  // namespace pt::dist
