#include "corpus/wikitext_tokens.h"

#include <filesystem>

#include "corpus/token_cache.h"

namespace pt::corpus {

WikiTextTokens wikitext_tokens(const Gpt2Tokenizer& tokenizer, WikiTextSplit split, const std::string& data_dir,
                               const std::string& cache_dir, const std::string& path) {
  WikiTextTokens out;
  out.path = path.empty() ? default_wikitext_path(data_dir, split) : path;
  WikiTextFile file = read_wikitext_split(out.path, split);
  out.note = file.note;
  out.warning = file.warning;
  const std::string text = split == WikiTextSplit::Train ? sparsegpt_train_text(file) : sparsegpt_eval_text(file);
  if (cache_dir.empty()) {
    out.ids = tokenizer.encode(text);
    return out;
  }
  const TokenCacheKey key{tokenizer.files_sha256(), sha256_hex(text)};
  const std::string cache = cache_dir + "/wikitext2-" + split_name(split) + ".tokens";
  if (auto ids = load_token_cache(cache, key)) {
    out.ids = std::move(*ids);
    out.from_cache = true;
    return out;
  }
  out.ids = tokenizer.encode(text);
  std::filesystem::create_directories(cache_dir);
  save_token_cache(cache, key, out.ids);
  return out;
}

}  // namespace pt::corpus
