#!/usr/bin/env bash
# The stages of scripts/gpu_check.sh, one per argument (tests | benchmarks | compare | train_prune | paper). Each
# writes its outputs under $PT_GPU_CHECK_LOGS/<stage>/ and exits non-zero when something in it failed. Run by
# gpu_check.sh under a time cap, with the kit's bin/ in $PT_GPU_CHECK_BIN and PT_GPU_CHECK_GPU=1 on a GPU machine
# (0: a toy run on the CPU that proves the kit and the script, not the GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="$PT_GPU_CHECK_BIN" logs="$PT_GPU_CHECK_LOGS" gpu="$PT_GPU_CHECK_GPU"
runs="$(dirname "$logs")/runs"
mkdir -p "$runs"
device=cpu
[ "$gpu" = 1 ] && device=cuda

# The CUDA tests: every case whose suite or name says Cuda, one process per suite, so that a fault that breaks
# the CUDA context fails its own suite only. PT_SYNC_CHECK=1 synchronises after every launch.
stage_tests() {
  local out="$logs/a" failed=0
  mkdir -p "$out"
  "$bin/pt_tests" --gtest_list_tests --gtest_filter='*Cuda*' > "$out/list.txt" || return 1
  # "Suite." lines, then "  Case" lines (parametrised ones carry a "# GetParam() = ..." comment).
  awk '/^[^ ]/ {suite = $1; next} {print suite $1}' "$out/list.txt" > "$out/cases.txt"
  for suite in $(cut -d. -f1 "$out/cases.txt" | sort -u); do
    local filter
    filter=$(grep "^$suite\." "$out/cases.txt" | paste -sd: -)
    PT_SYNC_CHECK=1 timeout --kill-after=5 90 "$bin/pt_tests" --gtest_filter="$filter" \
      --gtest_output="json:$out/$suite.json" > "$out/$suite.log" 2>&1 || failed=1
    echo "$suite: $(grep -cE '^\[       OK \]' "$out/$suite.log") ok, $(grep -cE '^\[  SKIPPED \]' "$out/$suite.log") skipped, $(grep -cE '^\[  FAILED  \]' "$out/$suite.log") failed"
  done
  return $failed
}

# Every CUDA benchmark ("/cuda/" in its name), bounded minimum time, JSON per program.
stage_benchmarks() {
  local out="$logs/b" failed=0
  mkdir -p "$out"
  for b in "$bin"/bench_*; do
    local name
    name=$(basename "$b")
    timeout --kill-after=5 40 "$b" --benchmark_filter=/cuda/ --benchmark_min_time=0.05 \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json > "$out/$name.log" 2>&1 || failed=1
    echo "$name: $(grep -c '"name"' "$out/$name.json" 2>/dev/null || echo 0) results"
  done
  return $failed
}

# Side by side with PyTorch (scripts/compare.py): full shapes on the GPU, --quick on the CPU. Where PyTorch cannot
# be imported (a GPU machine without it), the project's side alone (--project-only): times, no ratios.
stage_compare() {
  local out="$logs/c"
  mkdir -p "$out"
  [ -f scripts/compare.py ] || { echo "scripts/compare.py is not in this tree"; return 1; }
  local args=()
  [ "$gpu" = 1 ] || args=(--quick)
  if ! python3 -c 'import torch' 2>/dev/null; then
    echo "PyTorch is not importable here: the project's side alone (compare.py --project-only)"
    args+=(--project-only)
  fi
  python3 scripts/compare.py --device "$device" "${args[@]}" --threads "$(nproc)" --build "$bin" --out "$out"
}

# train_prune end to end: an OPT-1.3B-shaped random model on the GPU; a tiny one on the CPU.
stage_train_prune() {
  local out="$logs/d" toy=()
  mkdir -p "$out"
  if [ "$gpu" != 1 ]; then
    toy=(--set run.device=cpu --set model.preset=custom --set model.layers=2 --set model.hidden=64
         --set model.heads=2 --set model.ffn=256 --set model.context=128 --set data.calib_nsamples=4
         --set data.calib_seqlen=128 --set retrain.seqlen=128 --set retrain.steps=4 --set eval.seqlen=128
         --set eval.windows=2)
  fi
  local args=(--config configs/gpu-check-1.3b.ini --no-progress --set "run.output=$runs/d"
              --set "data.cache=$runs/cache" "${toy[@]}")
  "$bin/train_prune" "${args[@]}"
  local rc=$?
  cp "$runs/d/results.json" "$runs/d/results.md" "$out/" 2>/dev/null
  cp -r "$runs/d/stages" "$out/stages" 2>/dev/null && rm -f "$out"/stages/*.h5
  # An Nsight Systems timeline of a one-shot prune and evaluation, where nsys works on this machine.
  local nsys
  nsys=$(command -v nsys || ls /opt/nvidia/nsight-systems*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -1)
  if [ "$gpu" = 1 ] && [ -n "$nsys" ]; then
    timeout --kill-after=5 60 "$nsys" profile -t cuda,nvtx,cublas -o "$out/timeline" --force-overwrite true \
      "$bin/train_prune" "${args[@]}" --set "run.output=$runs/d-nsys" --set experiment.arms=sparsegpt:oneshot \
      --set data.calib_nsamples=4 --set eval.windows=2 > "$out/nsys.log" 2>&1 ||
      echo "nsys did not finish (see d/nsys.log)"
    find "$out" -name 'timeline*' -size +12M -delete  # keep the logs tarball small enough to come back
  else
    echo "nsys: not available here"
  fi
  return $rc
}

# The small OPT pretrained on the GPU with 20-50x the CPU run's 1.0M tokens (as many as fit in about half the
# stage's time, measured by a 20-step probe), then the paper's five arms on it (configs/mini-paper.ini).
stage_paper() {
  local out="$logs/e" cap="${PT_GPU_CHECK_STAGE_LEFT:-120}"
  mkdir -p "$out"
  local pre=(--config configs/opt-mini-pretrain.ini --no-progress --set "data.cache=$runs/cache")
  local arms=(--config configs/mini-paper.ini --no-progress --set "data.cache=$runs/cache")
  local steps tokens_per_step=$((32 * 256))
  if [ "$gpu" = 1 ]; then
    pre+=(--set run.device=cuda --set train.batch_size=32)
    arms+=(--set run.device=cuda)
    local s=$(date +%s)
    "$bin/pretrain" "${pre[@]}" --set "run.output=$runs/probe" --set train.steps=20 --set train.warmup_steps=5 \
      --set eval.windows=4 \
      > "$out/probe.log" 2>&1 || { echo "the pretraining probe failed"; cat "$out/probe.log"; return 1; }
    local probe=$(( $(date +%s) - s + 1 ))
    # 20 steps took `probe` seconds (start-up included); give pretraining about half of what is left.
    steps=$(( (cap - probe) / 2 * 20 / probe ))
    local low=$(( 20 * 1024000 / tokens_per_step )) high=$(( 50 * 1024000 / tokens_per_step ))
    [ "$steps" -gt "$high" ] && steps=$high
    [ "$steps" -lt "$low" ] && echo "only $steps steps fit (20x the CPU tokens is $low): pretraining below target"
  else
    pre+=(--set run.device=cpu --set model.layers=2 --set model.hidden=64 --set model.heads=2 --set model.ffn=256
          --set model.context=64 --set train.seqlen=64 --set train.batch_size=4 --set eval.seqlen=64
          --set eval.windows=4 --set eval.periodic_windows=2 --set train.eval_every=0 --set train.warmup_steps=2)
    tokens_per_step=$((4 * 64))
    arms+=(--set run.device=cpu --set model.layers=2 --set model.hidden=64 --set model.heads=2 --set model.ffn=256
           --set model.context=64 --set data.calib_nsamples=4 --set retrain.steps=2 --set retrain.seqlen=64
           --set eval.seqlen=64 --set eval.windows=2 --set experiment.sparsities=0.0,0.5)
    steps=10
  fi
  echo "pretraining $steps steps of $tokens_per_step tokens"
  "$bin/pretrain" "${pre[@]}" --set "run.output=$runs/opt-mini" --set train.steps=$steps || return 1
  cp "$runs/opt-mini/pretrain.json" "$runs/opt-mini/loss.csv" "$out/" 2>/dev/null
  "$bin/train_prune" "${arms[@]}" --set "model.weights=$runs/opt-mini/model.h5" --set "run.output=$runs/paper"
  local rc=$?
  cp "$runs/paper/results.json" "$runs/paper/results.md" "$runs/paper/results.csv" "$out/" 2>/dev/null
  return $rc
}

case "${1:-}" in
  tests) stage_tests ;;
  benchmarks) stage_benchmarks ;;
  compare) stage_compare ;;
  train_prune) stage_train_prune ;;
  paper) stage_paper ;;
  *) echo "gpu_check_stages: unknown stage '${1:-}' (tests | benchmarks | compare | train_prune | paper)" >&2; exit 2 ;;
esac
