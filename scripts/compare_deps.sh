#!/usr/bin/env bash
# PyTorch and transformers for the baselines of `make compare` (bench/reference/), installed with pip only when
# `import torch, transformers` fails. Nothing in the project itself needs them.
#
# The leanest install that works: torch without its dependency triton (the torch.compile backend, ~1 GB; the
# baselines run eager), then torch's other requirements as its wheel declares them (the CUDA libraries it links
# against: on PyPI the Linux wheel is the CUDA one, and it does not import without them), then transformers.
# About 2 minutes and 4 GB on a fresh machine. If that import check fails, the plain `pip install torch` runs.
set -euo pipefail
PY="${PYTHON:-python3}"
if "$PY" -c "import torch, transformers" 2>/dev/null; then exit 0; fi
PIP=("$PY" -m pip install --disable-pip-version-check -q)
echo "compare-deps: installing PyTorch and transformers from PyPI (once; about 2 min and 4 GB)"
if ! "$PY" -c "import torch" 2>/dev/null; then
  "${PIP[@]}" --no-deps torch
  mapfile -t reqs < <("$PY" - <<'PYEOF'
import importlib.metadata as md
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for text in md.requires("torch") or []:
    req = Requirement(text)
    if req.name.lower() == "triton" or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    print(text.split(";")[0].strip())
PYEOF
  )
  if [ "${#reqs[@]}" -gt 0 ]; then "${PIP[@]}" "${reqs[@]}"; fi
fi
"${PIP[@]}" transformers
if ! "$PY" -c "import torch, transformers; assert float((torch.ones(4) @ torch.ones(4))) == 4.0"; then
  echo "compare-deps: torch without triton does not import here; installing the full torch wheel"
  "${PIP[@]}" torch transformers
  "$PY" -c "import torch, transformers; assert float((torch.ones(4) @ torch.ones(4))) == 4.0"
fi
echo "compare-deps: $("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
