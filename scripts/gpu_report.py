#!/usr/bin/env python3
"""Writes gpu-report.md and gpu-report.json from the logs of scripts/gpu_check.sh.

    scripts/gpu_report.py LOGS_DIR OUT_DIR

LOGS_DIR holds machine.txt, kit-manifest.json, kit-libraries.txt, stages.tsv and one folder per stage (a: gtest JSON
per suite, b: Google Benchmark JSON per program, c: compare.py output, d: train_prune results and stage records,
e: pretraining and the paper's table). A stage that did not run or left partial output is reported as such; the
report never invents a number that is not in the logs.
"""
import glob
import json
import os
import sys


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def read_json(path):
    """A JSON file, or the complete leading objects of a truncated Google Benchmark file, or None."""
    text = read(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    # A benchmark program killed by its time cap leaves "benchmarks": [ {...}, {...}, <cut> : keep the whole ones.
    start = text.find('"benchmarks"')
    if start < 0:
        return None
    dec, items, i = json.JSONDecoder(), [], text.find("[", start) + 1
    while True:
        i = text.find("{", i)
        if i < 0:
            break
        try:
            obj, i = dec.raw_decode(text, i)
            items.append(obj)
        except ValueError:
            break
    return {"benchmarks": items, "truncated": True}


def stages(logs):
    out = []
    for line in read(os.path.join(logs, "stages.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) >= 5:
            out.append({"stage": parts[0], "status": parts[1], "seconds": int(parts[2]), "cap": int(parts[3]),
                        "command": parts[4]})
    return out


def tests(logs):
    suites, totals = [], {"passed": 0, "failed": 0, "skipped": 0}
    for path in sorted(glob.glob(os.path.join(logs, "a", "*.json"))):
        doc = read_json(path) or {}
        for suite in doc.get("testsuites", []):
            row = {"suite": suite.get("name"), "passed": 0, "failed": 0, "skipped": 0, "failures": []}
            for case in suite.get("testsuite", []):
                if case.get("failures"):
                    row["failed"] += 1
                    msg = case["failures"][0].get("failure", "").strip().splitlines()
                    row["failures"].append(f"{case['name']}: {msg[0] if msg else ''}"[:300])
                elif case.get("result") == "SKIPPED":
                    row["skipped"] += 1
                else:
                    row["passed"] += 1
            for k in totals:
                totals[k] += row[k]
            suites.append(row)
    # A suite whose process died (a crash, a time cap) leaves a log but no JSON.
    seen = {s["suite"] for s in suites}
    for log in sorted(glob.glob(os.path.join(logs, "a", "*.log"))):
        name = os.path.basename(log)[:-4]
        if name not in seen and name != "list":
            tail = read(log).strip().splitlines()[-3:]
            suites.append({"suite": name, "passed": 0, "failed": 1, "skipped": 0,
                           "failures": ["the process ended without a result: " + " | ".join(tail)[:300]]})
            totals["failed"] += 1
    return {"totals": totals, "suites": suites}


def benchmarks(logs):
    rows = []
    for path in sorted(glob.glob(os.path.join(logs, "b", "*.json"))):
        doc = read_json(path) or {}
        for b in doc.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue
            row = {"program": os.path.basename(path)[:-5], "name": b.get("name"),
                   "time": b.get("real_time"), "unit": b.get("time_unit")}
            if b.get("error_occurred"):
                row["error"] = b.get("error_message")
            for k, v in b.items():
                if isinstance(v, (int, float)) and k not in ("real_time", "cpu_time", "iterations", "repetitions",
                                                             "repetition_index", "threads", "family_index",
                                                             "per_family_instance_index"):
                    row[k] = v
            rows.append(row)
    return rows


def stage_records(folder):
    recs = []
    for path in sorted(glob.glob(os.path.join(folder, "stages", "*.json"))):
        doc = read_json(path)
        if isinstance(doc, dict):
            recs.append(doc)
    return recs


def fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")  # a stage key like "dense | prune …" inside a table cell


def markdown(rep):
    m = rep["machine"]
    lines = [f"# GPU check — {m.get('date', '?')}", ""]
    if not rep["gpu"]:
        lines += ["**No GPU on this machine: a toy run on the CPU.** It proves the kit and the script (every binary "
                  "starts, every CUDA test reports skipped, stages c–e run at toy sizes); it measures nothing about "
                  "a GPU.", ""]
    lines += ["| | |", "|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v} |")
    lines += [f"| kit commit | {rep['kit'].get('commit', '?')}{' (dirty)' if rep['kit'].get('dirty') else ''} |",
              f"| kit libraries | {rep['kit_libraries']} |", "", "## Stages", "",
              "| stage | status | seconds | cap |", "|---|---|---|---|"]
    for s in rep["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['cap']} |")
    t = rep["tests"]["totals"]
    lines += ["", f"## a. CUDA tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped", ""]
    for s in rep["tests"]["suites"]:
        if s["failed"]:
            lines.append(f"- **{s['suite']}**: " + "; ".join(s["failures"]))
    errors = [b for b in rep["benchmarks"] if "error" in b]
    lines += ["", f"## b. CUDA benchmarks ({len(rep['benchmarks'])} results, {len(errors)} with an error)", ""]
    by_message = {}
    for b in errors:
        by_message.setdefault(b["error"], []).append(b["name"])
    for msg, names in by_message.items():
        lines.append(f"- error '{msg}': {len(names)} benchmarks (first: {names[0]})")
    lines += ["", "| benchmark | time | counters |", "|---|---|---|"]
    for b in rep["benchmarks"]:
        if "error" in b:
            continue
        extra = ", ".join(f"{k} {fmt(v)}" for k, v in b.items() if k not in ("program", "name", "time", "unit"))
        lines.append(f"| {b['name']} | {fmt(b['time'])} {b['unit']} | {extra} |")
    lines += ["", "## c. Side by side with PyTorch", "", rep["compare_md"] or "(no table: see logs/c)", "",
              "## d. train_prune on an OPT-1.3B-shaped random model", ""]
    cols = ["key", "op_seconds", "eval_seconds", "eval_tokens_per_second", "perplexity", "sparsity",
            "peak_device_bytes", "peak_host_rss_bytes"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rep["train_prune"], key=lambda r: len(r.get("key", ""))):
        lines.append("| " + " | ".join(fmt(r.get(c, "–")) for c in cols) + " |")
    lines += ["", "## e. Pretraining on the GPU, then the paper's arms", ""]
    if rep["pretrain"]:
        lines.append("- pretraining: " + ", ".join(f"{k} {fmt(v)}" for k, v in rep["pretrain"].items()
                                                    if not isinstance(v, (dict, list))))
    lines += ["", rep["paper_md"] or "(no table: see logs/e)", "", "Commands: see gpu-report.json (`stages`)."]
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 3:
        print("usage: gpu_report.py LOGS_DIR OUT_DIR", file=sys.stderr)
        return 2
    logs, out = sys.argv[1], sys.argv[2]
    machine = {}
    for line in read(os.path.join(logs, "machine.txt")).splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            machine[k] = v
    rep = {
        "machine": machine,
        "gpu": machine.get("gpu") == "1",
        "kit": read_json(os.path.join(logs, "kit-manifest.json")) or {},
        "kit_libraries": (read(os.path.join(logs, "kit-libraries.txt")).strip().splitlines() or ["?"])[-1],
        "stages": stages(logs),
        "tests": tests(logs),
        "benchmarks": benchmarks(logs),
        "compare": read_json(os.path.join(logs, "c", "results.json")),
        "compare_md": read(os.path.join(logs, "c", "results.md")),
        "train_prune": stage_records(os.path.join(logs, "d")),
        "pretrain": read_json(os.path.join(logs, "e", "pretrain.json")),
        "paper": read_json(os.path.join(logs, "e", "results.json")),
        "paper_md": read(os.path.join(logs, "e", "results.md")),
    }
    os.makedirs(out, exist_ok=True)
    for name, text in (("gpu-report.json", json.dumps(rep, indent=1)), ("gpu-report.md", markdown(rep))):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(out, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
