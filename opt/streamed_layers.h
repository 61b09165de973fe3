// A model larger than memory, walked one decoder layer at a time (opt/model_layers.h): two layer slots on the run's
// device take turns, one I/O thread loads layer i + 1 into the free slot while layer i computes (CUDA: pinned
// staging buffers and a copy stream, opt/layer_upload.h) and writes a changed layer to the sinks before its slot is
// reused. Resident at any time: the two slots and, only while asked for, the model's ends (embeddings, final
// LayerNorm, head). Nothing else of the model is in memory, whatever its size. On the CPU the allocation cache is
// emptied at each phase boundary (a layer or the ends released): each phase's temporaries have sizes of their own,
// and a cache holding every phase's would grow the resident set far past what any one phase uses.
#pragma once
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <vector>

#include "opt/layer_sink.h"
#include "opt/layer_upload.h"
#include "opt/model_layers.h"
#include "opt/weight_source.h"

namespace pt::opt {

class IoThread;

class StreamedLayers : public ModelLayers {
 public:
  // source: the model's tensors (its config is the model's; a FinishedLayersSource when resuming). sinks: where the
  // layers a pass changes go, in this order. finished: the layers an interrupted pass finished (their notes), which
  // the sinks already hold durably. prefetch = false loads each layer when it is asked for (a reference for tests).
  StreamedLayers(std::shared_ptr<const WeightSource> source, Device device, DType dtype,
                 std::vector<LayerSink*> sinks = {}, std::map<int64_t, LayerNotes> finished = {},
                 bool prefetch = true);
  ~StreamedLayers() override;  // waits for the I/O thread (call finish() to see a failed write)

  const OptConfig& config() const override { return source_->config(); }
  Device device() const override { return device_; }
  DType dtype() const override { return dtype_; }
  bool streamed() const override { return true; }
  OptForCausalLM& ends() override;
  void release_ends() override;
  DecoderLayer& acquire(int64_t i) override;
  void release(int64_t i, bool changed, const LayerNotes& notes = {}) override;
  std::optional<LayerNotes> finished(int64_t i) const override;
  void finish() override;
  // Called on every layer as it is acquired, after its tensors and masks are in place (e.g. to pack pruned
  // weights for a sparse kernel; the packed forms are dropped when the slot takes its next layer).
  void set_on_acquire(std::function<void(int64_t, DecoderLayer&)> hook) { on_acquire_ = std::move(hook); }

 private:
  struct Slot {
    std::unique_ptr<DecoderLayer> layer;
    std::vector<std::pair<std::string, Tensor>> tensors;  // the layer's parameters by full name (for its index)
    std::vector<Tensor> mask_buffers, masks;              // per tensor: preallocated on CUDA / as loaded
    int64_t index = -1;                                   // the layer it holds or is loading
    bool held = false;                                    // acquired and not yet released
    std::future<void> loaded;
  };
  void load(int64_t i);            // queues layer i's load into its slot
  void begin_sinks();              // the sinks get the ends once, before the first layer
  void name_slot(Slot& s, int64_t i);

  std::shared_ptr<const WeightSource> source_;
  Device device_;
  DType dtype_;
  std::vector<LayerSink*> sinks_;
  std::map<int64_t, LayerNotes> finished_;
  bool prefetch_;
  bool sinks_begun_ = false;
  std::unique_ptr<OptForCausalLM> ends_;
  std::function<void(int64_t, DecoderLayer&)> on_acquire_;
  Slot slots_[2];
  std::unique_ptr<LayerUploader> uploader_;
  std::unique_ptr<IoThread> io_;  // declared last: stopped (joined) first
};

}  // namespace pt::opt
