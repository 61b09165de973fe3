#!/usr/bin/env bash
# Packs a CUDA build into a relocatable GPU kit that travels to a GPU machine with the repository:
#   OUT/kit.tar.xz   bin/ (tests, benchmarks, apps; stripped, RUNPATH $ORIGIN/../lib), lib/ (every shared library
#                    they load that is neither glibc, libstdc++/libgcc_s nor CUDA's), manifest.json
#   OUT/data.tar.xz  WikiText-2 and the OPT tokenizer files (data/ is a link to a folder outside the repository)
#   OUT/manifest.json  the same manifest, readable without unpacking
# CUDA's own libraries (cudart, cuBLAS/cuBLASLt, cuSOLVER, cuSPARSE, nvJitLink, NCCL) come from the GPU machine's
# CUDA 13: the manifest lists the sonames the binaries need, checked against this toolkit's.
#
#   scripts/make_gpu_kit.sh [--build DIR] [--out DIR] [--no-compress]
# --no-compress stages OUT/stage/ only (what the CI check resolves), skipping the archives.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build out=.gpu-kit compress=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-compress) compress=0; shift ;;
    *) echo "make_gpu_kit: unknown argument '$1' (allowed: --build DIR, --out DIR, --no-compress)" >&2; exit 2 ;;
  esac
done
limit_mib=48
die() { echo "make_gpu_kit: $*" >&2; exit 1; }

cache="$build/CMakeCache.txt"
[ -f "$cache" ] || die "$cache: no build there; run 'make CUDA_ARCH=90' first (or 'make gpu-kit', which does)"
grep -q '^CMAKE_CUDA_COMPILER:' "$cache" && [ -x "$build/tests/pt_tests" ] ||
  die "$build is not a CUDA build with tests; it needs the CUDA toolkit (nvcc) at configure time"
archs=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$cache")
[[ ";$archs;" == *";90;"* || ";$archs;" == *";90-real;"* ]] ||
  die "$build compiles CUDA for '$archs', not sm_90: rebuild with 'make BUILD=$build CUDA_ARCH=90'"
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
[ "$btype" = Release ] || die "$build is a '$btype' build; the kit is made from a Release build"
for tool in patchelf strip readelf xz; do
  command -v $tool >/dev/null || die "'$tool' is missing: run 'make deps'"
done

stage="$out/stage"
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib"
# Every program a GPU stage runs: the test program, every benchmark, the apps.
programs=("$build/tests/pt_tests")
for p in "$build"/bench/bench_* "$build"/bench/compare_cases "$build"/train_prune "$build"/pretrain "$build"/opt_eval \
         "$build"/pt_demo; do
  [ -f "$p" ] && [ -x "$p" ] && programs+=("$p")
done
for p in "${programs[@]}"; do
  cp "$p" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$(basename "$p")"
  patchelf --set-rpath '$ORIGIN/../lib' "$stage/bin/$(basename "$p")"
done

# Shared libraries: what the dynamic loader resolves here, minus the system's and CUDA's. glibc, libstdc++ and
# libgcc_s are forward compatible (the GPU machine's are newer); CUDA's must match the driver there.
is_system() { [[ "$1" =~ ^(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so ]]; }
is_cuda() { [[ "$1" =~ ^(libcuda|libcudart|libcublas|libcublasLt|libcusolver|libcusolverMg|libcusparse|libnvJitLink|libnccl|libnvToolsExt|libnvrtc|libcurand|libcufft)\.so ]]; }
declare -A carried=() cuda_needed=()
for p in "${programs[@]}"; do
  while read -r name _ path _; do
    [ -n "$name" ] || continue
    if is_cuda "$name"; then cuda_needed[$name]=1
    elif ! is_system "$name"; then
      [ -f "$path" ] || die "$(basename "$p") needs $name, which the loader does not find here"
      carried[$name]=$(readlink -f "$path")
    fi
  done < <(ldd "$p" | awk '/=>/ {print $1, $2, $3}')
done
for name in "${!carried[@]}"; do
  cp "${carried[$name]}" "$stage/lib/$name"
  chmod u+w "$stage/lib/$name"
  strip --strip-unneeded "$stage/lib/$name" 2>/dev/null || true
  patchelf --set-rpath '$ORIGIN' "$stage/lib/$name"
done

# The CUDA sonames the binaries need must be CUDA 13's (this toolkit's): list them with where they are here.
cuda_root=$(dirname "$(dirname "$(readlink -f "$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$cache")")")")
cuda_version=$(awk '/#define CUDA_VERSION / {print $3}' "$cuda_root/include/cuda.h")
[ "$((cuda_version / 1000))" = 13 ] || die "the toolkit at $cuda_root is CUDA $cuda_version, not 13"
cuda_json=""
for name in $(printf '%s\n' "${!cuda_needed[@]}" | sort); do
  found=$(ls "$cuda_root"/lib64/"$name" "$cuda_root"/targets/x86_64-linux/lib/"$name" 2>/dev/null | head -1 || true)
  [ -n "$found" ] || die "the binaries need $name, which CUDA $cuda_version at $cuda_root does not ship"
  cuda_json+="${cuda_json:+, }\"$name\""
done

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -1)
lib_json=$(for n in $(printf '%s\n' "${!carried[@]}" | sort); do
  printf '    {"soname": "%s", "from": "%s", "bytes": %s}\n' "$n" "$(basename "${carried[$n]}")" \
    "$(stat -c %s "$stage/lib/$n")"; done | awk 'NR > 1 {printf ",\n"} {printf "%s", $0} END {print ""}')
bin_json=$(for p in "$stage"/bin/*; do printf '"%s"\n' "$(basename "$p")"; done | paste -sd, -)
cat > "$stage/manifest.json" <<EOF
{
  "commit": "$commit",
  "dirty": $([ -n "$dirty" ] && echo true || echo false),
  "made": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "cuda_architectures": "$archs",
  "cuda_toolkit": $cuda_version,
  "compiler": "$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache" | xargs basename) $(g++ -dumpfullversion)",
  "binaries": [$bin_json],
  "cuda_sonames_needed": [$cuda_json],
  "carried_libraries": [
$lib_json
  ]
}
EOF

# Nothing of this machine may travel inside the kit: no source, build or home path.
leaks=$(grep -rlaF -e "$(pwd -P)" -e "$(readlink -f "$build")" -e "$HOME/" "$stage" || true)
[ -z "$leaks" ] || die "these kit files contain a path of this machine: $leaks"
scripts/check_gpu_kit.py "$stage" "$cuda_root"

[ "$compress" = 1 ] || { echo "make_gpu_kit: staged $out/stage (not compressed)"; exit 0; }
tar -C "$stage" -cf - . | xz -T0 -9 > "$out/kit.tar.xz.tmp" && mv "$out/kit.tar.xz.tmp" "$out/kit.tar.xz"
for d in wikitext-2-raw wikitext-2-tokens opt-tokenizer; do
  [ -d "data/$d" ] || die "data/$d is missing: the GPU stages read it (link ../shared/data to data, or 'make data')"
done
tar -C data -chf - wikitext-2-raw wikitext-2-tokens opt-tokenizer | xz -T0 -9 > "$out/data.tar.xz.tmp" &&
  mv "$out/data.tar.xz.tmp" "$out/data.tar.xz"
cp "$stage/manifest.json" "$out/manifest.json"
rm -rf "$stage"

kit_bytes=$(stat -c %s "$out/kit.tar.xz" "$out/data.tar.xz" | awk '{s += $1} END {print s}')
tracked_bytes=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
awk -v k="$kit_bytes" -v t="$tracked_bytes" -v out="$out" -v lim="$limit_mib" 'BEGIN {
  printf "make_gpu_kit: %s: kit %.1f MiB (limit %d); with the tracked files %.1f MiB travel (limit 64)\n",
         out, k / 1048576, lim, (k + t) / 1048576 }'
[ "$kit_bytes" -le $((limit_mib * 1048576)) ] || die "the kit is over $limit_mib MiB"
[ $((kit_bytes + tracked_bytes)) -le $((64 * 1048576)) ] || die "kit + tracked files are over 64 MiB"
