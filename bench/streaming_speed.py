#!/usr/bin/env python3
"""Per-layer time of a streamed SparseGPT prune (and evaluation) against the in-memory run on the same model.

Writes a random OPT with make_random_opt, then runs train_prune on it twice per repeat, `[model] stream = off` and
`on` in turn (same calibration windows, same evaluation windows, fresh output folders), and reads from each run's
log the per-layer lines of the prune ("layer i/N in X s") and the stage lines ("... X s (+Y s eval); peak memory:
host RSS ..."). Prints one table (median and mean seconds per layer, prune and evaluation seconds, peak RSS) and the
ratios streamed / in memory; --json writes the numbers. The issue's goal: streamed per-layer time within 1.2x.

  python3 bench/streaming_speed.py --build build-cpu --work /tmp/stream-speed [--layers 8 --hidden 512 --ffn 2048]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

LAYER = re.compile(r"layer (\d+)/(\d+) in ([0-9.]+)s")
STAGE = re.compile(r"stage (\S+) done: perplexity ([0-9.]+), .*?([0-9.]+)s \(\+([0-9.]+)s eval\); peak memory: host RSS ([0-9.]+ [kMG]?B)")


def config(args, weights, output, stream):
    return f"""[run]
device = cpu
seed = 0
output = {output}

[experiment]
arms = sparsegpt:oneshot
sparsities = 0.5

[model]
preset = custom
name = opt-random-speed
layers = {args.layers}
hidden = {args.hidden}
heads = {args.heads}
ffn = {args.ffn}
context = 2048
dropout = 0.0
weights = {weights}
stream = {stream}

[data]
dir = {args.data}
cache = {os.path.join(args.work, 'cache')}
calib_nsamples = {args.nsamples}
calib_seqlen = {args.seqlen}

[prune]
forward_batch = {args.nsamples}

[eval]
seqlen = {args.seqlen}
batch = 1
windows = {args.windows}
"""


def run(args, weights, stream, k):
    out = os.path.join(args.work, f"run-{stream}-{k}")
    shutil.rmtree(out, ignore_errors=True)
    ini = out + ".ini"
    with open(ini, "w") as f:
        f.write(config(args, weights, out, stream))
    start = time.time()
    p = subprocess.run([os.path.join(args.build, "train_prune"), "--config", ini, "--no-progress"],
                       capture_output=True, text=True)
    wall = time.time() - start
    if p.returncode != 0:
        sys.exit(f"train_prune (stream = {stream}) failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    log = open(os.path.join(out, "train_prune.log")).read()  # the run's log (stdout shows less without a terminal)
    layers = [float(m.group(3)) for m in LAYER.finditer(log)]
    stages = [m.groups() for m in STAGE.finditer(log)]
    if len(layers) != args.layers or len(stages) != 2:
        sys.exit(f"could not read the log of the stream = {stream} run ({len(layers)} layer lines, "
                 f"{len(stages)} stage lines):\n{log[-3000:]}")
    prune = stages[1]  # the dense stage first, then the pruned one
    return {"stream": stream, "layer_seconds": layers, "prune_seconds": float(prune[2]),
            "eval_seconds": float(prune[3]), "dense_eval_seconds": float(stages[0][3]),
            "perplexity": float(prune[1]), "peak_rss": prune[4], "dense_peak_rss": stages[0][4], "wall_seconds": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-cpu")
    ap.add_argument("--work", default="/tmp/stream-speed")
    ap.add_argument("--data", default="data")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=2048)
    ap.add_argument("--nsamples", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="write the runs and ratios here")
    ap.add_argument("--keep", action="store_true", help="keep the model and the runs' folders")
    args = ap.parse_args()
    args.data = os.path.abspath(args.data)
    os.makedirs(args.work, exist_ok=True)
    weights = os.path.join(args.work, "model")
    shutil.rmtree(weights, ignore_errors=True)
    subprocess.run([os.path.join(args.build, "make_random_opt"), "--out", weights, "--layers", str(args.layers),
                    "--hidden", str(args.hidden), "--heads", str(args.heads), "--ffn", str(args.ffn),
                    "--context", "2048"], check=True, capture_output=True)
    runs = []
    for k in range(args.repeats):
        for stream in ("off", "on"):  # alternated, so a change in the machine's load hits both alike
            runs.append(run(args, weights, stream, k))
            r = runs[-1]
            print(f"repeat {k} stream={stream}: median layer {statistics.median(r['layer_seconds']):.3f}s, "
                  f"prune {r['prune_seconds']:.1f}s, eval {r['eval_seconds']:.1f}s, peak RSS {r['peak_rss']}",
                  flush=True)
    def pooled(stream, key):
        if key == "layer_seconds":
            return [x for r in runs if r["stream"] == stream for x in r[key]]
        return [r[key] for r in runs if r["stream"] == stream]
    rows = []
    print(f"\nmodel: {args.layers} layers, hidden {args.hidden}, ffn {args.ffn}; SparseGPT 50 %, "
          f"{args.nsamples} x {args.seqlen} calibration tokens, {args.windows} evaluation windows; {args.repeats} repeat(s)")
    print("| measure | in memory | streamed | streamed / in memory |\n|---|---:|---:|---:|")
    for name, key, f in [("median seconds per layer (prune)", "layer_seconds", statistics.median),
                         ("mean seconds per layer (prune)", "layer_seconds", statistics.mean),
                         ("prune stage seconds", "prune_seconds", statistics.median),
                         ("evaluation seconds (pruned model)", "eval_seconds", statistics.median),
                         ("evaluation seconds (dense model)", "dense_eval_seconds", statistics.median)]:
        a, b = f(pooled("off", key)), f(pooled("on", key))
        rows.append({"measure": name, "in_memory": a, "streamed": b, "ratio": b / a if a > 0 else None})
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "table": rows}, f, indent=2)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
