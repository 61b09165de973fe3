// A model visited one decoder layer at a time: what sequential pruning (prune/sequential.h) and layer-major
// perplexity (opt/perplexity.h) walk. The in-memory model is the case where every layer is already resident
// (ResidentLayers); a model larger than memory streams its layers from disk to the device and hands the ones a
// pass changed to a sink (StreamedLayers, opt/streamed_layers.h). Both run the same code above them.
//
//   x = ends().embed(ids); release_ends();
//   for i in 0 .. num_layers()-1: { DecoderLayer& l = acquire(i); x = l(x); release(i, changed, notes); }
//   finish(); logits = ends().head(x)
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "opt/config.h"
#include "opt/decoder_layer.h"
#include "opt/model.h"

namespace pt::opt {

// Small text kept with a finished layer (e.g. its pruning report), so a resumed pass restores what it computed.
using LayerNotes = std::map<std::string, std::string>;

class ModelLayers {
 public:
  virtual ~ModelLayers() = default;
  virtual const OptConfig& config() const = 0;
  virtual Device device() const = 0;
  virtual DType dtype() const = 0;
  int64_t num_layers() const { return config().num_hidden_layers; }
  virtual bool streamed() const = 0;

  // The model's ends: embeddings, projections, final LayerNorm and LM head (a model whose decoder layers may be
  // absent). A streamed walk reads them when asked and frees them at release_ends().
  virtual OptForCausalLM& ends() = 0;
  virtual void release_ends() {}

  // Decoder layer i, resident until release(i). A streamed walk takes layers in increasing order (starting again at
  // 0 begins another pass) and loads layer i + 1 while layer i computes.
  virtual DecoderLayer& acquire(int64_t i) = 0;
  // Done with layer i; changed: its weights or masks were modified (a streamed walk hands it to its sinks with the
  // notes, then frees it).
  virtual void release(int64_t i, bool changed, const LayerNotes& notes = {}) = 0;
  // Layer i was finished and written by an earlier, interrupted pass: acquire(i) gives it as it was finished, and
  // these are the notes it was released with.
  virtual std::optional<LayerNotes> finished(int64_t i) const { return std::nullopt; }
  // After a pass that changed layers: waits until the sinks hold every layer (errors of a background write are
  // thrown here at the latest).
  virtual void finish() {}
};

// Every layer in memory: acquire and release cost nothing, any order and any number of passes are fine.
class ResidentLayers : public ModelLayers {
 public:
  explicit ResidentLayers(OptForCausalLM& model) : model_(model) {}
  const OptConfig& config() const override { return model_.config(); }
  Device device() const override { return model_.device(); }
  DType dtype() const override { return model_.dtype(); }
  bool streamed() const override { return false; }
  OptForCausalLM& ends() override { return model_; }
  DecoderLayer& acquire(int64_t i) override { return model_.layer(i); }
  void release(int64_t, bool, const LayerNotes&) override {}

 private:
  OptForCausalLM& model_;
};

// The name of decoder layer i's parameters: "model.decoder.layers.3." (prefix) + "fc1.weight".
inline std::string layer_prefix(int64_t i) { return "model.decoder.layers." + std::to_string(i) + "."; }

}  // namespace pt::opt
