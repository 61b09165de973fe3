#!/usr/bin/env bash
# One command that tests and measures the CUDA path on a GPU machine and brings the answers back as files.
# Run from the repository root with the GPU kit (`make gpu-kit`) beside it:
#
#   OUT=/some/folder scripts/gpu_check.sh [--kit .gpu-kit] [--budget 540]
#
# Stages, each under its own time cap so the whole run ends within the budget (9 minutes by default); a stage
# that fails or runs out of time never stops the next:
#   a  every CUDA test (PT_SYNC_CHECK=1: a launch error is pinned to its op), one process per suite
#   b  every CUDA benchmark, bounded minimum time, JSON
#   c  side by side with PyTorch on the same device (scripts/compare.py)
#   d  train_prune end to end on an OPT-1.3B-shaped random model (configs/gpu-check-1.3b.ini)
#   e  pretrain the small OPT on the GPU with 20-50x the CPU run's tokens, then the paper's five arms on it
# and last gpu-report.md / gpu-report.json in $OUT, with every log in logs.tar.gz.
# Without a GPU (no nvidia-smi device) the same script runs end to end at toy sizes on the CPU: every binary starts,
# every CUDA test reports skipped, stages c-e run small, and the report says so.
set -uo pipefail
cd "$(dirname "$0")/.."
kit=.gpu-kit budget=540
while [ $# -gt 0 ]; do
  case "$1" in
    --kit) kit="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument '$1' (allowed: --kit DIR, --budget SECONDS)" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-gpu-check-out}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
t0=$(date +%s)
deadline=$((t0 + budget))
work=$(mktemp -d "${TMPDIR:-/tmp}/pt-gpu-check.XXXXXX")
logs="$work/logs"
mkdir -p "$logs"
stages="$logs/stages.tsv"  # name, status, seconds, cap, command
: > "$stages"
say() { echo "gpu_check [$(( $(date +%s) - t0 ))s] $*"; }

# ---- unpack the kit and the data --------------------------------------------------------------------------
for f in kit.tar.xz data.tar.xz; do
  [ -f "$kit/$f" ] || { echo "gpu_check: $kit/$f is missing: run 'make gpu-kit' and carry $kit" >&2; exit 1; }
done
xz -dc "$kit/kit.tar.xz" | tar -x -C "$work" || { echo "gpu_check: $kit/kit.tar.xz does not unpack" >&2; exit 1; }
bin="$work/bin"
if [ ! -d data/wikitext-2-raw ] || [ ! -d data/opt-tokenizer ]; then
  mkdir -p "$work/data" && xz -dc "$kit/data.tar.xz" | tar -x -C "$work/data"
  [ -L data ] || [ ! -e data ] || { echo "gpu_check: ./data exists but lacks the data files" >&2; exit 1; }
  ln -sfn "$work/data" data
fi

# CUDA's libraries come from this machine: its toolkit, else the NVIDIA wheels PyTorch brought.
cuda_dirs=()
for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && [[ ! " ${cuda_dirs[*]-} " == *" $(readlink -f "$d") "* ]] && cuda_dirs+=("$(readlink -f "$d")")
done
if command -v python3 >/dev/null; then
  while read -r d; do [ -d "$d" ] && cuda_dirs+=("$d"); done < <(python3 - 2>/dev/null <<'EOF'
import glob, os
try:
    import nvidia
    for p in nvidia.__path__:
        for d in sorted(glob.glob(os.path.join(p, "*", "lib"))):
            print(d)
except Exception:
    pass
EOF
)
fi
export LD_LIBRARY_PATH="$work/lib$(printf ':%s' "${cuda_dirs[@]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- the machine ------------------------------------------------------------------------------------------
gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L > "$logs/nvidia-smi-L.txt" 2>&1 && grep -q '^GPU' "$logs/nvidia-smi-L.txt"; then
  gpu=1
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm)"
  echo "cpus: $(nproc)"
  echo "gpu: $gpu"
  [ $gpu = 1 ] && echo "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
                                    --format=csv,noheader | head -1) (name, driver, memory, max SM / memory clocks)"
  command -v nvidia-smi >/dev/null && nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/driver CUDA version: \1/p'
  command -v nvcc >/dev/null && echo "nvcc: $(nvcc --version | tail -2 | head -1)"
  python3 -c 'import torch; print("torch:", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1
  echo "cuda library folders: ${cuda_dirs[*]-none}"
} > "$logs/machine.txt" 2>&1
[ $gpu = 1 ] && nvidia-smi > "$logs/nvidia-smi.txt" 2>&1
cp "$work/manifest.json" "$logs/kit-manifest.json"
if command -v readelf >/dev/null; then
  python3 scripts/check_gpu_kit.py "$work" "${cuda_dirs[@]}" > "$logs/kit-libraries.txt" 2>&1
else
  # No readelf here: the loader's own view, which also searches this machine's folders.
  for b in "$bin"/* "$work"/lib/*; do ldd "$b" | grep 'not found' | sed "s|^|$(basename "$b"): |"; done \
    > "$logs/kit-libraries.txt" 2>&1
  n=$(grep -c 'not found' "$logs/kit-libraries.txt")
  if [ "$n" = 0 ]; then echo "ldd: every library of the kit is found" >> "$logs/kit-libraries.txt"
  else echo "ldd: $n libraries not found" >> "$logs/kit-libraries.txt"; fi
fi
say "machine: gpu=$gpu; $(head -c 300 "$logs/kit-libraries.txt" | tail -1)"

# ---- stage runner -----------------------------------------------------------------------------------------
# run_stage NAME CAP RESERVE CMD...: run CMD under min(CAP, time left - RESERVE), log to logs/NAME.log, and record
# ok | failed (rc N) | timed out | not run (no time left) in stages.tsv.
run_stage() {
  local name="$1" cap="$2" reserve="$3"
  shift 3
  local left=$((deadline - $(date +%s) - reserve))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 10 ]; then
    printf '%s\tnot run (no time left)\t0\t%s\t%s\n' "$name" "$cap" "$*" >> "$stages"
    say "$name: not run, no time left"
    return
  fi
  say "$name: start (cap ${cap}s)"
  local s=$(date +%s) rc
  PT_GPU_CHECK_STAGE_LEFT="$cap" timeout --kill-after=10 "$cap" "$@" > "$logs/$name.log" 2>&1
  rc=$?
  local status=ok
  [ $rc -ne 0 ] && status="failed (rc $rc)"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="timed out"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - s ))" "$cap" "$*" >> "$stages"
  say "$name: $status in $(( $(date +%s) - s ))s"
}
export PT_GPU_CHECK_BIN="$bin" PT_GPU_CHECK_LOGS="$logs" PT_GPU_CHECK_GPU="$gpu" PT_APP_DIR="$bin" \
       PT_SOURCE_DIR="$(pwd)" PT_TEST_WORK_DIR="$work/test-work"

run_stage a-cuda-tests 170 330 scripts/gpu_check_stages.sh tests
run_stage b-cuda-benchmarks 90 240 scripts/gpu_check_stages.sh benchmarks
run_stage c-compare 100 150 scripts/gpu_check_stages.sh compare
run_stage d-train-prune-1.3b 70 80 scripts/gpu_check_stages.sh train_prune
run_stage e-pretrain-and-paper 120 10 scripts/gpu_check_stages.sh paper

# ---- report -----------------------------------------------------------------------------------------------
python3 scripts/gpu_report.py "$logs" "$OUT" || say "report: gpu_report.py failed (logs are in logs.tar.gz)"
tar -C "$work" -czf "$OUT/logs.tar.gz" logs
say "done: $OUT/gpu-report.md, gpu-report.json, logs.tar.gz"
[ -f "$OUT/gpu-report.md" ] && sed -n '1,60p' "$OUT/gpu-report.md"
rm -rf "$work/test-work" "$work/runs"
