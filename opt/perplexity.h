// WikiText-2 perplexity exactly as SparseGPT (and GPTQ) measure it: the evaluation string is tokenised
// once, cut into non-overlapping windows of `seqlen` tokens (the tail that does not fill a window is
// dropped), each window is scored on its own, and perplexity = exp(mean NLL over every predicted token).
// Every window predicts seqlen-1 tokens, so this equals SparseGPT's exp(sum(mean_i * seqlen) / (n * seqlen)).
//
// The model is walked layer by layer (opt/model_layers.h): an in-memory model one batch of windows at a time
// through every layer (no activations kept beyond the batch), a streamed one layer-major, every window through a
// layer before the next layer is loaded (SparseGPT's opt_eval order), with the windows' hidden states on the device,
// in host memory or in a file. Each batch of windows goes through the same operations either way, so both orders
// give the same perplexity to the last bit. NLLs are summed in one place (the end of evaluate_perplexity).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "opt/activation_store.h"
#include "tensor/tensor.h"

namespace pt::opt {

class OptForCausalLM;
class ModelLayers;

struct PerplexityOptions {
  int64_t seqlen = 2048;          // window length; at most the model's context
  int64_t batch_size = 1;         // windows per forward pass
  int64_t max_windows = 0;        // 0 = all windows (a smaller number gives a quick estimate)
  bool show_progress = true;
  std::string source;             // where the tokens came from (a text file), named in errors
  // Several ranks: each scores its share of the windows and the NLL sums are added up (every rank gets the
  // result). Null: this process alone.
  dist::Communicator* comm = nullptr;
  // Streamed walks: where every window's hidden states live (automatic: device, else host, else a file).
  ActivationPlace activations = ActivationPlace::automatic;
  std::string activation_dir;     // a disk store's folder ("" = the system's temporary folder)
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;            // natural log, per predicted token
  int64_t windows = 0;
  int64_t tokens_scored = 0;      // windows * (seqlen - 1)
  double seconds = 0;
  double tokens_per_second = 0;   // tokens fed through the model per second (windows * seqlen / time)
};

// Runs without gradients on the model's device and dtype; the loss is accumulated in fp32 per window
// and in double across windows.
PerplexityResult evaluate_perplexity(OptForCausalLM& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options);
PerplexityResult evaluate_perplexity(ModelLayers& layers, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options);

}  // namespace pt::opt
