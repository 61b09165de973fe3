// Sequential layer-by-layer pruning of an OPT model (IST-DASLab/sparsegpt's opt_sequential, locuslab/wanda's
// prune_wanda): the calibration windows go through the model one decoder layer at a time, and each layer is
// calibrated on the outputs of the layers before it AS PRUNED, so later layers compensate for earlier ones.
//
//   x = embed(ids)                                       (layer-0 inputs, in chunks of forward_batch sequences)
//   for each decoder layer i:
//     one dense forward of x with an input_observer on its six Linear layers, accumulating per distinct input
//     the Hessian (SparseGPT, and every method when measure_reconstruction) and Wanda's feature norms;
//     prune the six weights (keeping every position already pruned in the Linear's weight_mask);
//     store each new mask with Linear::set_mask;
//     x = layer(x) again, now with the pruned weights: the next layer's inputs.
//
// q_proj, k_proj and v_proj read the same tensor, so they share one accumulator (as their three identical
// Hessians would be in the reference): LayerObservers::observe in sequential.cpp is the one place where calibration
// statistics are accumulated. Only one layer's activations are alive (inputs and outputs, swapped after each
// layer), on the device, in host memory or in a file (`activations`, opt/activation_store.h), one chunk at a time
// visiting the device. The model runs in eval mode under NoGradGuard; its training flag, and any input_observer
// the caller had set on a decoder Linear, are restored afterwards. Embeddings, positions, LayerNorms, biases and
// the LM head are never touched.
//
// The driver walks an opt::ModelLayers: prune_model() is the walk over an in-memory model, prune_layers() takes any
// walk, e.g. opt::StreamedLayers, which loads one layer at a time from disk and writes each finished layer out at
// once. A walk resuming an interrupted pass hands back its finished layers with the notes they were released with
// (their reports): those are only run forward, and the pass ends with what an uninterrupted one computes.
//
// Magnitude needs no calibration: with undefined calibration ids every decoder Linear is pruned directly.
// With calibration ids and measure_reconstruction it runs the same sequential pass to report errors that are
// comparable with the other methods (its masks do not depend on the data either way).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "opt/activation_store.h"
#include "dist/communicator.h"
#include "opt/model.h"
#include "opt/model_layers.h"
#include "prune/hessian.h"
#include "prune/mask.h"
#include "prune/pattern.h"
#include "prune/sparsegpt.h"

namespace pt::prune {

enum class PruneMethod { magnitude, wanda, sparsegpt };
PruneMethod parse_prune_method(const std::string& name);  // "magnitude" | "wanda" | "sparsegpt"
const char* prune_method_name(PruneMethod method);

struct SequentialPruneOptions {
  PruneMethod method = PruneMethod::sparsegpt;
  SparsityPattern pattern = SparsityPattern::unstructured(0.5);
  MaskGroup magnitude_group = MaskGroup::matrix;  // magnitude only; Wanda always compares within a row
  SparseGptOptions sparsegpt;                     // its log is replaced by `log` if set
  // The kernels (Hessian, inverse factor, OBS sweep, mask) are each family's selection (tensor/kernel_registry.h).
  int64_t forward_batch = 8;         // calibration sequences per forward chunk
  // Where the layer inputs/outputs of every calibration sequence live: automatic = the device when they fit, else
  // host memory, else a file in activation_dir (the system's temporary folder when empty).
  opt::ActivationPlace activations = opt::ActivationPlace::automatic;
  std::string activation_dir;
  bool measure_reconstruction = true;  // build H for wanda/magnitude too (when calibration ids are given)
  // How the Hessians and Wanda's norms are summed over the windows (prune/exact_sum.h): the reference's f32
  // running average, or exactly (the same bits for any number of ranks, split, batches and threads); exact also
  // runs SparseGPT's factorisation in one thread (OpenBLAS's potrf/potri change their bits with the thread count),
  // so the masks are the same for any number of ranks and threads.
  StatisticsSum statistics_sum = StatisticsSum::running;
  bool show_progress = true;         // a pt::Progress bar over the layers
  std::function<void(const std::string&)> log;  // one line per layer (and SparseGPT's retries); null = silent
  // Several ranks (prune/calibration_across_ranks.h): every rank passes the same model and calibration ids, and
  // forwards its share of the windows; statistics are summed, each matrix is pruned by one rank and broadcast,
  // and every rank returns the same model and report. Progress and the per-layer log come from rank 0 only.
  // Null: this process alone. (Streamed walks write their layers from every rank: use one rank with streaming.)
  dist::Communicator* comm = nullptr;
  // Several ranks: every rank prunes every matrix itself (nothing is broadcast) instead of one rank each.
  // Both give the same weights and masks; README's distributed section has the measured times of both.
  bool prune_on_every_rank = false;

  // Inspection hooks (tests, debugging); null = not called.
  // The whole calibration input of decoder layer i ([nsamples, seqlen, C], on the activation device), before
  // the layer is calibrated.
  std::function<void(int64_t layer, const Tensor& inputs)> layer_input_observer;
  // The Hessian a matrix is pruned / measured with ("model.decoder.layers.3.fc1"), before pruning.
  std::function<void(const std::string& name, const Tensor& H)> hessian_observer;
  // Called after layer i has been pruned and released to the walk (a test interrupts a pass by throwing here).
  std::function<void(int64_t layer)> layer_done;
};

struct MatrixPruneReport {
  std::string name;  // "model.decoder.layers.3.self_attn.q_proj"
  int64_t layer = 0;
  int64_t rows = 0, cols = 0;
  double sparsity = 0;                  // measured on the stored mask
  int64_t pruned = 0;                   // pruned entries of the stored mask
  double reconstruction_error = 0;      // reconstruction_error(w_old, w_new, H); NaN when not measured
  double seconds = 0;                   // pruning this matrix (mask + update), without the layer's forwards
  int sparsegpt_retries = 0;            // SparseGPT's extra damping attempts
  double percdamp_used = 0;             // SparseGPT only
  int64_t dead_columns = 0;             // SparseGPT only: inputs that never fired
};

struct LayerPruneReport {
  int64_t layer = 0;
  double seconds = 0;               // calibration forward, pruning and the pruned forward
  double sparsity = 0;              // of the layer's six weights together
  double reconstruction_error = 0;  // summed over its six matrices; NaN when not measured
};

struct PruneReport {
  PruneMethod method = PruneMethod::sparsegpt;
  std::string pattern;             // SparsityPattern::describe()
  int64_t nsamples = 0, seqlen = 0;  // calibration windows (0 when none)
  std::vector<MatrixPruneReport> matrices;
  std::vector<LayerPruneReport> layers;
  double seconds = 0;
  double sparsity = 0;              // of every decoder Linear weight together: pruned_weights / total_weights
  int64_t pruned_weights = 0, total_weights = 0;
  int64_t resumed_layers = 0;       // finished by an interrupted pass (their reports restored from its notes)
  double reconstruction_error = 0;  // summed over every matrix; NaN when not measured
};

// Prunes every decoder Linear weight of `model` in place (weights zeroed, masks stored in weight_mask).
// calibration_ids: i32/i64 [nsamples, seqlen] with seqlen <= the model's context (any device); required for
// wanda and sparsegpt, optional for magnitude.
PruneReport prune_model(opt::OptForCausalLM& model, const Tensor& calibration_ids,
                        const SequentialPruneOptions& options);
// The same over any walk of a model's layers (a streamed one writes each pruned layer to its sinks); finishes the walk.
PruneReport prune_layers(opt::ModelLayers& layers, const Tensor& calibration_ids, const SequentialPruneOptions& options);

}  // namespace pt::prune
