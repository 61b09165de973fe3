#include "opt/streamed_layers.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "tensor/cpu_caching_allocator.h"
#include "tensor/error.h"

namespace pt::opt {

// One background thread running tasks in the order they were posted. The first task that fails makes every later
// one fail with the same error, so a failed write is reported by the next load (or by finish()) that is waited for.
class IoThread {
 public:
  IoThread() : thread_([this] { run(); }) {}
  ~IoThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::future<void> post(std::function<void()> work) {
    Task task{std::move(work), {}};
    std::future<void> done = task.promise.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return done;
  }

 private:
  struct Task {
    std::function<void()> work;
    std::promise<void> promise;
  };
  void run() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping, and everything posted has run
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      if (error_) {
        task.promise.set_exception(error_);
        continue;
      }
      try {
        task.work();
        task.promise.set_value();
      } catch (...) {
        error_ = std::current_exception();
        task.promise.set_exception(error_);
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once everything above exists
};

StreamedLayers::StreamedLayers(std::shared_ptr<const WeightSource> source, Device device, DType dtype,
                               std::vector<LayerSink*> sinks, std::map<int64_t, LayerNotes> finished, bool prefetch)
    : source_(std::move(source)), device_(device), dtype_(dtype), sinks_(std::move(sinks)),
      finished_(std::move(finished)), prefetch_(prefetch) {
  PT_CHECK(source_, "StreamedLayers: no weight source");
  int64_t max_bytes = 0;
  for (Slot& s : slots_) {
    s.layer = std::make_unique<DecoderLayer>(config(), device_, dtype_, /*dropout_seed=*/0);
    s.layer->eval();  // streamed layers are only ever evaluated (calibration, perplexity)
    for (auto& [name, p] : s.layer->named_parameters()) {
      max_bytes = std::max<int64_t>(max_bytes, p->data().nbytes());
      s.tensors.emplace_back(name, p->data());
      // CUDA: masks land in buffers of the slot (an upload never allocates device memory the compute stream may
      // still be reading); on the CPU the source's own tensors are used.
      const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 && p->data().dim() == 2;
      s.mask_buffers.push_back(device_ == Device::cuda && weight ? Tensor::empty(p->data().shape(), DType::u8, device_)
                                                                 : Tensor());
    }
  }
  uploader_ = std::make_unique<LayerUploader>(device_, 2, max_bytes);
  io_ = std::make_unique<IoThread>();
  io_->post([this] { uploader_->use_copy_stream_on_this_thread(); }).get();
}

StreamedLayers::~StreamedLayers() {
  io_.reset();
  // The slots go back to the system, not into the allocation cache (a later stage would start with them resident).
  for (Slot& s : slots_) s = Slot();
  uploader_.reset();
  if (device_ == Device::cpu) cpu::empty_cache();
}

OptForCausalLM& StreamedLayers::ends() {
  if (!ends_) {
    auto e = OptForCausalLM::without_layers(config(), device_, dtype_);
    for (auto& [name, p] : e->named_parameters()) source_->read_into(name, p->data());
    ends_ = std::move(e);
  }
  if (!sinks_begun_ && !sinks_.empty()) {
    sinks_begun_ = true;
    for (LayerSink* sink : sinks_) sink->begin(*ends_);
  }
  return *ends_;
}

void StreamedLayers::release_ends() {
  ends_.reset();
  if (device_ == Device::cpu) cpu::empty_cache();
}

void StreamedLayers::begin_sinks() {
  if (sinks_begun_ || sinks_.empty()) return;
  const bool loaded = ends_ != nullptr;
  ends();
  if (!loaded) release_ends();
}

void StreamedLayers::name_slot(Slot& s, int64_t i) {
  size_t j = 0;
  for (auto& [name, p] : s.layer->named_parameters()) s.tensors[j++].first = layer_prefix(i) + name;
}

void StreamedLayers::load(int64_t i) {
  const int slot = int(i % 2);
  Slot& s = slots_[slot];
  PT_CHECK(!s.held, "StreamedLayers: layer ", i, " cannot be loaded while layer ", s.index,
           " (in the same slot) is still acquired; release it first");
  name_slot(s, i);
  s.index = i;
  // Queued after any write of the slot's previous layer: the I/O thread runs tasks in order.
  s.loaded = io_->post([this, &s, slot] { uploader_->upload(slot, *source_, s.tensors, s.mask_buffers, s.masks); });
}

DecoderLayer& StreamedLayers::acquire(int64_t i) {
  PT_CHECK(i >= 0 && i < num_layers(), "StreamedLayers::acquire: layer ", i, " outside [0, ", num_layers(), ")");
  const int slot = int(i % 2);
  Slot& s = slots_[slot];
  if (s.index != i || !s.loaded.valid()) load(i);
  s.loaded.get();  // rethrows a failed load (or an earlier failed write)
  uploader_->wait_uploaded(slot);
  // The masks stored with the layer replace whatever the slot's previous layer had.
  std::map<std::string, Tensor> masks;
  for (size_t j = 0; j < s.tensors.size(); ++j)
    if (s.masks[j].defined()) masks.emplace(s.tensors[j].first, s.masks[j]);
  for (auto& [name, lin] : s.layer->linear_layers()) {
    lin->clear_mask();
    const auto m = masks.find(layer_prefix(i) + name + ".weight");
    if (m != masks.end()) lin->set_mask(m->second);
  }
  s.held = true;
  if (on_acquire_) on_acquire_(i, *s.layer);
  if (prefetch_ && i + 1 < num_layers()) {
    Slot& next = slots_[(i + 1) % 2];
    if (!next.held && !(next.index == i + 1 && next.loaded.valid())) load(i + 1);
  }
  return *s.layer;
}

void StreamedLayers::release(int64_t i, bool changed, const LayerNotes& notes) {
  const int slot = int(i % 2);
  Slot& s = slots_[slot];
  PT_CHECK(s.held && s.index == i, "StreamedLayers::release: layer ", i, " is not acquired");
  uploader_->mark_released(slot);
  s.held = false;
  if (device_ == Device::cpu) cpu::empty_cache();
  if (!changed || sinks_.empty()) return;
  begin_sinks();
  const bool resumed = finished_.count(i) > 0;
  DecoderLayer* layer = s.layer.get();
  io_->post([this, layer, i, notes, resumed, slot] {
    uploader_->wait_released(slot);  // the compute stream has finished with it
    for (LayerSink* sink : sinks_) sink->layer(i, *layer, notes, resumed);
  });
}

std::optional<LayerNotes> StreamedLayers::finished(int64_t i) const {
  const auto it = finished_.find(i);
  if (it == finished_.end()) return std::nullopt;
  return it->second;
}

void StreamedLayers::finish() {
  io_->post([] {}).get();  // every write before it has run (or its error is thrown here)
  for (LayerSink* sink : sinks_) sink->end();
}

}  // namespace pt::opt
