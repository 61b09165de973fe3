#!/bin/sh
# [prune] statistics_sum = running against exact: 1 rank (OpenMP/OpenBLAS threads 2 and 1, no mpirun) and 2 ranks
# (mpirun -np 2, one thread each). A random 4-layer OPT (hidden 512, ffn 2048) from make_random_opt, SparseGPT 50 %,
# 32 calibration windows of 256 tokens, forward_batch 8 (prune only; 4 evaluation windows). Per run: the prune
# stage's op_seconds (stage record), the perplexity, peak RSS and the mask bits that differ from the 1-rank
# 2-thread run of the same mode (compare_masks.py).
#   [MODES="running exact"] bench/results/dist-cpu-2026-12-03/exact/run.sh BUILD_DIR   (from the repository root;
#   writes under /tmp/pt-exact-bench)
set -e
build=${1:-build-cpu} work=/tmp/pt-exact-bench here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"  # the model of ../run.sh: make_random_opt seed 3
[ -f "$work/model/config.json" ] || "$build/make_random_opt" --out "$work/model" --layers 4 --hidden 512 --heads 8 \
  --ffn 2048 --context 256 --seed 3 > /dev/null
# INI text from "[section]" and key=value words.
ini() { for kv in "$@"; do case $kv in \[*) echo "$kv" ;; *) echo "${kv%%=*} = ${kv#*=}" ;; esac; done; }
config() {  # $1 output, $2 statistics_sum, $3 threads
  ini "[run]" device=cpu seed=0 threads="$3" output="$1" "[experiment]" arms=sparsegpt:oneshot sparsities=0.5 \
    "[model]" preset=custom layers=4 hidden=512 heads=8 ffn=2048 context=256 dropout=0.0 weights="$work/model" \
    "[data]" dir="$(pwd)/data" cache="$work/cache" calib_nsamples=32 calib_seqlen=256 \
    "[prune]" forward_batch=8 measure_reconstruction=false statistics_sum="$2" \
    "[eval]" seqlen=256 batch=4 windows=4
}
prune_seconds() { grep -l '"kind": *"prune"' "$1"/stages/*.json | xargs cat | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["op_seconds"])'; }
# "perplexity | peak RSS" of the SparseGPT row of results.json (rank 0's peak on 2 ranks).
row() { python3 -c 'import json,sys; r=[r for r in json.load(open(sys.argv[1])) if r["method"] == "sparsegpt"][0]
print("%s | %.0f MB" % (r["perplexity"], r["peak_host_rss_bytes"] / 2**20))' "$1/results.json"; }
echo "| statistics_sum | ranks | threads/rank | prune stage (s) | perplexity | peak RSS | mask bits differing from 1 rank, 2 threads | load before |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for mode in ${MODES:-running exact}; do
  for spec in "1 2" "1 1" "2 1"; do
    set -- $spec
    out="$work/$mode-$1r-$2t"
    rm -rf "$out"
    config "$out" "$mode" "$2" > "$out.ini"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ "$1" = 1 ]; then "$build/train_prune" --config "$out.ini" --no-progress > "$out.log" 2>&1
    else mpirun -np 2 --oversubscribe $( [ "$(id -u)" = 0 ] && echo --allow-run-as-root ) -x OMP_NUM_THREADS=1 "$build/train_prune" --config "$out.ini" --no-progress > "$out.log" 2>&1; fi
    diff=$(python3 "$here/compare_masks.py" "$work/$mode-1r-2t" "$out" | tail -1 | cut -d' ' -f5-)
    echo "| $mode | $1 | $2 | $(prune_seconds "$out") | $(row "$out") | $diff | $load |"
  done
done
