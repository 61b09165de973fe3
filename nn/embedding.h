// Lookup table weight [num_embeddings, dim]. Row padding_idx (if >= 0) is read by the forward but gets no
// gradient, like torch.nn.Embedding(padding_idx=...).
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace pt::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx = -1, Device device = Device::cpu,
            DType dtype = DType::f32);

  Variable forward(const Tensor& ids) const;  // ids [...] (i32/i64) -> [..., dim]

  // Hugging Face's _init_weights: N(0, std) with the padding row zeroed.
  void init_normal(double std, Generator& gen);

  int64_t num_embeddings() const { return weight.size(0); }
  int64_t dim() const { return weight.size(1); }
  int64_t padding_idx() const { return padding_idx_; }

  Variable weight;  // [num_embeddings, dim]

 private:
  int64_t padding_idx_;
};

}  // namespace pt::nn
