#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz one after another (called by `make fuzz`):
#   scripts/run_fuzzers.sh BUILD_DIR SECONDS HARNESS...
# Each runs SECONDS under nice, in libFuzzer's fork mode so that a finding is saved and the run goes on, over its
# seeds (tests/fuzz/seeds/<harness>, the binary seeds make_fuzz_seeds writes, configs/ for the INI harnesses) and
# the corpus it grew before (BUILD_DIR/fuzz/corpus/<harness>). Findings land in BUILD_DIR/fuzz/findings/<harness>/;
# the log of each run is BUILD_DIR/fuzz/<harness>.log. Prints one summary line per harness; exits 1 when any
# harness found something.
set -euo pipefail
build=$1 seconds=$2
shift 2
out=$build/fuzz
mkdir -p "$out/seeds"
"$build/tests/fuzz/make_fuzz_seeds" "$out/seeds"
# Leaks inside libhdf5 on damaged files are the library's (tests/fuzz/lsan.supp); everything else is reported.
export LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
status=0
for h in "$@"; do
  bin=$build/tests/fuzz/fuzz_$h
  [ -x "$bin" ] || { echo "fuzz: no harness $bin (known: see tests/fuzz/README.md)" >&2; exit 2; }
  seeds=(tests/fuzz/seeds/$h)
  case $h in
    safetensors|checkpoint) seeds=("$out/seeds/$h"); max_len=65536 ;;
    ini_config|train_prune_config) seeds+=(configs); max_len=16384 ;;
    *) max_len=16384 ;;
  esac
  mkdir -p "$out/corpus/$h" "$out/findings/$h"
  rm -f "$out/findings/$h"/crash-* "$out/findings/$h"/timeout-* "$out/findings/$h"/oom-* "$out/findings/$h"/leak-*
  start=$(date +%s)
  # 2 GiB per input; 30 s per input; stdout/stderr of the code under test closed (sanitizer reports still go to
  # the log through libFuzzer's own copy of stderr).
  nice -n 19 "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" \
    -timeout=30 -rss_limit_mb=2048 -max_len="$max_len" -close_fd_mask=3 -print_final_stats=1 \
    -artifact_prefix="$out/findings/$h/" "$out/corpus/$h" "${seeds[@]}" > "$out/$h.log" 2>&1 || true
  execs=$(grep -oE '^#[0-9]+' "$out/$h.log" | tail -1 | tr -d '#')
  found=$(find "$out/findings/$h" -type f | wc -l)
  corpus=$(find "$out/corpus/$h" -type f | wc -l)
  printf 'fuzz %-20s %6ss  %10s executions  corpus %5s  findings %s\n' "$h" "$(( $(date +%s) - start ))" \
    "${execs:-?}" "$corpus" "$found"
  [ "$found" -eq 0 ] || status=1
done
exit $status
