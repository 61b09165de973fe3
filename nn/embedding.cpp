#include "nn/embedding.h"

#include "autograd/functions.h"

namespace pt::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx, Device device, DType dtype)
    : padding_idx_(padding_idx) {
  PT_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got [", num_embeddings, ", ", dim, "]");
  PT_CHECK(padding_idx < num_embeddings, "Embedding: padding_idx ", padding_idx, " is outside the table of ",
           num_embeddings, " rows");
  weight = Variable(Tensor::zeros({num_embeddings, dim}, dtype, device), true);
  register_parameter("weight", &weight);
}

Variable Embedding::forward(const Tensor& ids) const { return autograd::embedding(weight, ids, padding_idx_); }

void Embedding::init_normal(double std, Generator& gen) {
  weight.data() = Tensor::normal(weight.shape(), 0.0, std, gen, weight.dtype(), weight.device());
  if (padding_idx_ >= 0) weight.data().select(0, padding_idx_).zero_();
}

}  // namespace pt::nn
