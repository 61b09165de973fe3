#!/usr/bin/env python3
"""Checks that every binary of a GPU kit resolves all its libraries from the kit and CUDA alone.

    scripts/check_gpu_kit.py KIT_DIR [CUDA_ROOT_OR_LIB_DIR ...]

KIT_DIR holds bin/ and lib/ (an unpacked kit, or make_gpu_kit.sh's stage). For each ELF file in both, every
DT_NEEDED entry must be found in KIT_DIR/lib, in one of the CUDA library folders, or be one of the libraries a
Linux machine always has (glibc, libstdc++, libgcc_s); its RUNPATH may only point inside the kit ($ORIGIN).
Unlike `ldd`, this never falls back on the folders of the machine it runs on, so a library that only this
machine has is reported. Exit 1 with one line per problem.
"""
import os
import re
import subprocess
import sys

SYSTEM = re.compile(r"^(libc|libm|libdl|libpthread|librt|libresolv|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s)"
                    r"\.so(\.\d+)*$")


def dynamic_section(path):
    """(needed sonames, runpath entries) of an ELF file, or None when it is not a dynamic ELF."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return None
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    runpath = [p for m in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", out)
               for p in m.split(":") if p]
    return needed, runpath


def cuda_lib_dirs(args):
    dirs = []
    for a in args:
        for d in (a, os.path.join(a, "lib64"), os.path.join(a, "targets", "x86_64-linux", "lib")):
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
    return dirs


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    kit = sys.argv[1]
    cuda_dirs = cuda_lib_dirs(sys.argv[2:])
    kit_lib = os.path.join(kit, "lib")
    problems, checked = [], 0
    for sub in ("bin", "lib"):
        folder = os.path.join(kit, sub)
        if not os.path.isdir(folder):
            problems.append(f"{folder}: missing")
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            section = dynamic_section(path)
            if section is None:
                continue
            checked += 1
            needed, runpath = section
            for entry in runpath:
                if not entry.startswith("$ORIGIN"):
                    problems.append(f"{sub}/{name}: RUNPATH entry '{entry}' points outside the kit")
            for soname in needed:
                if SYSTEM.match(soname) or os.path.exists(os.path.join(kit_lib, soname)):
                    continue
                if any(os.path.exists(os.path.join(d, soname)) for d in cuda_dirs):
                    continue
                where = ", ".join(cuda_dirs) if cuda_dirs else "no CUDA folder given"
                problems.append(f"{sub}/{name}: {soname} not found (not in the kit's lib/, not in {where})")
    for p in problems:
        print(f"check_gpu_kit: {p}", file=sys.stderr)
    if checked == 0:
        print(f"check_gpu_kit: no ELF files under {kit}/bin or {kit}/lib", file=sys.stderr)
        return 1
    if not problems:
        print(f"check_gpu_kit: {checked} files resolve every library from {kit}/lib and CUDA")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
