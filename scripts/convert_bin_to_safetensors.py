#!/usr/bin/env python3
"""Convert a Hugging Face OPT folder from PyTorch .bin weights to safetensors.

The C++ loader (opt/hf_checkpoint.h) reads only safetensors: a pickle cannot be read safely or
memory-mapped. This script turns
    pytorch_model.bin                                  -> model.safetensors
    pytorch_model-0000i-of-0000n.bin + .bin.index.json -> model-0000i-of-0000n.safetensors
                                                          + model.safetensors.index.json
keeping every tensor's dtype and name, and dropping lm_head.weight when it equals the token embedding
(OPT ties them; safetensors refuses to store shared tensors twice). config.json and the tokenizer files
are copied when the output folder is not the input folder.

Needs: pip install torch safetensors
"""
import argparse
import json
import os
import shutil
import sys

EMBED_NAMES = ("model.decoder.embed_tokens.weight", "decoder.embed_tokens.weight")
LM_HEAD = "lm_head.weight"
COPIED_FILES = ("config.json", "generation_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                "tokenizer_config.json", "tokenizer.json")


class ConversionError(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Convert a Hugging Face OPT checkpoint folder from pytorch_model*.bin to safetensors.",
        epilog="Example: %(prog)s ~/models/opt-125m --out ~/models/opt-125m-st")
    p.add_argument("src", help="folder with config.json and pytorch_model.bin (or pytorch_model.bin.index.json + shards)")
    p.add_argument("--out", help="output folder (default: the input folder)")
    p.add_argument("--force", action="store_true", help="overwrite existing safetensors files")
    return p.parse_args(argv)


def load_state_dict(path):
    import torch
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: missing")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary code from the pickle
    except TypeError:  # torch < 1.13 has no weights_only
        sd = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ConversionError(f"{path}: cannot load as a PyTorch state dict: {e}") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConversionError(f"{path}: expected a dict of tensors (a state dict), found {type(sd).__name__}")
    return sd


def find_shards(src):
    """Returns ([(bin_file, safetensors_file)], weight_map or None)."""
    single = os.path.join(src, "pytorch_model.bin")
    index = os.path.join(src, "pytorch_model.bin.index.json")
    if os.path.isfile(single):
        return [("pytorch_model.bin", "model.safetensors")], None
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            try:
                weight_map = json.load(f)["weight_map"]
            except (ValueError, KeyError) as e:
                raise ConversionError(f"{index}: not a shard index with a \"weight_map\": {e}") from e
        files = sorted(set(weight_map.values()))
        for name in files:
            if not os.path.isfile(os.path.join(src, name)):
                raise ConversionError(f"{index} lists shard {name}, which is missing from {src}")
        out = [(b, b.replace("pytorch_model", "model", 1).rsplit(".bin", 1)[0] + ".safetensors") for b in files]
        return out, weight_map
    raise ConversionError(f"{src}: no pytorch_model.bin or pytorch_model.bin.index.json")


def unshare(tensors):
    """Contiguous tensors with no two sharing storage (save_file rejects shared memory)."""
    seen = set()
    out = {}
    for name, t in tensors.items():
        t = t.contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


def save_atomic(tensors, path):
    from safetensors.torch import save_file
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, path)


def convert(src, out, force):
    import torch
    shards, weight_map = find_shards(src)
    targets = [os.path.join(out, st) for _, st in shards]
    if weight_map is not None:
        targets.append(os.path.join(out, "model.safetensors.index.json"))
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not force:
        raise ConversionError(f"{existing[0]} exists (use --force to overwrite)")
    # Load the shard holding the embedding first, so a tied lm_head in any shard can be compared with it.
    if weight_map is not None:
        embed_file = next((weight_map[n] for n in EMBED_NAMES if n in weight_map), None)
        shards.sort(key=lambda s: s[0] != embed_file)
    embed = None
    new_map, total = {}, 0
    for bin_name, st_name in shards:
        sd = load_state_dict(os.path.join(src, bin_name))
        for n in EMBED_NAMES:
            if n in sd:
                embed = sd[n]
        if LM_HEAD in sd:
            head = sd[LM_HEAD]
            if embed is not None and head.shape == embed.shape and torch.equal(head, embed):
                del sd[LM_HEAD]
                print(f"{bin_name}: dropped {LM_HEAD} (tied to the token embedding)")
            else:
                print(f"{bin_name}: warning: keeping {LM_HEAD}: it differs from the token embedding (not tied)")
        sd = unshare(sd)
        if not sd:
            continue
        path = os.path.join(out, st_name)
        save_atomic(sd, path)
        size = sum(t.numel() * t.element_size() for t in sd.values())
        total += size
        dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
        print(f"{bin_name} -> {path}: {len(sd)} tensors, {size / 2**20:.1f} MiB, {', '.join(dtypes)}")
        for n in sd:
            new_map[n] = st_name
        del sd
    if weight_map is not None:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(new_map.items()))}
        path = os.path.join(out, "model.safetensors.index.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)
        print(f"wrote {path} ({len(new_map)} tensors)")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    src = os.path.abspath(os.path.expanduser(args.src))
    out = os.path.abspath(os.path.expanduser(args.out)) if args.out else src
    try:
        try:
            import safetensors  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            raise ConversionError(f"{e.name} is not installed: pip install torch safetensors") from e
        if not os.path.isdir(src):
            raise ConversionError(f"{src}: no such folder")
        if not os.path.isfile(os.path.join(src, "config.json")):
            raise ConversionError(f"{src}: missing config.json (is this a Hugging Face model folder?)")
        os.makedirs(out, exist_ok=True)
        if out != src:
            for name in COPIED_FILES:
                if os.path.isfile(os.path.join(src, name)):
                    shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
        convert(src, out, args.force)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
