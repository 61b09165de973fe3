#include "prune/calibration.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/atomic_file.h"
#include "nn/safetensors.h"

namespace pt::prune {

namespace {

constexpr const char* kIdsName = "input_ids";

bool is_safetensors_path(const std::string& path) {
  const std::string ext = ".safetensors";
  return path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
}

// Every id in [0, vocab_size); `where(k)` names the k-th element's place for the message.
template <class Where>
void check_ids_in_vocab(const std::vector<int64_t>& ids, int64_t vocab_size, const std::string& path, Where where) {
  for (size_t k = 0; k < ids.size(); ++k)
    PT_CHECK(ids[k] >= 0 && ids[k] < vocab_size, "calibration windows file ", path, ": ", where(k), " holds id ",
             ids[k], ", outside the vocabulary [0, ", vocab_size, ")");
}

Tensor read_safetensors_windows(const std::string& path, int64_t vocab_size) {
  nn::SafetensorsFile file(path);  // validates the structure; its errors name the path
  PT_CHECK(file.has(kIdsName), "calibration windows file ", path, ": no tensor \"", kIdsName,
           "\" (a [nsamples, seqlen] I32/I64 tensor is expected)");
  const nn::SafetensorsInfo info = file.info(kIdsName);
  PT_CHECK(info.dtype == DType::i32 || info.dtype == DType::i64, "calibration windows file ", path, ": \"", kIdsName,
           "\" is ", info.stored_dtype, ", but token ids must be I32 or I64");
  PT_CHECK(info.shape.size() == 2 && info.shape[0] >= 1 && info.shape[1] >= 1, "calibration windows file ", path,
           ": \"", kIdsName, "\" has shape ", shape_str(info.shape), ", expected [nsamples, seqlen] with both >= 1");
  const int64_t seqlen = info.shape[1];
  const std::vector<int64_t> ids = file.read(kIdsName, info.dtype).to_vector<int64_t>();
  check_ids_in_vocab(ids, vocab_size, path, [&](size_t k) {
    return "window " + std::to_string(int64_t(k) / seqlen) + ", position " + std::to_string(int64_t(k) % seqlen);
  });
  std::vector<int32_t> ids32(ids.begin(), ids.end());
  return Tensor::from_vector(ids32, info.shape);
}

Tensor read_text_windows(const std::string& path, int64_t vocab_size) {
  std::ifstream in(path, std::ios::binary);
  PT_CHECK(in, "calibration windows file ", path, ": cannot open (", std::strerror(errno), ")");
  std::vector<int64_t> ids;
  int64_t seqlen = 0, rows = 0, first_row_line = 0, line_no = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    int64_t count = 0;
    for (size_t pos = first; pos < line.size();) {
      const size_t end = std::min(line.find_first_of(" \t", pos), line.size());
      const std::string_view word(line.data() + pos, end - pos);
      int64_t id = 0;
      const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
      PT_CHECK(ec == std::errc() && ptr == word.data() + word.size(), "calibration windows file ", path, " line ",
               line_no, ": \"", word, "\" is not a token id (a decimal integer)");
      PT_CHECK(id >= 0 && id < vocab_size, "calibration windows file ", path, " line ", line_no, ": id ", id,
               " is outside the vocabulary [0, ", vocab_size, ")");
      ids.push_back(id);
      ++count;
      pos = line.find_first_not_of(" \t", end);
      if (pos == std::string::npos) break;
    }
    if (rows == 0) {
      seqlen = count;
      first_row_line = line_no;
    }
    PT_CHECK(count == seqlen, "calibration windows file ", path, " line ", line_no, " has ", count,
             " ids but line ", first_row_line, " has ", seqlen,
             "; every window must have the same length (is the file truncated?)");
    ++rows;
  }
  PT_CHECK(!in.bad(), "calibration windows file ", path, ": read error (", std::strerror(errno), ")");
  PT_CHECK(rows >= 1, "calibration windows file ", path,
           " holds no windows (expected one line of space-separated token ids per window)");
  std::vector<int32_t> ids32(ids.begin(), ids.end());
  return Tensor::from_vector(ids32, {rows, seqlen});
}

}  // namespace

std::vector<int64_t> calibration_window_starts(int64_t stream_length, int64_t nsamples, int64_t seqlen,
                                               uint64_t seed) {
  PT_CHECK(nsamples >= 1, "calibration: nsamples ", nsamples, " must be at least 1");
  PT_CHECK(seqlen >= 1, "calibration: seqlen ", seqlen, " must be at least 1");
  PT_CHECK(stream_length > seqlen, "calibration: a token stream of ", stream_length,
           " tokens is too short for windows of ", seqlen, " (it needs more than seqlen tokens)");
  // Multiply-shift maps 64 random bits onto [0, range) (Lemire); the bias is below range / 2^64.
  const auto range = static_cast<unsigned __int128>(stream_length - seqlen);
  std::vector<int64_t> starts(static_cast<size_t>(nsamples));
  for (int64_t i = 0; i < nsamples; ++i)
    starts[size_t(i)] = int64_t((static_cast<unsigned __int128>(random_bits(seed, uint64_t(i))) * range) >> 64);
  return starts;
}

Tensor sample_calibration_windows(std::span<const int32_t> tokens, int64_t nsamples, int64_t seqlen, uint64_t seed) {
  const std::vector<int64_t> starts = calibration_window_starts(int64_t(tokens.size()), nsamples, seqlen, seed);
  Tensor out = Tensor::empty({nsamples, seqlen}, DType::i32);
  int32_t* dst = out.data<int32_t>();
  for (int64_t i = 0; i < nsamples; ++i)
    std::memcpy(dst + i * seqlen, tokens.data() + starts[size_t(i)], size_t(seqlen) * sizeof(int32_t));
  return out;
}

Tensor calibration_windows(std::span<const int32_t> tokens, const opt::OptConfig& config,
                           const CalibrationOptions& options) {
  if (options.windows_file.empty()) {
    PT_CHECK(options.seqlen >= 0, "calibration: seqlen ", options.seqlen, " must be >= 0 (0 = the model's context)");
    const int64_t seqlen = options.seqlen > 0 ? options.seqlen : config.max_position_embeddings;
    PT_CHECK(seqlen <= config.max_position_embeddings, "calibration: seqlen ", seqlen, " is longer than the context ",
             config.max_position_embeddings, " of ", config.name);
    PT_CHECK(int64_t(tokens.size()) > seqlen, "calibration: ",
             options.source.empty() ? std::string("the token stream") : "the text " + options.source, " gives ",
             tokens.size(), " tokens, too few for calibration windows of ", seqlen, " (it needs more than ", seqlen, ")");
    return sample_calibration_windows(tokens, options.nsamples, seqlen, options.seed);
  }
  Tensor ids = read_calibration_windows(options.windows_file, config.vocab_size);
  PT_CHECK(ids.size(1) <= config.max_position_embeddings, "calibration windows file ", options.windows_file,
           ": windows of ", ids.size(1), " tokens are longer than the context ", config.max_position_embeddings,
           " of ", config.name);
  return ids;
}

Tensor read_calibration_windows(const std::string& path, int64_t vocab_size) {
  PT_CHECK(vocab_size >= 1, "read_calibration_windows ", path, ": vocab_size ", vocab_size, " must be at least 1");
  return is_safetensors_path(path) ? read_safetensors_windows(path, vocab_size) : read_text_windows(path, vocab_size);
}

void write_calibration_windows(const std::string& path, const Tensor& ids,
                               const std::map<std::string, std::string>& metadata) {
  PT_CHECK(ids.defined() && ids.dim() == 2 && ids.numel() >= 1 && (ids.dtype() == DType::i32 || ids.dtype() == DType::i64),
           "write_calibration_windows ", path, ": ids ", ids.defined() ? ids.describe() : std::string("(undefined)"),
           " must be a non-empty i32/i64 [nsamples, seqlen] tensor");
  const Tensor host = ids.to(Device::cpu).to(DType::i32).contiguous();
  if (is_safetensors_path(path)) {
    nn::write_safetensors(path, {{kIdsName, host}}, metadata);
    return;
  }
  const int64_t rows = host.size(0), seqlen = host.size(1);
  std::ostringstream text;
  text << "# calibration windows: " << rows << " x " << seqlen << " token ids, one window per line\n";
  for (const auto& [key, value] : metadata) {
    PT_CHECK(key.find('\n') == std::string::npos && value.find('\n') == std::string::npos,
             "write_calibration_windows ", path, ": metadata \"", key, "\" spans lines; a text file keeps one per line");
    text << "# " << key << ": " << value << "\n";
  }
  const int32_t* p = host.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < seqlen; ++t) text << (t ? " " : "") << p[r * seqlen + t];
    text << "\n";
  }
  write_file_atomic(path, text.str());
}

}  // namespace pt::prune
