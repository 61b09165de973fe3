// Central differences in f64 on the CPU: numeric_ij = (L(x_ij + eps) - L(x_ij - eps)) / (2 eps).
#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "tensor/ops.h"

namespace pt::autograd {
namespace {

std::string index_str(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << "]";
  return os.str();
}

}  // namespace

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, double eps, double atol,
                          double rtol) {
  std::vector<Variable> vars;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    PT_CHECK(t.defined() && t.dtype() == DType::f64 && t.device() == Device::cpu, "gradcheck: input ", i,
             " must be an f64 CPU tensor, got ", t.defined() ? t.describe() : std::string("undefined"));
    vars.emplace_back(t.clone(), true);  // our own contiguous copy, perturbed in place below
  }

  // Analytic gradients of L = sum(y * R).
  Variable y = fn(vars);
  PT_CHECK(y.defined() && y.dtype() == DType::f64, "gradcheck: fn must return an f64 variable");
  PT_CHECK(y.requires_grad(), "gradcheck: fn's output does not depend on any input (no graph was recorded)");
  Generator gen(0x5eed);
  const Tensor r = Tensor::uniform(y.shape(), 0.5, 1.5, gen, DType::f64);  // weights away from 0
  y.backward(r.contiguous());  // d(sum(y*R))/dy = R

  auto loss = [&] {
    NoGradGuard no_grad;
    return pt::sum_all(pt::mul(fn(vars).data(), r)).item();
  };

  GradcheckResult res;
  int64_t failures = 0;
  double worst_excess = 0.0;
  for (size_t i = 0; i < vars.size(); ++i) {
    Tensor& x = vars[i].data();
    const Tensor& g = vars[i].grad();
    std::vector<double> analytic =
        g.defined() ? g.to_vector<double>() : std::vector<double>(size_t(x.numel()), 0.0);  // unused input: 0
    double* p = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double saved = p[j];
      p[j] = saved + eps;
      const double plus = loss();
      p[j] = saved - eps;
      const double minus = loss();
      p[j] = saved;
      const double numeric = (plus - minus) / (2.0 * eps);
      const double a = analytic[size_t(j)];
      const double tol = atol + rtol * std::abs(numeric);
      const double diff = std::abs(a - numeric);
      if (!(diff <= tol)) {  // also catches NaN
        ++failures;
        double excess = std::isnan(diff) ? INFINITY : diff / tol;
        if (failures == 1 || excess > worst_excess) {
          worst_excess = excess;
          std::ostringstream os;
          os.precision(10);
          os << "input " << i << " element " << j << " " << index_str(j, x.shape()) << ": analytic " << a
             << " vs numeric " << numeric << " (|diff| " << diff << " > tol " << tol << ")";
          res.message = os.str();
        }
      }
    }
  }
  if (failures > 0) {
    res.ok = false;
    res.message = "gradcheck failed at " + std::to_string(failures) + " element(s); worst: " + res.message;
  }
  return res;
}

}  // namespace pt::autograd
