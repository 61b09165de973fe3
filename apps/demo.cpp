// Smoke demo (what `make run` runs until train_prune lands): shows the devices, trains a small MLP with
// the autograd engine on a synthetic task, and tokenizes a sentence with OPT's tokenizer when data/ exists.
#include <cstdio>
#include <filesystem>

#include "autograd/functions.h"
#include "corpus/tokenizer.h"
#include "tensor/ops.h"

namespace ag = pt::autograd;

int main() try {
  using namespace pt;
  const Device dev = parse_device("auto");
  std::printf("prune-and-tune demo\n  device: %s (CUDA usable: %s)\n", device_name(dev), cuda_is_available() ? "yes" : "no");

  // Classify 4-D points by the sign of x0*x1 + x2 (not linearly separable): a 2-layer MLP with layer norm.
  Generator g(0);
  const int64_t n = 512, d = 4, h = 32;
  Tensor x = Tensor::normal({n, d}, 0, 1, g, DType::f32, dev);
  std::vector<int64_t> labels(n);
  auto xv = x.to_vector<double>();
  for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = xv[size_t(i * d)] * xv[size_t(i * d + 1)] + xv[size_t(i * d + 2)] > 0;
  Tensor y = Tensor::from_vector(labels, {n}, dev);
  ag::Variable w1(Tensor::normal({h, d}, 0, 0.5, g, DType::f32, dev), true), b1(Tensor::zeros({h}, DType::f32, dev), true);
  ag::Variable lw(Tensor::ones({h}, DType::f32, dev), true), lb(Tensor::zeros({h}, DType::f32, dev), true);
  ag::Variable w2(Tensor::normal({2, h}, 0, 0.5, g, DType::f32, dev), true), b2(Tensor::zeros({2}, DType::f32, dev), true);
  std::vector<ag::Variable*> params{&w1, &b1, &lw, &lb, &w2, &b2};
  ag::Variable input(x);
  std::printf("  training a 2-layer MLP (plain SGD, lr 0.5) on %lld points:\n", (long long)n);
  for (int step = 0; step <= 300; ++step) {
    ag::Variable hid = ag::relu(ag::layer_norm(ag::linear(input, w1, b1), lw, lb, 1e-5));
    ag::Variable loss = ag::cross_entropy(ag::linear(hid, w2, b2), y);
    for (auto* p : params) p->zero_grad();
    loss.backward();
    for (auto* p : params) binary_(p->data(), p->data(), mul_scalar(p->grad(), 0.5), BinaryOp::sub);
    if (step % 50 == 0) std::printf("    step %3d  loss %.4f\n", step, loss.data().item());
  }

  const std::string vocab = "data/opt-tokenizer/vocab.json", merges = "data/opt-tokenizer/merges.txt";
  if (std::filesystem::exists(vocab) && std::filesystem::exists(merges)) {
    corpus::Gpt2Tokenizer tok(vocab, merges);
    auto ids = tok.encode("Today is a beautiful day and I want");
    std::printf("  OPT tokenizer: \"Today is a beautiful day and I want\" ->");
    for (int32_t id : ids) std::printf(" %d", id);
    std::printf("\n");
  } else {
    std::printf("  (no data/ folder: skipping the tokenizer; `make data` links ../shared/data)\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
