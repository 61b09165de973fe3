// The training loop: causal-LM training of an OPT model (all parameters, or any subset) with AdamW, gradient
// accumulation, global-norm clipping, an LR schedule, bf16 autocast on the GPU, periodic perplexity on an
// evaluation stream, and HDF5 checkpoints from which a stopped run resumes bit-identically.
//
// One optimizer step = grad_accum micro-batches of batch_size windows (train/token_windows.h), each loss
// scaled by 1/grad_accum, then clip, then AdamW at lr = schedule.lr_at(step). Masks are respected: a
// parameter with a keep-mask (a pruned Linear's weight) is updated by masked AdamW, so its pruned entries
// stay exactly 0.0.
//
// Determinism (what makes resume bit-identical on the CPU): the batch of step s is a pure function of
// (seed, s); every Dropout generator is re-positioned at the start of each micro-batch to an offset derived
// from (step, micro); the checkpoint holds f32 parameters, masks and AdamW moments exactly, the step, and
// the loss history. Nothing else carries state from one step to the next.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "nn/adamw.h"
#include "nn/checkpoint.h"
#include "nn/lr_schedule.h"
#include "opt/model.h"

namespace pt::train {

struct TrainableParameter {
  std::string name;              // Hugging Face name
  autograd::Variable* var = nullptr;
  bool weight_decay = true;      // false for biases and LayerNorm parameters (HF's convention)
  Tensor keep;                   // u8 keep-mask (undefined: unmasked)
};

// Every parameter of the model, decayed except biases and LayerNorm parameters, with each pruned Linear's
// mask attached to its weight.
std::vector<TrainableParameter> all_parameters(opt::OptForCausalLM& model);

struct TrainOptions {
  int64_t steps = 100;           // optimizer steps in total (a resumed run continues up to this)
  int64_t batch_size = 8;        // windows per micro-batch
  int64_t grad_accum = 1;        // micro-batches per optimizer step
  int64_t seqlen = 128;          // tokens per window (<= the model's context)
  nn::LrSchedule schedule;       // base lr, warm-up, decay
  double weight_decay = 0.0;     // for parameters with weight_decay = true
  double max_grad_norm = 1.0;    // 0 = no clipping
  nn::AdamWConfig adamw;         // betas, eps, kernel
  bool autocast_bf16 = true;     // bf16 matrix products when the model is on CUDA (ignored on the CPU)
  uint64_t seed = 0;             // batches and dropout

  int64_t eval_every = 0;        // steps between evaluations (0 = only at the end)
  int64_t eval_seqlen = 0;       // 0 = seqlen
  int64_t eval_batch = 4;
  int64_t eval_windows = 0;      // periodic evaluations: at most this many windows (0 = the whole stream)
  int64_t final_eval_windows = 0;  // the evaluation after the last step (0 = the whole stream)
  int64_t log_every = 10;

  std::string checkpoint_path;   // "" = no checkpoints; else written atomically every checkpoint_every steps and at the end
  int64_t checkpoint_every = 0;  // 0 = only at the end
  bool resume = true;            // continue from checkpoint_path when it exists
  nn::SaveOptions save;          // keep fp16_parameters off for a bit-identical resume
  std::string run_config;        // the run's resolved configuration; a checkpoint with another one is refused
  std::string stage = "train";
  int64_t stage_index = 0;

  bool show_progress = true;
  // Several ranks (train/data_parallel.h): every rank passes the same model, tokens and options and takes its
  // share of each micro-batch (batch_size >= ranks); gradients are summed, AdamW state is sharded, every rank
  // ends with the same parameters and result. Rank 0 alone writes checkpoints. Null: this process alone.
  dist::Communicator* comm = nullptr;
  // Several ranks: gradients are summed in buckets of at most this many bytes, each started while the backward
  // still runs (train/gradient_buckets.h). 0: one blocking all-reduce per parameter after the backward, the
  // reference the buckets are tested against.
  int64_t bucket_bytes = int64_t(25) << 20;
  std::function<void(const std::string&)> log;     // progress lines (default: stderr)
  std::function<void(int64_t step)> after_step;    // called after each optimizer step (tests use it to crash)
};

struct StepRecord {
  int64_t step = 0;  // 1-based: the record of the step that just finished
  double loss = 0;   // mean training loss over the step's micro-batches (f32 loss, summed in double)
  double lr = 0;
  double grad_norm = 0;
};

struct EvalRecord {
  int64_t step = 0;
  double perplexity = 0;
  double mean_nll = 0;
};

struct TrainResult {
  std::vector<StepRecord> history;  // every step of the run, including those before a resume
  std::vector<EvalRecord> evals;
  int64_t resumed_from = 0;         // the step the checkpoint held (0 = fresh start)
  int64_t trained_parameters = 0;   // elements updated by the optimizer (masked entries excluded)
  double seconds = 0;               // wall time of this process's part
  double tokens_per_second = 0;     // training tokens per second in this process
  double final_perplexity() const { return evals.empty() ? 0.0 : evals.back().perplexity; }
};

// Trains `params` (parameters of `model`; the others are frozen for the duration) on windows of
// train_tokens, evaluating on eval_tokens (may be empty: no evaluation). Leaves the model in eval mode.
TrainResult train_model(opt::OptForCausalLM& model, const std::vector<TrainableParameter>& params,
                        const std::vector<int32_t>& train_tokens, const std::vector<int32_t>& eval_tokens,
                        const TrainOptions& options);

// The checkpoint of a model (every parameter, every mask), with metrics; used by the trainer and the apps.
nn::Checkpoint model_checkpoint(opt::OptForCausalLM& model);
// Copies a checkpoint's parameters and masks into the model (validating names and shapes).
void load_model_checkpoint(opt::OptForCausalLM& model, const nn::Checkpoint& ckpt);

}  // namespace pt::train
