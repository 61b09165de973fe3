#include "tensor/ops/checks.h"

#include <sstream>

namespace pt::checks {

void defined(const char* op, const Tensor& t, const char* arg) {
  PT_CHECK(t.defined(), op, ": argument '", arg, "' is an undefined tensor");
}

void same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) { first = t; continue; }
    PT_CHECK(t->device() == first->device(), op, ": tensors on different devices: ", first->describe(), " and ",
             t->describe());
  }
}

void same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  PT_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ: ", a.describe(), " and ", b.describe());
}

void dtype_in(const char* op, const Tensor& t, std::initializer_list<DType> allowed) {
  for (DType d : allowed) if (t.dtype() == d) return;
  std::ostringstream os;
  bool first = true;
  for (DType d : allowed) { os << (first ? "" : ", ") << dtype_name(d); first = false; }
  PT_FAIL(op, ": dtype ", dtype_name(t.dtype()), " not supported for ", t.describe(), " (allowed: ", os.str(), ")");
}

void float_dtype(const char* op, const Tensor& t) {
  if (t.is_cuda()) dtype_in(op, t, {DType::f32, DType::f64, DType::f16, DType::bf16});
  else dtype_in(op, t, {DType::f32, DType::f64});
}

void rank(const char* op, const Tensor& t, int64_t r, const char* arg) {
  PT_CHECK(t.dim() == r, op, ": '", arg, "' must have rank ", r, ", got ", t.describe());
}

std::string bad_id_message(const char* op, int64_t id, int64_t position, const Tensor& ids, int64_t rows,
                           const std::string& table) {
  return detail::concat(op, ": id ", id, " at flat position ", position, " of ids ", ids.describe(),
                        " is out of range [0, ", rows, ") for ", table);
}

std::string bad_target_message(const char* op, int64_t target, int64_t row, int64_t classes,
                               const std::string& logits, int64_t ignore_index) {
  return detail::concat(op, ": target ", target, " at row ", row, " is out of range [0, ", classes, ") for logits ",
                        logits, " and is not ignore_index (", ignore_index, ")");
}

}  // namespace pt::checks
