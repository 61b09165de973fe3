// The in-block OBS sweep of SparseGPT: for each column i of a block of B columns, in order,
//   q = w with pruned entries 0;  err = (w - q) / U[i,i];  W1[:, i:] -= err ⊗ U[i, i:];  loss += (w-q)²/U[i,i]²/2
// where U is the upper Cholesky factor of H⁻¹. Rows are independent. For N:M the mask is chosen inside the
// sweep: at every column i with i % m == 0, the n lowest W1[r, c]² / U[c,c]² over c in [i, i+m) of the CURRENT
// W1 (forced positions first, ties by lower column).
//
// The variants of the kernel family obs_sweep (prune/kernel_families.cpp registers them):
//   reference  CPU loops, one row at a time (rows in parallel)
//   unfused    a few tensor ops per column, like the PyTorch inner loop (any device)
//   fused      one CUDA kernel per block: U1 in shared memory, one warp per row with the row's B weights in
//              registers, err broadcast by shuffle, N:M chosen inside the kernel
//   two_rows   the same kernel with a half-warp per row: two rows per warp, twice the registers per lane
//              (prune/obs_sweep_two_rows.cu)
#pragma once
#include "prune/pattern.h"
#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::prune {

// What a variant receives, checked by obs_sweep_block: the arguments below, U1 contiguous, prev_keep1 contiguous
// and defined only for N:M.
struct ObsSweepArgs {
  Tensor W1, U1, keep1, Err1, loss_rows, prev_keep1;
  SparsityPattern pattern;
};
using ObsSweep = void(const ObsSweepArgs&);
kernels::Family<ObsSweep>& obs_sweep_family();

// W1       f32 [rows, B], unit column stride (a column block of W is fine), updated in place; on return column
//          i holds q: the kept weights after the updates of columns < i, pruned entries exactly 0.
// U1       f32 [B, B], the block's diagonal block of U (only its upper triangle is read).
// keep1    u8 [rows, B] contiguous. Unstructured: the block's mask, chosen before the sweep (read only).
//          N:M: written with the mask chosen inside the sweep.
// Err1     f32 [rows, B] contiguous, written: err of every column (0 where kept).
// loss_rows f32 [rows]: += Σ over the block's columns of (w-q)² / U[i,i]² / 2.
// prev_keep1 u8 [rows, B] or undefined; N:M only (its zeros are forced; more than n in a group is an error).
//          Unstructured callers put forced positions into keep1 themselves.
// All on one device. B % m == 0 for N:M. `variant` names an obs_sweep_family() variant ("" = its selection).
void obs_sweep_block(const Tensor& W1, const Tensor& U1, const Tensor& keep1, const Tensor& Err1,
                     const Tensor& loss_rows, const SparsityPattern& pattern, const Tensor& prev_keep1 = {},
                     const std::string& variant = "");

}  // namespace pt::prune
