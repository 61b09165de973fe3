// Shapes and strides (in elements, row-major by default) and the broadcasting rules.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <vector>

namespace pt {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Strides contiguous_strides(const Shape& s);
int64_t normalize_dim(int64_t dim, int64_t rank, const char* op);  // negative dims count from the end
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);  // numpy rules; throws with both shapes
std::ostream& operator<<(std::ostream& os, const Shape& s);
std::string shape_str(const Shape& s);

}  // namespace pt
