"""Kernel cases of `make compare`, PyTorch side: the AdamW step, a matrix product and a pruned Linear.

AdamW: the parameter tensors of an OPT model (real per-tensor shapes), fixed random gradients, one
torch.optim.AdamW(fused=True) step per iteration, weight decay on matrices only. Masked: what a PyTorch
training loop does to keep pruned weights at zero, gradients multiplied by the keep-mask before the step
(with zero moments a pruned weight then stays exactly 0.0 under decoupled decay, as in the project).
Pruned Linear: y = x·(W⊙M)ᵀ + b with the torch form that matches the project's packed form where torch has
one (CSR: a sparse CSR weight; 2:4 on CUDA: to_sparse_semi_structured), else the dense product a torch user
would run (reported in info["torch_form"]).
"""
import torch


def opt_param_shapes(p):
    """(shape, is_pruned_matrix) of every parameter tensor of an OPT decoder, embeddings included."""
    h, f = p["hidden"], p["ffn"]
    specs = []
    if p.get("embeddings", True):
        specs += [((p["vocab"], h), False), ((p["ctx"] + 2, h), False)]
    for _ in range(p["layers"]):
        for _ in range(4):  # q, k, v, out
            specs += [((h, h), True), ((h,), False)]
        specs += [((h,), False), ((h,), False)]
        specs += [((f, h), True), ((f,), False), ((h, f), True), ((h,), False)]
        specs += [((h,), False), ((h,), False)]
    if p.get("embeddings", True):
        specs += [((h,), False), ((h,), False)]
    return specs


class AdamWCase:
    def __init__(self, p, device):
        g = torch.Generator().manual_seed(0)
        decay, no_decay, self.masked = [], [], []
        for shape, prunable in opt_param_shapes(p):
            w = torch.nn.Parameter(((torch.rand(*shape, generator=g) - 0.5) * 0.1).to(device))
            w.grad = ((torch.rand(*shape, generator=g) - 0.5) * 2e-3).to(device)
            (decay if len(shape) == 2 else no_decay).append(w)
            if p.get("masked", False) and prunable:
                keep = (torch.rand(*shape, generator=g) >= 0.5).to(device)
                w.data.mul_(keep)
                self.masked.append((w, keep))
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.get("weight_decay", 0.01)},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=p.get("lr", 1e-3), fused=True)
        self.info = {"parameters": sum(q.numel() for q in decay + no_decay)}

    def run(self):
        for w, keep in self.masked:
            w.grad.mul_(keep)
        self.opt.step()
        return {}

    def check(self, _):
        if not self.masked:
            return {}
        bad = sum(int((w[~keep] != 0).sum()) for w, keep in self.masked)
        return {"pruned_nonzero": float(bad)}


class MatmulCase:
    def __init__(self, p, device):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[p.get("dtype", "f32")]
        g = torch.Generator().manual_seed(1)
        self.a = torch.randn(p["m"], p["k"], generator=g).to(device, dtype)
        self.b = torch.randn(p["k"], p["n"], generator=g).to(device, dtype)

    def run(self):
        self.c = torch.mm(self.a, self.b)
        return {}


class SparseLinearCase:
    def __init__(self, p, device):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[p.get("dtype", "f32")]
        g = torch.Generator().manual_seed(42)
        out_f, in_f, form = p["out"], p["in"], p["format"]
        w = torch.randn(out_f, in_f, generator=g) * 0.02
        u = torch.rand(out_f, in_f, generator=g)
        if form == "2of4":  # keep the 2 largest u of every 4
            groups = u.reshape(-1, 4)
            keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.topk(2, dim=1)[1], True)
            keep = keep.reshape(out_f, in_f)
        else:
            keep = u >= p.get("sparsity", 0.0)
        w = (w * keep).to(device, dtype)
        self.x = torch.randn(p["tokens"], in_f, generator=g).to(device, dtype)
        self.bias = (torch.randn(out_f, generator=g) * 0.1).to(device, dtype)
        self.form = "dense"
        if form == "csr":
            self.w, self.form = w.to_sparse_csr(), "csr"
        elif form == "2of4" and device.type == "cuda":
            from torch.sparse import to_sparse_semi_structured
            self.w, self.form = to_sparse_semi_structured(w), "2:4 semi-structured"
        else:
            self.w = w
        self.info = {"torch_form": self.form}

    def run(self):
        if self.form == "csr":
            self.y = (self.w @ self.x.t()).t() + self.bias  # the fastest CSR form on the CPU (sparse @ dense)
        else:
            self.y = torch.nn.functional.linear(self.x, self.w, self.bias)
        return {}


KERNEL_CASES = {
    "adamw": AdamWCase,
    "matmul": MatmulCase,
    "sparse_linear": SparseLinearCase,
}
