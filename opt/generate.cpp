#include "opt/generate.h"

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"

namespace pt::opt {

namespace {
// Restores the model's training flag when generation ends (also on an exception).
class EvalScope {
 public:
  explicit EvalScope(OptForCausalLM& m) : model_(m), was_training_(m.is_training()) { model_.eval(); }
  ~EvalScope() { model_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;
 private:
  OptForCausalLM& model_;
  bool was_training_;
};
}  // namespace

int64_t select_next_token(const float* logits, int64_t allowed, const GenerationOptions& o, Generator& gen) {
  PT_CHECK(allowed > 0, "select_next_token: no allowed ids");
  if (!o.do_sample) return int64_t(std::max_element(logits, logits + allowed) - logits);  // first max

  PT_CHECK(o.temperature > 0, "generate: temperature ", o.temperature, " must be positive when sampling");
  std::vector<double> z(logits, logits + allowed);
  for (double& v : z) v /= o.temperature;
  // Top-k keeps every logit >= the k-th largest (ties at the boundary stay, as with torch.topk + masking).
  double threshold = -INFINITY;
  if (o.top_k > 0 && o.top_k < allowed) {
    std::vector<double> sorted = z;
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<double>());
    threshold = sorted[size_t(o.top_k - 1)];
  }
  const double zmax = *std::max_element(z.begin(), z.end());
  double total = 0;
  for (double& v : z) total += (v = v >= threshold ? std::exp(v - zmax) : 0.0);
  // Inverse CDF with one counter-based uniform draw, so a seed reproduces the whole sequence.
  const double u = random_uniform01(gen.seed, gen.advance(1)) * total;
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < allowed; ++i) {
    if (z[size_t(i)] == 0.0) continue;
    acc += z[size_t(i)];
    last = i;
    if (u < acc) return i;
  }
  return last;  // rounding at the very top of the CDF
}

std::vector<std::vector<int64_t>> generate(OptForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& o) {
  PT_CHECK(!prompts.empty() && !prompts[0].empty(), "generate: need at least one non-empty prompt");
  const int64_t B = int64_t(prompts.size()), T0 = int64_t(prompts[0].size());
  for (auto& p : prompts)
    PT_CHECK(int64_t(p.size()) == T0, "generate: prompts must have equal lengths (", T0, " and ", p.size(), ")");
  PT_CHECK(o.max_new_tokens >= 0, "generate: max_new_tokens ", o.max_new_tokens, " is negative");
  const int64_t context = model.config().max_position_embeddings;
  // The last generated token is never fed back, so the model sees at most T0 + max_new_tokens - 1 positions.
  PT_CHECK(T0 + std::max<int64_t>(o.max_new_tokens - 1, 0) <= context, "generate: prompt of ", T0, " tokens plus ",
           o.max_new_tokens, " new tokens exceeds the model's context of ", context);
  const int64_t vocab = model.config().vocab_size;
  const int64_t allowed = std::min(o.tokenizer_vocab_size, vocab);

  autograd::NoGradGuard no_grad;
  EvalScope eval(model);
  Generator gen(o.seed);
  std::vector<std::vector<int64_t>> out = prompts;
  if (o.max_new_tokens == 0) return out;

  KVCache cache = model.make_cache(T0 + o.max_new_tokens - 1);  // every position ever fed to the model
  std::vector<int64_t> flat;
  for (auto& p : prompts) flat.insert(flat.end(), p.begin(), p.end());
  Tensor input = Tensor::from_vector<int64_t>(flat, {B, T0});
  std::vector<bool> done(static_cast<size_t>(B), false);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    Tensor logits = model.forward(input, &cache).data();                          // [B,T,V]
    const int64_t T = logits.size(1);
    std::vector<float> last = logits.narrow(1, T - 1, 1).to_vector<float>();       // [B,1,V] on the host
    std::vector<int64_t> next(static_cast<size_t>(B));
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[size_t(b)]) {
        next[size_t(b)] = o.eos_token_id >= 0 ? o.eos_token_id : out[size_t(b)].back();  // filler, not kept
        continue;
      }
      next[size_t(b)] = select_next_token(last.data() + b * vocab, allowed, o, gen);
      out[size_t(b)].push_back(next[size_t(b)]);
      if (next[size_t(b)] == o.eos_token_id) done[size_t(b)] = true;
      all_done = all_done && done[size_t(b)];
    }
    if (all_done || step + 1 == o.max_new_tokens) break;
    input = Tensor::from_vector<int64_t>(next, {B, 1});
  }
  return out;
}

std::vector<int64_t> generate(OptForCausalLM& model, const std::vector<int64_t>& prompt, const GenerationOptions& o) {
  return generate(model, std::vector<std::vector<int64_t>>{prompt}, o).front();
}

}  // namespace pt::opt
