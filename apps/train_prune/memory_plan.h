// How much memory a run needs, and so whether it streams: the memory model of the design written as code, used to
// decide `[model] stream = auto`, to refuse a retraining stage that cannot fit (one line, with what would fit), and
// printed by --dry-run so a run's peaks can be read against it (the stage records hold the measured ones).
//
// In memory (stream off), a stage holds the whole model in f32 on the run's device: 4 bytes per parameter, plus its
// u8 masks (1 byte per decoder weight); loading a stage's checkpoint holds one more copy on the host while it is
// copied in; full retraining adds gradients and AdamW's two moments (16 bytes per parameter in all).
//
// Streamed, a prune or evaluation stage holds on the device only (opt/streamed_layers.h, prune/sequential.h):
//   ends phase    token + position embeddings (+ an untied head) while the inputs are embedded or the logits made,
//                 beside the two layer slots (allocated once, when the walk starts)
//   layer phase   two layer slots (f32) and the current layer's new masks; for pruning the layer's statistics (f32
//                 Hessians C² for q/k/v, out_proj and fc1, F² for fc2; Wanda norms; with [prune] statistics_sum =
//                 exact also their int64 sums, 8 bytes per entry, on the host), SparseGPT's factorisation of
//                 the largest one (two more F² at a time: the damped copy and its factor, then the factor and the
//                 inverse, then the inverse and its factor; prune/inverse_factor.cpp) and
//                 the f32 copies of one matrix; the forward temporaries of one chunk of sequences (q, k, v, scores,
//                 fc1 output); the activations of every sequence twice (inputs and outputs) unless they live on
//                 the host or on disk
// and on the host: on CUDA two pinned staging buffers (the largest tensor each) and what a sink copies to write a
// layer; the page cache holds the files, not the process.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/train_prune/settings.h"

namespace pt::app {

struct StreamDecision {
  bool stream = false;
  std::string reason;  // one line for the plan and the log
};
StreamDecision decide_streaming(const Settings& s);
// Throws one line when a retraining stage of the plan cannot run: retraining needs the whole model in memory, and
// a model that streams because it does not fit cannot be retrained here; the line says what would fit.
void check_retraining_fits(const Settings& s, const StreamDecision& d);

struct MemoryEstimate {
  int64_t device_bytes = 0;  // peak on the run's device (on the CPU, the host's tensors)
  int64_t host_bytes = 0;    // peak host tensors besides, on a CUDA run (0 on the CPU: all in device_bytes)
  std::string breakdown;     // the largest terms, e.g. "layer phase: slots 1.2 GB, Hessians 0.6 GB, ..."
};
// A streamed prune stage: nsamples x seqlen calibration tokens in chunks of forward_batch sequences.
MemoryEstimate streamed_prune_memory(const opt::OptConfig& c, int64_t nsamples, int64_t seqlen, int64_t forward_batch,
                                     prune::PruneMethod method, Device device, opt::ActivationPlace activations,
                                     prune::StatisticsSum sum = prune::StatisticsSum::running);
// A streamed evaluation of `windows` windows of seqlen tokens in batches of `batch`.
MemoryEstimate streamed_eval_memory(const opt::OptConfig& c, int64_t windows, int64_t seqlen, int64_t batch,
                                    Device device, opt::ActivationPlace activations);
// Bytes an in-memory stage of this kind holds (the model in f32, its masks, a checkpoint copy; retraining: 16 B/param).
int64_t in_memory_bytes(const opt::OptConfig& c, bool retrain_full);

// Lines for --dry-run: the decision and, when streaming, the estimates of a prune and an evaluation stage.
std::vector<std::string> memory_plan_lines(const Settings& s, const StreamDecision& d);

}  // namespace pt::app
