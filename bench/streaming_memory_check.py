#!/usr/bin/env python3
"""The memory model checked against a real run: train_prune's --dry-run estimate of a streamed SparseGPT stage and
a streamed evaluation (apps/train_prune/memory_plan.h), against the peaks the run measured for the same stages
(the CPU allocator's live tensors at their highest, and the resident set's high-water mark, VmHWM).

Runs `train_prune --dry-run` and then the run itself on one config (a streamed arm, `[model] stream = on`, one
SparseGPT sparsity), or reads an existing run's log with --log. Asserts, per stage (the dense stage is one streamed
evaluation; the pruned stage a streamed prune and an evaluation):
  allocator   the measured peak of live tensors within [--low, --high] x the estimate (defaults 0.70 .. 1.10)
  resident    the resident set's growth over the stage (peak - at its start) <= --high x estimate + --fixed MB (the
              code, libraries, BLAS/OpenMP/HDF5 buffers and the I/O thread a process touches besides its tensors)
Prints one table; exits 1 when a bound fails.

  python3 bench/streaming_memory_check.py --build build-cpu --config run.ini [--log run.log]
"""
import argparse
import re
import subprocess
import sys

UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
SIZE = r"([0-9.]+) (B|kB|MB|GB)"
PRUNE_EST = re.compile(r"streamed SparseGPT stage: about " + SIZE + " on cpu")
EVAL_EST = re.compile(r"streamed evaluation: about " + SIZE + " on cpu")
DONE = re.compile(r"stage (\S+) done: .*?peak memory: host RSS " + SIZE + r" \(" + SIZE + r" at the start\), cpu tensors "
                  + SIZE)


def size(value, unit):
    return float(value) * UNITS[unit]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-cpu")
    ap.add_argument("--config", required=True)
    ap.add_argument("--log", help="an existing run's log (train_prune --no-progress) instead of running it")
    ap.add_argument("--low", type=float, default=0.70)
    ap.add_argument("--high", type=float, default=1.10)
    ap.add_argument("--fixed", type=float, default=64.0, help="MB the resident set may grow beyond the tensors")
    args = ap.parse_args()
    exe = f"{args.build}/train_prune"
    dry = subprocess.run([exe, "--config", args.config, "--dry-run"], capture_output=True, text=True)
    prune_est, eval_est = PRUNE_EST.search(dry.stdout), EVAL_EST.search(dry.stdout)
    if dry.returncode != 0 or not prune_est or not eval_est:
        sys.exit(f"no memory estimate in the dry run (a streamed SparseGPT arm is needed):\n{dry.stdout}{dry.stderr}")
    prune_est, eval_est = size(*prune_est.groups()), size(*eval_est.groups())
    if args.log:
        log = open(args.log).read()
    else:
        run = subprocess.run([exe, "--config", args.config, "--no-progress"], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"the run failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
        log = run.stdout
    stages = [m.groups() for m in DONE.finditer(log)]
    if len(stages) != 2:
        sys.exit(f"expected a dense and a pruned stage in the log, found {len(stages)} finished stages")
    failed = False
    print("| stage | estimate (dry run) | live tensors (allocator) | of the estimate | resident set growth | bound |")
    print("|---|---:|---:|---:|---:|---:|")
    for (sid, *rest), (name, est) in zip(stages, [("dense: streamed evaluation", eval_est),
                                                   ("SparseGPT: streamed prune + evaluation", max(prune_est, eval_est))]):
        rss, start, tensors = size(rest[0], rest[1]), size(rest[2], rest[3]), size(rest[4], rest[5])
        grown, bound = rss - start, args.high * est + args.fixed * 1e6
        ok = args.low * est <= tensors <= args.high * est and grown <= bound
        failed |= not ok
        print(f"| {name} | {est / 1e6:.1f} MB | {tensors / 1e6:.1f} MB | {tensors / est:.2f} | {grown / 1e6:.1f} MB | "
              f"{bound / 1e6:.1f} MB{'' if ok else ' FAILED'} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
