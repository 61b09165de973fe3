#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/autocast.h"
#include "autograd/functions.h"
#include "nn/dropout.h"
#include "opt/hf_checkpoint.h"
#include "opt/perplexity.h"
#include "tensor/error.h"
#include "tensor/nvtx.h"
#include "tensor/progress.h"
#include "train/data_parallel.h"
#include "train/gradient_buckets.h"
#include "train/token_windows.h"

namespace pt::train {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool is_layer_norm_parameter(const std::string& name) {
  return name.find("layer_norm.") != std::string::npos;  // self_attn_layer_norm, final_layer_norm
}
bool is_bias(const std::string& name) { return name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0; }

// Dropout of module k in micro-batch i draws from seed hash(run seed, k) at offset i << 36 (2^36 draws per
// micro-batch and module is far more than any batch uses): it depends on the run's seed and the micro-batch
// index alone — not on how the model was built or on what ran before — so a resumed run draws the same masks.
void position_dropout(opt::OptForCausalLM& model, uint64_t run_seed, int64_t micro_index) {
  uint64_t k = 0;
  for (auto& [_, m] : model.named_modules())
    if (auto* d = dynamic_cast<nn::Dropout*>(m)) {
      d->generator().seed = random_bits(run_seed, k++);
      d->generator().offset = uint64_t(micro_index) << 36;
    }
}

nlohmann::json metrics_json(const TrainResult& r) {
  nlohmann::json h = nlohmann::json::array(), e = nlohmann::json::array();
  for (const StepRecord& s : r.history) h.push_back({s.step, s.loss, s.lr, s.grad_norm});
  for (const EvalRecord& v : r.evals) e.push_back({v.step, v.perplexity, v.mean_nll});
  return {{"history", h}, {"evals", e}};
}

void read_metrics(const std::string& text, const std::string& path, TrainResult& r) {
  try {
    const auto j = nlohmann::json::parse(text);
    for (const auto& s : j.at("history"))
      r.history.push_back({s.at(0).get<int64_t>(), s.at(1).get<double>(), s.at(2).get<double>(), s.at(3).get<double>()});
    for (const auto& v : j.at("evals"))
      r.evals.push_back({v.at(0).get<int64_t>(), v.at(1).get<double>(), v.at(2).get<double>()});
  } catch (const nlohmann::json::exception& e) {
    PT_FAIL("checkpoint ", path, ": its metrics attribute is not a training history (", e.what(), ")");
  }
}

void default_log(const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }

}  // namespace

std::vector<TrainableParameter> all_parameters(opt::OptForCausalLM& model) {
  std::map<const autograd::Variable*, Tensor> masks;
  for (auto& [_, lin] : model.linear_layers())
    if (lin->has_mask()) masks[&lin->weight] = lin->weight_mask;
  std::vector<TrainableParameter> out;
  for (auto& [name, var] : model.named_parameters()) {
    TrainableParameter p{name, var, !(is_bias(name) || is_layer_norm_parameter(name)), Tensor()};
    if (auto it = masks.find(var); it != masks.end()) p.keep = it->second;
    out.push_back(std::move(p));
  }
  return out;
}

nn::Checkpoint model_checkpoint(opt::OptForCausalLM& model) {
  nn::Checkpoint ck;
  for (auto& [name, var] : model.named_parameters()) ck.parameters.emplace_back(name, var->data());
  for (auto& [name, lin] : model.linear_layers())
    if (lin->has_mask()) ck.masks[name + ".weight"] = lin->weight_mask;
  ck.model_config = opt::hf_config_json(model.config());
  return ck;
}

void load_model_checkpoint(opt::OptForCausalLM& model, const nn::Checkpoint& ckpt) {
  nn::ExpectedTensors expected;
  std::map<std::string, autograd::Variable*> by_name;
  for (auto& [name, var] : model.named_parameters()) {
    expected.emplace_back(name, var->shape());
    by_name[name] = var;
  }
  nn::ExpectedTensors mask_shapes;
  std::map<std::string, nn::Linear*> linears;
  for (auto& [name, lin] : model.linear_layers()) {
    linears[name + ".weight"] = lin;
    if (ckpt.masks.count(name + ".weight")) mask_shapes.emplace_back(name + ".weight", lin->weight.shape());
  }
  nn::validate_checkpoint(ckpt, expected, mask_shapes);
  autograd::NoGradGuard no_grad;
  for (const auto& [name, t] : ckpt.parameters) by_name.at(name)->data().copy_(t);
  for (auto& [name, lin] : linears) {
    auto it = ckpt.masks.find(name);
    if (it == ckpt.masks.end()) lin->clear_mask();
    else lin->set_mask(it->second.to(lin->weight.device()));
  }
}

TrainResult train_model(opt::OptForCausalLM& model, const std::vector<TrainableParameter>& params,
                        const std::vector<int32_t>& train_tokens, const std::vector<int32_t>& eval_tokens,
                        const TrainOptions& o) {
  PT_NVTX_RANGE("train/run");
  auto log = o.log ? o.log : default_log;
  PT_CHECK(o.steps >= 0 && o.batch_size >= 1 && o.grad_accum >= 1,
           "train: steps (", o.steps, ") >= 0, batch_size (", o.batch_size, ") >= 1 and grad_accum (", o.grad_accum,
           ") >= 1 are required");
  PT_CHECK(o.seqlen >= 2 && o.seqlen <= model.config().max_position_embeddings, "train: seqlen ", o.seqlen,
           " must be in [2, ", model.config().max_position_embeddings, "] (the model's context)");
  PT_CHECK(!params.empty(), "train: no parameters to train");
  o.schedule.validate();
  const TokenWindows windows(train_tokens, o.seqlen, o.seed);
  dist::Communicator& comm = o.comm ? *o.comm : dist::one_process();
  PT_CHECK(o.batch_size >= comm.size(), "train: batch_size ", o.batch_size, " is split across ", comm.size(),
           " ranks; every rank needs at least one window (batch_size >= ranks)");
  const dist::Range my_windows = comm.share(o.batch_size);  // of every micro-batch
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(p.var->data().numel());
  const std::vector<int> owner_of_param = shard_owners(numels, comm.size());  // ZeRO-1: who updates what

  // The optimizer: two groups (decayed, not decayed), masks attached.
  // This rank's optimizer holds the parameters it owns (all of them for one process).
  nn::AdamWParamGroup decay{{}, o.weight_decay, {}}, no_decay{{}, 0.0, {}};
  std::set<const autograd::Variable*> trained;
  for (size_t k = 0; k < params.size(); ++k) {
    const auto& p = params[k];
    PT_CHECK(p.var != nullptr, "train: parameter '", p.name, "' has no variable");
    trained.insert(p.var);
    if (owner_of_param[k] != comm.rank()) continue;
    auto& g = p.weight_decay ? decay : no_decay;
    g.params.push_back(*p.var);
    g.names.push_back(p.name);
  }
  std::vector<nn::AdamWParamGroup> groups;
  std::vector<const TrainableParameter*> order;  // every parameter, in the one-process optimizer's order
  std::vector<int> owners, local;                // per entry of order: its owner, its index in this rank's AdamW
  for (bool want_decay : {true, false})
    for (size_t k = 0; k < params.size(); ++k)
      if (params[k].weight_decay == want_decay) {
        order.push_back(&params[k]);
        owners.push_back(owner_of_param[k]);
      }
  for (size_t i = 0, n = 0; i < order.size(); ++i) local.push_back(owners[i] == comm.rank() ? int(n++) : -1);
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  nn::AdamW adamw(std::move(groups), o.adamw);
  TrainResult result;
  for (size_t i = 0; i < order.size(); ++i) {
    const Tensor& keep = order[i]->keep;
    if (keep.defined() && local[i] >= 0) adamw.set_mask(size_t(local[i]), keep);
    result.trained_parameters += keep.defined() ? int64_t(std::llround(pt::sum_all(keep.to(DType::f32)).item()))
                                                : order[i]->var->data().numel();
  }

  // Resume from the last complete checkpoint of this same run.
  int64_t step = 0;
  if (!o.checkpoint_path.empty() && o.resume && std::filesystem::exists(o.checkpoint_path)) {
    nn::Checkpoint ck = nn::load_checkpoint(o.checkpoint_path);
    PT_CHECK(ck.run_config == o.run_config, "checkpoint ", o.checkpoint_path,
             " was written by a run with another configuration; remove it or choose another output folder");
    PT_CHECK(ck.stage == o.stage && ck.stage_index == o.stage_index, "checkpoint ", o.checkpoint_path, " holds stage '",
             ck.stage, "' #", ck.stage_index, ", not '", o.stage, "' #", o.stage_index);
    PT_CHECK(ck.optimizer.has_value() || ck.step == 0, "checkpoint ", o.checkpoint_path,
             " has no optimizer state, so training cannot resume from it bit-identically");
    load_model_checkpoint(model, ck);
    // The masks now are the checkpoint's: the optimizer must enforce exactly those.
    std::map<const autograd::Variable*, nn::Linear*> linear_of;
    for (auto& [_, lin] : model.linear_layers()) linear_of[&lin->weight] = lin;
    for (size_t i = 0; i < order.size(); ++i)
      if (auto it = linear_of.find(order[i]->var); it != linear_of.end() && it->second->has_mask() && local[i] >= 0)
        adamw.set_mask(size_t(local[i]), it->second->weight_mask);
    if (ck.optimizer) {
      std::vector<nn::AdamWParamState> st = adamw.state();
      for (auto& s : st) {
        auto m = ck.optimizer->m.find(s.name), v = ck.optimizer->v.find(s.name);
        PT_CHECK(m != ck.optimizer->m.end() && v != ck.optimizer->v.end(), "checkpoint ", o.checkpoint_path,
                 ": no optimizer state for trained parameter ", s.name);
        s = {s.name, ck.optimizer->step, m->second, v->second};
      }
      adamw.load_state(st);
    }
    read_metrics(ck.metrics, o.checkpoint_path, result);
    step = result.resumed_from = ck.step;
    log("resumed from " + o.checkpoint_path + " at step " + std::to_string(step) + " of " + std::to_string(o.steps));
  }

  std::vector<autograd::Variable*> grads;
  std::vector<std::string> names;
  for (const auto* p : order) {
    grads.push_back(p->var);
    names.push_back(p->name);
  }
  auto save = [&](int64_t at_step) {
    if (o.checkpoint_path.empty()) return;
    PT_NVTX_RANGE("train/checkpoint");
    nn::OptimizerState os;
    if (comm.size() > 1) {
      os = gather_optimizer_state(comm, adamw, grads, names, owners, local);
    } else {
      for (const auto& s : adamw.state()) {
        os.m[s.name] = s.exp_avg;
        os.v[s.name] = s.exp_avg_sq;
        os.step = s.step;
      }
    }
    if (comm.rank() != 0) return comm.barrier();  // rank 0 writes; the others go on when it has
    nn::Checkpoint ck = model_checkpoint(model);
    ck.optimizer = std::move(os);
    ck.run_config = o.run_config;
    ck.stage = o.stage;
    ck.stage_index = o.stage_index;
    ck.step = at_step;
    ck.rng = Generator(o.seed);
    ck.metrics = metrics_json(result).dump();
    nn::save_checkpoint(o.checkpoint_path, ck, o.save);
    if (comm.size() > 1) comm.barrier();
  };
  auto evaluate = [&](int64_t at_step, int64_t max_windows) {
    if (eval_tokens.empty()) return;
    PT_NVTX_RANGE("train/eval");
    model.eval();
    opt::PerplexityOptions po;
    po.seqlen = o.eval_seqlen > 0 ? o.eval_seqlen : o.seqlen;
    po.batch_size = o.eval_batch;
    po.max_windows = max_windows;
    po.show_progress = false;
    po.comm = o.comm;
    const opt::PerplexityResult r = opt::evaluate_perplexity(model, eval_tokens, po);
    result.evals.push_back({at_step, r.perplexity, r.mean_nll});
    char line[160];
    std::snprintf(line, sizeof line, "eval  step %lld: perplexity %.3f (%lld windows of %lld, %.1fs)",
                  (long long)at_step, r.perplexity, (long long)r.windows, (long long)po.seqlen, r.seconds);
    log(line);
  };

  // Freeze what is not trained (no gradient work for it), restored on exit.
  std::vector<std::pair<autograd::Variable*, bool>> frozen;
  for (auto& [_, var] : model.named_parameters())
    if (!trained.count(var)) {
      frozen.emplace_back(var, var->requires_grad());
      var->set_requires_grad(false);
    }
  for (const auto& p : params) p.var->set_requires_grad(true);
  struct Restore {
    std::vector<std::pair<autograd::Variable*, bool>>& f;
    opt::OptForCausalLM& m;
    ~Restore() {
      for (auto& [v, r] : f) v->set_requires_grad(r);
      m.eval();
    }
  } restore{frozen, model};

  std::unique_ptr<GradientBuckets> buckets;  // several ranks: gradient sums overlapped with the backward
  PT_CHECK(o.bucket_bytes >= 0, "train: bucket_bytes ", o.bucket_bytes, " must be >= 0");
  if (comm.size() > 1 && o.bucket_bytes > 0) {
    std::vector<autograd::Variable*> registered;
    for (const auto& p : params) registered.push_back(p.var);
    buckets = std::make_unique<GradientBuckets>(comm, std::move(registered), o.bucket_bytes);
  }

  const bool autocast = o.autocast_bf16 && model.device() == Device::cuda;
  const int64_t tokens_per_step = o.batch_size * o.grad_accum * o.seqlen;
  const auto start = Clock::now();
  Progress bar(o.stage, o.steps, "step", o.show_progress && comm.rank() == 0);
  bar.advance(step);
  double window_loss = 0;
  int64_t window_steps = 0;
  auto window_start = Clock::now();
  while (step < o.steps) {
    PT_NVTX_RANGE("train/step");
    model.train();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      const int64_t micro_index = step * o.grad_accum + micro;
      position_dropout(model, o.seed, micro_index);
      Tensor ids = windows.batch(micro_index * o.batch_size + my_windows.begin, my_windows.size()).to(model.device());
      autograd::AutocastGuard amp(DType::bf16, autocast);
      autograd::Variable loss = model.loss(ids, ids.to(DType::i64));
      // This rank's mean over its windows, weighted by its share: the ranks' sum is the micro-batch's mean.
      const double share = double(my_windows.size()) / double(o.batch_size);
      loss_sum += loss.data().item() * share;
      if (o.grad_accum > 1 || share != 1.0) loss = autograd::mul_scalar(loss, share / double(o.grad_accum));
      PT_NVTX_RANGE("train/backward");
      if (buckets && micro == o.grad_accum - 1) buckets->arm();  // the step's gradients are final in this one
      loss.backward();
    }
    if (comm.size() > 1) {
      if (buckets) buckets->finish();
      else all_reduce_gradients(comm, grads);
      loss_sum = comm.all_reduce_sum(loss_sum);
    }
    const double grad_norm = o.max_grad_norm > 0 ? nn::clip_grad_norm(grads, o.max_grad_norm)
                                                 : nn::grad_norm(grads);
    const double lr = o.schedule.lr_at(step);
    adamw.step(lr);
    adamw.zero_grad();
    model.zero_grad();
    if (comm.size() > 1) broadcast_parameters(comm, grads, owners);
    ++step;
    const double loss = loss_sum / double(o.grad_accum);
    PT_CHECK(std::isfinite(loss), "train: the loss became ", loss, " at step ", step,
             "; lower the learning rate or enable clipping (max_grad_norm)");
    result.history.push_back({step, loss, lr, grad_norm});
    window_loss += loss;
    ++window_steps;
    bar.set_note("loss " + std::to_string(loss).substr(0, 6));
    bar.advance(1);
    if ((o.log_every > 0 && step % o.log_every == 0) || step == o.steps) {
      const double dt = seconds_since(window_start);
      char line[200];
      std::snprintf(line, sizeof line, "train step %lld/%lld: loss %.4f | lr %.3g | grad norm %.3f | %.0f tok/s",
                    (long long)step, (long long)o.steps, window_loss / double(window_steps), lr, grad_norm,
                    double(window_steps * tokens_per_step) / std::max(dt, 1e-9));
      if (!o.show_progress) log(line);
      window_loss = 0;
      window_steps = 0;
      window_start = Clock::now();
    }
    if (o.eval_every > 0 && step % o.eval_every == 0 && step != o.steps) evaluate(step, o.eval_windows);
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && step != o.steps) save(step);
    if (o.after_step) o.after_step(step);
  }
  bar.finish();
  if (result.evals.empty() || result.evals.back().step != step) evaluate(step, o.final_eval_windows);
  if (step > result.resumed_from || result.history.empty()) save(step);  // a complete checkpoint is not rewritten
  result.seconds = seconds_since(start);
  const int64_t steps_here = step - result.resumed_from;
  result.tokens_per_second = result.seconds > 0 ? double(steps_here * tokens_per_step) / result.seconds : 0;
  return result;
}

}  // namespace pt::train
