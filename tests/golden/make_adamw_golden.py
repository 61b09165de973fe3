#!/usr/bin/env python3
"""Golden fixture for nn/adamw + nn/lr_schedule: six steps of torch.optim.AdamW as a training loop runs it.

Two parameter groups (a weight [8, 5] with weight decay 0.1, a bias [8] with none), fixed random gradients,
torch.nn.utils.clip_grad_norm_ over both before every step (max norm chosen so some steps clip and some do
not), and a LambdaLR with a 2-step linear warm-up then linear decay to 0 at step 6 (the formula of HF's
get_linear_schedule_with_warmup; lr at step 0 is 0). AdamW runs with foreach=False (the single-tensor path).

Writes tests/golden/adamw/adamw_steps.safetensors (all float32 as torch ran it, lr float64):
  init.weight, init.bias                 parameters before step 0
  grad.{weight,bias}.{s}                 the raw gradient given at step s (before clipping)
  lr [6] (f64)                           lr used by step s (param_groups[0]['lr'] before opt.step())
  grad_norm [6]                          total norm returned by clip_grad_norm_ at step s
  step{s}.{weight,bias}                  parameters after step s
  step{s}.exp_avg.{weight,bias}          exp_avg after step s
  step{s}.exp_avg_sq.{weight,bias}       exp_avg_sq after step s
Hyper-parameters are in the file's __metadata__.

Run: python3 tests/golden/make_adamw_golden.py   (needs torch and safetensors)
"""
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "adamw", "adamw_steps.safetensors")

STEPS, WARMUP = 6, 2
BASE_LR, BETAS, EPS, WD = 0.05, (0.9, 0.999), 1e-8, 0.1
MAX_NORM = 4.0
GRAD_SCALES = [0.3, 1.5, 0.2, 2.0, 0.4, 1.0]  # varied so that clipping happens on some steps only


def lr_lambda(step):
    if step < WARMUP:
        return step / max(1, WARMUP)
    return max(0.0, (STEPS - step) / max(1, STEPS - WARMUP))


def main():
    gen = torch.Generator().manual_seed(1234)
    weight = torch.nn.Parameter(0.5 * torch.randn(8, 5, generator=gen))
    bias = torch.nn.Parameter(0.5 * torch.randn(8, generator=gen))
    out = {"init.weight": weight.detach().clone(), "init.bias": bias.detach().clone()}
    grads = []
    for s in range(STEPS):
        gw = GRAD_SCALES[s] * torch.randn(8, 5, generator=gen)
        gb = GRAD_SCALES[s] * torch.randn(8, generator=gen)
        grads.append((gw, gb))
        out[f"grad.weight.{s}"], out[f"grad.bias.{s}"] = gw.clone(), gb.clone()

    opt = torch.optim.AdamW([{"params": [weight], "weight_decay": WD}, {"params": [bias], "weight_decay": 0.0}],
                            lr=BASE_LR, betas=BETAS, eps=EPS, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    lrs, norms = [], []
    for s in range(STEPS):
        weight.grad, bias.grad = grads[s][0].clone(), grads[s][1].clone()
        norm = torch.nn.utils.clip_grad_norm_([weight, bias], MAX_NORM)
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(norm.item())
        opt.step()
        sched.step()
        out[f"step{s}.weight"], out[f"step{s}.bias"] = weight.detach().clone(), bias.detach().clone()
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"step{s}.{key}.weight"] = opt.state[weight][key].clone()
            out[f"step{s}.{key}.bias"] = opt.state[bias][key].clone()
    clipped = [n > MAX_NORM for n in norms]
    assert any(clipped) and not all(clipped), f"norms {norms} should straddle max_norm {MAX_NORM}"
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["grad_norm"] = torch.tensor(norms, dtype=torch.float32)

    meta = {"base_lr": repr(BASE_LR), "beta1": repr(BETAS[0]), "beta2": repr(BETAS[1]), "eps": repr(EPS),
            "weight_decay": repr(WD), "max_norm": repr(MAX_NORM), "warmup_steps": str(WARMUP),
            "total_steps": str(STEPS), "torch": torch.__version__}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); lr {lrs}; norms {norms}; clipped {clipped}")


if __name__ == "__main__":
    main()
