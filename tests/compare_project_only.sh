#!/usr/bin/env bash
# ctest compare_project_only: `scripts/compare.py --quick --project-only` on a Python where torch and transformers
# cannot be imported (modules of those names that raise ImportError come first on PYTHONPATH), as on a GPU machine
# without PyTorch. It must time every quick row on the project's side alone and write the results; the same run
# without --project-only must fail (so the hiding works and the PyTorch side is really left out).
#   tests/compare_project_only.sh <source dir> <build dir>
set -euo pipefail
src="$1" build="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/hide"
for m in torch transformers; do
  echo "raise ImportError('$m is hidden by tests/compare_project_only.sh')" > "$tmp/hide/$m.py"
done
export PYTHONPATH="$tmp/hide"
if python3 "$src/scripts/compare.py" --quick --threads 2 --build "$build" --out "$tmp/both" > "$tmp/both.log" 2>&1; then
  echo "FAIL: compare.py with both sides succeeded although torch cannot be imported"; exit 1
fi
grep -q "the pytorch worker did not start" "$tmp/both.log" || { echo "FAIL: unexpected failure:"; cat "$tmp/both.log"; exit 1; }
python3 "$src/scripts/compare.py" --quick --project-only --threads 2 --build "$build" --out "$tmp/out"
python3 - "$tmp/out" "$src" <<'PYEOF'
import json, os, sys
out, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(src, "bench", "reference"))
import case_list
res = json.load(open(os.path.join(out, "results.json")))
rows = res["rows"]
planned = case_list.rows_for("cpu", True)
assert res["meta"]["project_only"] and res["meta"]["pytorch"] is None, res["meta"]
assert [r["name"] for r in rows] == [r["name"] for r in planned], "not every quick row ran"
for r, p in zip(rows, planned):
    assert r["status"] == "ok", (r["name"], r["errors"])
    assert list(r["sides"]) == ["project"], (r["name"], list(r["sides"]))
    side = r["sides"]["project"]
    assert len(side["runs"]) == p["rounds"], (r["name"], len(side["runs"]))
    assert side["min_wall_s"] > 0 and side["median_wall_s"] >= side["min_wall_s"], (r["name"], side)
    assert not any(k.startswith("ratio_") for k in r), r["name"]
md = open(os.path.join(out, "results.md")).read()
assert "--project-only" in md and "wall ratio" not in md and "pytorch min" not in md, md
print(f"compare_project_only: {len(rows)} rows timed on the project's side alone")
PYEOF
