#!/bin/sh
# Runs a program on NP ranks of this machine with mpirun, for ctest's Dist.* tests.
#   mpirun_test.sh NP PROGRAM ARGS...                          passes when every rank passes
#   mpirun_test.sh NP --expect-failure TEXT PROGRAM ARGS...    passes when the run fails within 60 s (no hang)
#                                                              and its output contains TEXT
# Exits 77 (ctest: skipped) when there is no mpirun. As root, OpenMPI needs --allow-run-as-root.
np=$1; shift
expect=""
if [ "$1" = "--expect-failure" ]; then expect=$2; shift 2; fi
if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: no mpirun on this machine (install openmpi-bin: make deps)"; exit 77
fi
set -- mpirun -np "$np" --oversubscribe $( [ "$(id -u)" = 0 ] && echo --allow-run-as-root ) "$@"
if [ -z "$expect" ]; then
  exec timeout 300 "$@"
fi
out=$(timeout 60 "$@" 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" = 124 ]; then echo "FAILED: the run hung (ended by timeout after 60 s)"; exit 1; fi
if [ "$rc" = 0 ]; then echo "FAILED: the run succeeded; a rank failure should end it with an error"; exit 1; fi
case "$out" in
  *"$expect"*) echo "OK: the run failed (exit $rc) with \"$expect\""; exit 0 ;;
  *) echo "FAILED: the output lacks \"$expect\""; exit 1 ;;
esac
