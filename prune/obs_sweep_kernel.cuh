// The CUDA kernel of the in-block OBS sweep, shared by the variants that differ in how many lanes own a row:
// `fused` (obs_sweep.cu: a warp per row) and `two_rows` (obs_sweep_two_rows.cu: a half-warp per row).
//
// A group of LANES lanes owns one row at a time and keeps the row's B weights in registers, interleaved (lane l
// holds columns l, l+LANES, l+2·LANES, …: CPL = ceil(B/LANES) of them), so that for a fixed slot the lanes touch
// consecutive addresses of global and shared memory. The block's U1 sits in shared memory as a packed upper
// triangle (B(B+1)/2 floats: 33 KB for B = 128), loaded once per thread block and shared by its warps, which then
// walk over rows grid-stride. Per column i: the owner lane broadcasts w_i and its keep bit by shuffle (within the
// row's lanes), every lane computes the same err, and each lane updates its own columns > i from U1's row i. err
// is the same on every lane of a row, so skipping kept columns (err == 0) is a uniform branch there. N:M groups
// are chosen in the sweep: every lane ranks its columns of the group against all m of them (shuffled in), with
// the reference's order. With two rows per warp, both halves run the same trip counts (a half whose row is past
// the end computes on zeros and stores nothing), so every shuffle has the whole warp.
#pragma once
#include <cfloat>

#include "prune/obs_sweep.h"
#include "tensor/ops/cuda_common.cuh"

namespace pt::prune::detail::obs_sweep_cuda {

constexpr int kWarpsPerBlock = 8;
constexpr unsigned kFullMask = 0xffffffffu;

// Offset of U[i][i] in the packed upper triangle (row i holds U[i][i..B-1]).
__device__ __forceinline__ int packed_row(int i, int B) { return i * B - (i * (i - 1)) / 2; }

// The selection order of prune/mask (NaN -> +inf, -inf -> lowest finite, -0 -> +0).
__device__ __forceinline__ float canonical_score(float s) {
  if (isnan(s)) return INFINITY;
  if (s == -INFINITY) return -FLT_MAX;
  return s == 0.0f ? 0.0f : s;
}

// Register arrays are indexed with compile-time slots only (a runtime index would spill them to local memory).
template <int CPL> __device__ __forceinline__ float pick(const float (&v)[CPL], int slot) {
  float out = 0.0f;
#pragma unroll
  for (int s = 0; s < CPL; ++s)
    if (s == slot) out = v[s];
  return out;
}

// N:M in columns [i, i+m) of the lanes' row: a column is pruned when fewer than n columns of the group come
// before it (forced first, then w²/U[c,c]², then lower column).
template <int LANES, int CPL>
__device__ __forceinline__ void choose_nm_group(const float (&w)[CPL], uint32_t& keep_bits, uint32_t prev_bits,
                                                const float* u, int B, int lane, int i, int n, int m) {
  float mine[CPL];
  int rank[CPL];
#pragma unroll
  for (int s = 0; s < CPL; ++s) {
    const int c = s * LANES + lane;
    const float d = c < B ? u[packed_row(c, B)] : 1.0f;
    mine[s] = canonical_score((w[s] * w[s]) / (d * d));
    rank[s] = 0;
  }
  for (int j = 0; j < m; ++j) {
    const int cj = i + j, owner = cj % LANES, slot = cj / LANES;
    const float sj = __shfl_sync(kFullMask, pick(mine, slot), owner, LANES);
    const bool fj = (__shfl_sync(kFullMask, prev_bits, owner, LANES) >> slot) & 1u;
#pragma unroll
    for (int s = 0; s < CPL; ++s) {
      const int c = s * LANES + lane;
      const bool fc = (prev_bits >> s) & 1u;
      const bool before = fj != fc ? fj : (sj < mine[s] || (sj == mine[s] && cj < c));
      rank[s] += before;
    }
  }
#pragma unroll
  for (int s = 0; s < CPL; ++s) {
    const int c = s * LANES + lane;
    if (c >= i && c < i + m) keep_bits = rank[s] < n ? (keep_bits & ~(1u << s)) : (keep_bits | (1u << s));
  }
}

template <int LANES, int CPL>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    obs_sweep_kernel(float* __restrict__ W1, int64_t ldw, const float* __restrict__ U1, uint8_t* __restrict__ keep1,
                     float* __restrict__ Err1, float* __restrict__ loss_rows, const uint8_t* __restrict__ prev1,
                     int64_t rows, int B, int nm_n, int nm_m) {
  extern __shared__ float u[];  // packed upper triangle of U1
  for (int idx = threadIdx.x; idx < B * B; idx += blockDim.x) {
    const int r = idx / B, c = idx - r * B;
    if (c >= r) u[packed_row(r, B) + c - r] = U1[idx];
  }
  __syncthreads();

  constexpr int kRowsPerBlock = kWarpsPerBlock * (32 / LANES);
  const int lane = threadIdx.x % LANES;
  const int64_t groups_total = int64_t(gridDim.x) * kRowsPerBlock;
  // The loop bound is the same for every lane of a warp (rows are handed out a warp's worth at a time).
  const int64_t first = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / LANES;
  const int64_t warp_first = first - (threadIdx.x % 32) / LANES;
  for (int64_t base = warp_first, row = first; base < rows; base += groups_total, row += groups_total) {
    const bool live = row < rows;
    float* wrow = W1 + row * ldw;
    float w[CPL], err[CPL];
    uint32_t keep_bits = 0, prev_bits = 0;  // bit s: column s*LANES + lane
#pragma unroll
    for (int s = 0; s < CPL; ++s) {
      const int c = s * LANES + lane;
      const bool inside = live && c < B;
      w[s] = inside ? wrow[c] : 0.0f;
      err[s] = 0.0f;
      const bool kept = nm_m > 0 || (inside && keep1[row * B + c] != 0);
      const bool forced = prev1 != nullptr && inside && prev1[row * B + c] == 0;
      keep_bits |= uint32_t(kept) << s;
      prev_bits |= uint32_t(forced) << s;
    }
    float loss = 0.0f;
    for (int i = 0; i < B; ++i) {
      if (nm_m > 0 && i % nm_m == 0) choose_nm_group<LANES, CPL>(w, keep_bits, prev_bits, u, B, lane, i, nm_n, nm_m);
      const int owner = i % LANES, slot = i / LANES;
      const float wi = __shfl_sync(kFullMask, pick(w, slot), owner, LANES);
      const bool kept = (__shfl_sync(kFullMask, keep_bits, owner, LANES) >> slot) & 1u;
      const float* urow = u + packed_row(i, B) - i;  // urow[c] = U[i][c] for c >= i
      const float q = kept ? wi : 0.0f;
      const float e = (wi - q) / urow[i];
      if (e != 0.0f) {
#pragma unroll
        for (int s = 0; s < CPL; ++s) {
          const int c = s * LANES + lane;
          if (c > i && c < B) w[s] -= e * urow[c];
        }
      }
      if (lane == owner) {
#pragma unroll
        for (int s = 0; s < CPL; ++s)
          if (s == slot) {
            w[s] = q;  // exactly 0 where pruned
            err[s] = e;
          }
      }
      loss += e * e;
    }
    if (!live) continue;
#pragma unroll
    for (int s = 0; s < CPL; ++s) {
      const int c = s * LANES + lane;
      if (c < B) {
        wrow[c] = w[s];
        Err1[row * B + c] = err[s];
        if (nm_m > 0) keep1[row * B + c] = uint8_t((keep_bits >> s) & 1u);
      }
    }
    if (lane == 0) loss_rows[row] += 0.5f * loss;
  }
}

inline int multiprocessor_count() {
  int device = 0, sms = 0;
  PT_CUDA_CHECK(cudaGetDevice(&device));
  PT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

template <int LANES, int CPL>
void launch(const ObsSweepArgs& a) {
  const int B = int(a.W1.size(1)), n = int(a.pattern.is_nm() ? a.pattern.n : 0), m = int(a.pattern.is_nm() ? a.pattern.m : 0);
  const int64_t rows = a.W1.size(0);
  const size_t smem = size_t(B) * size_t(B + 1) / 2 * sizeof(float);
  if (smem > 48 * 1024)
    PT_CUDA_CHECK(cudaFuncSetAttribute(obs_sweep_kernel<LANES, CPL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)));
  static const int sms = multiprocessor_count();
  constexpr int kRowsPerBlock = kWarpsPerBlock * (32 / LANES);
  const int64_t wanted = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  const unsigned grid = unsigned(wanted < int64_t(sms) * 4 ? wanted : int64_t(sms) * 4);
  obs_sweep_kernel<LANES, CPL><<<grid, kWarpsPerBlock * 32, smem, pt::cuda::current_stream()>>>(
      a.W1.data<float>(), a.W1.stride(0), a.U1.data<float>(), a.keep1.data<uint8_t>(), a.Err1.data<float>(),
      a.loss_rows.data<float>(), a.prev_keep1.defined() ? a.prev_keep1.data<uint8_t>() : nullptr, rows, B, n, m);
  PT_CUDA_CHECK_LAUNCH();
}

// B <= 256 (U1 lives in shared memory): the registers per lane, CPL, are the smallest power of two that holds
// the row's share.
template <int LANES>
void sweep(const ObsSweepArgs& a, const char* variant) {
  const int64_t B = a.W1.size(1);
  PT_CHECK(B >= 1 && B <= 256, "obs_sweep_block (", variant, "): a block of ", B, " columns is outside the kernel's ",
           "1..256 (U1 lives in shared memory); use blocksize <= 256 or variant 'unfused'");
  const int64_t cpl = (B + LANES - 1) / LANES;
  if (cpl <= 1) launch<LANES, 1>(a);
  else if (cpl <= 2) launch<LANES, 2>(a);
  else if (cpl <= 4) launch<LANES, 4>(a);
  else if (cpl <= 8) launch<LANES, 8>(a);
  else launch<LANES, (LANES < 32 ? 16 : 8)>(a);
}

}  // namespace pt::prune::detail::obs_sweep_cuda
