#!/usr/bin/env python3
"""Checks the data files the project reads from data/ and fetches the missing ones where it can (`make data`).

Every file is checked against the size and sha256 published for it (the pins of the shared data folder's
SOURCES.md). A file that is present but does not match is reported and left as it is. A missing file is fetched
when a network allows (or copied from --source-dir), checked, and only then moved into place; whatever cannot be
had is reported on one line that says what the file is and exactly how to put it there.

  data/wikitext-2-raw/wiki.test.raw              WikiText-2 raw, test split       scripts/download_wikitext2.py
  data/wikitext-2-raw/wiki.valid.raw             WikiText-2 raw, validation split scripts/download_wikitext2.py
  data/wikitext-2-tokens/wiki.train.tokens.part  the first 9488736 B of the tokenized train split (the default
                                                 train text), cut from wikitext-2-v1's train split once the
                                                 rebuilt whole file matches its published size and CRC-32
  data/opt-tokenizer/vocab.json, merges.txt      OPT's tokenizer, from the facebook/opt-125m repository (huggingface_hub)

vocab.json is also accepted when its parsed content (token -> id, in order) is the pinned one: the staged copy
and RoBERTa's differ only in whitespace, and no byte-exact pin of the hub's copy is published.

Options: --data DIR (default data), --source-dir DIR (a folder with the same layout, e.g. another machine's data
folder, used instead of the network), --offline (fetch nothing; also HF_HUB_OFFLINE=1). The hub is
HF_ENDPOINT or https://huggingface.co. Exit status 0 when every file is present and matches, else 1.
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import download_wikitext2 as wikitext  # noqa: E402

OPT_REPO = "facebook/opt-125m"
# The whole tokenized train file the .part is cut from (SOURCES.md note W3: its zip entry's size and CRC-32).
TRAIN_TOKENS_SIZE, TRAIN_TOKENS_CRC32 = 10797148, 0xAA2052CD


class DataFile:
    def __init__(self, path, size, sha256, what, how, fetch, json_sha256=None):
        self.path, self.size, self.sha256, self.what, self.how = path, size, sha256, what, how
        self.fetch = fetch  # ("wikitext", split) | ("train_prefix",) | ("hub", filename)
        self.json_sha256 = json_sha256  # sha256 of the parsed JSON written compactly, in order

    def describe(self):
        return f"{self.what}, {self.size} B, sha256 {self.sha256[:16]}..."


DOWNLOAD = "python3 scripts/download_wikitext2.py --out {data}/wikitext-2-raw --splits {split}"
HUB = f"download it from https://huggingface.co/{OPT_REPO} (pip install huggingface_hub; " \
      f"hf download {OPT_REPO} {{name}} --local-dir {{data}}/opt-tokenizer)"
COPY = "or copy it from another machine's data folder (python3 scripts/fetch_data.py --source-dir DIR)"
FILES = [
    DataFile("wikitext-2-raw/wiki.test.raw", 1290590,
             "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08", "WikiText-2 raw test split",
             DOWNLOAD.replace("{split}", "test") + " (pip install huggingface_hub pyarrow), " + COPY,
             ("wikitext", "test")),
    DataFile("wikitext-2-raw/wiki.valid.raw", 1146846,
             "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7", "WikiText-2 raw validation split",
             DOWNLOAD.replace("{split}", "validation") + " (pip install huggingface_hub pyarrow), " + COPY,
             ("wikitext", "validation")),
    DataFile("wikitext-2-tokens/wiki.train.tokens.part", 9488736,
             "188fb9380cf0a9cad7a2221fca9cc241f43aab1f76d6fdbfd8d8902932bc08cc",
             "the first 9488736 B of WikiText-2's tokenized train split",
             "run python3 scripts/fetch_data.py --data {data} where huggingface.co is reachable (pip install "
             "huggingface_hub pyarrow), " + COPY + ", or point [data] train_path at a train text of your own",
             ("train_prefix",)),
    DataFile("opt-tokenizer/vocab.json", 898823,
             "deaaaa2bb580e21395f18f8ae38e8ebd2985d1c5da170ce562d2866c16902d1b", "OPT's vocab.json",
             HUB.replace("{name}", "vocab.json") + ", " + COPY, ("hub", "vocab.json"),
             json_sha256="ed19656ea1707df69134c4af35c8ceda2cc9860bf2c3495026153a133670ab5e"),
    DataFile("opt-tokenizer/merges.txt", 456318,
             "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5", "OPT's merges.txt",
             HUB.replace("{name}", "merges.txt") + ", " + COPY, ("hub", "merges.txt")),
]


class FetchError(Exception):
    """Why a file could not be had (one line)."""


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def check(f, data):
    """None when the bytes are the pinned file, else what differs."""
    if len(data) == f.size and sha256_bytes(data) == f.sha256:
        return None
    if f.json_sha256:
        try:
            text = json.dumps(json.loads(data.decode("utf-8")), ensure_ascii=False, separators=(",", ":"))
            if sha256_bytes(text.encode("utf-8")) == f.json_sha256:
                return None
        except (UnicodeDecodeError, ValueError):
            pass
    return f"{len(data)} B with sha256 {sha256_bytes(data)[:16]}..., expected {f.size} B with sha256 {f.sha256[:16]}..."


def hub_endpoint():
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable(timeout=5.0):
    """None when the hub answers a TCP connection, else why not (so an offline machine fails fast, not after retries)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urllib.parse.urlsplit(hub_endpoint())
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return f"no network: {host}:{port} unreachable ({e.strerror or e})"


def wikitext_rows(split, config):
    try:
        return wikitext.rows_from_datasets(split, None, config)
    except ImportError:
        pass
    try:
        return wikitext.rows_from_parquet(split, None, config)
    except ImportError as e:
        raise FetchError(f"{e.name} is not installed (pip install huggingface_hub pyarrow)")


def fetch_from_network(f):
    kind = f.fetch[0]
    if kind == "wikitext":
        return wikitext.rows_to_raw(wikitext_rows(f.fetch[1], wikitext.CONFIG)).encode("utf-8")
    if kind == "train_prefix":
        whole = wikitext.rows_to_raw(wikitext_rows("train", "wikitext-2-v1")).encode("utf-8")
        crc = zlib.crc32(whole)
        if len(whole) != TRAIN_TOKENS_SIZE or crc != TRAIN_TOKENS_CRC32:
            raise FetchError(f"the rebuilt wiki.train.tokens is {len(whole)} B with CRC-32 {crc:08x}, not the "
                             f"published {TRAIN_TOKENS_SIZE} B with CRC-32 {TRAIN_TOKENS_CRC32:08x}")
        return whole[:f.size]
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise FetchError("huggingface_hub is not installed (pip install huggingface_hub)")
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as cache:
        with open(hf_hub_download(repo_id=OPT_REPO, filename=f.fetch[1], cache_dir=cache), "rb") as src:
            return src.read()


def obtain(f, source_dir, offline_reason):
    """The file's bytes from --source-dir or the network; raises FetchError saying why not."""
    if source_dir:
        src = os.path.join(source_dir, f.path)
        if not os.path.isfile(src):
            raise FetchError(f"{src} does not exist")
        with open(src, "rb") as s:
            return s.read(), src
    if offline_reason:
        raise FetchError(offline_reason)
    try:
        repo = f"{OPT_REPO}" if f.fetch[0] == "hub" else wikitext.REPO
        return fetch_from_network(f), f"{hub_endpoint()}/{repo}"
    except FetchError:
        raise
    except Exception as e:  # network, hub or parsing errors: the first line says what happened
        raise FetchError(f"fetching failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def install(target, data):
    """Writes beside the target and renames, so a target exists only complete."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)


def main(argv=None):
    p = argparse.ArgumentParser(description="Check data/ against the published checksums and fetch what is missing.")
    p.add_argument("--data", default="data", help="the data folder (default: %(default)s)")
    p.add_argument("--source-dir", help="take missing files from this folder (same layout) instead of the network")
    p.add_argument("--offline", action="store_true", help="fetch nothing; report what is missing")
    args = p.parse_args(argv)

    missing = [f for f in FILES if not os.path.isfile(os.path.join(args.data, f.path))]
    offline_reason = None
    if missing and not args.source_dir:
        offline_reason = "--offline" if args.offline else hub_unreachable()
    ok = True
    for f in FILES:
        target = os.path.join(args.data, f.path)
        if f not in missing:
            with open(target, "rb") as s:
                wrong = check(f, s.read())
            if wrong:
                ok = False
                print(f"data: MISMATCH {target} ({f.what}): {wrong}; left as it is: replace it with the published "
                      f"file ({f.how.format(data=args.data)})")
            continue
        try:
            data, origin = obtain(f, args.source_dir, offline_reason)
            wrong = check(f, data)
            if wrong:
                raise FetchError(f"what came from {origin} is {wrong}: not installed")
            install(target, data)
            print(f"data: fetched {target} from {origin} ({f.describe()}, verified)")
        except (FetchError, OSError) as e:
            ok = False
            print(f"data: MISSING {target} ({f.describe()}): could not fetch it ({e}); put it there: "
                  f"{f.how.format(data=args.data)}")
    if ok and not missing:
        print(f"data: all {len(FILES)} files present and verified in {args.data}/")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
