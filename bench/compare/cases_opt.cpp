// OPT cases of `make compare`, project side: a training step and the perplexity loop on a randomly initialised
// OPT model of the shape the driver sends (bench/reference/opt_cases.py runs Hugging Face's OPTForCausalLM on the
// same shape).
//   train_step  forward with the shifted loss, backward, clip_grad_norm(1.0), the masked-capable AdamW step the
//               training loop uses (fused kernel; weight decay on matrices only), zero_grad. On CUDA with
//               autocast_bf16 the step runs under the bf16 AutocastGuard, like train_model.
//   perplexity  evaluate_perplexity over `batch` windows of `seqlen` tokens, as opt_eval runs it.
#include "autograd/autocast.h"
#include "bench/compare/compare_case.h"
#include "nn/adamw.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "tensor/random.h"
#include "train/trainer.h"

namespace pt::comparison {

opt::OptConfig opt_config_from(const json& p) {
  opt::OptConfig c;
  c.name = "compare";
  c.vocab_size = param_int(p, "vocab");
  c.hidden_size = param_int(p, "hidden");
  c.word_embed_proj_dim = c.hidden_size;
  c.num_hidden_layers = param_int(p, "layers");
  c.ffn_dim = param_int(p, "ffn");
  c.num_attention_heads = param_int(p, "heads");
  c.max_position_embeddings = param_int(p, "ctx");
  c.dropout = p.value("dropout", 0.0);
  c.validate();
  return c;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(random_bits(seed, i) % uint64_t(vocab));
  return ids;
}

namespace {

class TrainStepCase : public CompareCase {
 public:
  TrainStepCase(const json& p, Device dev) : model_(opt_config_from(p), dev, 0) {
    const int64_t batch = param_int(p, "batch"), seqlen = param_int(p, "seqlen");
    ids_ = Tensor::from_vector(random_tokens(batch * seqlen, model_.config().vocab_size, 3), {batch, seqlen}, dev);
    labels_ = ids_.to(DType::i64);
    nn::AdamWParamGroup decay{{}, p.value("weight_decay", 0.01), {}}, no_decay{{}, 0.0, {}};
    for (const train::TrainableParameter& tp : train::all_parameters(model_)) {
      (tp.weight_decay ? decay : no_decay).params.push_back(*tp.var);
      grads_.push_back(tp.var);
    }
    nn::AdamWConfig cfg;
    cfg.kernel = "fused";  // what train_prune uses (kernels = fused)
    adamw_ = std::make_unique<nn::AdamW>(std::vector<nn::AdamWParamGroup>{decay, no_decay}, cfg);
    lr_ = p.value("lr", 1e-5);
    autocast_ = p.value("autocast_bf16", false) && dev == Device::cuda;
    model_.train();
    info["parameters"] = model_.num_parameters();
    info["adamw_kernel"] = cfg.kernel;
  }

  json run() override {
    autograd::Variable loss;
    {
      autograd::AutocastGuard amp(DType::bf16, autocast_);
      loss = model_.loss(ids_, labels_);
      loss.backward();
    }
    nn::clip_grad_norm(grads_, 1.0);
    adamw_->step(lr_);
    adamw_->zero_grad();
    model_.zero_grad();
    last_loss_ = loss.data();
    return json::object();
  }
  json check(const json&) override { return {{"loss", last_loss_.item()}}; }

 private:
  opt::OptForCausalLM model_;
  Tensor ids_, labels_, last_loss_;
  std::vector<autograd::Variable*> grads_;
  std::unique_ptr<nn::AdamW> adamw_;
  double lr_ = 1e-5;
  bool autocast_ = false;
};

class PerplexityCase : public CompareCase {
 public:
  PerplexityCase(const json& p, Device dev) : model_(opt_config_from(p), dev, 0) {
    options_.seqlen = param_int(p, "seqlen");
    options_.batch_size = p.value("batch", int64_t(1));
    options_.max_windows = options_.batch_size;
    options_.show_progress = false;
    tokens_ = random_tokens(options_.seqlen * options_.batch_size, model_.config().vocab_size, 4);
    const DType dt = param_dtype(p, DType::f32);
    if (dt != DType::f32) model_.to(dt);
    model_.eval();
    info["parameters"] = model_.num_parameters();
  }

  json run() override { return {{"nll", opt::evaluate_perplexity(model_, tokens_, options_).mean_nll}}; }

 private:
  opt::OptForCausalLM model_;
  opt::PerplexityOptions options_;
  std::vector<int32_t> tokens_;
};

}  // namespace

void add_opt_cases(CaseRegistry& r) {
  r["train_step"] = [](const json& p, Device d) { return std::make_unique<TrainStepCase>(p, d); };
  r["perplexity"] = [](const json& p, Device d) { return std::make_unique<PerplexityCase>(p, d); };
}

}  // namespace pt::comparison
