#include "opt/hf_checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "nn/untrusted_json.h"
#include "tensor/error.h"

namespace pt::opt {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kEmbed = "model.decoder.embed_tokens.weight";
const char* const kLmHead = "lm_head.weight";

json read_json_file(const std::string& path, const char* what) {
  PT_CHECK(fs::is_regular_file(path), what, " ", path, ": ", fs::exists(path) ? "not a regular file" : "cannot open");
  std::ifstream in(path, std::ios::binary);
  PT_CHECK(in, what, " ", path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  PT_CHECK(!in.bad(), what, " ", path, ": read error");
  const json j = nn::parse_untrusted_json(ss.str(), std::string(what) + " " + path);
  PT_CHECK(j.is_object(), what, " ", path, ": must be a JSON object, found ", j.type_name());
  return j;
}

// Typed access to config.json keys; a missing key takes `def` (null counts as missing, as in HF's
// OPTConfig where word_embed_proj_dim=None means hidden_size), else it is an error naming the key.
class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), where_("HF config " + path + ": ") {}

  int64_t integer(const char* key, std::optional<int64_t> def = std::nullopt) const {
    const json* v = find(key, def.has_value());
    if (!v) return *def;
    PT_CHECK(v->is_number_integer(), where_, "key \"", key, "\" must be an integer, found ", nn::json_excerpt(*v));
    return v->get<int64_t>();
  }
  double number(const char* key, double def) const {
    const json* v = find(key, true);
    if (!v) return def;
    PT_CHECK(v->is_number(), where_, "key \"", key, "\" must be a number, found ", nn::json_excerpt(*v));
    return v->get<double>();
  }
  bool boolean(const char* key, bool def) const {
    const json* v = find(key, true);
    if (!v) return def;
    PT_CHECK(v->is_boolean(), where_, "key \"", key, "\" must be true or false, found ", nn::json_excerpt(*v));
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& def) const {
    const json* v = find(key, true);
    if (!v) return def;
    PT_CHECK(v->is_string(), where_, "key \"", key, "\" must be a string, found ", nn::json_excerpt(*v));
    return v->get<std::string>();
  }
  const std::string& where() const { return where_; }

 private:
  const json* find(const char* key, bool optional) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      PT_CHECK(optional, where_, "missing key \"", key, "\"");
      return nullptr;
    }
    return &*it;
  }
  const json& j_;
  std::string where_;
};

}  // namespace

namespace {
OptConfig config_from_json(const json& j, const std::string& path, const std::string& fallback_name) {
  ConfigReader r(j, path);
  const std::string model_type = r.string("model_type", "opt");
  PT_CHECK(model_type == "opt", r.where(), "model_type is \"", nn::printable(model_type), "\", expected \"opt\"");
  // Settings of HF's OPTConfig that this model cannot honour are refused by name, before any tensor is looked at.
  const std::string activation = r.string("activation_function", "relu");
  PT_CHECK(activation == "relu", r.where(), "activation_function is \"", nn::printable(activation),
           "\" but OPT models here support only \"relu\"");
  PT_CHECK(r.boolean("layer_norm_elementwise_affine", true), r.where(),
           "layer_norm_elementwise_affine = false (layer norms without weight and bias) is not supported: OPT models "
           "here have affine layer norms (true, the default)");
  const double layerdrop = r.number("layerdrop", 0.0);
  PT_CHECK(layerdrop == 0.0, r.where(), "layerdrop = ", layerdrop,
           " is not supported: LayerDrop (skipping decoder layers at random in training) is not implemented; 0.0 "
           "is allowed");

  OptConfig c;
  c.name = nn::printable(r.string("_name_or_path", fallback_name));  // it appears in messages and logs
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.ffn_dim = r.integer("ffn_dim");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.max_position_embeddings = r.integer("max_position_embeddings");
  c.word_embed_proj_dim = r.integer("word_embed_proj_dim", c.hidden_size);
  c.do_layer_norm_before = r.boolean("do_layer_norm_before", true);
  c.remove_final_layer_norm = r.boolean("_remove_final_layer_norm", false);
  c.enable_bias = r.boolean("enable_bias", true);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
  c.dropout = r.number("dropout", 0.1);
  c.attention_dropout = r.number("attention_dropout", 0.0);
  c.layer_norm_eps = r.number("layer_norm_eps", 1e-5);
  c.init_std = r.number("init_std", 0.02);
  c.pad_token_id = r.integer("pad_token_id", 1);
  c.bos_token_id = r.integer("bos_token_id", 2);
  c.eos_token_id = r.integer("eos_token_id", 2);
  try {
    c.validate();
  } catch (const Error& e) {
    PT_FAIL(r.where(), e.what());
  }
  return c;
}
}  // namespace

OptConfig read_hf_config(const std::string& path) {
  const json j = read_json_file(path, "HF config");
  std::string folder = fs::path(path).parent_path().filename().string();
  return config_from_json(j, path, folder.empty() ? "hf-checkpoint" : folder);
}

OptConfig parse_hf_config(const std::string& text, const std::string& where) {
  const json j = nn::parse_untrusted_json(text, "HF config " + where);
  PT_CHECK(j.is_object(), "HF config ", where, ": must be a JSON object, found ", j.type_name());
  return config_from_json(j, where, "custom");
}

std::string hf_config_json(const OptConfig& config, bool tie_word_embeddings) {
  OptConfig c = config;
  c.tie_word_embeddings = tie_word_embeddings;
  return hf_config_json(c);
}

std::string hf_config_json(const OptConfig& c) {
  json j = {{"_name_or_path", c.name},
            {"architectures", {"OPTForCausalLM"}},
            {"model_type", "opt"},
            {"activation_function", "relu"},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"num_hidden_layers", c.num_hidden_layers},
            {"ffn_dim", c.ffn_dim},
            {"num_attention_heads", c.num_attention_heads},
            {"max_position_embeddings", c.max_position_embeddings},
            {"word_embed_proj_dim", c.word_embed_proj_dim},
            {"do_layer_norm_before", c.do_layer_norm_before},
            {"_remove_final_layer_norm", c.remove_final_layer_norm},
            {"enable_bias", c.enable_bias},
            {"dropout", c.dropout},
            {"attention_dropout", c.attention_dropout},
            {"layer_norm_eps", c.layer_norm_eps},
            {"init_std", c.init_std},
            {"pad_token_id", c.pad_token_id},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_id", c.eos_token_id},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"torch_dtype", "float32"}};
  return j.dump(2);
}

std::string canonical_opt_name(const std::string& s) {
  auto starts = [&](const char* p) { return s.rfind(p, 0) == 0; };
  if (starts("model.decoder.") || s == kLmHead) return s;
  if (starts("decoder.")) return "model." + s;  // opt-350m style
  for (const char* p :
       {"layers.", "embed_tokens.", "embed_positions.", "final_layer_norm.", "project_in.", "project_out."})
    if (starts(p)) return "model.decoder." + s;  // fully stripped (FlexGen style)
  return s;
}

void HfCheckpoint::open(const std::string& dir) {
  HfCheckpoint ck;  // built aside so a failure leaves *this untouched
  ck.dir_ = dir;
  const fs::path d(dir);
  PT_CHECK(fs::is_directory(d), "checkpoint ", dir, ": no such folder");
  const fs::path config = d / "config.json";
  PT_CHECK(fs::exists(config), "checkpoint ", dir, ": missing config.json (expected ", config.string(), ")");
  ck.config_ = read_hf_config(config.string());

  auto add = [&](const std::string& stored, size_t file) {
    const std::string canon = canonical_opt_name(stored);
    auto [it, inserted] = ck.sources_.emplace(canon, Source{file, stored});
    PT_CHECK(inserted, "checkpoint ", dir, ": tensors ", nn::printable(it->second.stored_name), " and ",
             nn::printable(stored), " both map to ", nn::printable(canon));
  };
  const fs::path single = d / "model.safetensors", index = d / "model.safetensors.index.json";
  if (fs::exists(single)) {
    ck.files_.push_back(std::make_unique<nn::SafetensorsFile>(single.string()));
    for (const auto& name : ck.files_[0]->names()) add(name, 0);
  } else if (fs::exists(index)) {
    const json j = read_json_file(index.string(), "checkpoint index");
    auto wm = j.find("weight_map");
    PT_CHECK(wm != j.end() && wm->is_object(), "checkpoint index ", index.string(), ": missing \"weight_map\" object");
    std::map<std::string, size_t> shard_index;  // each shard opened once
    for (auto& [name, file] : wm->items()) {
      PT_CHECK(file.is_string(), "checkpoint index ", index.string(), ": weight_map entry for ", name,
               " must be a file name, found ", nn::json_excerpt(file));
      const std::string shard = file.get<std::string>();
      PT_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
               "checkpoint index ", index.string(), ": weight_map entry for ", nn::printable(name), " is \"",
               nn::printable(shard), "\", not the name of a file in the folder");
      auto it = shard_index.find(shard);
      if (it == shard_index.end()) {
        const fs::path p = d / shard;
        PT_CHECK(fs::is_regular_file(p), "checkpoint ", dir, ": shard ", nn::printable(p.string()), " (listed for tensor ",
                 nn::printable(name), " in model.safetensors.index.json) is missing");
        ck.files_.push_back(std::make_unique<nn::SafetensorsFile>(p.string()));
        it = shard_index.emplace(shard, ck.files_.size() - 1).first;
      }
      PT_CHECK(ck.files_[it->second]->has(name), "checkpoint ", dir, ": model.safetensors.index.json puts tensor ",
               nn::printable(name), " in ", nn::printable(shard), " but that file has no such tensor");
      add(name, it->second);
    }
  } else {
    const bool has_bin = fs::exists(d / "pytorch_model.bin") || fs::exists(d / "pytorch_model.bin.index.json");
    PT_FAIL("checkpoint ", dir, ": no weights: expected ", single.string(), " or ", index.string(),
            has_bin ? " (the folder has PyTorch .bin weights: convert them with scripts/convert_bin_to_safetensors.py)"
                    : "");
  }

  ck.resolve_lm_head();
  *this = std::move(ck);
}

// The LM head, as transformers loads it. tie_word_embeddings = false: the files must store lm_head.weight. Tied (the
// default): files usually store the head once, under the embedding's name, and it is served from there; a stored
// lm_head.weight with the embedding's bytes is the same tensor, but one with other values makes transformers keep
// both (it warns and does not tie), so the model is untied here too.
void HfCheckpoint::resolve_lm_head() {
  auto embed = sources_.find(kEmbed);
  auto head = sources_.find(kLmHead);
  if (!config_.tie_word_embeddings) {
    PT_CHECK(head != sources_.end(), "checkpoint ", dir_, ": config.json has tie_word_embeddings = false but no ",
             kLmHead, " is stored (an untied model needs its own head)");
    if (embed != sources_.end())
      PT_CHECK(info(kLmHead).shape == info(kEmbed).shape, "checkpoint ", dir_, ": lm_head.weight has shape ",
               shape_str(info(kLmHead).shape), " but ", kEmbed, " has ", shape_str(info(kEmbed).shape));
    return;
  }
  if (embed == sources_.end()) return;  // reported as a missing tensor when a model loads
  if (head == sources_.end()) {
    sources_.emplace(kLmHead, embed->second);
    return;
  }
  const nn::SafetensorsInfo hi = info(kLmHead), ei = info(kEmbed);
  PT_CHECK(hi.shape == ei.shape, "checkpoint ", dir_, ": lm_head.weight has shape ", shape_str(hi.shape), " but ",
           kEmbed, " has ", shape_str(ei.shape), " (they are tied and must match)");
  const Source &h = head->second, &e = embed->second;
  const bool same = hi.stored_dtype == ei.stored_dtype &&
                    files_[h.file]->stored_bytes(h.stored_name) == files_[e.file]->stored_bytes(e.stored_name);
  if (same) head->second = e;
  else config_.tie_word_embeddings = false;
}

std::vector<std::string> HfCheckpoint::canonical_names() const {
  std::vector<std::string> out;
  for (auto& kv : sources_) out.push_back(kv.first);
  return out;
}

const HfCheckpoint::Source& HfCheckpoint::source(const std::string& canonical) const {
  auto it = sources_.find(canonical);
  PT_CHECK(it != sources_.end(), "checkpoint ", dir_, ": no tensor ", canonical, " (the checkpoint has ",
           sources_.size(), " tensors)");
  return it->second;
}

nn::SafetensorsInfo HfCheckpoint::info(const std::string& canonical) const {
  const Source& s = source(canonical);
  return files_[s.file]->info(s.stored_name);
}

void HfCheckpoint::read_into(const std::string& canonical, const Tensor& dst) const {
  const Source& s = source(canonical);
  const Shape stored = files_[s.file]->info(s.stored_name).shape;
  PT_CHECK(dst.defined() && dst.shape() == stored, "checkpoint ", dir_, ": tensor ", canonical, ": expected shape ",
           dst.defined() ? shape_str(dst.shape()) : std::string("(undefined tensor)"), " but the file has ",
           shape_str(stored), " (stored as ", s.stored_name, " in ", files_[s.file]->path(), ")");
  files_[s.file]->read_into(s.stored_name, dst);
}

Tensor HfCheckpoint::read(const std::string& canonical, DType dtype, Device device) const {
  const Source& s = source(canonical);
  return files_[s.file]->read(s.stored_name, dtype, device);
}

void HfCheckpoint::check_matches(const OptConfig& preset) const {
  if (config_.same_architecture(preset)) return;
  const OptConfig& c = config_;
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  auto i = [](int64_t v) { return std::to_string(v); };
  // HF key names, in the order same_architecture() compares them.
  const std::vector<std::tuple<const char*, std::string, std::string>> fields = {
      {"vocab_size", i(c.vocab_size), i(preset.vocab_size)},
      {"hidden_size", i(c.hidden_size), i(preset.hidden_size)},
      {"num_hidden_layers", i(c.num_hidden_layers), i(preset.num_hidden_layers)},
      {"ffn_dim", i(c.ffn_dim), i(preset.ffn_dim)},
      {"num_attention_heads", i(c.num_attention_heads), i(preset.num_attention_heads)},
      {"max_position_embeddings", i(c.max_position_embeddings), i(preset.max_position_embeddings)},
      {"word_embed_proj_dim", i(c.word_embed_proj_dim), i(preset.word_embed_proj_dim)},
      {"do_layer_norm_before", b(c.do_layer_norm_before), b(preset.do_layer_norm_before)},
      {"_remove_final_layer_norm", b(c.remove_final_layer_norm), b(preset.remove_final_layer_norm)},
      {"enable_bias", b(c.enable_bias), b(preset.enable_bias)},
  };
  for (auto& [key, mine, theirs] : fields)
    PT_CHECK(mine == theirs, "checkpoint ", dir_, ": config.json has ", key, "=", mine, " but preset ", preset.name,
             " has ", theirs);
  PT_FAIL("checkpoint ", dir_, ": config.json describes ", c.describe(), " but preset is ", preset.describe());
}

}  // namespace pt::opt
