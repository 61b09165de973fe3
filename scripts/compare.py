#!/usr/bin/env python3
"""`make compare`: the project and PyTorch side by side on the same cases, device and thread count.

Starts two long-lived workers, the project's `<build>/bench/compare_cases` and `bench/reference/worker.py`
(PyTorch; Hugging Face's OPTForCausalLM for the model rows), and for each row of bench/reference/case_list.py
sets the case up on both (one warm-up iteration each), then times it in rounds, interleaved A B A B …, so a
change in machine load hits both sides alike. Per side it reports the minimum and median over the rounds of
the wall time and the CPU seconds (every thread of the process) of one iteration of the timed loop; the ratio
is project / PyTorch on the minimums. A row whose setup or run fails on either side, or whose checks disagree
(the loss of the same-shaped random model, the measured sparsity, pruned weights that moved), is a failed
row, and the exit status is 1.

--project-only runs the project's side alone, for a machine without PyTorch (the GPU kit falls back to it when
`import torch` fails): the same rows and rounds, times without ratios, checks not compared, nothing of PyTorch
imported or started.

  python3 scripts/compare.py [--device cpu|cuda] [--quick] [--threads N] [--rounds N] [--only SUBSTRING]
                             [--build DIR] [--out DIR] [--require-goals | --project-only]

Results: a table on stdout, and results.json + results.md under bench/results/compare-<device>-<date>/
(--quick: <build>/compare-quick/ unless --out is given).
"""
import argparse
import datetime
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "reference"))
import case_list  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s) for MFU on the GPUs the kit is run on.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}

CHECK_TOLERANCE = {  # key -> (kind, tolerance): what "the same work" means for each checked value
    "sparsity": ("abs", 2e-3),
    "loss": ("rel", 0.05),  # random-init models of the same shape: both near ln(vocab)
    "nll": ("rel", 0.05),
    "pruned_nonzero": ("zero", 0),
}


class Worker:
    """One side: a subprocess answering one JSON line per request line."""

    def __init__(self, name, argv, env, timeout):
        self.name, self.argv, self.env, self.timeout = name, argv, env, timeout
        self.proc = None
        self.lines = queue.Queue()
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=sys.stderr, env=self.env, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines):
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def request(self, req, timeout=None):
        if self.proc.poll() is not None:
            self.start()  # a crashed worker (reported on the row that crashed it) is replaced
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"ok": False, "error": f"{self.name} worker exited (status {self.proc.poll()})"}
        while True:
            try:
                line = self.lines.get(timeout=timeout or self.timeout)
            except queue.Empty:
                self.proc.kill()
                return {"ok": False, "error": f"{self.name} worker gave no answer in {timeout or self.timeout} s"}
            if line is None:
                return {"ok": False, "error": f"{self.name} worker exited (status {self.proc.wait()})"}
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    pass
            sys.stderr.write(f"[{self.name}] {line}\n")  # stray output (a library's print) is not an answer

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


def compare_checks(a, b):
    """Returns a list of disagreements between the two sides' check values."""
    problems = []
    for key, (kind, tol) in CHECK_TOLERANCE.items():
        va, vb = a.get(key), b.get(key)
        if va is None and vb is None:
            continue
        if va is None or vb is None:
            problems.append(f"{key}: only one side reported it ({va} vs {vb})")
        elif kind == "zero" and (va != 0 or vb != 0):
            problems.append(f"{key}: project {va}, pytorch {vb} (must be 0)")
        elif kind == "abs" and abs(va - vb) > tol:
            problems.append(f"{key}: project {va:.6g} vs pytorch {vb:.6g}")
        elif kind == "rel" and abs(va - vb) > tol * max(abs(vb), 1e-12):
            problems.append(f"{key}: project {va:.6g} vs pytorch {vb:.6g}")
    return problems


def summarize(runs, key):
    per_iter = [r[key] / r["iters"] for r in runs if key in r]
    return (min(per_iter), statistics.median(per_iter)) if per_iter else (None, None)


def run_row(row, sides, rounds_override, device):
    """Sets the row up on each side (both, or the project's alone), runs the interleaved rounds, returns the
    row's result dict."""
    res = {"name": row["name"], "kind": row["kind"], "params": row["params"], "iters": row["iters"],
           "goal": row.get("goal", 1.0), "status": "ok", "errors": [], "sides": {}}
    for side in sides:
        r = side.request({"op": "setup", "case": row["kind"], "params": row["params"]})
        res["sides"][side.name] = {"info": r.get("info", {}), "runs": []}
        if not r.get("ok"):
            res["errors"].append(f"{side.name} setup: {r.get('error')}")
    rounds = rounds_override or row["rounds"]
    if not res["errors"]:
        for _ in range(rounds):
            for side in sides:
                r = side.request({"op": "run", "iters": row["iters"]})
                if not r.get("ok"):
                    res["errors"].append(f"{side.name} run: {r.get('error')}")
                    break
                res["sides"][side.name]["runs"].append(r)
            if res["errors"]:
                break
    for side in sides:
        side.request({"op": "teardown"})
    if res["errors"]:
        res["status"] = "failed"
        return res
    keys = ["wall_s", "cpu_s"] + (["gpu_s"] if device == "cuda" else [])
    for s in res["sides"].values():
        for k in keys:
            s[f"min_{k}"], s[f"median_{k}"] = summarize(s["runs"], k)
    if len(sides) == 1:  # --project-only: the times, nothing to compare them with
        res["verdict"] = "project only"
        return res
    project, torch_side = (res["sides"][s.name] for s in sides)
    problems = compare_checks(project["runs"][-1].get("check", {}), torch_side["runs"][-1].get("check", {}))
    if problems:
        res["status"] = "failed"
        res["errors"] += ["checks disagree: " + "; ".join(problems)]
    for k in keys:
        if project[f"min_{k}"] and torch_side[f"min_{k}"]:
            res[f"ratio_{k}"] = project[f"min_{k}"] / torch_side[f"min_{k}"]
    t = project["min_wall_s"]
    if row.get("tokens") and t:
        res["project_tokens_per_s"] = row["tokens"] / t
        res["pytorch_tokens_per_s"] = row["tokens"] / torch_side["min_wall_s"]
    if row.get("flops") and t:
        res["project_flops_per_s"] = row["flops"] / t
        res["pytorch_flops_per_s"] = row["flops"] / torch_side["min_wall_s"]
    worst = max(res.get("ratio_wall_s", 0), res.get("ratio_cpu_s", 0) if device == "cpu" else 0)
    res["verdict"] = verdict(worst, res["goal"])
    return res


def verdict(ratio, goal):
    if ratio <= goal:
        return f"meets goal (<= {goal:g}x)" if goal < 1.0 else ("faster" if ratio < 0.95 else "on par")
    return f"slower (goal <= {goal:g}x)"


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x * 1e3:.3g} ms" if x < 1 else f"{x:.3g} s"


def project_only_table(results, device):
    head = ["row", "project min / median wall", "project min / median CPU s"] + (
        ["project min / median GPU s"] if device == "cuda" else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | FAILED: {'; '.join(r['errors'])[:160]} |" + " |" * (len(head) - 2))
            continue
        p = r["sides"]["project"]
        lines.append("| " + " | ".join([r["name"]] + [f"{fmt_s(p['min_' + k])} / {fmt_s(p['median_' + k])}"
                                                      for k in ("wall_s", "cpu_s", "gpu_s")[:len(head) - 1]]) + " |")
    return "\n".join(lines)


def table(results, device, peak):
    head = ["row", "project min / median wall", "pytorch min / median wall", "wall ratio", "CPU s ratio",
            "verdict"]
    if device == "cuda":
        head.insert(5, "GPU ratio")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r["status"] != "ok" and "ratio_wall_s" not in r:
            lines.append(f"| {r['name']} | FAILED: {'; '.join(r['errors'])[:160]} |" + " |" * (len(head) - 2))
            continue
        p, t = r["sides"]["project"], r["sides"]["pytorch"]
        extra = ""
        if "project_tokens_per_s" in r:
            extra = f" ({r['project_tokens_per_s']:.0f} vs {r['pytorch_tokens_per_s']:.0f} tok/s"
            if peak and r["kind"] == "train_step":
                extra += f", MFU {r['project_flops_per_s'] / peak:.1%} vs {r['pytorch_flops_per_s'] / peak:.1%}"
            extra += ")"
        cells = [r["name"] + extra, f"{fmt_s(p['min_wall_s'])} / {fmt_s(p['median_wall_s'])}",
                 f"{fmt_s(t['min_wall_s'])} / {fmt_s(t['median_wall_s'])}", f"{r.get('ratio_wall_s', 0):.2f}x",
                 f"{r.get('ratio_cpu_s', 0):.2f}x", r["verdict"] if r["status"] == "ok" else
                 "FAILED: " + "; ".join(r["errors"])[:120]]
        if device == "cuda":
            cells.insert(5, f"{r.get('ratio_gpu_s', 0):.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info():
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError):
        pass
    try:
        info["commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True).stdout.strip()
    except OSError:
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 2 rounds: a smoke test of the harness")
    ap.add_argument("--threads", type=int, default=0, help="threads per side (default: all cores on cpu)")
    ap.add_argument("--rounds", type=int, default=0, help="override every row's number of rounds")
    ap.add_argument("--only", action="append", default=[], help="run rows whose name contains this (repeatable)")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"), help="CMake build folder")
    ap.add_argument("--out", default="", help="results folder")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one request may take")
    ap.add_argument("--require-goals", action="store_true", help="exit 1 when a row misses its goal too")
    ap.add_argument("--project-only", action="store_true",
                    help="run the project's side alone (no PyTorch): times without ratios")
    args = ap.parse_args()
    if args.project_only and args.require_goals:
        ap.error("--require-goals needs the PyTorch side; it cannot go with --project-only")

    threads = args.threads or (os.cpu_count() or 1)
    build = args.build if os.path.isabs(args.build) else os.path.join(ROOT, args.build)
    # A build tree keeps it in bench/; the GPU kit's bin/ holds it directly.
    binary = next((b for b in (os.path.join(build, "bench", "compare_cases"), os.path.join(build, "compare_cases"))
                   if os.access(b, os.X_OK)), os.path.join(build, "bench", "compare_cases"))
    if not os.access(binary, os.X_OK):
        print(f"compare: {binary} not found; build it first (make BUILD={args.build} build)", file=sys.stderr)
        return 2
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error", PYTHONWARNINGS="ignore")
    project = Worker("project", [binary, "--device", args.device, "--threads", str(threads)], env, args.timeout)
    sides = [project]
    if not args.project_only:
        sides.append(Worker("pytorch", [sys.executable, os.path.join(ROOT, "bench", "reference", "worker.py"),
                                        "--device", args.device, "--threads", str(threads)], env, args.timeout))
    hello = {s.name: s.request({"op": "hello"}, timeout=300) for s in sides}
    for name, h in hello.items():
        if not h.get("ok"):
            print(f"compare: the {name} worker did not start: {h.get('error')}", file=sys.stderr)
            for s in sides:
                s.close()
            return 2
    device_name = hello["project"].get("device_name") or machine_info().get("cpu_model", "cpu")
    peak = next((v for k, v in PEAK_BF16.items() if k in device_name), None) if args.device == "cuda" else None

    rows = case_list.rows_for(args.device, args.quick)
    if args.only:
        rows = [r for r in rows if any(s in r["name"] for s in args.only)]
    load_before = os.getloadavg()
    machine = machine_info()  # at the start: the commit the workers were built from (or close to it)
    started = time.time()
    date = datetime.date.today().isoformat()
    out = args.out or (os.path.join(build, "compare-quick") if args.quick
                       else os.path.join(ROOT, "bench", "results", f"compare-{args.device}-{date}"))
    os.makedirs(out, exist_ok=True)
    results = []

    def write_results():  # after every row, so an interrupted run keeps what it measured
        meta = {"date": date, "device": args.device, "device_name": device_name, "threads_per_side": threads,
                "quick": args.quick, "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
                "machine": machine, "pytorch": hello["pytorch"].get("version") if "pytorch" in hello else None,
                "project_only": args.project_only,
                "load_average_before": load_before, "load_average_after": os.getloadavg(),
                "seconds": round(time.time() - started, 1), "rows_done": len(results), "rows_planned": len(rows)}
        text = project_only_table(results, args.device) if args.project_only else table(results, args.device, peak)
        flags = (" --quick" if args.quick else "") + (" --project-only" if args.project_only else "")
        versus = "the project alone (no PyTorch side)" if args.project_only else f"PyTorch {meta['pytorch']}"
        header = (f"# make compare --device {args.device}{flags}\n\n"
                  f"{meta['date']}, {device_name}, {threads} threads per side, {versus}, "
                  f"commit {machine.get('commit', '?')}; load average {load_before[0]:.2f} before, "
                  f"{meta['load_average_after'][0]:.2f} after; {meta['seconds']:.0f} s; "
                  f"{len(results)} of {len(rows)} rows.\n"
                  + ("Times are per iteration of the timed loop (min / median over the rounds).\n\n"
                     if args.project_only else
                     "Times are per iteration of the timed loop (min / median over interleaved rounds); ratios are "
                     "project / PyTorch of the minimums.\n\n"))
        for path, body in (("results.md", header + text + "\n"),
                           ("results.json", json.dumps({"meta": meta, "rows": results}, indent=1) + "\n")):
            tmp = os.path.join(out, path + ".tmp")
            with open(tmp, "w") as f:
                f.write(body)
            os.replace(tmp, os.path.join(out, path))
        return header, text

    for row in rows:
        print(f"compare: {row['name']} ...", file=sys.stderr, flush=True)
        results.append(run_row(row, sides, args.rounds, args.device))
        r = results[-1]
        if r["status"] == "ok" and args.project_only:
            print(f"  wall {fmt_s(r['sides']['project']['min_wall_s'])} (min)", file=sys.stderr, flush=True)
        elif r["status"] == "ok":
            print(f"  wall {r.get('ratio_wall_s', 0):.2f}x, CPU {r.get('ratio_cpu_s', 0):.2f}x: {r['verdict']}",
                  file=sys.stderr, flush=True)
        else:
            print(f"  FAILED: {'; '.join(r['errors'])}", file=sys.stderr, flush=True)
        write_results()
    for s in sides:
        s.close()

    header, text = write_results()
    failed = [r["name"] for r in results if r["status"] != "ok"]
    missed = [r["name"] for r in results if r["status"] == "ok" and not r["verdict"].startswith(
        ("meets", "faster", "on par", "project only"))]
    print(header + text)
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed"
          + (f"; slower than the goal: {', '.join(missed)}" if missed else "") + f"  (results in {out})")
    if failed or (args.require_goals and missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
