#!/bin/sh
# SparseGPT on 2 ranks of this CPU: each matrix pruned by one rank and broadcast ([prune] prune_on = one_rank)
# against every rank pruning every matrix (prune_on = every_rank), and 1 rank for reference. A random 4-layer
# OPT (hidden 512, ffn 2048) written by make_random_opt; 32 calibration windows of 256 tokens; prune only.
# The prune stage's op_seconds (stage record) is the number; the whole run is timed too. Every run goes through
# mpirun (1 rank too), so each rank is bound to a core alike.
#   bench/results/dist-cpu-2026-12-03/run.sh BUILD_DIR   (from the repository root; writes under /tmp/pt-dist-bench)
set -e
build=${1:-build-cpu}
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/pt-dist-bench
root=$( [ "$(id -u)" = 0 ] && echo --allow-run-as-root )
mkdir -p "$work"
[ -f "$work/model/config.json" ] || "$build/make_random_opt" --out "$work/model" --layers 4 --hidden 512 --heads 8 \
  --ffn 2048 --context 256 --seed 3 > /dev/null
config() {  # $1 output, $2 prune_on
  cat <<INI
[run]
device = cpu
seed = 0
output = $1
[experiment]
arms = sparsegpt:oneshot
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
calib_nsamples = 32
calib_seqlen = 256
[prune]
forward_batch = 8
prune_on = $2
measure_reconstruction = false
[eval]
seqlen = 256
batch = 4
windows = 4
INI
}
prune_seconds() { grep -h '"kind": *"prune"' -l "$1"/stages/*.json | xargs cat | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["op_seconds"])'; }
echo "| ranks | prune_on | repeat | prune stage (s) | whole run (s) | load before |"
echo "|---:|---|---:|---:|---:|---|"
for rep in 1 2; do
  for spec in "1 one_rank" "2 one_rank" "2 every_rank"; do
    set -- $spec
    out="$work/run-$1-$2-$rep"
    rm -rf "$out"
    config "$out" "$2" > "$work/$1-$2.ini"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    start=$(date +%s.%N)
    mpirun -np "$1" --oversubscribe $root "$build/train_prune" --config "$work/$1-$2.ini" --no-progress > "$out.log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    echo "| $1 | $2 | $rep | $(prune_seconds "$out") | $wall | $load |"
  done
done
# The three runs' tables: the same perplexities (to the printed digits).
for spec in 1-one_rank 2-one_rank 2-every_rank; do echo "$spec: $(grep -hi sparsegpt "$work/run-$spec-1/results.md" | head -1)"; done
