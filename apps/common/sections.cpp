#include "apps/common/sections.h"

#include <filesystem>

#include "lab/lab_family.h"
#include "nn/checkpoint.h"
#include "opt/hf_checkpoint.h"
#include "tensor/error.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pt::app {

RunSection read_run_section(config::IniConfig& ini, const std::string& default_output) {
  RunSection r;
  r.device_name = ini.choice("run", "device", "auto", {"auto", "cpu", "cuda"});
  try {
    r.device = parse_device(r.device_name);
  } catch (const Error& e) {
    ini.fail("run", "device", e.what());
  }
  r.seed = uint64_t(ini.integer("run", "seed", 0, 0, int64_t(1) << 62));
  r.kernels = ini.choice("run", "kernels", "fused", {"fused", "unfused"});
  r.output = ini.text("run", "output", default_output);
  if (r.output.empty()) ini.fail("run", "output", "must name a folder");
  r.threads = ini.integer("run", "threads", 0, 0, 1024);
#ifdef _OPENMP
  if (r.threads > 0) omp_set_num_threads(int(r.threads));
#endif
  std::vector<std::string> families;
  for (const kernels::FamilyBase* f : lab::kernel_families()) families.push_back(f->name());
  for (const std::string& key : ini.keys("kernels")) {
    kernels::FamilyBase* family = lab::find_family(key);
    if (!family) ini.fail("kernels", key, "is not a kernel family (families: " + kernels::join(families) + ")");
    const std::string variant = ini.text("kernels", key, "");
    const std::string problem = family->why_not(variant, r.device);
    if (!problem.empty()) ini.fail("kernels", key, problem);
    r.kernel_choices[key] = variant;
  }
  kernels::set_shorthand(r.kernels);
  for (kernels::FamilyBase* f : lab::kernel_families()) {
    const auto chosen = r.kernel_choices.find(f->name());
    f->select(chosen == r.kernel_choices.end() ? "" : chosen->second);
  }
  return r;
}

std::map<std::string, std::string> resolved_kernels(Device device) {
  std::map<std::string, std::string> out;
  for (const kernels::FamilyBase* f : lab::kernel_families()) out[f->name()] = f->resolve(device);
  return out;
}

ModelSection read_model_section(config::IniConfig& ini, bool weights_may_be_missing) {
  ModelSection m;
  std::vector<std::string> presets = opt::opt_preset_names();
  presets.push_back("custom");
  m.preset = ini.choice("model", "preset", "125m", presets);
  m.weights = ini.text("model", "weights", "random");
  if (m.preset != "custom") {
    m.config = opt::opt_preset(m.preset);
  } else {
    opt::OptConfig& c = m.config;
    c.name = ini.text("model", "name", "opt-custom");
    c.num_hidden_layers = ini.integer("model", "layers", 4, 1, 256);
    c.hidden_size = ini.integer("model", "hidden", 256, 8, 65536);
    c.num_attention_heads = ini.integer("model", "heads", 4, 1, 1024);
    c.ffn_dim = ini.integer("model", "ffn", 4 * c.hidden_size, 1, 1 << 20);
    c.max_position_embeddings = ini.integer("model", "context", 256, 2, 1 << 16);
    c.vocab_size = ini.integer("model", "vocab", 50272, 2, 1 << 20);
    c.word_embed_proj_dim = c.hidden_size;
    if (c.hidden_size % c.num_attention_heads != 0)
      ini.fail("model", "heads", "must divide hidden (" + std::to_string(c.hidden_size) + ")");
  }
  m.config.dropout = ini.number("model", "dropout", m.config.dropout, 0.0, 0.9);
  try {
    m.config.validate();
  } catch (const Error& e) {
    ini.fail("model", "preset", e.what());
  }
  if (m.weights != "random" && !m.weights.empty() && !weights_may_be_missing && !std::filesystem::exists(m.weights))
    ini.fail("model", "weights", "no such file or folder (give an HF model folder, an .h5 checkpoint, or random)");
  return m;
}

std::unique_ptr<opt::OptForCausalLM> build_model(const ModelSection& m, Device device, uint64_t seed) {
  if (m.weights.empty() || m.weights == "random") return std::make_unique<opt::OptForCausalLM>(m.config, device, seed);
  if (std::filesystem::is_directory(m.weights)) {
    opt::HfCheckpoint ck;
    ck.open(m.weights);
    ck.check_matches(m.config);
    if (ck.config().dropout == m.config.dropout) return opt::OptForCausalLM::from_hf(ck, device);
    // [model] dropout differs from the folder's config.json: it decides, as for an HDF5 checkpoint below.
    opt::OptConfig c = ck.config();
    c.dropout = m.config.dropout;
    auto model = std::make_unique<opt::OptForCausalLM>(c, device, seed);
    model->load_hf(ck);
    model->eval();
    return model;
  }
  // An HDF5 checkpoint of this project: its config decides the shape (and must match the preset's).
  nn::LoadOptions lo;
  lo.load_optimizer = false;
  const nn::Checkpoint ck = nn::load_checkpoint(m.weights, lo);
  opt::OptConfig c = opt::parse_hf_config(ck.model_config, m.weights + " (model_config)");
  c.dropout = m.config.dropout;
  // Its shape must be the one the configuration describes (a preset, or [model] preset = custom with its keys):
  // the plan, the identity of the run's stages and every check made against the configuration assume it.
  PT_CHECK(c.same_architecture(m.config), "[model] weights = ", m.weights, " holds ", c.describe(), ", but [model] preset = ",
           m.preset, " describes ", m.config.describe());
  auto model = std::make_unique<opt::OptForCausalLM>(c, device, seed);
  train::load_model_checkpoint(*model, ck);
  return model;
}

DataSection read_data_section(config::IniConfig& ini) {
  DataSection d;
  d.dir = ini.text("data", "dir", "data");
  d.train_path = ini.text("data", "train_path", "");
  d.cache_dir = ini.text("data", "cache", "cache");
  if (!std::filesystem::is_directory(d.dir)) ini.fail("data", "dir", "no such folder (expected wikitext-2-raw/ and opt-tokenizer/ inside; `make data` links or fetches them)");
  if (!d.train_path.empty() && !std::filesystem::is_regular_file(d.train_path)) ini.fail("data", "train_path", "no such file");
  return d;
}

void require_tokens(const corpus::WikiTextTokens& text, int64_t needed, const std::string& purpose) {
  PT_CHECK(int64_t(text.ids.size()) >= needed, "the text ", text.path, " gives ", text.ids.size(), " tokens, too few for ",
           purpose, ": it needs at least ", needed);
}

train::TrainOptions read_train_section(config::IniConfig& ini, const std::string& s, const train::TrainOptions& def,
                                       int64_t max_seqlen) {
  train::TrainOptions o = def;
  o.steps = ini.integer(s, "steps", def.steps, 0, 100000000);
  o.batch_size = ini.integer(s, "batch_size", def.batch_size, 1, 65536);
  o.grad_accum = ini.integer(s, "grad_accum", def.grad_accum, 1, 65536);
  o.seqlen = ini.integer(s, "seqlen", std::min(def.seqlen, max_seqlen), 2, max_seqlen);
  o.schedule.base_lr = ini.number(s, "lr", def.schedule.base_lr, 0.0, 10.0);
  o.schedule.kind = nn::parse_lr_schedule_kind(
      ini.choice(s, "schedule", nn::lr_schedule_kind_name(def.schedule.kind), {"constant", "linear", "cosine"}));
  o.schedule.warmup_steps = ini.integer(s, "warmup_steps", def.schedule.warmup_steps, 0, 100000000);
  o.schedule.total_steps = o.steps;
  o.schedule.min_lr_ratio = ini.number(s, "min_lr_ratio", def.schedule.min_lr_ratio, 0.0, 1.0);
  if (o.schedule.warmup_steps > o.steps && o.schedule.kind != nn::LrScheduleKind::constant)
    ini.fail(s, "warmup_steps", "must not exceed steps (" + std::to_string(o.steps) + ")");
  o.weight_decay = ini.number(s, "weight_decay", def.weight_decay, 0.0, 10.0);
  o.max_grad_norm = ini.number(s, "max_grad_norm", def.max_grad_norm, 0.0, 1e6);
  o.adamw.beta1 = ini.number(s, "beta1", def.adamw.beta1, 0.0, 0.999999);
  o.adamw.beta2 = ini.number(s, "beta2", def.adamw.beta2, 0.0, 0.999999999);
  o.adamw.eps = ini.number(s, "eps", def.adamw.eps, 1e-30, 1.0);
  o.autocast_bf16 = ini.boolean(s, "autocast_bf16", def.autocast_bf16);
  o.checkpoint_every = ini.integer(s, "checkpoint_every", def.checkpoint_every, 0, 100000000);
  o.log_every = ini.integer(s, "log_every", def.log_every, 0, 100000000);
  o.eval_every = ini.integer(s, "eval_every", def.eval_every, 0, 100000000);
  // Several ranks: MiB of gradient per all-reduce bucket (train/gradient_buckets.h); the sums do not depend on it.
  const double mib = 1024.0 * 1024.0;
  o.bucket_bytes = int64_t(ini.number(s, "bucket_mb", double(def.bucket_bytes) / mib, 0.001, 65536.0) * mib);
  return o;
}

EvalSection read_eval_section(config::IniConfig& ini, int64_t max_seqlen) {
  EvalSection e;
  e.seqlen = ini.integer("eval", "seqlen", 0, 0, max_seqlen);
  if (e.seqlen == 1) ini.fail("eval", "seqlen", "must be 0 (the model's context) or at least 2");
  e.batch = ini.integer("eval", "batch", 4, 1, 4096);
  e.windows = ini.integer("eval", "windows", 0, 0, 1 << 30);
  e.periodic_windows = ini.integer("eval", "periodic_windows", 0, 0, 1 << 30);
  return e;
}

}  // namespace pt::app
