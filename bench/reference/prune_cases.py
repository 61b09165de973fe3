"""Pruning cases of `make compare`, PyTorch side: the Hessian build, SparseGPT / Wanda / magnitude on one matrix,
and a whole model pruned layer by layer with calibration (the reference drivers' sequential loop).

Each case class takes the params the driver sent (the same ones the C++ side gets) and a torch.device;
run() does one timed iteration and returns a dict of values the driver checks against the other side.
"""
import torch

import algorithms
from opt_cases import make_hf_model, random_ids


def _normal(shape, seed, device, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * std).to(device)


def _hessian_of_random_inputs(cols, tokens, device):
    h = algorithms.Hessian(cols, device)
    h.add_batch(_normal((tokens, cols), 1, device), 1)
    return h.H


def _sparsity(pruned):
    return float(pruned.float().mean().item())


class HessianCase:
    """One calibration batch [tokens, cols] added to a running Hessian."""

    def __init__(self, p, device):
        self.x = _normal((p["tokens"], p["cols"]), 2, device)
        self.acc = algorithms.Hessian(p["cols"], device)
        self.sequences = p.get("sequences", 1)

    def run(self):
        self.acc.add_batch(self.x, self.sequences)
        return {}


class SparseGptMatrixCase:
    """SparseGPT on one [rows, cols] weight, the Hessian precomputed (what fasterprune() times)."""

    def __init__(self, p, device):
        self.W0 = _normal((p["rows"], p["cols"]), 5, device)
        self.W = self.W0.clone()
        self.H = _hessian_of_random_inputs(p["cols"], p.get("calib_tokens", 2 * p["cols"]), device)
        self.sparsity = p.get("sparsity", 0.5)
        self.n, self.m = p.get("prune_n", 0), p.get("prune_m", 0)
        self.blocksize = p.get("blocksize", 128)

    def run(self):
        self.W.copy_(self.W0)
        pruned = algorithms.sparsegpt(self.W, self.H, self.sparsity, self.n, self.m, self.blocksize)
        return {"sparsity": _sparsity(pruned)}


class WandaMatrixCase:
    """Wanda on one weight: the input norms of one calibration batch, the scores, the per-row mask, applied."""

    def __init__(self, p, device):
        self.W0 = _normal((p["rows"], p["cols"]), 6, device)
        self.W = self.W0.clone()
        self.x = _normal((p["tokens"], p["cols"]), 7, device)
        self.sparsity = p.get("sparsity", 0.5)

    def run(self):
        self.W.copy_(self.W0)
        norms = algorithms.WandaNorms(self.W.shape[1], self.W.device)
        norms.add_batch(self.x, 1)
        pruned = algorithms.wanda(self.W, norms.sq, self.sparsity)
        return {"sparsity": _sparsity(pruned)}


class MagnitudeMatrixCase:
    def __init__(self, p, device):
        self.W0 = _normal((p["rows"], p["cols"]), 8, device)
        self.W = self.W0.clone()
        self.sparsity = p.get("sparsity", 0.5)

    def run(self):
        self.W.copy_(self.W0)
        pruned = algorithms.magnitude(self.W, self.sparsity)
        return {"sparsity": _sparsity(pruned)}


class _StopForward(Exception):
    pass


class _InputCatcher(torch.nn.Module):
    """Stands in for decoder layer 0 to capture its inputs and keyword arguments, then stops the forward."""

    def __init__(self, inner, store):
        super().__init__()
        self.inner, self.store = inner, store

    def forward(self, hidden_states, *args, **kwargs):
        self.store["inputs"].append(hidden_states)
        self.store["kwargs"] = kwargs
        raise _StopForward


def _layer_forward(layer, x, kwargs):
    out = layer(x, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def prune_opt_sequential(model, ids, method, sparsity, forward_batch):
    """Prunes every Linear of every decoder layer in order; each layer sees the outputs of the pruned layers
    before it. Returns the fraction of decoder Linear weights that are zero."""
    layers = model.model.decoder.layers
    if method == "magnitude":  # needs no calibration data
        for layer in layers:
            for mod in layer.modules():
                if isinstance(mod, torch.nn.Linear):
                    algorithms.magnitude(mod.weight.data, sparsity)
        return _decoder_sparsity(layers)
    store = {"inputs": [], "kwargs": None}
    layers[0] = _InputCatcher(layers[0], store)
    try:
        for chunk in ids.split(forward_batch):
            try:
                model(chunk)
            except _StopForward:
                pass
    finally:
        layers[0] = layers[0].inner
    inputs, kwargs = store["inputs"], store["kwargs"]
    for layer in layers:
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        stat_kind = algorithms.Hessian if method == "sparsegpt" else algorithms.WandaNorms
        stats = {n: stat_kind(m.in_features, m.weight.device) for n, m in linears.items()}
        hooks = [m.register_forward_hook(lambda mod, inp, out, s=stats[n]: s.add_batch(inp[0], inp[0].shape[0]))
                 for n, m in linears.items()]
        for x in inputs:
            _layer_forward(layer, x, kwargs)
        for h in hooks:
            h.remove()
        for n, m in linears.items():
            if method == "sparsegpt":
                algorithms.sparsegpt(m.weight.data, stats[n].H, sparsity)
            else:
                algorithms.wanda(m.weight.data, stats[n].sq, sparsity)
        inputs = [_layer_forward(layer, x, kwargs) for x in inputs]
    return _decoder_sparsity(layers)


def _decoder_sparsity(layers):
    zero = total = 0
    for layer in layers:
        for m in layer.modules():
            if isinstance(m, torch.nn.Linear):
                zero += int((m.weight == 0).sum())
                total += m.weight.numel()
    return zero / total


class PruneModelCase:
    """A whole OPT-shaped model pruned layer by layer, calibration forwards included; the dense weights are
    restored before every iteration."""

    def __init__(self, p, device):
        self.model = make_hf_model(p, device, train=False)
        self.dense = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.ids = random_ids(p["nsamples"], p["seqlen"], p["vocab"], device, seed=11)
        self.method, self.sparsity = p["method"], p.get("sparsity", 0.5)
        self.forward_batch = p.get("forward_batch", 4)
        self.info = {"attn_implementation": self.model.config._attn_implementation}

    def run(self):
        self.model.load_state_dict(self.dense)
        return {"sparsity": prune_opt_sequential(self.model, self.ids, self.method, self.sparsity,
                                                 self.forward_batch)}


PRUNE_CASES = {
    "hessian": HessianCase,
    "sparsegpt_matrix": SparseGptMatrixCase,
    "wanda_matrix": WandaMatrixCase,
    "magnitude_matrix": MagnitudeMatrixCase,
    "prune_model": PruneModelCase,
}
