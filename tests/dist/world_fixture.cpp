#include "tests/dist/world_fixture.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "tensor/ops.h"
#include "tensor/random.h"

namespace pt::dist::test {
namespace {
std::unique_ptr<MpiCommunicator> g_world;
}

void start_world() {
  g_world = std::make_unique<MpiCommunicator>();
  g_world->set_timeout(std::chrono::seconds(60));  // a test whose ranks disagree fails instead of hanging
}
void end_world() { g_world.reset(); }
MpiCommunicator& world() { return *g_world; }

Tensor rank_input(const Shape& shape, DType dtype, uint64_t seed, int rank) {
  Generator gen(seed * 1000 + uint64_t(rank) + 1);
  if (dtype == DType::i32 || dtype == DType::i64) {
    Tensor u = Tensor::uniform(shape, -1000.0, 1000.0, gen, DType::f64);
    std::vector<double> v = u.to_vector<double>();
    for (double& x : v) x = std::floor(x);
    return Tensor::from_vector(v, shape).to(dtype);
  }
  return Tensor::uniform(shape, -1.0, 1.0, gen, dtype);
}

std::vector<double> expected_sum(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<double> sum;
  for (int r = 0; r < world().size(); ++r) {
    const auto v = rank_input(shape, dtype, seed, r).to_vector<double>();
    if (sum.empty()) sum.assign(v.size(), 0.0);
    for (size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
  }
  return sum;
}

bool same_on_every_rank(const Tensor& t) {
  Tensor mine = t.to(Device::cpu).contiguous();
  Tensor root = mine.clone();
  world().broadcast(root, 0);
  const double same = std::memcmp(mine.data_ptr(), root.data_ptr(), mine.nbytes()) == 0 ? 1.0 : 0.0;
  return world().all_reduce_sum(same) == double(world().size());
}

}  // namespace pt::dist::test
