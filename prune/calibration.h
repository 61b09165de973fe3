// Calibration windows for SparseGPT / Wanda: `nsamples` random windows of `seqlen` consecutive tokens cut from
// a token stream (SparseGPT's get_wikitext2: the WikiText-2 train split, rows joined with " ", tokenised once
// with OPT's tokenizer, BOS included: corpus::wikitext_tokens(tokenizer, WikiTextSplit::Train, ...)), as an
// i32 tensor [nsamples, seqlen] on the CPU. Defaults: 128 windows of the model's context.
//
// Window starts (deterministic for a seed, the same on every machine):
//   start_i = floor(random_bits(seed, i) * (L - seqlen) / 2^64),   i = 0 .. nsamples-1
// with pt::random_bits (tensor/random.h, counter-based splitmix64) and L the stream length, so start_i is
// uniform on [0, L - seqlen - 1] (Python's random.randint(0, L - seqlen - 1) in get_wikitext2; the draws
// differ from Python's Mersenne Twister, the distribution does not). Window i depends only on (seed, i), so
// the first k windows of a larger draw are the windows of nsamples = k.
//
// Window files record the exact windows a run used so it can be reproduced or fed another calibration set:
//   *.safetensors  one tensor "input_ids", I32 or I64, [nsamples, seqlen]; optional string metadata
//   anything else  text: one window per line, token ids as decimal integers separated by spaces or tabs;
//                  blank lines and lines starting with '#' are ignored
// Reading validates everything (ids in [0, vocab_size), every row the same non-zero length, at least one row)
// and names the file (and line) in every error.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "opt/config.h"
#include "tensor/tensor.h"

namespace pt::prune {

inline constexpr int64_t kDefaultCalibrationSamples = 128;  // SparseGPT's and Wanda's nsamples

// Start offsets of the windows (see the formula above). Requires stream_length > seqlen >= 1, nsamples >= 1.
std::vector<int64_t> calibration_window_starts(int64_t stream_length, int64_t nsamples, int64_t seqlen,
                                               uint64_t seed);

// i32 [nsamples, seqlen] on the CPU: row i = tokens[start_i, start_i + seqlen).
Tensor sample_calibration_windows(std::span<const int32_t> tokens, int64_t nsamples, int64_t seqlen, uint64_t seed);

// What a run asks for; calibration_windows resolves the defaults against the model.
struct CalibrationOptions {
  int64_t nsamples = kDefaultCalibrationSamples;
  int64_t seqlen = 0;        // 0 = the model's context (max_position_embeddings)
  uint64_t seed = 0;
  std::string windows_file;  // not empty: read these windows instead of sampling (nsamples/seqlen/seed unused)
  std::string source;        // where the token stream came from (a text file), named in errors
};
// The windows of a run: read from options.windows_file (ids checked against config.vocab_size, length against
// the context), else sampled from `tokens`.
Tensor calibration_windows(std::span<const int32_t> tokens, const opt::OptConfig& config,
                           const CalibrationOptions& options);

// Reads windows in either format (chosen by the extension, see above) as i32 [nsamples, seqlen] on the CPU.
// vocab_size >= 1: every id must be in [0, vocab_size).
Tensor read_calibration_windows(const std::string& path, int64_t vocab_size);

// Writes ids (i32/i64 [nsamples, seqlen], any device) in the format the extension selects; atomic (a
// temporary file beside `path` renamed over it). metadata goes into the safetensors header, or into '#'
// comment lines of a text file.
void write_calibration_windows(const std::string& path, const Tensor& ids,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace pt::prune
