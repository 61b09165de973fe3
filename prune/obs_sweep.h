// The in-block OBS sweep of SparseGPT: for each column i of a block of B columns, in order,
//   q = w with pruned entries 0;  err = (w - q) / U[i,i];  W1[:, i:] -= err ⊗ U[i, i:];  loss += (w-q)²/U[i,i]²/2
// where U is the upper Cholesky factor of H⁻¹. Rows are independent. For N:M the mask is chosen inside the
// sweep: at every column i with i % m == 0, the n lowest W1[r, c]² / U[c,c]² over c in [i, i+m) of the CURRENT
// W1 (forced positions first, ties by lower column).
//
// Kernels (one function, three implementations):
//   reference  CPU loops, one row at a time
//   unfused    a few tensor ops per column, like the PyTorch inner loop (any device)
//   fused      one CUDA kernel per block: U1 in shared memory, one warp per row with the row's B weights in
//              registers, err broadcast by shuffle, N:M chosen inside the kernel
#pragma once
#include "prune/pattern.h"
#include "tensor/tensor.h"

namespace pt::prune {

// W1       f32 [rows, B], unit column stride (a column block of W is fine), updated in place; on return column
//          i holds q: the kept weights after the updates of columns < i, pruned entries exactly 0.
// U1       f32 [B, B], the block's diagonal block of U (only its upper triangle is read).
// keep1    u8 [rows, B] contiguous. Unstructured: the block's mask, chosen before the sweep (read only).
//          N:M: written with the mask chosen inside the sweep.
// Err1     f32 [rows, B] contiguous, written: err of every column (0 where kept).
// loss_rows f32 [rows]: += Σ over the block's columns of (w-q)² / U[i,i]² / 2.
// prev_keep1 u8 [rows, B] or undefined; N:M only (its zeros are forced; more than n in a group is an error).
//          Unstructured callers put forced positions into keep1 themselves.
// All on one device. B % m == 0 for N:M.
void obs_sweep_block(const Tensor& W1, const Tensor& U1, const Tensor& keep1, const Tensor& Err1,
                     const Tensor& loss_rows, const SparsityPattern& pattern, const Tensor& prev_keep1 = {},
                     PruneKernel kernel = PruneKernel::fused);

namespace detail {
#if PT_CUDA
// The fused kernel's launcher (obs_sweep.cu). ldw: row stride of W1 in elements; U1 contiguous [B, B];
// prev_keep1 may be null (its groups were checked by the caller); nm_n = nm_m = 0 for unstructured. B <= 256.
void cuda_obs_sweep_block(float* W1, int64_t ldw, const float* U1, uint8_t* keep1, float* Err1, float* loss_rows,
                          const uint8_t* prev_keep1, int64_t rows, int64_t B, int64_t nm_n, int64_t nm_m);
#endif
}  // namespace detail

}  // namespace pt::prune
