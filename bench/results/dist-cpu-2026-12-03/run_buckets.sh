#!/bin/sh
# Retraining on 2 ranks of this CPU with gradient buckets of 25 MiB (the default: about two decoder layers a
# bucket, the 103 MB tied embedding alone in one) against buckets of 0.001 MiB (every parameter its own
# all-reduce, the per-parameter pattern). The model of run.sh (run it first), magnitude 50 %, 8 retraining steps of 4 windows of
# 128 tokens; the retraining stage's op_seconds from its stage record.
#   bench/results/dist-cpu-2026-12-03/run_buckets.sh BUILD_DIR   (from the repository root)
set -e
build=${1:-build-cpu}
work=/tmp/pt-dist-bench
root=$( [ "$(id -u)" = 0 ] && echo --allow-run-as-root )
[ -f "$work/model/config.json" ] || { echo "run run.sh first (it writes $work/model)"; exit 1; }
config() {  # $1 output, $2 bucket_mb
  cat <<INI
[run]
device = cpu
seed = 0
output = $1
[experiment]
arms = magnitude:retrain:full
sparsities = 0.5
[model]
preset = custom
layers = 4
hidden = 512
heads = 8
ffn = 2048
context = 256
dropout = 0.0
weights = $work/model
[data]
dir = $(pwd)/data
cache = $work/cache
[prune]
measure_reconstruction = false
[retrain]
steps = 8
batch_size = 4
seqlen = 128
checkpoint_every = 0
bucket_mb = $2
[eval]
seqlen = 256
batch = 4
windows = 2
INI
}
retrain_seconds() { grep -l '"kind": *"retrain"' "$1"/stages/*.json | xargs cat | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["op_seconds"])'; }
echo "| bucket_mb | repeat | retraining stage (s) | final loss | load before |"
echo "|---:|---:|---:|---:|---|"
for rep in 1 2; do
  for mb in 25 0.001; do
    out="$work/buckets-$mb-$rep"
    rm -rf "$out"
    config "$out" "$mb" > "$work/buckets-$mb.ini"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    mpirun -np 2 --oversubscribe $root "$build/train_prune" --config "$work/buckets-$mb.ini" --no-progress > "$out.log" 2>&1
    loss=$(grep -l '"kind": *"retrain"' "$out"/stages/*.json | xargs cat | python3 -c \
      'import json,sys; print(json.load(sys.stdin)["final_train_loss"])')
    echo "| $mb | $rep | $(retrain_seconds "$out") | $loss | $load |"
  done
done
