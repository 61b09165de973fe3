#!/usr/bin/env python3
"""The PyTorch side of `make compare`: a worker that sets up one comparison case at a time and times it.

It speaks the protocol of scripts/compare.py over stdin/stdout, one JSON object per line (the C++ side,
bench/compare/compare_cases, speaks the same one):

  {"op": "hello"}                                  -> {"ok": true, "side": "pytorch", "version": ..., "threads": n}
  {"op": "setup", "case": KIND, "params": {...}}   -> {"ok": true, "info": {...}}   builds inputs, warms up once
  {"op": "run", "iters": n}                        -> {"ok": true, "wall_s": s, "cpu_s": s, "iters": n, "check": {...}}
  {"op": "teardown"}                               -> {"ok": true}
  {"op": "quit"}                                   -> (exits)

Any failure answers {"ok": false, "error": "..."}; the driver shows it as a failed row. wall_s and cpu_s
cover only the timed loop of `iters` iterations (CPU seconds of the whole process, all threads); on CUDA
the loop is synchronised before and after, and gpu_s is the CUDA-event time of the same loop.
"""
import argparse
import json
import sys
import time
import traceback
import warnings

import torch

from kernel_cases import KERNEL_CASES
from opt_cases import OPT_CASES
from prune_cases import PRUNE_CASES

CASES = {**KERNEL_CASES, **OPT_CASES, **PRUNE_CASES}


def timed_loop(case, iters, device):
    """Runs case.run() iters times; returns wall, CPU (and on CUDA, event) seconds and the last check."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        start_ev, stop_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_ev.record()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    check = None
    for _ in range(iters):
        check = case.run()
    if cuda:
        stop_ev.record()
        torch.cuda.synchronize()
    out = {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0}
    if cuda:
        out["gpu_s"] = start_ev.elapsed_time(stop_ev) / 1e3
    out["check"] = case.check(check) if hasattr(case, "check") else (check or {})
    return out


def serve(device, threads):
    case = None
    for line in sys.stdin:
        if not line.strip():
            continue
        req = {}
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "quit":
                return
            if op == "hello":
                reply = {"side": "pytorch", "version": torch.__version__, "threads": torch.get_num_threads(),
                         "device": str(device)}
                if device.type == "cuda":
                    reply["device_name"] = torch.cuda.get_device_name(device)
            elif op == "setup":
                kind = req["case"]
                if kind not in CASES:
                    raise ValueError(f"unknown case kind '{kind}' (this worker has: {', '.join(sorted(CASES))})")
                case = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                case = CASES[kind](req.get("params", {}), device)
                case.run()  # warm-up: allocator, BLAS/cuBLAS heuristics, lazy state
                if device.type == "cuda":
                    torch.cuda.synchronize()
                reply = {"info": getattr(case, "info", {})}
            elif op == "run":
                if case is None:
                    raise RuntimeError("run before a successful setup")
                reply = timed_loop(case, int(req.get("iters", 1)), device)
                reply["iters"] = int(req.get("iters", 1))
            elif op == "teardown":
                case = None
                reply = {}
            else:
                raise ValueError(f"unknown op '{op}'")
            reply["ok"] = True
        except Exception as e:  # reported to the driver as a failed row, never swallowed
            case = None if req.get("op") == "setup" else case
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stdout.write(json.dumps({"ok": False, "error": "torch sees no CUDA device"}) + "\n")
        sys.stdout.flush()
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # like the project's cuBLAS default
    torch.backends.cudnn.allow_tf32 = False
    serve(torch.device(args.device), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
