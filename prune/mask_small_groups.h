// The per-lane steps of the CUDA small-group selection (mask.cu, groups of at most 32 elements: N:M and small
// matrices), as plain functions so a CPU test runs them over whole warps. A warp holds 32 / size whole groups,
// one element per lane; each lane computes its element's rank in the selection order of its group (forced
// first, then key ascending, then lower index: the order of prune/mask.h) from the group's keys, which it reads
// from the other lanes with shuffles, and prunes when rank < k. Keys stay in registers (one per lane), and a
// warp's loads and stores are consecutive.
#pragma once
#include <cstdint>

#include "tensor/cuda/launch.h"

namespace pt::prune::detail {

inline constexpr int kSmallGroupMax = 32;  // one warp

struct SmallGroupLane {
  int slot;     // which group of the warp
  int element;  // index inside the group
  bool used;    // lanes past the warp's last whole group idle
};
PT_HOST_DEVICE constexpr SmallGroupLane small_group_lane(int lane, int size) {
  return {lane / size, lane % size, lane / size < kSmallGroupMax / size};
}

// Rank of element `element` (key `key`) among the group's `size` keys, key_of(q) giving element q's key:
// how many come before it in (key, index) order. Forced positions have key 0, below every score's key.
template <class KeyOf>
PT_HOST_DEVICE uint32_t rank_in_group(uint32_t key, int element, int size, KeyOf&& key_of) {
  uint32_t rank = 0;
  for (int q = 0; q < size; ++q) {
    const uint32_t other = key_of(q);
    rank += (other < key || (other == key && q < element)) ? 1u : 0u;
  }
  return rank;
}

}  // namespace pt::prune::detail
