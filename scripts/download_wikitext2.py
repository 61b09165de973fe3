#!/usr/bin/env python3
"""Download WikiText-2 (raw, v1) and write it in the original file layout, then check the published pins.

For users who do not have wiki.{train,valid,test}.raw. The Hugging Face copy (Salesforce/wikitext,
config wikitext-2-raw-v1) stores one row per line of the original files: a line with text becomes that
line (ending in "\\n"), a blank line (" " in the original) becomes "". Writing every non-empty row as it is
and every empty row as " \\n" gives the original files back byte for byte (data/SOURCES.md, note W1),
which is checked against their published sha256 values.

Sources (--source):
  datasets  datasets.load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1")   (pip install datasets)
  parquet   the dataset's parquet files via huggingface_hub (pip install huggingface_hub pyarrow)
  auto      datasets if installed, else parquet (default)
--check only verifies files already in the target folder and needs no network.
"""
import argparse
import hashlib
import os
import sys

REPO = "Salesforce/wikitext"
CONFIG = "wikitext-2-raw-v1"
# split -> (file, size in bytes, sha256, HF row count); pins from data/SOURCES.md.
SPLITS = {
    "train": ("wiki.train.raw", 10940747, "6707892fa3788b5ab9ed78ab5ff37d9fe825f6011a2ad4fcd6a6d467f0e7da57", 36718),
    "validation": ("wiki.valid.raw", 1146846, "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7", 3760),
    "test": ("wiki.test.raw", 1290590, "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08", 4358),
}
# The parquet files' own pins (as published in the dataset repo's LFS pointers), checked when downloaded.
PARQUET = {
    "train": (6357543, "e83889baabc497075506f91975be5fac0d45c5290b6b20582c8cd1e853d0c9f7"),
    "validation": (657209, "204929b7ff9d6184953f867dedb860e40aa69c078fc1e54b3baaa8fb28511c4c"),
    "test": (732610, "5f1bea067869d04849c0f975a2b29c4ff47d867f484f5010ea5e861eab246d91"),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Download WikiText-2 raw and write wiki.{train,valid,test}.raw, "
                                            "verifying the published sha256 pins.")
    p.add_argument("--out", default="data/wikitext-2-raw", help="target folder (default: %(default)s)")
    p.add_argument("--source", choices=("auto", "datasets", "parquet"), default="auto",
                   help="where to get the rows (default: %(default)s)")
    p.add_argument("--splits", nargs="+", choices=tuple(SPLITS), default=list(SPLITS),
                   help="splits to fetch (default: all)")
    p.add_argument("--revision", default=None, help="dataset revision (git commit or branch) to download")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")
    p.add_argument("--check", action="store_true", help="only verify existing files against the pins (no network)")
    return p.parse_args(argv)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rows_to_raw(rows):
    """The original file text from HF rows: empty rows were the blank " " lines."""
    return "".join(row if row else " \n" for row in rows)


def rows_from_datasets(split, revision, config=CONFIG):
    import datasets
    ds = datasets.load_dataset(REPO, config, split=split, revision=revision)
    return list(ds["text"])


def rows_from_parquet(split, revision, config=CONFIG):
    """config: wikitext-2-raw-v1 (its parquet pins are checked) or wikitext-2-v1 (the tokenized variant)."""
    import pyarrow.parquet as pq
    from huggingface_hub import hf_hub_download
    path = hf_hub_download(repo_id=REPO, repo_type="dataset", revision=revision,
                           filename=f"{config}/{split}-00000-of-00001.parquet")
    if config == CONFIG:
        size, digest = PARQUET[split]
        got = sha256_file(path)
        state = "OK" if got == digest and os.path.getsize(path) == size else f"MISMATCH (expected {digest}, got {got})"
        print(f"  parquet {split}: {state}")
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def pick_source(source):
    if source != "auto":
        return source
    try:
        import datasets  # noqa: F401
        return "datasets"
    except ImportError:
        return "parquet"


def verify(path, size, digest):
    """Prints and returns whether the file matches its pin."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        print(f"{name}: MISSING ({path})")
        return False
    got_size, got = os.path.getsize(path), sha256_file(path)
    if got == digest and got_size == size:
        print(f"{name}: OK ({size} bytes, sha256 {digest})")
        return True
    print(f"{name}: MISMATCH (expected {size} bytes, sha256 {digest}; got {got_size} bytes, sha256 {got})")
    return False


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ok = True
    if args.check:
        for split in args.splits:
            name, size, digest, _ = SPLITS[split]
            ok &= verify(os.path.join(args.out, name), size, digest)
        return 0 if ok else 1

    source = pick_source(args.source)
    fetch = rows_from_datasets if source == "datasets" else rows_from_parquet
    os.makedirs(args.out, exist_ok=True)
    for split in args.splits:
        name, size, digest, n_rows = SPLITS[split]
        path = os.path.join(args.out, name)
        if os.path.exists(path) and not args.force:
            print(f"{name}: exists, not downloaded again (use --force to replace it)")
            ok &= verify(path, size, digest)
            continue
        print(f"{split}: downloading {REPO} {CONFIG} via {source} ...")
        try:
            rows = fetch(split, args.revision)
        except ImportError as e:
            need = "datasets" if source == "datasets" else "huggingface_hub pyarrow"
            print(f"error: {e.name} is not installed: pip install {need}", file=sys.stderr)
            return 1
        except Exception as e:  # network or hub errors: say which split and how it failed
            print(f"error: downloading the {split} split failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        if len(rows) != n_rows:
            print(f"  warning: {split} has {len(rows)} rows, expected {n_rows}")
        # newline="" writes "\n" as is on every platform; the pins are for LF files.
        with open(path + ".tmp", "w", encoding="utf-8", newline="") as f:
            f.write(rows_to_raw(rows))
        os.replace(path + ".tmp", path)
        ok &= verify(path, size, digest)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
