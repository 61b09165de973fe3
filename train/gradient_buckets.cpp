// Gradient buckets: flat buffers summed over the ranks as soon as the backward has finished their gradients.
#include "train/gradient_buckets.h"

#include "tensor/error.h"

namespace pt::train {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& bytes, const std::vector<int>& kinds,
                                                int64_t cap_bytes) {
  PT_CHECK(cap_bytes > 0, "gradient buckets: the cap is ", cap_bytes, " bytes; it must be > 0");
  PT_CHECK(bytes.size() == kinds.size(), "gradient buckets: ", bytes.size(), " sizes for ", kinds.size(), " kinds");
  std::vector<std::vector<size_t>> out;
  int64_t filled = 0;
  for (size_t k = bytes.size(); k-- > 0;) {
    const bool fits = !out.empty() && kinds[out.back().front()] == kinds[k] && filled + bytes[k] <= cap_bytes;
    if (!fits) {
      out.emplace_back();
      filled = 0;
    }
    out.back().push_back(k);
    filled += bytes[k];
  }
  return out;
}

struct GradientBuckets::Bucket {
  std::vector<int64_t> offsets;  // of each member in flat
  int64_t numel = 0;
  Tensor flat;                   // allocated at the first start
  size_t waiting = 0;            // members whose gradient this backward has not finished yet
  bool ready = false, started = false;
  std::vector<bool> had_grad;    // per member, in the backward being summed
  std::unique_ptr<dist::PendingCollective> pending;
};

GradientBuckets::GradientBuckets(dist::Communicator& comm, std::vector<autograd::Variable*> params, int64_t cap_bytes)
    : comm_(comm), params_(std::move(params)) {
  std::vector<int64_t> bytes;
  std::vector<int> kinds;
  for (const autograd::Variable* p : params_) {
    PT_CHECK(p && p->defined() && p->is_leaf(), "gradient buckets: every parameter must be a defined leaf variable");
    bytes.push_back(p->data().nbytes());
    kinds.push_back(int(p->dtype()) * 16 + int(p->device()));
  }
  members_ = assign_buckets(bytes, kinds, cap_bytes);
  bucket_of_.resize(params_.size());
  for (size_t b = 0; b < members_.size(); ++b) {
    auto bucket = std::make_unique<Bucket>();
    for (size_t k : members_[b]) {
      bucket_of_[k] = b;
      bucket->offsets.push_back(bucket->numel);
      bucket->numel += params_[k]->data().numel();
    }
    bucket->waiting = members_[b].size();
    bucket->had_grad.assign(members_[b].size(), false);
    buckets_.push_back(std::move(bucket));
  }
  for (size_t k = 0; k < params_.size(); ++k) params_[k]->set_grad_ready_hook([this, k] { on_ready(k); });
}

GradientBuckets::~GradientBuckets() {
  for (autograd::Variable* p : params_) p->set_grad_ready_hook(nullptr);
}

void GradientBuckets::arm() {
  PT_CHECK(next_ == 0, "gradient buckets: armed again before finish() summed the last backward");
  armed_ = true;
  started_by_hooks_ = 0;
}

void GradientBuckets::on_ready(size_t param) {
  if (!armed_) return;
  Bucket& b = *buckets_[bucket_of_[param]];
  PT_CHECK(!b.started && b.waiting > 0, "gradient buckets: the gradient of parameter ", param,
           " was finished twice in one backward");
  if (--b.waiting == 0) b.ready = true;
  while (next_ < buckets_.size() && buckets_[next_]->ready) {  // in bucket order: the ranks' collectives match
    start(next_++);
    ++started_by_hooks_;
  }
}

void GradientBuckets::start(size_t index) {
  Bucket& b = *buckets_[index];
  const autograd::Variable& first = *params_[members_[index].front()];
  if (!b.flat.defined()) b.flat = Tensor::empty({b.numel}, first.dtype(), first.device());
  for (size_t m = 0; m < members_[index].size(); ++m) {
    const Tensor& g = params_[members_[index][m]]->grad();
    Tensor slot = b.flat.narrow(0, b.offsets[m], params_[members_[index][m]]->data().numel());
    b.had_grad[m] = g.defined();
    if (g.defined()) slot.copy_(g.reshape({-1}));
    else slot.zero_();  // no gradient in this backward: adds nothing to the others' sums
  }
  b.pending = comm_.all_reduce_sum_async(b.flat);
  b.started = true;
}

void GradientBuckets::finish() {
  PT_CHECK(armed_, "gradient buckets: finish() without arm() before the backward");
  while (next_ < buckets_.size()) start(next_++);
  for (size_t index = 0; index < buckets_.size(); ++index) {
    Bucket& b = *buckets_[index];
    b.pending->wait();
    for (size_t m = 0; m < members_[index].size(); ++m) {
      if (!b.had_grad[m]) continue;
      Tensor g = params_[members_[index][m]]->grad();
      g.copy_(b.flat.narrow(0, b.offsets[m], g.numel()).view(g.shape()));
    }
    b.pending.reset();
    b.waiting = members_[index].size();
    b.ready = b.started = false;
  }
  next_ = 0;
  armed_ = false;
}

}  // namespace pt::train
