#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#if PT_CUDA
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), strides_(std::move(strides)), offset_(offset),
      dtype_(dtype) {
  PT_CHECK(shape_.size() == strides_.size(), "Tensor: shape ", shape_str(shape_), " and strides ",
           shape_str(strides_), " differ in rank");
  for (int64_t d : shape_) PT_CHECK(d >= 0, "Tensor: negative size in shape ", shape_str(shape_));
}

int64_t Tensor::size(int64_t d) const { return shape_[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides_[normalize_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_ << ' ' << device_name(device());
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.describe(); }

void* Tensor::data_ptr() const {
  PT_CHECK(defined(), "data_ptr of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * int64_t(dtype_size(dtype_));
}

// ---- views -----------------------------------------------------------------------------------------

static Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      PT_CHECK(infer < 0, op, ": only one dimension may be -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      PT_CHECK(out[i] >= 0, op, ": invalid size in ", shape_str(shape));
      PT_CHECK(!__builtin_mul_overflow(known, out[i], &known), op, ": shape ", shape_str(shape), " is too large");
    }
  }
  if (infer >= 0) {
    PT_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for ", numel,
             " elements");
    out[infer] = numel / known;
  }
  PT_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for ", numel, " elements");
  return out;
}

Tensor Tensor::view(const Shape& shape) const {
  Shape s = infer_shape(shape, numel(), "view");
  PT_CHECK(is_contiguous(), "view: ", describe(), " is not contiguous; use reshape() or contiguous() first");
  return Tensor(storage_, s, contiguous_strides(s), offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = normalize_dim(a, dim(), "transpose");
  b = normalize_dim(b, dim(), "transpose");
  Shape s = shape_;
  Strides st = strides_;
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  PT_CHECK(int64_t(order.size()) == dim(), "permute: order of length ", order.size(), " for ", describe());
  Shape s(order.size());
  Strides st(order.size());
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    int64_t d = normalize_dim(order[i], dim(), "permute");
    PT_CHECK(!seen[d], "permute: dimension ", d, " repeated");
    seen[d] = true;
    s[i] = shape_[d];
    st[i] = strides_[d];
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = normalize_dim(d, dim(), "narrow");
  PT_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow: range [", start, ", ",
           start + length, ") out of bounds for dim ", d, " of ", describe());
  Shape s = shape_;
  s[d] = length;
  return Tensor(storage_, s, strides_, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = normalize_dim(d, dim(), "select");
  if (index < 0) index += shape_[d];
  PT_CHECK(index >= 0 && index < shape_[d], "select: index ", index, " out of range for dim ", d, " of ", describe());
  Shape s = shape_;
  Strides st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return Tensor(storage_, s, st, offset_ + index * strides_[d], dtype_);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  if (d < 0) d += dim() + 1;
  PT_CHECK(d >= 0 && d <= dim(), "unsqueeze: dim ", d, " out of range for ", describe());
  Shape s = shape_;
  Strides st = strides_;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, d < dim() ? strides_[d] * shape_[d] : 1);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim(d, dim(), "squeeze");
  PT_CHECK(shape_[d] == 1, "squeeze: dim ", d, " of ", describe(), " is not of size 1");
  Shape s = shape_;
  Strides st = strides_;
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  PT_CHECK(shape.size() >= shape_.size(), "expand: cannot expand ", describe(), " to fewer dims ", shape_str(shape));
  size_t lead = shape.size() - shape_.size();
  Shape s(shape.size());
  Strides st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      PT_CHECK(shape[i] >= 0, "expand: invalid size in ", shape_str(shape));
      s[i] = shape[i];
      continue;
    }
    int64_t have = shape_[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    PT_CHECK(have == want || have == 1, "expand: cannot expand ", describe(), " to ", shape_str(shape));
    s[i] = want;
    st[i] = have == want ? strides_[i - lead] : 0;
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  return Tensor(storage_, shape, strides, offset, dtype_);
}

// ---- copies ---------------------------------------------------------------------------------------

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, d);
#if PT_CUDA
  if (nbytes() > 0) {
    auto kind = d == Device::cuda ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    // Stream-ordered, then waited for: host memory is pageable and the caller may read it at once. The wait
    // also reports the device-side checks of the ops before it (tensor/cuda/device_checks.h).
    PT_CUDA_CHECK(cudaMemcpyAsync(out.data_ptr(), src.data_ptr(), nbytes(), kind, cuda::current_stream()));
    cuda::synchronize();
  }
#endif
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype_) return *this;
  Tensor out = empty(shape_, t, device());
  out.copy_(*this);
  return out;
}

static void copy_cpu(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous() && dst.shape() == src.shape()) {
    auto* d = static_cast<char*>(dst.data_ptr());
    const auto* s = static_cast<const char*>(src.data_ptr());
    // In 4 KiB pieces, split over threads from 1 MiB on (a page counts as 256 elements of work).
    const int64_t bytes = int64_t(dst.nbytes()), page = 4096;
    cpu::parallel_ranges((bytes + page - 1) / page, page / 16, [&](int64_t p0, int64_t p1) {
      std::memcpy(d + p0 * page, s + p0 * page, size_t(std::min(bytes, p1 * page) - p0 * page));
    }, 1);
    return;
  }
  Strides ds = dst.strides();
  Strides ss = cpu::broadcast_strides(src, dst.shape());
  dispatch_any(dst.dtype(), [&]<class D>() {
    dispatch_any(src.dtype(), [&]<class S>() {
      D* d = static_cast<D*>(dst.storage()->data());
      const S* s = static_cast<const S*>(src.storage()->data());
      cpu::for_each_offset<2>(dst.shape(), {&ds, &ss}, {dst.offset(), src.offset()}, [&](int64_t i, int64_t j) {
        if constexpr (std::is_same_v<D, S>) d[i] = s[j];
        else if constexpr (std::is_integral_v<D> && std::is_integral_v<S>) d[i] = D(s[j]);
        else d[i] = from_f64<D>(to_f64(s[j]));
      });
    });
  });
}

Tensor& Tensor::copy_(const Tensor& src) {
  PT_CHECK(defined() && src.defined(), "copy_: undefined tensor");
  broadcast_shapes(src.shape(), shape_, "copy_");  // validates
  PT_CHECK(shape_numel(broadcast_shapes(src.shape(), shape_, "copy_")) == numel(), "copy_: cannot copy ",
           src.describe(), " into ", describe());
  Tensor s = src.device() == device() ? src : src.to(device());
  if (device() == Device::cpu) {
    copy_cpu(*this, s);
  } else {
#if PT_CUDA
    cuda_ops::copy(*this, s.expand(shape_));
#endif
  }
  return *this;
}

Tensor& Tensor::fill_(double value) {
  if (numel() == 0) return *this;
  if (device() == Device::cpu) {
    Strides st = strides_;
    dispatch_any(dtype_, [&]<class T>() {
      T v = from_f64<T>(value);
      T* p = static_cast<T*>(storage_->data());
      cpu::for_each_offset<1>(shape_, {&st}, {offset_}, [&](int64_t i) { p[i] = v; });
    });
  } else {
#if PT_CUDA
    cuda_ops::fill(*this, value);
#endif
  }
  return *this;
}

// ---- host access ----------------------------------------------------------------------------------

double Tensor::item() const {
  PT_CHECK(numel() == 1, "item: ", describe(), " does not have exactly one element");
  return to_vector<double>()[0];
}

template <class T> std::vector<T> Tensor::to_vector() const {
  Tensor c = contiguous().to(Device::cpu);
  std::vector<T> out(size_t(c.numel()));
  dispatch_any(c.dtype(), [&]<class S>() {
    const S* s = static_cast<const S*>(c.data_ptr());
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, S>) out[i] = s[i];
      else if constexpr (std::is_integral_v<T> && std::is_integral_v<S>) out[i] = T(s[i]);
      else out[i] = from_f64<T>(to_f64(s[i]));
    }
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---- factories ------------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) PT_CHECK(d >= 0, "empty: negative size in shape ", shape_str(shape));
  size_t nbytes = 0;
  PT_CHECK(!__builtin_mul_overflow(size_t(shape_numel(shape)), dtype_size(dtype), &nbytes), "empty: shape ",
           shape_str(shape), " of ", dtype_name(dtype), " needs more bytes than a 64-bit size can count");
  auto storage = std::make_shared<Storage>(nbytes, device);
  return Tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(int64_t start, int64_t end, int64_t step, DType dtype, Device device) {
  PT_CHECK(step != 0, "arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, (end - start + step + (step > 0 ? -1 : 1)) / step);
  Tensor t = empty({n}, dtype, device);
  if (device == Device::cpu) {
    dispatch_any(dtype, [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < n; ++i) p[i] = from_f64<T>(double(start + i * step));
    });
  } else {
#if PT_CUDA
    cuda_ops::arange(t, start, step);
#endif
  }
  return t;
}

Tensor Tensor::eye(int64_t n, DType dtype, Device device) {
  Tensor t = zeros({n, n}, dtype, device);
  t.as_strided({n}, {n + 1}, 0).fill_(1.0);
  return t;
}

// Uniform: value i = lo + (hi - lo) * U(seed, offset + i).
// Normal: Box-Muller on the pair of uniforms at counters 2(offset+i) and 2(offset+i)+1.
Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  uint64_t off = gen.advance(uint64_t(t.numel()));
  if (device == Device::cpu) {
    dispatch_any(dtype, [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i)
        p[i] = from_f64<T>(lo + (hi - lo) * random_uniform01(gen.seed, off + uint64_t(i)));
    });
  } else {
#if PT_CUDA
    cuda_ops::uniform(t, lo, hi, gen.seed, off);
#endif
  }
  return t;
}

Tensor Tensor::normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  uint64_t off = gen.advance(2 * uint64_t(t.numel()));
  if (device == Device::cpu) {
    dispatch_any(dtype, [&]<class T>() {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        uint64_t c = off + 2 * uint64_t(i);
        double u1 = 1.0 - random_uniform01(gen.seed, c);  // (0, 1]: log is finite
        double u2 = random_uniform01(gen.seed, c + 1);
        p[i] = from_f64<T>(mean + std * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
      }
    });
  } else {
#if PT_CUDA
    cuda_ops::normal(t, mean, std, gen.seed, off);
#endif
  }
  return t;
}

template <class T> Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  PT_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(), " values for shape ",
           shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value, Device::cpu);
  if (!values.empty()) std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(T));
  return t.to(device);
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

}  // namespace pt
