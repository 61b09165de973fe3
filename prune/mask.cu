// CUDA mask selection: the k lowest keys of every group, with no host round trip.
//
// Keys: each score becomes an order-preserving u32 (NaN -> +inf, -inf -> lowest finite, -0 -> +0, then the
// usual sign flip); a forced position (prev_keep == 0) gets key 0, below every score.
// Groups larger than kSmallGroupMax: a radix select, 8 bits per pass from the top, over chunks of kChunk elements
// (many blocks per group for a whole matrix, one per row for row groups):
//   histogram (blocks over chunks; shared-memory bins, then atomics into the group's 256 global bins)
//   -> choose (one block per group: scan the bins, keep the digit where the k-th key lies) ... 4 passes,
// which leaves the exact k-th key T and how many keys equal to T are still to prune. Then
//   count_equal (per chunk) -> mark (per chunk: keys < T pruned; keys == T pruned in index order while the
//   group's running count of equal keys, earlier chunks first, stays below what is left).
// Small groups (at most 32 elements: N:M, small matrices): a warp per 32 / size groups, one element per lane,
// each lane ranking its element against the group's keys read by shuffle (mask_small_groups.h).
#include <cub/block/block_scan.cuh>

#include <cfloat>
#include <climits>

#include "prune/mask.h"
#include "prune/mask_small_groups.h"
#include "tensor/ops/cuda_common.cuh"

namespace pt::prune::detail {
namespace {

constexpr int kThreads = 256;     // one thread per histogram bin in `choose`
constexpr int64_t kChunk = 8192;  // elements per block in the radix passes
constexpr unsigned long long kNoGroup = ~0ull;

using BlockScan = cub::BlockScan<uint32_t, kThreads>;

__device__ __forceinline__ uint32_t score_key(float s) {
  if (isnan(s)) s = INFINITY;
  else if (s == -INFINITY) s = -FLT_MAX;
  else if (s == 0.0f) s = 0.0f;  // -0 -> +0
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // -FLT_MAX -> 0x00800000, so 0 is free for forced
}

__device__ __forceinline__ uint32_t element_key(const float* scores, const uint8_t* prev, int64_t i) {
  if (prev != nullptr && prev[i] == 0) return 0u;
  return score_key(scores[i]);
}

struct SelectState {
  uint32_t prefix;  // the digits of the k-th key chosen so far
  uint32_t need;    // how many keys with this prefix are still to be pruned
  uint32_t forced;  // forced positions in the group
  uint32_t unused;
};

// An over-full group is reported as (group << 32 | forced); atomicMin keeps the first group.
__device__ __forceinline__ void report_overfull(unsigned long long* status, int64_t group, uint32_t forced) {
  atomicMin(status, (static_cast<unsigned long long>(group) << 32) | forced);
}

struct ChunkRange {
  int64_t group, begin, end;
};
__device__ __forceinline__ ChunkRange chunk_range(int64_t chunk, int64_t group_size, int64_t chunks_per_group) {
  ChunkRange r;
  r.group = chunk / chunks_per_group;
  r.begin = r.group * group_size + (chunk % chunks_per_group) * kChunk;
  const int64_t group_end = (r.group + 1) * group_size;
  r.end = r.begin + kChunk < group_end ? r.begin + kChunk : group_end;
  return r;
}

__global__ void init_state(SelectState* state, int64_t groups, uint32_t k) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x)
    state[g] = SelectState{0u, k, 0u, 0u};
}

__global__ void __launch_bounds__(kThreads)
    radix_histogram(const float* __restrict__ scores, const uint8_t* __restrict__ prev, int64_t group_size,
                    int64_t chunks_per_group, SelectState* state, uint32_t* __restrict__ hist, int shift) {
  __shared__ uint32_t bins[kThreads];
  __shared__ uint32_t forced;
  const ChunkRange r = chunk_range(blockIdx.x, group_size, chunks_per_group);
  bins[threadIdx.x] = 0;
  if (threadIdx.x == 0) forced = 0;
  __syncthreads();
  const uint32_t prefix = state[r.group].prefix;
  const uint32_t high = shift >= 24 ? 0u : (0xFFFFFFFFu << (shift + 8));  // digits already fixed
  const bool first_pass = shift >= 24;
  uint32_t my_forced = 0;
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) {
    const uint32_t key = element_key(scores, prev, i);
    my_forced += key == 0u;
    if ((key & high) == (prefix & high)) atomicAdd(&bins[(key >> shift) & 255u], 1u);
  }
  if (first_pass && my_forced) atomicAdd(&forced, my_forced);
  __syncthreads();
  if (bins[threadIdx.x]) atomicAdd(&hist[r.group * kThreads + threadIdx.x], bins[threadIdx.x]);
  if (first_pass && threadIdx.x == 0 && forced) atomicAdd(&state[r.group].forced, forced);
}

__global__ void __launch_bounds__(kThreads)
    radix_choose(SelectState* __restrict__ state, uint32_t* __restrict__ hist, int shift, uint32_t k,
                 unsigned long long* __restrict__ status) {
  __shared__ typename BlockScan::TempStorage scan;
  const int64_t g = blockIdx.x;
  const SelectState s = state[g];
  const uint32_t count = hist[g * kThreads + threadIdx.x];
  hist[g * kThreads + threadIdx.x] = 0;  // clean for the next pass
  uint32_t inclusive;
  BlockScan(scan).InclusiveSum(count, inclusive);
  __syncthreads();  // every thread has read `s` before one of them rewrites it
  const uint32_t before = inclusive - count;
  // The digit of the k-th key: the first bin whose running count reaches `need` (bin 0 when need == 0).
  const bool chosen = s.need == 0 ? threadIdx.x == 0 : (before < s.need && inclusive >= s.need);
  if (chosen) {
    state[g].prefix = s.prefix | (uint32_t(threadIdx.x) << shift);
    state[g].need = s.need - before;
  }
  if (shift >= 24 && threadIdx.x == 0 && s.forced > k) report_overfull(status, g, s.forced);
}

__global__ void __launch_bounds__(kThreads)
    count_equal(const float* __restrict__ scores, const uint8_t* __restrict__ prev, int64_t group_size,
                int64_t chunks_per_group, const SelectState* __restrict__ state, uint32_t* __restrict__ chunk_equal) {
  const ChunkRange r = chunk_range(blockIdx.x, group_size, chunks_per_group);
  const uint32_t t = state[r.group].prefix;
  uint32_t n = 0;
  for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) n += element_key(scores, prev, i) == t;
  n = pt::cuda::block_sum(n);
  if (threadIdx.x == 0) chunk_equal[blockIdx.x] = n;
}

__global__ void __launch_bounds__(kThreads)
    mark_lowest(const float* __restrict__ scores, const uint8_t* __restrict__ prev, int64_t group_size,
                int64_t chunks_per_group, const SelectState* __restrict__ state,
                const uint32_t* __restrict__ chunk_equal, uint8_t* __restrict__ keep) {
  __shared__ typename BlockScan::TempStorage scan;
  const ChunkRange r = chunk_range(blockIdx.x, group_size, chunks_per_group);
  const uint32_t t = state[r.group].prefix, need = state[r.group].need;
  // Keys equal to T in the group's earlier chunks come first in index order.
  uint32_t running = 0;
  for (int64_t c = r.group * chunks_per_group + threadIdx.x; c < blockIdx.x; c += kThreads) running += chunk_equal[c];
  running = pt::cuda::block_sum(running);
  for (int64_t base = r.begin; base < r.end; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const bool valid = i < r.end;
    const uint32_t key = valid ? element_key(scores, prev, i) : 0xFFFFFFFFu;
    const bool equal = valid && key == t;
    uint32_t rank, tile_equal;
    BlockScan(scan).ExclusiveSum(equal ? 1u : 0u, rank, tile_equal);
    if (valid) keep[i] = (key < t || (equal && running + rank < need)) ? 0 : 1;
    running += tile_equal;
    __syncthreads();  // the scan's temp storage is reused by the next tile
  }
}

// Groups of at most kSmallGroupMax elements: a warp per 32 / size groups, one element per lane, keys in
// registers (the steps are in mask_small_groups.h). Forced positions of a group are counted with one ballot.
__global__ void __launch_bounds__(kThreads)
    select_small_groups(const float* __restrict__ scores, const uint8_t* __restrict__ prev, uint8_t* __restrict__ keep,
                        int64_t groups, int size, int k, unsigned long long* __restrict__ status) {
  const SmallGroupLane lane = small_group_lane(int(threadIdx.x & 31u), size);
  const int per_warp = kSmallGroupMax / size, first = lane.slot * size;
  const int64_t warps = (groups + per_warp - 1) / per_warp;
  const int64_t grid_warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); w < warps; w += grid_warps) {
    // w is the same on every lane of the warp: the shuffles and the ballot below see the full warp.
    const int64_t g = w * per_warp + lane.slot, i = g * size + lane.element;
    const bool active = lane.used && g < groups;
    const uint32_t key = active ? element_key(scores, prev, i) : 0xFFFFFFFFu;
    const uint32_t rank =
        rank_in_group(key, lane.element, size, [&](int q) { return __shfl_sync(0xFFFFFFFFu, key, first + q); });
    const uint32_t forced_lanes = __ballot_sync(0xFFFFFFFFu, active && key == 0u);
    if (!active) continue;
    keep[i] = rank < uint32_t(k) ? 0 : 1;
    const uint32_t group_lanes = (size == 32 ? 0xFFFFFFFFu : (1u << size) - 1u) << first;
    const uint32_t forced = uint32_t(__popc(forced_lanes & group_lanes));
    if (lane.element == 0 && forced > uint32_t(k)) report_overfull(status, g, forced);
  }
}

Tensor device_buffer(int64_t bytes) { return Tensor::empty({bytes > 0 ? bytes : 1}, DType::u8, Device::cuda); }

}  // namespace

OverfullGroup cuda_select_lowest_k(const float* scores, const uint8_t* prev_keep, uint8_t* keep, int64_t groups,
                                   int64_t group_size, int64_t k) {
  PT_CHECK(group_size <= int64_t(UINT32_MAX) && groups <= int64_t(UINT32_MAX), "select_mask (cuda): ", groups,
           " groups of ", group_size, " elements exceed the 32-bit counters of the radix select");
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor status_buf = device_buffer(sizeof(unsigned long long));
  auto* status = static_cast<unsigned long long*>(status_buf.data_ptr());
  PT_CUDA_CHECK(cudaMemsetAsync(status, 0xFF, sizeof(unsigned long long), stream));

  if (group_size <= kSmallGroupMax) {
    const int64_t warps = pt::cuda::ceil_div(groups, kSmallGroupMax / group_size);
    select_small_groups<<<pt::cuda::grid_for(warps * 32, kThreads), kThreads, 0, stream>>>(
        scores, prev_keep, keep, groups, int(group_size), int(k), status);
    PT_CUDA_CHECK_LAUNCH();
  } else {
    const int64_t chunks_per_group = (group_size + kChunk - 1) / kChunk;
    const int64_t chunks = groups * chunks_per_group;
    PT_CHECK(chunks <= int64_t(INT_MAX), "select_mask (cuda): ", chunks, " chunks exceed the grid limit");
    Tensor state_buf = device_buffer(groups * int64_t(sizeof(SelectState)));
    Tensor hist_buf = device_buffer(groups * kThreads * int64_t(sizeof(uint32_t)));
    Tensor equal_buf = device_buffer(chunks * int64_t(sizeof(uint32_t)));
    auto* state = static_cast<SelectState*>(state_buf.data_ptr());
    auto* hist = static_cast<uint32_t*>(hist_buf.data_ptr());
    auto* chunk_equal = static_cast<uint32_t*>(equal_buf.data_ptr());
    PT_CUDA_CHECK(cudaMemsetAsync(hist, 0, size_t(groups) * kThreads * sizeof(uint32_t), stream));
    init_state<<<pt::cuda::grid_for(groups), kThreads, 0, stream>>>(state, groups, uint32_t(k));
    PT_CUDA_CHECK_LAUNCH();
    for (int shift = 24; shift >= 0; shift -= 8) {
      radix_histogram<<<unsigned(chunks), kThreads, 0, stream>>>(scores, prev_keep, group_size, chunks_per_group,
                                                                state, hist, shift);
      PT_CUDA_CHECK_LAUNCH();
      radix_choose<<<unsigned(groups), kThreads, 0, stream>>>(state, hist, shift, uint32_t(k), status);
      PT_CUDA_CHECK_LAUNCH();
    }
    count_equal<<<unsigned(chunks), kThreads, 0, stream>>>(scores, prev_keep, group_size, chunks_per_group, state,
                                                          chunk_equal);
    PT_CUDA_CHECK_LAUNCH();
    mark_lowest<<<unsigned(chunks), kThreads, 0, stream>>>(scores, prev_keep, group_size, chunks_per_group, state,
                                                          chunk_equal, keep);
    PT_CUDA_CHECK_LAUNCH();
  }

  OverfullGroup result;
  if (prev_keep != nullptr) {  // only forced positions can over-fill a group: read the status word back
    unsigned long long word = 0;
    PT_CUDA_CHECK(cudaMemcpyAsync(&word, status, sizeof word, cudaMemcpyDeviceToHost, stream));
    pt::cuda::synchronize();
    if (word != kNoGroup) {
      result.group = int64_t(word >> 32);
      result.forced = int64_t(word & 0xFFFFFFFFull);
    }
  }
  return result;
}

kernels::Family<MaskSelect>::Variant mask_fused_variant() {
  return {{.name = "fused",
           .devices = {Device::cuda},
           .dtypes = {DType::f32},
           .summary = "a radix select per group; groups of at most 32 (N:M) one element per lane of a warp"},
          [](const MaskSelectArgs& a) {
            return cuda_select_lowest_k(a.scores.data<float>(),
                                        a.prev_keep.defined() ? a.prev_keep.data<uint8_t>() : nullptr,
                                        a.keep.data<uint8_t>(), a.scores.numel() / a.group_size, a.group_size, a.k);
          }};
}

}  // namespace pt::prune::detail
