#!/usr/bin/env bash
# Proves the GPU kit on a machine without a GPU, the way it will meet a GPU machine: in a minimal Debian root
# (debootstrap minbase + python3 + xz, no -dev package, no compiler, no HDF5/OpenBLAS/…) that holds only the
# repository's tracked files, the kit and CUDA's runtime libraries, scripts/gpu_check.sh must run end to end:
# every binary starts, every CUDA test reports skipped, stages c–e run at toy sizes, and the report says so.
#
#   sudo scripts/gpu_check_clean_root.sh [ROOT_DIR]      (default /tmp/pt-clean-root; needs root for chroot)
# The report lands in ROOT_DIR/out/ and is summarised here; exit 0 only when every check below holds.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-/tmp/pt-clean-root}"
[ "$(id -u)" = 0 ] || { echo "gpu_check_clean_root: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
[ -f .gpu-kit/kit.tar.xz ] || { echo "gpu_check_clean_root: no .gpu-kit/kit.tar.xz: run 'make gpu-kit'" >&2; exit 1; }
if [ ! -x "$root/usr/bin/python3" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
  debootstrap --variant=minbase --include=python3,xz-utils bookworm "$root" http://deb.debian.org/debian
fi
# What must not be there: the libraries the kit carries, the compiler, the -dev packages.
for absent in usr/include/hdf5 usr/bin/g++ usr/bin/cmake usr/bin/readelf; do
  [ ! -e "$root/$absent" ] || { echo "gpu_check_clean_root: $root/$absent exists: the root is not clean" >&2; exit 1; }
done
if ls "$root"/usr/lib/x86_64-linux-gnu/{libhdf5,libopenblas,libinih,libpcre2-8,libgomp}* >/dev/null 2>&1; then
  echo "gpu_check_clean_root: $root already has a library the kit must bring" >&2; exit 1
fi

rm -rf "$root/repo" "$root/out" && mkdir -p "$root/repo" "$root/out" "$root/usr/local/cuda/lib64"
git ls-files -z | xargs -0 cp --parents -t "$root/repo"
cp -r .gpu-kit "$root/repo/.gpu-kit"
cuda_lib=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libcudart.so.13 / {print $NF; exit}')")")
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcusolver.so.12 libcusparse.so.12 libnvJitLink.so.13 libnccl.so.2; do
  cp -L "$cuda_lib/$lib" "$root/usr/local/cuda/lib64/"
done

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
start=$(date +%s)
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root TMPDIR=/tmp \
  bash -c 'cd /repo && OUT=/out scripts/gpu_check.sh' 2>&1 | tee "$root/out/console.log"
echo "gpu_check_clean_root: gpu_check.sh took $(( $(date +%s) - start )) s in $root"

# The checks: toy run recognised; every stage ok; every CUDA test skipped, none passed or failed; all libraries found.
python3 - "$root/out/gpu-report.json" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
problems = []
if rep["gpu"]:
    problems.append("the report claims a GPU")
for s in rep["stages"]:
    if s["status"] != "ok":
        problems.append(f"stage {s['stage']}: {s['status']}")
t = rep["tests"]["totals"]
if t["passed"] or t["failed"] or not t["skipped"]:
    problems.append(f"CUDA tests: {t} (expected all skipped)")
if "not found" in rep["kit_libraries"] or "every library" not in rep["kit_libraries"]:
    problems.append("kit libraries: " + rep["kit_libraries"])
print(f"clean root: {len(rep['stages'])} stages, CUDA tests {t}, {len(rep['benchmarks'])} benchmark results")
for p in problems:
    print("gpu_check_clean_root: " + p)
sys.exit(1 if problems else 0)
EOF
