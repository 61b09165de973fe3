#!/usr/bin/env python3
"""Golden fixtures for the OPT model: small random OPT models built with Hugging Face transformers.

For each config (one pre-LN like every OPT size but 350m, one 350m-style post-LN model with
project_in/project_out and no final layer norm, and one pre-LN model with an untied LM head) this writes, under
tests/golden/opt/<name>/:
  config.json, model.safetensors   the model, as save_pretrained writes it (a tied lm_head is not stored; the
                                   untied one is, with tie_word_embeddings: false in config.json)
  io.safetensors                   input_ids [B,T] i64, logits [B,T,V] f32, loss (0-d) f32,
                                   grad.<param> for every parameter (the tied lm_head's gradient is
                                   part of grad.model.decoder.embed_tokens.weight),
                                   ppl_tokens [L] i64, ppl_seqlen, ppl_value: perplexity of the model on
                                   ppl_tokens under SparseGPT's protocol (non-overlapping windows of
                                   ppl_seqlen, tail dropped, mean NLL over the windows, exp)
Every parameter is randomised (not HF's zero biases / unit norms) so a wrong bias or norm shows up.
Dropout is 0 and the model is in eval mode, so the forward is deterministic.

Run: python3 tests/golden/make_opt_golden.py [NAME ...]   (needs torch, transformers, safetensors from PyPI;
     names choose configs, e.g. tiny-untied; default: all)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import OPTConfig, OPTForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {
    # Mirrors opt_preset("tiny") in opt/config.cpp.
    "tiny": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=256, num_attention_heads=4,
                 max_position_embeddings=64, word_embed_proj_dim=64, do_layer_norm_before=True),
    # Mirrors opt_preset("tiny-350m"): post-LN, project_in/out, no decoder final layer norm.
    "tiny-350m": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=256, num_attention_heads=4,
                      max_position_embeddings=64, word_embed_proj_dim=32, do_layer_norm_before=False),
    # "tiny" with its own LM head (tie_word_embeddings=False): lm_head.weight is stored and has its own gradient.
    "tiny-untied": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=256, num_attention_heads=4,
                        max_position_embeddings=64, word_embed_proj_dim=64, do_layer_norm_before=True,
                        tie_word_embeddings=False),
}
BATCH, SEQ = 2, 24
PPL_SEQLEN, PPL_WINDOWS, PPL_TAIL = 16, 5, 7


def randomise(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias") or name.endswith("layer_norm.bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))


def sparsegpt_perplexity(model, tokens, seqlen):
    n = tokens.numel() // seqlen
    nlls = []
    with torch.no_grad():
        for i in range(n):
            batch = tokens[i * seqlen:(i + 1) * seqlen].unsqueeze(0)
            logits = model(batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], batch[0, 1:])
            nlls.append(loss * seqlen)
    return torch.exp(torch.stack(nlls).sum() / (n * seqlen)).item()


def make(name, kw):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    config = OPTConfig(dropout=0.0, attention_dropout=0.0, activation_function="relu", pad_token_id=1,
                       bos_token_id=2, eos_token_id=2, torch_dtype="float32", **kw)
    config._attn_implementation = "eager"
    model = OPTForCausalLM(config).float()
    randomise(model, gen)
    model.eval()

    out = os.path.join(HERE, "opt", name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    ids = torch.randint(3, kw["vocab_size"], (BATCH, SEQ), generator=gen)
    ids[:, 0] = 2  # OPT's leading </s>
    res = model(input_ids=ids, labels=ids)
    res.loss.backward()
    tensors = {"input_ids": ids.contiguous(), "logits": res.logits.detach().float().contiguous(),
               "loss": res.loss.detach().float().reshape([])}
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.detach().float().contiguous()

    ppl_tokens = torch.randint(0, kw["vocab_size"], (PPL_SEQLEN * PPL_WINDOWS + PPL_TAIL,), generator=gen)
    tensors["ppl_tokens"] = ppl_tokens
    tensors["ppl_seqlen"] = torch.tensor(PPL_SEQLEN, dtype=torch.int64)
    tensors["ppl_value"] = torch.tensor(sparsegpt_perplexity(model, ppl_tokens, PPL_SEQLEN), dtype=torch.float64)
    save_file(tensors, os.path.join(out, "io.safetensors"),
              metadata={"made_by": "tests/golden/make_opt_golden.py", "torch": torch.__version__,
                        "transformers": __import__("transformers").__version__})
    print(f"{name}: loss {res.loss.item():.6f}, ppl {tensors['ppl_value'].item():.4f}, "
          f"{sum(p.numel() for p in model.parameters())} parameters -> {out}")


if __name__ == "__main__":
    for n in sys.argv[1:] or CONFIGS:
        make(n, CONFIGS[n])
    sys.exit(0)
