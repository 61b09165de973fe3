#!/usr/bin/env bash
# Installs the Debian packages the build needs, only those missing, and says what it does.
# Called by `make deps` (and so by `make` and `make test`). With --fuzz, only what `make fuzz` adds: clang with
# libFuzzer and the sanitizer runtimes, and clang's OpenMP (Debian 12's clang 14).
set -euo pipefail
if [ "${1:-}" = "--fuzz" ]; then
  packages=(clang-14 libclang-rt-14-dev libomp-14-dev)
else
  packages=(cmake pkg-config g++ make
            python3                             # scripts/: make data fetches and checks the data files
            libopenblas-openmp-dev liblapacke-dev  # CPU BLAS / LAPACK (OpenBLAS on OpenMP threads)
            libgtest-dev libbenchmark-dev       # tests, benchmarks
            libhdf5-dev hdf5-tools              # checkpoints (+ h5dump)
            libinih-dev libcli11-dev            # INI configs, command line
            nlohmann-json3-dev libpcre2-dev     # JSON, Unicode regex for the tokenizer
            libssl-dev                          # SHA-256 of data files and caches
            gnuplot-nox                         # result plots
            libopenmpi-dev openmpi-bin          # multi-process runs (dist/: MPI backend, NCCL bootstrap; mpirun)
            patchelf xz-utils)                  # the GPU kit (make gpu-kit)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: not root and no sudo; install by hand: apt-get install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps: done"
