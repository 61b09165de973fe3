// opt_eval: WikiText-2 perplexity (SparseGPT's protocol) and text generation for an OPT model, so a person
// can check a checkpoint and see what it writes.
//   opt_eval --model path/to/hf-opt-125m --ppl
//   opt_eval --model path/to/hf-opt-125m --prompt "The capital of France is" --max-new-tokens 20
//   opt_eval --model tiny --ppl --seqlen 64 --windows 8        (a preset: random weights, for a smoke test)
//   opt_eval --model exported-pruned-model --ppl --linear-kernel csr   (pruned Linears on a sparse kernel)
// With a sparse kernel the packed layers' dense weights are released (inference only), and the last line says
// what the process held at its peak (VmHWM) and at the end (VmRSS).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "base/process_memory.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext_tokens.h"
#include "opt/generate.h"
#include "opt/model.h"
#include "nn/linear_kernel.h"
#include "opt/perplexity.h"
#include "tensor/ops.h"

using namespace pt;

int main(int argc, char** argv) try {
  CLI::App app{"OPT perplexity (SparseGPT protocol on WikiText-2 test) and text generation"};
  std::string model_arg, device = "auto", dtype = "f32", data_dir = "data", cache_dir = "cache", prompt;
  std::string linear_kernel = "dense";
  int64_t seqlen = 0, batch = 1, windows = 0, max_new = 32, top_k = 0;
  double temperature = 0.0;
  uint64_t seed = 0;
  bool ppl = false;
  app.add_option("--model", model_arg, "Hugging Face OPT folder (config.json + safetensors) or a preset name")->required();
  app.add_option("--device", device, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--dtype", dtype, "f32, or bf16/f16 on cuda")->capture_default_str();
  app.add_option("--data", data_dir, "folder with wikitext-2-raw/ and opt-tokenizer/")->capture_default_str();
  app.add_option("--cache", cache_dir, "folder for the token cache")->capture_default_str();
  app.add_flag("--ppl", ppl, "evaluate WikiText-2 test perplexity");
  app.add_option("--seqlen", seqlen, "evaluation window (default: the model's context)");
  app.add_option("--batch", batch, "windows per forward pass")->capture_default_str();
  app.add_option("--windows", windows, "evaluate only the first N windows (0 = all)")->capture_default_str();
  app.add_option("--prompt", prompt, "generate a continuation of this text");
  app.add_option("--max-new-tokens", max_new, "tokens to generate")->capture_default_str();
  app.add_option("--temperature", temperature, "0 = greedy; > 0 samples")->capture_default_str();
  app.add_option("--top-k", top_k, "sample among the k most likely tokens (0 = all)")->capture_default_str();
  app.add_option("--seed", seed, "seed for random weights and sampling")->capture_default_str();
  app.add_option("--linear-kernel", linear_kernel,
                 "kernel for pruned decoder Linears (a layer's zeros are its mask): dense|masked|csr|bitmap|2of4|auto")
      ->check(CLI::IsMember(sparse::linear_kernel_names()))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!ppl && prompt.empty()) {
    std::fprintf(stderr, "error: nothing to do: give --ppl and/or --prompt TEXT\n");
    return 2;
  }

  const Device dev = parse_device(device);
  const DType dt = parse_dtype(dtype);
  std::unique_ptr<opt::OptForCausalLM> model;
  if (std::filesystem::is_directory(model_arg)) {
    opt::HfCheckpoint ckpt(model_arg);
    model = opt::OptForCausalLM::from_hf(ckpt, dev, dt);
  } else {
    // Not a folder: a preset name, or a path that is wrong (say so, rather than "unknown preset").
    opt::OptConfig preset;
    try {
      preset = opt::opt_preset(model_arg);
    } catch (const Error&) {
      std::string presets;
      for (const auto& n : opt::opt_preset_names()) presets += (presets.empty() ? "" : ", ") + n;
      std::fprintf(stderr, "error: --model %s: %s; give a Hugging Face OPT folder (config.json + model.safetensors) "
                   "or a preset (%s)\n", model_arg.c_str(),
                   std::filesystem::exists(model_arg) ? "is a file, not a folder" : "no such folder, and not a preset name",
                   presets.c_str());
      return 2;
    }
    std::fprintf(stderr, "note: '%s' is not a folder; using preset %s with RANDOM weights\n", model_arg.c_str(),
                 preset.name.c_str());
    model = std::make_unique<opt::OptForCausalLM>(preset, dev, seed);
    if (dt != DType::f32) model->to(dt);
  }
  std::printf("model: %s\ndevice: %s, dtype: %s\n", model->config().describe().c_str(), device_name(dev), dtype_name(dt));

  if (linear_kernel != "dense") {
    // An exported pruned model carries no masks: its zeros are the mask of every layer that has any.
    for (auto& [name, layer] : model->linear_layers()) {
      const Tensor keep = compare_scalar(layer->weight.data(), 0.0, CompareOp::ne);
      if (sum_all(keep.to(DType::f32)).item() < double(keep.numel())) layer->set_mask(keep);
    }
    nn::LinearKernelOptions lo;
    lo.kernel = sparse::parse_linear_kernel(linear_kernel);
    lo.release_dense = true;  // this program only evaluates: the packed forms own the weights
    lo.auto_options.prefill_tokens =
        std::min<int64_t>(2048, batch * (seqlen > 0 ? seqlen : model->config().max_position_embeddings));
    std::printf("linear kernel: %s\n", nn::use_linear_kernel(model->linear_layers(), lo).summary(linear_kernel).c_str());
  }

  corpus::Gpt2Tokenizer tok(data_dir + "/opt-tokenizer/vocab.json", data_dir + "/opt-tokenizer/merges.txt");
  if (model->config().vocab_size < int64_t(tok.vocab_size())) {
    std::fprintf(stderr, "error: model %s has a vocabulary of %lld ids but OPT's tokenizer produces ids up to %zu: "
                 "it cannot read tokenized text (use a real-vocabulary preset such as 125m, or a checkpoint)\n",
                 model->config().name.c_str(), (long long)model->config().vocab_size, tok.vocab_size() - 1);
    return 2;
  }
  if (ppl) {
    corpus::WikiTextTokens test = corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Test, data_dir, cache_dir);
    if (!test.warning.empty()) std::fprintf(stderr, "warning: %s\n", test.warning.c_str());
    std::vector<int32_t> ids = std::move(test.ids);
    opt::PerplexityOptions o;
    o.seqlen = seqlen > 0 ? seqlen : model->config().max_position_embeddings;
    o.batch_size = batch;
    o.max_windows = windows;
    o.source = test.path;
    opt::PerplexityResult r = opt::evaluate_perplexity(*model, ids, o);
    std::printf("wikitext2 test: %zu tokens, %lld windows of %lld\nperplexity %.4f  (mean NLL %.6f)  %.1f tok/s\n",
                ids.size(), (long long)r.windows, (long long)o.seqlen, r.perplexity, r.mean_nll, r.tokens_per_second);
  }
  if (!prompt.empty()) {
    std::vector<int32_t> p32 = tok.encode(prompt);
    std::vector<int64_t> p(p32.begin(), p32.end());
    opt::GenerationOptions g;
    g.max_new_tokens = max_new;
    g.do_sample = temperature > 0;
    g.temperature = temperature > 0 ? temperature : 1.0;
    g.top_k = top_k;
    g.seed = seed;
    g.tokenizer_vocab_size = int64_t(tok.vocab_size());
    std::vector<int64_t> out = opt::generate(*model, p, g);
    std::vector<int32_t> o32(out.begin(), out.end());
    std::printf("%s\n", tok.decode(o32).c_str());
  }
  const ProcessMemory mem = process_memory();
  if (mem.peak_resident_bytes >= 0)
    std::printf("memory: peak resident %.1f MB, resident now %.1f MB\n", double(mem.peak_resident_bytes) / 1e6,
                double(mem.resident_bytes) / 1e6);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
