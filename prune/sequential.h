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
// Hessians would be in the reference). Only one layer's activations are alive (inputs and outputs, swapped after
// each layer); with offload_activations they stay in host memory and one chunk at a time visits the model's
// device. The model runs in eval mode under NoGradGuard; its training flag, and any input_observer the caller
// had set on a decoder Linear, are restored afterwards. Embeddings, positions, LayerNorms, biases and the LM
// head are never touched.
//
// Magnitude needs no calibration: with undefined calibration ids every decoder Linear is pruned directly.
// With calibration ids and measure_reconstruction it runs the same sequential pass to report errors that are
// comparable with the other methods (its masks do not depend on the data either way).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "opt/model.h"
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
  SparseGptOptions sparsegpt;                     // its kernel is replaced by `kernel`, its log by `log` if set
  PruneKernel kernel = PruneKernel::fused;        // mask selection and the OBS sweep
  HessianKernel hessian_kernel = HessianKernel::fused;
  int64_t forward_batch = 8;         // calibration sequences per forward chunk
  bool offload_activations = false;  // layer inputs/outputs in host memory, one chunk at a time on the device
  bool measure_reconstruction = true;  // build H for wanda/magnitude too (when calibration ids are given)
  bool show_progress = true;         // a pt::Progress bar over the layers
  std::function<void(const std::string&)> log;  // one line per layer (and SparseGPT's retries); null = silent
  // Several ranks (prune/calibration_across_ranks.h): every rank passes the same model and calibration ids, and
  // forwards its share of the windows; statistics are summed, each matrix is pruned by one rank and broadcast,
  // and every rank returns the same model and report. Progress and the per-layer log come from rank 0 only.
  // Null: this process alone.
  dist::Communicator* comm = nullptr;

  // Inspection hooks (tests, debugging); null = not called.
  // The whole calibration input of decoder layer i ([nsamples, seqlen, C], on the activation device), before
  // the layer is calibrated.
  std::function<void(int64_t layer, const Tensor& inputs)> layer_input_observer;
  // The Hessian a matrix is pruned / measured with ("model.decoder.layers.3.fc1"), before pruning.
  std::function<void(const std::string& name, const Tensor& H)> hessian_observer;
};

struct MatrixPruneReport {
  std::string name;  // "model.decoder.layers.3.self_attn.q_proj"
  int64_t layer = 0;
  int64_t rows = 0, cols = 0;
  double sparsity = 0;                  // measured on the stored mask
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
  double sparsity = 0;              // of every decoder Linear weight together
  double reconstruction_error = 0;  // summed over every matrix; NaN when not measured
};

// Prunes every decoder Linear weight of `model` in place (weights zeroed, masks stored in weight_mask).
// calibration_ids: i32/i64 [nsamples, seqlen] with seqlen <= the model's context (any device); required for
// wanda and sparsegpt, optional for magnitude.
PruneReport prune_model(opt::OptForCausalLM& model, const Tensor& calibration_ids,
                        const SequentialPruneOptions& options);

}  // namespace pt::prune
