#include "apps/train_prune/memory_plan.h"

#include <algorithm>

#include "tensor/error.h"
#include "tensor/memory_report.h"

namespace pt::app {

namespace {

constexpr int64_t kF32 = 4;

int64_t layer_params(const opt::OptConfig& c) {
  const int64_t h = c.hidden_size, f = c.ffn_dim, b = c.enable_bias ? 1 : 0;
  return 4 * (h * h + b * h) + (h * f + b * f) + (f * h + b * h) + 4 * h;
}
int64_t layer_weights(const opt::OptConfig& c) { return 4 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * c.ffn_dim; }
int64_t ends_params(const opt::OptConfig& c) {
  return c.num_parameters() - c.num_hidden_layers * layer_params(c);
}

// Memory available to a run: the host's MemAvailable, and on CUDA the device's free memory.
int64_t available_on(Device d) { return d == Device::cuda ? device_free_bytes() : host_available_bytes(); }

std::string gb(int64_t bytes) { return format_bytes(bytes); }

// The forward temporaries of a chunk of b sequences of t tokens through one decoder layer (f32).
int64_t chunk_bytes(const opt::OptConfig& c, int64_t b, int64_t t) {
  const int64_t h = c.hidden_size, f = c.ffn_dim, heads = c.num_attention_heads;
  return kF32 * (b * t * (6 * h + f) + 2 * b * heads * t * t);
}

}  // namespace

int64_t in_memory_bytes(const opt::OptConfig& c, bool retrain_full) {
  const int64_t params = c.num_parameters(), masks = c.num_hidden_layers * layer_weights(c);
  if (retrain_full) return 16 * params + masks;
  return 2 * kF32 * params + masks;  // the model and a checkpoint's copy while it loads
}

StreamDecision decide_streaming(const Settings& s) {
  StreamDecision d;
  const int64_t need = in_memory_bytes(s.model.config, false);
  const int64_t host = host_available_bytes(), device = available_on(s.run.device);
  const std::string sizes = "the model in memory needs about " + gb(need) + " (f32 weights, masks, a checkpoint's copy); " +
                            device_name(s.run.device) + " has " + gb(device) + " available" +
                            (s.run.device == Device::cuda ? ", the host " + gb(host) : std::string());
  switch (s.stream) {
    case StreamMode::on:
      d.stream = true;
      d.reason = "stream = on: prune and evaluation stages stream the layers (" + sizes + ")";
      break;
    case StreamMode::off:
      d.reason = "stream = off: the model is held in memory (" + sizes + ")";
      break;
    case StreamMode::automatic: {
      const bool fits = need <= device && (s.run.device == Device::cpu || kF32 * s.model.config.num_parameters() <= host);
      d.stream = !fits;
      d.reason = std::string("stream = auto: ") + (fits ? "in memory, " : "streaming, ") + sizes;
      break;
    }
  }
  return d;
}

void check_retraining_fits(const Settings& s, const StreamDecision& d) {
  if (!d.stream || s.retrain.steps == 0) return;
  std::string key;
  bool full = false;
  for (const auto& st : s.plan.stages)
    if (st.op.kind == StageOp::Kind::retrain && st.op.scope != train::RetrainScope::none) {
      if (key.empty() || st.op.scope == train::RetrainScope::full) key = st.key;
      full |= st.op.scope == train::RetrainScope::full;
    }
  if (key.empty()) return;
  const opt::OptConfig& c = s.model.config;
  const int64_t need = in_memory_bytes(c, full), available = available_on(s.run.device);
  if (need <= available) return;
  // The largest model of this width and depth ratio that would fit: parameters scale with the bytes.
  const double per_param = double(need) / double(c.num_parameters());
  const int64_t fits = int64_t(double(available) / per_param);
  PT_FAIL("retraining stage '", key, "' needs the whole model in memory: about ", gb(need), " for ",
          full ? "scope full (16 bytes per parameter: weights, gradients, AdamW moments)" : "its scope (the f32 model and its masks)",
          ", but ", device_name(s.run.device), " has ", gb(available), " available; here ", full ? "full " : "",
          "retraining fits models up to about ", fits / 1000000, "M parameters (", c.name, " has ",
          c.num_parameters() / 1000000, "M); prune-only arms (oneshot) stream at any size");
}

MemoryEstimate streamed_prune_memory(const opt::OptConfig& c, int64_t n, int64_t t, int64_t batch,
                                     prune::PruneMethod method, Device device, opt::ActivationPlace activations,
                                     prune::StatisticsSum sum) {
  const int64_t h = c.hidden_size, f = c.ffn_dim;
  const int64_t slots = 2 * kF32 * layer_params(c) + layer_weights(c) * (device == Device::cuda ? 3 : 1);
  // statistics_sum = exact: the int64 sums (8 bytes per entry, on the host) all live after the calibration forward,
  // and the largest one beside its f32 Hessian while that is made from it.
  const int64_t gram = 3 * h * h + f * f;
  const int64_t exact_sums = sum == prune::StatisticsSum::exact ? 2 * kF32 * gram : 0;
  const int64_t stats = kF32 * gram + (device == Device::cpu ? exact_sums : 0);
  const int64_t factor = method == prune::PruneMethod::sparsegpt ? kF32 * 2 * f * f : 0;
  const int64_t matrix = 2 * kF32 * h * f;
  const opt::ActivationPlace place = opt::resolve_activation_place(activations, n, t, h, DType::f32, device);
  const int64_t acts = 2 * kF32 * n * t * h;
  // On the CPU the host is the device: activations count there unless they are on disk.
  const bool on_device = place == opt::ActivationPlace::device || (device == Device::cpu && place == opt::ActivationPlace::host);
  const int64_t acts_device = on_device ? acts : 0;
  const int64_t chunk = chunk_bytes(c, std::min(batch, n), t);
  const int64_t layer_phase = slots + stats + factor + matrix + chunk + acts_device;
  // The slots stay allocated while the ends are resident (they are made once, when the walk starts).
  const int64_t ends_phase = slots + kF32 * ends_params(c) + acts_device + kF32 * std::min(batch, n) * t * h;
  MemoryEstimate e;
  e.device_bytes = std::max(layer_phase, ends_phase);
  if (device == Device::cuda)
    e.host_bytes = 2 * kF32 * h * f + kF32 * layer_params(c) + (place == opt::ActivationPlace::host ? acts : 0) +
                   exact_sums;
  e.breakdown = "layer phase " + gb(layer_phase) + " (slots " + gb(slots) + ", statistics " + gb(stats) +
                (exact_sums ? " with the exact sums' " + gb(exact_sums) + (device == Device::cpu ? "" : " on the host")
                            : std::string()) +
                (factor ? ", SparseGPT factorisation " + gb(factor) : std::string()) + ", forward chunk " + gb(chunk) +
                ", activations " + gb(acts) + " on " + opt::activation_place_name(place) + "); ends phase " +
                gb(ends_phase);
  return e;
}

MemoryEstimate streamed_eval_memory(const opt::OptConfig& c, int64_t windows, int64_t t, int64_t batch, Device device,
                                    opt::ActivationPlace activations) {
  const int64_t h = c.hidden_size, b = std::min(batch, windows);
  const int64_t slots = 2 * kF32 * layer_params(c) + (device == Device::cuda ? 2 * layer_weights(c) : 0);
  const opt::ActivationPlace place = opt::resolve_activation_place(activations, windows, t, h, DType::f32, device);
  const int64_t acts = 2 * kF32 * windows * t * h;
  const bool on_device = place == opt::ActivationPlace::device || (device == Device::cpu && place == opt::ActivationPlace::host);
  const int64_t acts_device = on_device ? acts : 0;
  const int64_t layer_phase = slots + chunk_bytes(c, b, t) + acts_device;
  const int64_t logits = 2 * kF32 * b * t * c.vocab_size;  // the logits and cross-entropy's softmax
  const int64_t ends_phase = slots + kF32 * ends_params(c) + acts_device + logits;
  MemoryEstimate e;
  e.device_bytes = std::max(layer_phase, ends_phase);
  if (device == Device::cuda) e.host_bytes = 2 * kF32 * h * c.ffn_dim + (place == opt::ActivationPlace::host ? acts : 0);
  e.breakdown = "layer phase " + gb(layer_phase) + " (slots " + gb(slots) + ", activations " + gb(acts) + " on " +
                opt::activation_place_name(place) + "); head phase " + gb(ends_phase) + " (ends " +
                gb(kF32 * ends_params(c)) + ", logits " + gb(logits) + ")";
  return e;
}

std::vector<std::string> memory_plan_lines(const Settings& s, const StreamDecision& d) {
  std::vector<std::string> out{"memory: " + d.reason};
  if (!d.stream) return out;
  const opt::OptConfig& c = s.model.config;
  const int64_t t = s.calibration.seqlen > 0 ? s.calibration.seqlen : c.max_position_embeddings;
  const MemoryEstimate p = streamed_prune_memory(c, s.calibration.nsamples, t, s.prune.forward_batch,
                                                 prune::PruneMethod::sparsegpt, s.run.device, s.prune.activations,
                                                 s.prune.statistics_sum);
  const int64_t et = s.eval.seqlen > 0 ? s.eval.seqlen : c.max_position_embeddings;
  const int64_t windows = s.eval.windows > 0 ? s.eval.windows : 141;  // WikiText-2 test: 141 windows of 2048
  const MemoryEstimate e = streamed_eval_memory(c, windows, et, s.eval.batch, s.run.device, s.prune.activations);
  auto line = [&](const char* what, const MemoryEstimate& m) {
    return std::string("        ") + what + ": about " + gb(m.device_bytes) + " on " + device_name(s.run.device) +
           (m.host_bytes ? " + " + gb(m.host_bytes) + " host" : std::string()) + " (" + m.breakdown + ")";
  };
  out.push_back(line("streamed SparseGPT stage", p));
  out.push_back(line("streamed evaluation", e));
  return out;
}

}  // namespace pt::app
