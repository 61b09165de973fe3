#!/usr/bin/env python3
"""Mask bits that differ between the pruned stages of two train_prune outputs, per matrix.
   compare_masks.py OUT_A OUT_B   -> one line per differing matrix, then 'total differing mask bits: N'"""
import glob, json, sys
import h5py, numpy as np

def pruned_stage(out):
    for j in glob.glob(out + "/stages/*.json"):
        rec = json.load(open(j))
        if "prune" in rec["key"]:
            return h5py.File(out + "/stages/" + rec["id"] + ".h5", "r")
    sys.exit(f"{out}: no prune stage")

a, b = pruned_stage(sys.argv[1]), pruned_stage(sys.argv[2])
total = entries = 0
for name in sorted(a["masks"]):
    x, y = np.unpackbits(a["masks"][name][()]), np.unpackbits(b["masks"][name][()])
    d = int(np.count_nonzero(x != y))
    total += d
    entries += x.size
    if d: print(f"{name}: {d} of {x.size}")
print(f"total differing mask bits: {total} of {entries}")
