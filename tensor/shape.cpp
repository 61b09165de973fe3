#include "tensor/shape.h"

#include <algorithm>
#include <sstream>

#include "tensor/error.h"

namespace pt {

// Every extent must be >= 0, and the product of the extents counted as at least 1 (what the outermost stride
// holds) must fit in int64: a zero extent makes the element count 0 but not the strides, so [0, 2^62, 2^62]
// is refused here rather than overflowing later (signed overflow is undefined behaviour).
static int64_t checked_stride_extent(const Shape& s) {
  int64_t extent = 1;
  for (int64_t d : s) {
    PT_CHECK(d >= 0, "shape ", shape_str(s), ": negative size ", d);
    PT_CHECK(!__builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent), "shape ", shape_str(s),
             " is too large: its element count or strides overflow a 64-bit integer");
  }
  return extent;
}

int64_t shape_numel(const Shape& s) {
  checked_stride_extent(s);
  int64_t n = 1;
  for (int64_t d : s) n *= d;  // cannot overflow: |n| <= the checked extent
  return n;
}

Strides contiguous_strides(const Shape& s) {
  checked_stride_extent(s);
  Strides st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

int64_t normalize_dim(int64_t dim, int64_t rank, const char* op) {
  int64_t d = dim < 0 ? dim + rank : dim;
  PT_CHECK(d >= 0 && d < std::max<int64_t>(rank, 1), op, ": dim ", dim, " out of range for a tensor of rank ", rank);
  return d;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    PT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, const Shape& s) {
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  return os << ']';
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

}  // namespace pt
