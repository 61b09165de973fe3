#!/usr/bin/env python3
"""Golden fixture for prune/sparsegpt: an independent float64 PyTorch transcription of SparseGPT's fasterprune.

The algorithm (IST-DASLab/sparsegpt, written out again from the paper and shared/reference/pruning-anchors.md):
  dead columns (diag H == 0): H_dd = 1, W[:, d] = 0;  H += percdamp * mean(diag H) * I
  U = upper Cholesky factor of H^-1 (cholesky -> cholesky_inverse -> cholesky(upper=True))
  for each block of `blocksize` columns [i1, i2):
    unstructured: prune exactly k_j of the block's rows*B weights with the lowest W1^2 / U_cc^2 (W1 = the block as
      already updated by earlier blocks), k_j = clamp(C_j - S, P_j, T - S - P_after) with T = pruned_count(rows*cols),
      C_j = pruned_count(rows*i2), S = pruned in earlier blocks, P = positions forced by prev_keep (here / later)
    for each column i of the block:
      N:M: at i % m == 0 prune the n lowest W1^2 / U_cc^2 of columns [i, i+m) of each row (current W1)
      q = w with pruned entries 0;  err = (w - q) / U_ii;  W1[:, i:] -= err x U[i, i:];  W1[:, i] = q
      loss += (w - q)^2 / U_ii^2 / 2
    W[:, i2:] -= Err1 @ U[i1:i2, i2:]
  Order of selection (the C++ rule): forced positions (prev_keep == 0) first, then score ascending, then lower
  row-major index in the group (a stable sort).
  pruned_count(numel, s) = floor(s * numel + 1e-9).

Layers (float32 inputs; everything computed in float64 from them):
  A: 64 x 256 (two full blocks of 128), B: 96 x 192 (a full block and a partial one of 64).
  Calibration: 16 sequences x 32 tokens with correlated columns (a random mixing matrix) and uneven feature
  scales, one dead input column per layer; H is the running average over batches of 4 sequences,
  H *= n/(n+b); n += b; H += (2/n) X^T X, as SparseGPT.add_batch does.

Writes tests/golden/sparsegpt/sparsegpt_layers.safetensors:
  {A,B}.H (f32 [cols, cols]), {A,B}.W (f32 [rows, cols]) the inputs
  {A,B}.{u50,u70,nm24}.weight / .keep (u8, 1 = kept) / .loss (f64 [1]) the pruned results
  A.persist70.*: input A.u50.weight with prev_keep A.u50.keep, pruned to 70% (mask persistence)
Settings are in the file's __metadata__.

Run: python3 tests/golden/make_sparsegpt_golden.py   (needs torch and safetensors; takes a few seconds)
"""
import math
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "sparsegpt", "sparsegpt_layers.safetensors")

BLOCKSIZE, PERCDAMP = 128, 0.01
NSEQ, SEQLEN, BATCH_SEQ = 16, 32, 4


def pruned_count(numel, sparsity):
    return min(numel, int(math.floor(sparsity * numel + 1e-9)))


def lowest_k(scores, forced, k):
    """Bool mask of the k positions pruned among the last dim: forced first, then score, then lower index."""
    key = scores.clone()
    key[forced] = -math.inf
    order = torch.sort(key, dim=-1, stable=True).indices[..., :k]
    pruned = torch.zeros_like(forced)
    pruned.scatter_(-1, order, True)
    assert bool((pruned | ~forced).all()), "a forced position was not pruned"
    return pruned


def sparsegpt(W, H, sparsity, n=0, m=0, prev_keep=None, blocksize=BLOCKSIZE, percdamp=PERCDAMP):
    W = W.double().clone()
    H = H.double().clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=torch.float64)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    forced = torch.zeros(rows, cols, dtype=torch.bool) if prev_keep is None else prev_keep == 0
    starts = list(range(0, cols, blocksize))
    forced_per_block = [int(forced[:, i1:i1 + blocksize].sum()) for i1 in starts]
    total = pruned_count(rows * cols, sparsity)
    pruned_so_far = 0
    keep = torch.ones(rows, cols, dtype=torch.bool)
    loss = 0.0
    for j, i1 in enumerate(starts):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        F1 = forced[:, i1:i2]
        d1 = torch.diag(U1)
        Err1 = torch.zeros_like(W1)
        if m == 0:
            after = sum(forced_per_block[j + 1:])
            k = pruned_count(rows * i2, sparsity) - pruned_so_far
            k = max(forced_per_block[j], min(k, total - pruned_so_far - after))
            tmp = W1 ** 2 / d1.reshape(1, -1) ** 2
            pruned1 = lowest_k(tmp.flatten(), F1.flatten(), k).reshape(W1.shape)
            pruned_so_far += k
        else:
            pruned1 = torch.zeros_like(F1)
        for i in range(i2 - i1):
            if m != 0 and i % m == 0:
                tmp = W1[:, i:i + m] ** 2 / d1[i:i + m].reshape(1, -1) ** 2
                pruned1[:, i:i + m] = lowest_k(tmp, F1[:, i:i + m], n)
            w = W1[:, i].clone()
            d = U1[i, i]
            q = w.clone()
            q[pruned1[:, i]] = 0
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)
            W1[:, i] = q
            Err1[:, i] = err
            loss += float(((w - q) ** 2 / d ** 2).sum()) / 2
        W[:, i1:i2] = W1
        keep[:, i1:i2] = ~pruned1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    if m == 0:
        assert int((~keep).sum()) == total
    else:
        assert bool(((~keep).reshape(rows, -1, m).sum(-1) == n).all())
    assert bool((W[~keep] == 0).all())
    return W.float(), keep.to(torch.uint8), torch.tensor([loss], dtype=torch.float64)


def calibration_hessian(cols, dead_col, gen):
    """Running-average Hessian of correlated inputs with uneven scales and one dead column (float64)."""
    mixing = torch.eye(cols, dtype=torch.float64) + 0.4 * torch.randn(cols, cols, generator=gen, dtype=torch.float64) / math.sqrt(cols)
    scales = torch.exp(0.5 * torch.randn(cols, generator=gen, dtype=torch.float64))
    H = torch.zeros(cols, cols, dtype=torch.float64)
    nsamples = 0
    for _ in range(NSEQ // BATCH_SEQ):
        X = (torch.randn(BATCH_SEQ * SEQLEN, cols, generator=gen, dtype=torch.float64) @ mixing) * scales
        X[:, dead_col] = 0
        H *= nsamples / (nsamples + BATCH_SEQ)
        nsamples += BATCH_SEQ
        H += (2 / nsamples) * X.t() @ X
    return H.float()


def main():
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(20240611)
    tensors = {}
    for name, rows, cols, dead_col in (("A", 64, 256, 37), ("B", 96, 192, 150)):
        H = calibration_hessian(cols, dead_col, gen)
        W = (torch.randn(rows, cols, generator=gen, dtype=torch.float64) / math.sqrt(cols)).float()
        tensors[f"{name}.H"] = H
        tensors[f"{name}.W"] = W
        for case, sparsity, n, m in (("u50", 0.5, 0, 0), ("u70", 0.7, 0, 0), ("nm24", 0.5, 2, 4)):
            w, keep, loss = sparsegpt(W, H, sparsity, n, m)
            tensors[f"{name}.{case}.weight"], tensors[f"{name}.{case}.keep"], tensors[f"{name}.{case}.loss"] = w, keep, loss
        if name == "A":  # mask persistence: the 50% result pruned further to 70%
            w, keep, loss = sparsegpt(tensors["A.u50.weight"], H, 0.7, prev_keep=tensors["A.u50.keep"])
            assert bool((keep <= tensors["A.u50.keep"]).all())
            tensors["A.persist70.weight"], tensors["A.persist70.keep"], tensors["A.persist70.loss"] = w, keep, loss
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {"blocksize": str(BLOCKSIZE), "percdamp": str(PERCDAMP), "nsamples": str(NSEQ), "seqlen": str(SEQLEN),
            "torch": torch.__version__}
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT, metadata=meta)
    for k in sorted(tensors):
        if k.endswith(".loss"):
            print(f"{k}: {tensors[k].item():.6g}")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
