"""The pruning algorithms as their papers and reference drivers run them in PyTorch, written for the baselines.

- Hessian: SparseGPT's running estimate H = 2/n · Σ XᵀX, rescaled as sequences arrive (n counts sequences).
- SparseGPT (Frantar & Alistarh 2023, Algorithm 1): damp H, take the upper Cholesky factor of H⁻¹, then sweep
  column blocks: choose the block's mask from w²/[H⁻¹]ᵢᵢ² (a threshold over the block, or the N smallest of
  every M), prune column by column while spreading each error over the block's remaining columns, and push
  the block's accumulated error onto all later columns with one matrix product.
- Wanda (Sun et al. 2024): score |W|·‖X_j‖₂ and remove the lowest fraction within each output row.
- Magnitude: remove the smallest |W| over the whole matrix (one threshold per matrix).
Each returns the pruned weight in place and a boolean mask of what was removed.
"""
import math

import torch


class Hessian:
    """H = 2/n · Σ_x xᵀx over n sequences, kept as a running mean so it never overflows."""

    def __init__(self, cols, device):
        self.H = torch.zeros(cols, cols, dtype=torch.float32, device=device)
        self.nsamples = 0

    def add_batch(self, x, sequences):
        x = x.reshape(-1, x.shape[-1]).float()
        self.H.mul_(self.nsamples / (self.nsamples + sequences))
        self.nsamples += sequences
        x = x * math.sqrt(2.0 / self.nsamples)
        self.H.addmm_(x.t(), x)


class WandaNorms:
    """Running mean over sequences of ‖X_j‖² per input column (Wanda's scaler_row)."""

    def __init__(self, cols, device):
        self.sq = torch.zeros(cols, dtype=torch.float32, device=device)
        self.nsamples = 0

    def add_batch(self, x, sequences):
        x = x.reshape(-1, x.shape[-1]).float()
        self.sq.mul_(self.nsamples / (self.nsamples + sequences))
        self.nsamples += sequences
        self.sq.add_(torch.linalg.vector_norm(x, dim=0) ** 2 / self.nsamples)


def _pattern_mask_for_block(w_blk, hinv_diag, sparsity):
    """Unstructured: prune the block's entries whose w²/d² lies at or under the sparsity quantile."""
    score = w_blk.square() / hinv_diag.square().unsqueeze(0)
    k = int(score.numel() * sparsity)
    thresh = torch.sort(score.flatten())[0][k]
    return score <= thresh


def sparsegpt(W, H, sparsity, prune_n=0, prune_m=0, blocksize=128, percdamp=0.01):
    """Prunes W [rows, cols] (float32, in place) with the Hessian H [cols, cols]; returns the pruned mask."""
    H = H.clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    H.diagonal().add_(damp)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    pruned = torch.zeros_like(W, dtype=torch.bool)

    for b0 in range(0, cols, blocksize):
        b1 = min(b0 + blocksize, cols)
        width = b1 - b0
        W1 = W[:, b0:b1].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[b0:b1, b0:b1]
        d1 = torch.diag(Hinv1)
        mask1 = (_pattern_mask_for_block(W1, d1, sparsity) if prune_n == 0
                 else torch.zeros_like(W1, dtype=torch.bool))
        for i in range(width):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prune_n != 0 and i % prune_m == 0:
                score = W1[:, i:i + prune_m].square() / d1[i:i + prune_m].square().unsqueeze(0)
                drop = torch.topk(score, prune_n, dim=1, largest=False)[1]
                mask1.scatter_(1, i + drop, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:].sub_(err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, b0:b1] = Q1
        pruned[:, b0:b1] = mask1
        W[:, b1:].sub_(Err1.matmul(Hinv[b0:b1, b1:]))
    return pruned


def wanda(W, norms_sq, sparsity):
    """Removes the lowest |W|·‖X_j‖ fraction of every row (in place); returns the pruned mask."""
    score = W.abs() * torch.sqrt(norms_sq).unsqueeze(0)
    k = int(W.shape[1] * sparsity)
    idx = torch.sort(score, dim=-1, stable=True)[1][:, :k]
    pruned = torch.zeros_like(W, dtype=torch.bool).scatter_(1, idx, True)
    W[pruned] = 0
    return pruned


def magnitude(W, sparsity):
    """Removes the smallest-|W| fraction of the whole matrix (in place); returns the pruned mask."""
    score = W.abs()
    thresh = torch.sort(score.flatten())[0][int(W.numel() * sparsity)]
    pruned = score <= thresh
    W[pruned] = 0
    return pruned
