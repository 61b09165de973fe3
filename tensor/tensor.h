// Tensor: a strided view (shape, strides, offset, dtype) over shared Storage on one device.
// Views (reshape of contiguous data, transpose/permute, narrow, expand, select, ...) share storage;
// contiguous()/clone()/to() copy. No autograd here: autograd::Variable wraps a Tensor.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/random.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace pt {

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype);

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int64_t offset() const { return offset_; }  // in elements
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu; }
  bool is_cuda() const { return device() == Device::cuda; }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::string describe() const;  // "f32[2, 3] cpu" for error messages

  // Raw pointer to the first element (storage + offset). data<T>() checks the dtype.
  void* data_ptr() const;
  template <class T> T* data() const {
    PT_CHECK(dtype_ == dtype_of<T>::value, "Tensor::data: tensor is ", dtype_name(dtype_),
             ", requested ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(data_ptr());
  }

  // ---- views (share storage) ------------------------------------------------------------------
  Tensor view(const Shape& shape) const;      // requires compatible strides; one -1 allowed
  Tensor reshape(const Shape& shape) const;   // view when possible, else a contiguous copy
  Tensor flatten() const { return reshape({-1}); }
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // broadcast view: stride 0 on expanded dims
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;

  // ---- copies -------------------------------------------------------------------------------
  Tensor contiguous() const;  // self when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(Device d) const;  // self when already there
  Tensor to(DType t) const;   // self when already that dtype
  Tensor to(Device d, DType t) const { return to(t).to(d); }
  // Element-wise copy from src (broadcast to this shape), converting dtype and crossing devices.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- host access (copies to the CPU when needed) -------------------------------------------
  double item() const;  // single-element tensor -> double
  template <class T> std::vector<T> to_vector() const;  // converts any dtype to T, row-major order

  // ---- factories ----------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64,
                       Device device = Device::cpu);
  static Tensor eye(int64_t n, DType dtype = DType::f32, Device device = Device::cpu);
  // Seeded draws; the same generator state gives the same values on every device.
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = DType::f32,
                        Device device = Device::cpu);
  static Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype = DType::f32,
                       Device device = Device::cpu);
  template <class T> static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                                               Device device = Device::cpu);

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Strides strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::f32;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);  // prints describe()

}  // namespace pt
