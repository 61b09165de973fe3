// The one list of the project's kernel families, each with its lab.
#include "lab/lab_family.h"

namespace pt::lab {

// Defined in lab/prune_labs.cpp and lab/model_labs.cpp.
const LabFamily& hessian_lab();
const LabFamily& inverse_factor_lab();
const LabFamily& obs_sweep_lab();
const LabFamily& mask_lab();
const LabFamily& adamw_lab();
const LabFamily& sparse_linear_lab();
const LabFamily& softmax_lab();
const LabFamily& layer_norm_lab();
const LabFamily& attention_lab();

const std::vector<const LabFamily*>& lab_families() {
  static const std::vector<const LabFamily*> all = {&hessian_lab(),   &inverse_factor_lab(), &obs_sweep_lab(),
                                                    &mask_lab(),      &adamw_lab(),          &sparse_linear_lab(),
                                                    &softmax_lab(),   &layer_norm_lab(),     &attention_lab()};
  return all;
}

std::vector<kernels::FamilyBase*> kernel_families() {
  std::vector<kernels::FamilyBase*> out;
  for (const LabFamily* lab : lab_families()) out.push_back(&lab->family());
  return out;
}

kernels::FamilyBase* find_family(const std::string& name) {
  for (kernels::FamilyBase* f : kernel_families())
    if (f->name() == name) return f;
  return nullptr;
}

Tensor random_uniform(const Shape& shape, uint64_t seed, Device device, double lo, double hi, DType dtype) {
  Generator gen(seed);
  return Tensor::uniform(shape, lo, hi, gen, dtype, device);
}

kernels::Problem problem(std::string shape_class, std::vector<std::pair<std::string, int64_t>> dims,
                         std::string pattern, DType dtype) {
  return {std::move(shape_class), std::move(dims), std::move(pattern), dtype};
}

}  // namespace pt::lab
