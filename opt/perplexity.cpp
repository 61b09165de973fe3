#include "opt/perplexity.h"

#include <cmath>

#include "autograd/variable.h"
#include "opt/model.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"
#include "tensor/progress.h"

namespace pt::opt {

PerplexityResult evaluate_perplexity(OptForCausalLM& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& o) {
  const OptConfig& cfg = model.config();
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
  const bool was_training = model.is_training();
  model.eval();
  const Device dev = model.device();
  dist::Communicator& comm = o.comm ? *o.comm : dist::one_process();
  const dist::Range mine = comm.share(windows);  // this rank's windows
  Progress progress("perplexity", mine.size() * o.seqlen, "tok", o.show_progress && comm.rank() == 0);

  double nll_sum = 0;
  for (int64_t w0 = mine.begin; w0 < mine.end; w0 += o.batch_size) {
    const int64_t b = std::min(o.batch_size, mine.end - w0);
    std::vector<int64_t> ids(size_t(b * o.seqlen));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = tokens[size_t(w0 * o.seqlen) + i];
    Tensor batch = Tensor::from_vector(ids, {b, o.seqlen}, dev);
    Tensor logits = model.forward(batch).data();  // [b, T, V]
    const int64_t v = logits.size(-1);
    // Position t predicts token t+1: score logits[:, :-1] against ids[:, 1:], summed in fp32.
    Tensor pred = logits.narrow(1, 0, o.seqlen - 1).reshape({b * (o.seqlen - 1), v});
    Tensor target = batch.narrow(1, 1, o.seqlen - 1).reshape({b * (o.seqlen - 1)});
    nll_sum += cross_entropy(pred, target, -100, Reduction::sum).loss.item();
    progress.advance(b * o.seqlen);
  }
  progress.finish();
  if (was_training) model.train();
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
