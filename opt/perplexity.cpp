#include "opt/perplexity.h"

#include <cmath>

#include "autograd/variable.h"
#include "opt/model.h"
#include "opt/model_layers.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"
#include "tensor/progress.h"

namespace pt::opt {

PerplexityResult evaluate_perplexity(OptForCausalLM& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& o) {
  const bool was_training = model.is_training();
  model.eval();
  ResidentLayers layers(model);
  try {
    const PerplexityResult r = evaluate_perplexity(layers, tokens, o);
    if (was_training) model.train();
    return r;
  } catch (...) {
    if (was_training) model.train();
    throw;
  }
}

PerplexityResult evaluate_perplexity(ModelLayers& walk, const std::vector<int32_t>& tokens, const PerplexityOptions& o) {
  const OptConfig& cfg = walk.config();
  PT_CHECK(o.seqlen >= 2, "perplexity: evaluation window ", o.seqlen, " must be at least 2 tokens");
  PT_CHECK(o.seqlen <= cfg.max_position_embeddings, "perplexity: evaluation window ", o.seqlen,
           " is longer than the model's context ", cfg.max_position_embeddings,
           " (max_position_embeddings of ", cfg.name, "); use seqlen <= ", cfg.max_position_embeddings);
  PT_CHECK(o.batch_size >= 1, "perplexity: batch_size ", o.batch_size, " must be at least 1");
  int64_t windows = int64_t(tokens.size()) / o.seqlen;
  PT_CHECK(windows >= 1, "perplexity: ", tokens.size(), " tokens", o.source.empty() ? std::string() : " (the text " + o.source + ")",
           " do not fill one window of ", o.seqlen);
  if (o.max_windows > 0) windows = std::min(windows, o.max_windows);

  PT_NVTX_RANGE("eval/perplexity");
  autograd::NoGradGuard no_grad;
  const Device dev = walk.device();
  const int64_t layers = walk.num_layers(), c = cfg.hidden_size;
  dist::Communicator& comm = o.comm ? *o.comm : dist::one_process();
  const dist::Range mine = comm.share(windows);  // this rank's windows
  // Windows per pass over the layers: a batch when every layer is resident, all of this rank's when layers stream.
  const int64_t group = walk.streamed() ? std::max<int64_t>(1, mine.size()) : o.batch_size;
  Progress progress("perplexity", walk.streamed() ? layers + 2 : mine.size() * o.seqlen,
                    walk.streamed() ? "layer" : "tok", o.show_progress && comm.rank() == 0);
  auto batch_ids = [&](int64_t w0, int64_t b) {
    std::vector<int64_t> ids(size_t(b * o.seqlen));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = tokens[size_t(w0 * o.seqlen) + i];
    return Tensor::from_vector(ids, {b, o.seqlen}, dev);
  };

  double nll_sum = 0;
  for (int64_t g0 = mine.begin; g0 < mine.end; g0 += group) {
    const int64_t n = std::min(group, mine.end - g0);
    const ActivationPlace place = walk.streamed()
                                      ? resolve_activation_place(o.activations, n, o.seqlen, c, walk.dtype(), dev)
                                      : ActivationPlace::device;
    ActivationStore in(n, o.seqlen, c, walk.dtype(), dev, place, o.activation_dir);
    ActivationStore out(n, o.seqlen, c, walk.dtype(), dev, place, o.activation_dir);
    for (int64_t s = 0; s < n; s += o.batch_size) {
      const int64_t b = std::min(o.batch_size, n - s);
      in.write(s, walk.ends().embed(batch_ids(g0 + s, b)));
    }
    walk.release_ends();
    if (walk.streamed()) progress.advance(1);
    for (int64_t i = 0; i < layers; ++i) {
      DecoderLayer& layer = walk.acquire(i);
      for (int64_t s = 0; s < n; s += o.batch_size) {
        const int64_t b = std::min(o.batch_size, n - s);
        out.write(s, layer.forward(autograd::Variable(in.read(s, b))).data());
      }
      walk.release(i, /*changed=*/false);
      std::swap(in, out);
      if (walk.streamed()) progress.advance(1);
    }
    OptForCausalLM& ends = walk.ends();
    for (int64_t s = 0; s < n; s += o.batch_size) {
      const int64_t b = std::min(o.batch_size, n - s);
      const Tensor batch = batch_ids(g0 + s, b);
      const Tensor logits = ends.head(autograd::Variable(in.read(s, b))).data();  // [b, T, V]
      const int64_t v = logits.size(-1);
      // Position t predicts token t+1: score logits[:, :-1] against ids[:, 1:], summed in fp32.
      Tensor pred = logits.narrow(1, 0, o.seqlen - 1).reshape({b * (o.seqlen - 1), v});
      Tensor target = batch.narrow(1, 1, o.seqlen - 1).reshape({b * (o.seqlen - 1)});
      nll_sum += cross_entropy(pred, target, -100, Reduction::sum).loss.item();  // the one place NLLs are summed
      if (!walk.streamed()) progress.advance(b * o.seqlen);
    }
    walk.release_ends();
    if (walk.streamed()) progress.advance(1);
  }
  progress.finish();
  nll_sum = comm.all_reduce_sum(nll_sum);

  PerplexityResult r;
  r.windows = windows;
  r.tokens_scored = windows * (o.seqlen - 1);
  r.mean_nll = nll_sum / double(r.tokens_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = progress.elapsed_seconds();
  r.tokens_per_second = r.seconds > 0 ? double(windows * o.seqlen) / r.seconds : 0;
  return r;
}

}  // namespace pt::opt
