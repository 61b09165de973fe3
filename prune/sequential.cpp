#include "prune/sequential.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "autograd/variable.h"
#include "prune/calibration_across_ranks.h"
#include "prune/magnitude.h"
#include "prune/reconstruction.h"
#include "prune/wanda.h"
#include "tensor/nvtx.h"
#include "tensor/progress.h"
#if PT_CUDA
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::prune {

namespace {

constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();

// Wall-clock seconds that include the device's queued work (CUDA ops return before they finish).
class DeviceTimer {
 public:
  explicit DeviceTimer(Device device) : device_(device) { restart(); }
  void restart() {
    synchronize();
    start_ = std::chrono::steady_clock::now();
  }
  double seconds() const {
    synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  void synchronize() const {
#if PT_CUDA
    if (device_ == Device::cuda) cuda::synchronize();
#endif
  }
  Device device_;
  std::chrono::steady_clock::time_point start_;
};

// Puts the model in eval mode for the scope (no dropout while calibrating) and restores its flag.
class EvalModeScope {
 public:
  explicit EvalModeScope(nn::Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalModeScope() { module_.train(was_training_); }
  EvalModeScope(const EvalModeScope&) = delete;
  EvalModeScope& operator=(const EvalModeScope&) = delete;

 private:
  nn::Module& module_;
  bool was_training_;
};

// Calibration statistics of one distinct Linear input.
struct InputStatistics {
  HessianAccumulator hessian;  // H undefined when not needed
  WandaStats wanda;            // scaler_row undefined when not needed
};

// Takes every decoder Linear's input_observer away for the scope (the driver's forwards are not the caller's)
// and puts them back afterwards, also when pruning throws.
class ObserverStash {
 public:
  explicit ObserverStash(opt::OptForCausalLM& model) {
    for (auto& [name, lin] : model.linear_layers()) {
      linears_.push_back(lin);
      saved_.push_back(std::move(lin->input_observer));
      lin->input_observer = nullptr;
    }
  }
  ~ObserverStash() {
    for (size_t j = 0; j < linears_.size(); ++j) linears_[j]->input_observer = std::move(saved_[j]);
  }
  ObserverStash(const ObserverStash&) = delete;
  ObserverStash& operator=(const ObserverStash&) = delete;

 private:
  std::vector<nn::Linear*> linears_;
  std::vector<std::function<void(const Tensor&)>> saved_;
};

// Observers on the Linear layers of one decoder layer, removed by the destructor. Every distinct input tensor
// of a chunk is accumulated once: Linears that receive the very same tensor (q/k/v) share one InputStatistics.
// The inputs seen in the current chunk are held, so their storage cannot be recycled for a different input
// within the chunk and be mistaken for a shared one.
class LayerObservers {
 public:
  LayerObservers(const std::vector<nn::Linear*>& linears, bool want_hessian, bool want_wanda, StatisticsSum sum)
      : linears_(linears), want_hessian_(want_hessian), want_wanda_(want_wanda), exact_(sum == StatisticsSum::exact),
        slot_of_(linears.size(), -1) {
    for (size_t j = 0; j < linears_.size(); ++j)
      linears_[j]->input_observer = [this, j](const Tensor& x) { observe(j, x); };
  }
  ~LayerObservers() {
    for (nn::Linear* lin : linears_) lin->input_observer = nullptr;
  }
  LayerObservers(const LayerObservers&) = delete;
  LayerObservers& operator=(const LayerObservers&) = delete;

  void begin_chunk(int64_t sequences) {
    chunk_sequences_ = sequences;
    seen_.clear();
    seen_slot_.clear();
    accumulated_.assign(slots_.size(), false);
  }
  void end_chunk() { begin_chunk(0); }

  // The statistics of Linear j (null if it saw no input).
  InputStatistics* statistics(size_t j) const {
    return slot_of_[j] < 0 ? nullptr : slots_[size_t(slot_of_[j])].get();
  }

 private:
  static bool same_tensor(const Tensor& a, const Tensor& b) {
    return a.storage() == b.storage() && a.offset() == b.offset() && a.shape() == b.shape() &&
           a.strides() == b.strides() && a.dtype() == b.dtype();
  }

  void observe(size_t j, const Tensor& x) {
    PT_CHECK(chunk_sequences_ > 0, "prune_model: Linear ", j, " of the layer ran outside a calibration chunk");
    for (size_t k = 0; k < seen_.size(); ++k) {
      if (!same_tensor(seen_[k], x)) continue;
      if (slot_of_[j] < 0) slot_of_[j] = seen_slot_[k];
      PT_CHECK(slot_of_[j] == seen_slot_[k], "prune_model: Linear ", j,
               " shares its input with a different Linear than in the first chunk");
      return;
    }
    if (slot_of_[j] < 0) {
      auto stats = std::make_unique<InputStatistics>();
      const int64_t cols = x.size(-1);
      if (want_hessian_) stats->hessian = HessianAccumulator(cols, x.device());
      if (want_wanda_) stats->wanda = WandaStats(cols, x.device());
      if (want_hessian_ && exact_) stats->hessian.use_exact_sum();
      if (want_wanda_ && exact_) stats->wanda.use_exact_sum();
      slot_of_[j] = int(slots_.size());
      slots_.push_back(std::move(stats));
      accumulated_.push_back(false);
    }
    const size_t s = size_t(slot_of_[j]);
    PT_CHECK(!accumulated_[s], "prune_model: Linear ", j,
             " no longer shares its input with the Linears it shared it with in the first chunk");
    accumulated_[s] = true;
    seen_.push_back(x);
    seen_slot_.push_back(int(s));
    PT_NVTX_RANGE("prune/hessian");
    if (want_hessian_) slots_[s]->hessian.add_batch(x, chunk_sequences_);
    if (want_wanda_) slots_[s]->wanda.add_batch(x, chunk_sequences_);
  }

  std::vector<nn::Linear*> linears_;
  bool want_hessian_, want_wanda_, exact_;
  std::vector<int> slot_of_;  // Linear -> index into slots_, -1 before its first input
  std::vector<std::unique_ptr<InputStatistics>> slots_;
  std::vector<bool> accumulated_;  // per slot: already accumulated in this chunk
  std::vector<Tensor> seen_;       // this chunk's distinct inputs
  std::vector<int> seen_slot_;
  int64_t chunk_sequences_ = 0;
};

// Runs `layer` over every chunk of `inputs` ([N, T, C]). before_chunk(b) is called ahead of each chunk of b
// sequences; outputs (when given) receive the layer's outputs.
void forward_layer(opt::DecoderLayer& layer, const opt::ActivationStore& inputs, opt::ActivationStore* outputs,
                   int64_t batch, const std::function<void(int64_t)>& before_chunk,
                   const std::function<void()>& after_chunk) {
  const int64_t n = inputs.size();
  for (int64_t s = 0; s < n; s += batch) {
    const int64_t b = std::min(batch, n - s);
    if (before_chunk) before_chunk(b);
    {
      PT_NVTX_RANGE("prune/layer_forward");
      const Tensor x = inputs.read(s, b);
      const Tensor y = layer.forward(autograd::Variable(x)).data();
      if (outputs) outputs->write(s, y);
    }
    if (after_chunk) after_chunk();
  }
}

std::string format_error(double e) {
  if (std::isnan(e)) return "not measured";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", e);
  return buf;
}

// Prunes one Linear to options.pattern, keeping its current mask's zeros; `stats` may be null (magnitude
// without calibration). Fills everything in the report but its name and layer.
MatrixPruneReport prune_linear(nn::Linear& linear, const InputStatistics* stats, const SequentialPruneOptions& o) {
  MatrixPruneReport r;
  Tensor& stored = linear.weight.data();
  r.rows = stored.size(0);
  r.cols = stored.size(1);
  const Tensor prev_keep = linear.weight_mask;  // undefined before the first pruning
  const Tensor H = stats && stats->hessian.H().defined() ? stats->hessian.H() : Tensor();
  // The pruning code works in f32; a half-precision model is pruned on an f32 copy written back afterwards.
  Tensor w = stored.dtype() == DType::f32 ? stored : stored.to(DType::f32);
  const Tensor w_old = H.defined() ? w.clone() : Tensor();

  DeviceTimer timer(stored.device());
  Tensor keep;
  switch (o.method) {
    case PruneMethod::magnitude:
      keep = magnitude_mask(w, o.pattern, o.magnitude_group, prev_keep);
      break;
    case PruneMethod::wanda:
      PT_CHECK(stats && stats->wanda.scaler_row.defined(), "prune_model: no Wanda statistics for a Linear");
      keep = wanda_mask(w, stats->wanda, o.pattern, prev_keep);
      break;
    case PruneMethod::sparsegpt: {
      PT_CHECK(H.defined(), "prune_model: no Hessian for a Linear");
      SparseGptOptions so = o.sparsegpt;
      if (o.log) so.log = o.log;
      so.serial_factorisation |= o.statistics_sum == StatisticsSum::exact;  // masks independent of the thread count
      SparseGptResult res = sparsegpt_prune(w, H, o.pattern, prev_keep, so);
      keep = res.keep;
      r.sparsegpt_retries = res.retries;
      r.percdamp_used = res.percdamp_used;
      r.dead_columns = res.dead_columns;
      break;
    }
  }
  if (w.data_ptr() != stored.data_ptr()) stored.copy_(w);  // the f32 copy (or a reassigned tensor) goes back
  linear.set_mask(keep);
  r.seconds = timer.seconds();
  r.sparsity = mask_sparsity(linear.weight_mask);
  r.pruned = mask_pruned_count(linear.weight_mask);
  r.reconstruction_error = H.defined() ? reconstruction_error(w_old, stored.to(DType::f32), H) : kNotMeasured;
  return r;
}

void check_options(const opt::OptConfig& config, const Tensor& ids, const SequentialPruneOptions& o) {
  o.pattern.validate();
  PT_CHECK(o.forward_batch >= 1, "prune_model: forward_batch ", o.forward_batch, " must be at least 1");
  PT_CHECK(o.method == PruneMethod::magnitude || ids.defined(), "prune_model: ", prune_method_name(o.method),
           " needs calibration ids [nsamples, seqlen]; only magnitude prunes without them");
  if (!ids.defined()) return;
  PT_CHECK(ids.dim() == 2 && (ids.dtype() == DType::i32 || ids.dtype() == DType::i64) && ids.numel() >= 1,
           "prune_model: calibration ids ", ids.describe(), " must be a non-empty i32/i64 [nsamples, seqlen] tensor");
  PT_CHECK(!o.comm || ids.size(0) >= o.comm->size(), "prune_model: ", ids.size(0), " calibration windows for ",
           o.comm ? o.comm->size() : 1, " ranks; every rank needs at least one");
  PT_CHECK(ids.size(1) <= config.max_position_embeddings, "prune_model: calibration windows of ", ids.size(1),
           " tokens are longer than the model's context ", config.max_position_embeddings);
}

// A layer's reports as the notes it is released with (doubles round-trip exactly; NaN = not measured = null), and
// back: a resumed pass restores the reports of the layers an interrupted one finished.
nlohmann::json number(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }
double number(const nlohmann::json& j) { return j.is_null() ? kNotMeasured : j.get<double>(); }

opt::LayerNotes layer_notes(const LayerPruneReport& lr, const std::vector<MatrixPruneReport>& matrices) {
  nlohmann::json j = {{"seconds", lr.seconds}, {"sparsity", lr.sparsity},
                      {"reconstruction_error", number(lr.reconstruction_error)}, {"matrices", nlohmann::json::array()}};
  for (const auto& r : matrices)
    j["matrices"].push_back({{"name", r.name}, {"rows", r.rows}, {"cols", r.cols}, {"sparsity", r.sparsity},
                             {"pruned", r.pruned}, {"reconstruction_error", number(r.reconstruction_error)},
                             {"seconds", r.seconds}, {"sparsegpt_retries", r.sparsegpt_retries},
                             {"percdamp_used", r.percdamp_used}, {"dead_columns", r.dead_columns}});
  return {{"prune_report", j.dump()}};
}

LayerPruneReport restore_layer(int64_t i, const opt::LayerNotes& notes, std::vector<MatrixPruneReport>& matrices) {
  const auto it = notes.find("prune_report");
  PT_CHECK(it != notes.end(), "prune_model: layer ", i, " was finished by an earlier pass that left no pruning report");
  try {
    const nlohmann::json j = nlohmann::json::parse(it->second);
    LayerPruneReport lr;
    lr.layer = i;
    lr.seconds = j.at("seconds");
    lr.sparsity = j.at("sparsity");
    lr.reconstruction_error = number(j.at("reconstruction_error"));
    for (const auto& m : j.at("matrices")) {
      MatrixPruneReport r;
      r.name = m.at("name");
      r.layer = i;
      r.rows = m.at("rows");
      r.cols = m.at("cols");
      r.sparsity = m.at("sparsity");
      r.pruned = m.at("pruned");
      r.reconstruction_error = number(m.at("reconstruction_error"));
      r.seconds = m.at("seconds");
      r.sparsegpt_retries = m.at("sparsegpt_retries");
      r.percdamp_used = m.at("percdamp_used");
      r.dead_columns = m.at("dead_columns");
      matrices.push_back(std::move(r));
    }
    return lr;
  } catch (const nlohmann::json::exception& e) {
    PT_FAIL("prune_model: the report kept with finished layer ", i, " is damaged (", e.what(), ")");
  }
}

}  // namespace

PruneMethod parse_prune_method(const std::string& name) {
  if (name == "magnitude") return PruneMethod::magnitude;
  if (name == "wanda") return PruneMethod::wanda;
  if (name == "sparsegpt") return PruneMethod::sparsegpt;
  PT_FAIL("unknown pruning method '", name, "' (allowed: magnitude, wanda, sparsegpt)");
}

const char* prune_method_name(PruneMethod method) {
  switch (method) {
    case PruneMethod::magnitude: return "magnitude";
    case PruneMethod::wanda: return "wanda";
    case PruneMethod::sparsegpt: return "sparsegpt";
  }
  return "?";
}

PruneReport prune_model(opt::OptForCausalLM& model, const Tensor& ids, const SequentialPruneOptions& o) {
  // An adapter's effective weight is not W: pruning W under it would select and zero the wrong matrix.
  for (auto& [name, lin] : model.linear_layers())
    PT_CHECK(!lin->has_adapter(), "prune_model: ", name, " has a ", lin->adapter()->kind(),
             " adapter attached; merge or detach it before pruning");
  EvalModeScope eval_mode(model);
  ObserverStash stash(model);
  opt::ResidentLayers layers(model);
  return prune_layers(layers, ids, o);
}

PruneReport prune_layers(opt::ModelLayers& walk, const Tensor& all_ids, const SequentialPruneOptions& o) {
  check_options(walk.config(), all_ids, o);
  dist::Communicator& comm = o.comm ? *o.comm : dist::one_process();
  const dist::Range my_windows = comm.share(all_ids.defined() ? all_ids.size(0) : 0);
  const Tensor ids = all_ids.defined() ? all_ids.narrow(0, my_windows.begin, my_windows.size()) : all_ids;
  autograd::NoGradGuard no_grad;
  const Device device = walk.device();
  const int64_t num_layers = walk.num_layers();
  const bool sequential = ids.defined() && (o.method != PruneMethod::magnitude || o.measure_reconstruction);
  const bool want_hessian = o.method == PruneMethod::sparsegpt || o.measure_reconstruction;
  const bool want_wanda = o.method == PruneMethod::wanda;

  PruneReport report;
  report.method = o.method;
  report.pattern = o.pattern.describe();
  if (ids.defined()) {
    report.nsamples = all_ids.size(0);
    report.seqlen = ids.size(1);
  }
  const std::string label = std::string("prune ") + prune_method_name(o.method) + " " + report.pattern;
  DeviceTimer total_timer(device);
  Progress progress(label, num_layers, "layer", o.show_progress && comm.rank() == 0);

  // Layers an interrupted pass finished come first; activations are needed only while a layer is left to prune.
  int64_t first_open = 0;
  while (first_open < num_layers && walk.finished(first_open)) ++first_open;
  const bool calibrate = sequential && first_open < num_layers;

  // Double-buffered activations: `inputs` holds layer i's inputs, `outputs` receives its outputs, then they swap.
  opt::ActivationStore inputs, outputs;
  if (calibrate) {
    const int64_t n = ids.size(0), t = ids.size(1), c = walk.config().hidden_size;
    const opt::ActivationPlace place =
        opt::resolve_activation_place(o.activations, n, t, c, walk.dtype(), device);
    inputs = opt::ActivationStore(n, t, c, walk.dtype(), device, place, o.activation_dir);
    outputs = opt::ActivationStore(n, t, c, walk.dtype(), device, place, o.activation_dir);
    PT_NVTX_RANGE("prune/embed");
    opt::OptForCausalLM& ends = walk.ends();
    for (int64_t s = 0; s < n; s += o.forward_batch) {
      const int64_t b = std::min(o.forward_batch, n - s);
      inputs.write(s, ends.embed(ids.narrow(0, s, b)));
    }
    walk.release_ends();  // a streamed walk frees the embeddings while the layers run
  }

  double total_error = 0;
  for (int64_t i = 0; i < num_layers; ++i) {
    DeviceTimer layer_timer(device);
    opt::DecoderLayer& layer = walk.acquire(i);
    const auto named = layer.linear_layers();
    const size_t first_matrix = report.matrices.size();

    LayerPruneReport lr;
    const std::optional<opt::LayerNotes> done = walk.finished(i);
    if (done) {  // finished by an interrupted pass: its inputs for the next layer, and its report as it was
      lr = restore_layer(i, *done, report.matrices);
      if (calibrate) {
        forward_layer(layer, inputs, &outputs, o.forward_batch, {}, {});
        std::swap(inputs, outputs);
      }
      walk.release(i, true, *done);
      ++report.resumed_layers;
    } else {
      std::vector<nn::Linear*> linears;
      for (const auto& [name, lin] : named) linears.push_back(lin);
      std::unique_ptr<LayerObservers> observers;
      if (sequential) {
        if (o.layer_input_observer) o.layer_input_observer(i, inputs.whole());
        observers = std::make_unique<LayerObservers>(linears, want_hessian, want_wanda, o.statistics_sum);
        forward_layer(layer, inputs, nullptr, o.forward_batch, [&](int64_t b) { observers->begin_chunk(b); },
                      [&] { observers->end_chunk(); });
      }
      if (observers && comm.size() > 1) {  // each distinct input's statistics summed once
        std::set<InputStatistics*> summed;
        for (size_t j = 0; j < linears.size(); ++j) {
          InputStatistics* st = observers->statistics(j);
          if (!st || !summed.insert(st).second) continue;
          if (st->hessian.cols() > 0) all_reduce_hessian(comm, st->hessian);  // before H() is read
          if (st->wanda.scaler_row.defined()) all_reduce_wanda(comm, st->wanda);
        }
      }
      lr.layer = i;
      for (size_t j = 0; j < named.size(); ++j) {
        const std::string full_name = opt::layer_prefix(i) + named[j].first;
        const InputStatistics* stats = observers ? observers->statistics(j) : nullptr;
        PT_CHECK(!sequential || stats, "prune_model: ", full_name, " saw no input during the calibration forward");
        if (o.hessian_observer && stats && stats->hessian.H().defined()) o.hessian_observer(full_name, stats->hessian.H());
        const int owner = matrix_owner(comm, j);
        const bool here = o.prune_on_every_rank || comm.rank() == owner;
        MatrixPruneReport r = here ? prune_linear(*named[j].second, stats, o) : MatrixPruneReport{};
        if (comm.size() > 1 && !o.prune_on_every_rank) share_pruned_matrix(comm, owner, *named[j].second, r);
        r.name = full_name;
        r.layer = i;
        report.matrices.push_back(std::move(r));
      }
      observers.reset();  // removes the observers and frees this layer's statistics

      if (sequential) {
        forward_layer(layer, inputs, &outputs, o.forward_batch, {}, {});
        std::swap(inputs, outputs);
      }
      double layer_pruned = 0, layer_numel = 0, layer_error = 0;
      for (size_t j = first_matrix; j < report.matrices.size(); ++j) {
        const MatrixPruneReport& r = report.matrices[j];
        const double numel = double(r.rows * r.cols);
        layer_numel += numel;
        layer_pruned += r.sparsity * numel;
        layer_error += r.reconstruction_error;  // NaN stays NaN: not measured
      }
      lr.seconds = layer_timer.seconds();
      lr.sparsity = layer_pruned / layer_numel;
      lr.reconstruction_error = layer_error;
      walk.release(i, true, layer_notes(lr, {report.matrices.begin() + long(first_matrix), report.matrices.end()}));
    }
    for (size_t j = first_matrix; j < report.matrices.size(); ++j) {
      report.pruned_weights += report.matrices[j].pruned;
      report.total_weights += report.matrices[j].rows * report.matrices[j].cols;
    }
    total_error += lr.reconstruction_error;
    report.layers.push_back(lr);

    if (o.log && comm.rank() == 0) {
      char line[320];
      std::snprintf(line, sizeof line, "%s: layer %lld/%lld in %.2fs, sparsity %.4f, reconstruction error %s%s",
                    label.c_str(), (long long)(i + 1), (long long)num_layers, lr.seconds, lr.sparsity,
                    format_error(lr.reconstruction_error).c_str(), done ? " (finished before the interruption)" : "");
      o.log(line);
    }
    progress.set_note("err " + format_error(lr.reconstruction_error));
    progress.advance(1);
    if (o.layer_done) o.layer_done(i);
  }
  walk.finish();
  progress.finish();
  report.seconds = total_timer.seconds();
  report.sparsity = report.total_weights > 0 ? double(report.pruned_weights) / double(report.total_weights) : 0;
  report.reconstruction_error = total_error;
  return report;
}

}  // namespace pt::prune
