"""The rows of `make compare`: one list feeds both sides (the driver sends each row's kind and params to the
project's compare_cases and to the PyTorch worker alike), so the two can only ever run the same shapes.

A row: name, kind (a case both workers implement), params, iters (timed iterations per round), rounds, and
optionally goal (the ratio project/PyTorch the row must reach; 1.0 when absent), tokens (per iteration, for
tokens/s), flops (per iteration, for FLOP/s and, on CUDA, MFU), and dense_params (for the 6·N FLOP count).
--quick swaps every shape for a tiny one (CI runs it so the harness cannot rot); the numbers it prints mean nothing.
"""

SHAPES = {
    "tiny": dict(vocab=512, hidden=64, layers=2, heads=2, ffn=256, ctx=64),
    "opt-mini": dict(vocab=50272, hidden=256, layers=4, heads=4, ffn=1024, ctx=256),
    "opt-125m": dict(vocab=50272, hidden=768, layers=12, heads=12, ffn=3072, ctx=2048),
    "opt-1.3b": dict(vocab=50272, hidden=2048, layers=24, heads=32, ffn=8192, ctx=2048),
}


def _shape(name, **extra):
    return {**SHAPES[name], **extra}


def _train_flops(shape, tokens, seqlen):
    """6·N·tokens for the matrices plus the attention scores (PaLM's 12·L·C·T per token)."""
    c, layers, ffn, vocab = shape["hidden"], shape["layers"], shape["ffn"], shape["vocab"]
    n_matmul = layers * (4 * c * c + 2 * c * ffn) + vocab * c
    return 6.0 * n_matmul * tokens + 12.0 * layers * c * seqlen * tokens


def _row(name, kind, params, iters=1, rounds=5, **extra):
    return {"name": name, "kind": kind, "params": params, "iters": iters, "rounds": rounds, **extra}


def _train_row(name, shape, batch, seqlen, rounds, **p):
    params = _shape(shape, batch=batch, seqlen=seqlen, dropout=0.1, lr=1e-5, weight_decay=0.01, **p)
    return _row(name, "train_step", params, 1, rounds, tokens=batch * seqlen,
                flops=_train_flops(SHAPES[shape], batch * seqlen, seqlen))


def _ppl_row(name, shape, batch, seqlen, rounds, goal=None, **p):
    row = _row(name, "perplexity", _shape(shape, batch=batch, seqlen=seqlen, **p), 1, rounds,
               tokens=batch * seqlen, flops=_train_flops(SHAPES[shape], batch * seqlen, seqlen) / 3)
    if goal:
        row["goal"] = goal
    return row


def _sparse_linear_rows(out_f, in_f, tokens_list, dtype, formats):
    rows = []
    for tokens in tokens_list:
        for fmt, sparsity in formats:
            pct = f" {int(sparsity * 100)}%" if fmt in ("csr", "bitmap") else ""
            rows.append(_row(f"sparse_linear {fmt}{pct} {out_f}x{in_f} t{tokens}", "sparse_linear",
                             dict(out=out_f, **{"in": in_f}, tokens=tokens, format=fmt, sparsity=sparsity,
                                  dtype=dtype), iters=20 if tokens <= 16 else 5, rounds=5,
                             flops=2.0 * tokens * out_f * in_f))
    return rows


def cpu_rows():
    return [
        _train_row("train_step opt-mini 8x256", "opt-mini", 8, 256, 5),
        _train_row("train_step opt-125m 1x512", "opt-125m", 1, 512, 3),
        _ppl_row("perplexity opt-125m 1x2048", "opt-125m", 1, 2048, 3, goal=0.9),
        _row("sparsegpt_matrix 2048x2048 50%", "sparsegpt_matrix", dict(rows=2048, cols=2048, sparsity=0.5), 1, 5),
        _row("sparsegpt_matrix 2048x2048 2:4", "sparsegpt_matrix", dict(rows=2048, cols=2048, prune_n=2, prune_m=4),
             1, 3),
        _row("prune_model sparsegpt opt-mini 16x256", "prune_model",
             _shape("opt-mini", method="sparsegpt", nsamples=16, seqlen=256, forward_batch=4), 1, 3),
        _row("prune_model wanda opt-mini 16x256", "prune_model",
             _shape("opt-mini", method="wanda", nsamples=16, seqlen=256, forward_batch=4), 1, 3),
        _row("hessian 2048 tokens x 768", "hessian", dict(tokens=2048, cols=768), 5, 5,
             flops=2.0 * 2048 * 768 * 768),
        _row("wanda_matrix 3072x768 (2048 tokens)", "wanda_matrix", dict(rows=3072, cols=768, tokens=2048), 5, 5),
        _row("magnitude_matrix 3072x768", "magnitude_matrix", dict(rows=3072, cols=768), 5, 5),
        _row("adamw opt-125m", "adamw", _shape("opt-125m"), 3, 5),
        _row("adamw opt-125m masked", "adamw", _shape("opt-125m", masked=True), 3, 5),
        _row("matmul 2048^3 f32", "matmul", dict(m=2048, n=2048, k=2048), 3, 5, flops=2.0 * 2048 ** 3),
        *_sparse_linear_rows(2048, 2048, [1, 16], "f32",
                             [("dense", 0.0), ("csr", 0.9), ("bitmap", 0.9), ("2of4", 0.5)]),
    ]


def cuda_rows():
    """The GPU kit's rows (scripts/gpu_check.sh): OPT-1.3B shapes, bf16 fine-tuning, fused against unfused."""
    rows = [
        _train_row("train_step bf16 opt-125m 8x2048", "opt-125m", 8, 2048, 5, autocast_bf16=True),
        _train_row("train_step bf16 opt-1.3b 4x2048", "opt-1.3b", 4, 2048, 3, autocast_bf16=True),
        _ppl_row("perplexity f32 opt-125m 8x2048", "opt-125m", 8, 2048, 5, goal=0.9),
        _ppl_row("perplexity bf16 opt-1.3b 8x2048", "opt-1.3b", 8, 2048, 5, goal=0.9, dtype="bf16"),
    ]
    for kernel in ("fused", "unfused"):
        rows += [
            _row(f"prune_model sparsegpt {kernel} opt-1.3b 4 layers 32x2048", "prune_model",
                 _shape("opt-1.3b", layers=4, method="sparsegpt", nsamples=32, seqlen=2048, forward_batch=8,
                        kernel=kernel), 1, 3),
            _row(f"sparsegpt_matrix {kernel} 8192x2048 50%", "sparsegpt_matrix",
                 dict(rows=8192, cols=2048, sparsity=0.5, kernel=kernel), 3, 5),
            _row(f"sparsegpt_matrix {kernel} 2048x8192 2:4", "sparsegpt_matrix",
                 dict(rows=2048, cols=8192, prune_n=2, prune_m=4, kernel=kernel), 1, 5),
            _row(f"adamw {kernel} opt-1.3b masked", "adamw", _shape("opt-1.3b", masked=True, kernel=kernel), 5, 5),
        ]
    rows += [
        _row("adamw fused opt-1.3b", "adamw", _shape("opt-1.3b", kernel="fused"), 5, 5),
        _row("hessian 2048 tokens x 8192", "hessian", dict(tokens=2048, cols=8192), 10, 5,
             flops=2.0 * 2048 * 8192 * 8192),
        _row("wanda_matrix 8192x2048 (2048 tokens)", "wanda_matrix", dict(rows=8192, cols=2048, tokens=2048), 10, 5),
        _row("magnitude_matrix 8192x2048", "magnitude_matrix", dict(rows=8192, cols=2048), 10, 5),
        _row("matmul 8192^3 bf16", "matmul", dict(m=8192, n=8192, k=8192, dtype="bf16"), 10, 5,
             flops=2.0 * 8192 ** 3),
        *_sparse_linear_rows(8192, 2048, [1, 16, 2048], "f16",
                             [("dense", 0.0), ("csr", 0.9), ("bitmap", 0.9), ("2of4", 0.5)]),
    ]
    return rows


def quick_rows(device):
    """Every kind once on tiny shapes: seconds in all."""
    t = "tiny"
    rows = [
        _train_row("train_step tiny 2x32", t, 2, 32, 2, autocast_bf16=device == "cuda"),
        _ppl_row("perplexity tiny 2x64", t, 2, 64, 2),
        _row("sparsegpt_matrix 64x128 50%", "sparsegpt_matrix", dict(rows=64, cols=128, sparsity=0.5), 1, 2),
        _row("sparsegpt_matrix 64x128 2:4", "sparsegpt_matrix", dict(rows=64, cols=128, prune_n=2, prune_m=4), 1, 2),
        _row("prune_model sparsegpt tiny 4x32", "prune_model",
             _shape(t, method="sparsegpt", nsamples=4, seqlen=32, forward_batch=2), 1, 2),
        _row("prune_model wanda tiny 4x32", "prune_model",
             _shape(t, method="wanda", nsamples=4, seqlen=32, forward_batch=2), 1, 2),
        _row("prune_model magnitude tiny", "prune_model", _shape(t, method="magnitude", nsamples=4, seqlen=32), 1, 2),
        _row("hessian 64 tokens x 128", "hessian", dict(tokens=64, cols=128), 2, 2),
        _row("wanda_matrix 96x128", "wanda_matrix", dict(rows=96, cols=128, tokens=64), 2, 2),
        _row("magnitude_matrix 96x128", "magnitude_matrix", dict(rows=96, cols=128), 2, 2),
        _row("adamw tiny", "adamw", _shape(t), 2, 2),
        _row("adamw tiny masked", "adamw", _shape(t, masked=True), 2, 2),
        _row("matmul 128^3", "matmul", dict(m=128, n=128, k=128), 2, 2),
    ]
    for fmt, sp in [("dense", 0.0), ("csr", 0.9), ("bitmap", 0.9), ("2of4", 0.5)]:
        rows.append(_row(f"sparse_linear {fmt} 64x128 t4", "sparse_linear",
                         dict(out=64, **{"in": 128}, tokens=4, format=fmt, sparsity=sp,
                              dtype="f16" if device == "cuda" else "f32"), 2, 2))
    return rows


def rows_for(device, quick):
    if quick:
        return quick_rows(device)
    return cuda_rows() if device == "cuda" else cpu_rows()
