"""OPT cases of `make compare`, PyTorch side: Hugging Face's OPTForCausalLM (random weights, the shape the
driver sends) for a training step and the perplexity loop.

Training step, as a Hugging Face fine-tuning loop runs it: forward with labels (the model shifts them),
backward, clip_grad_norm_(1.0), torch.optim.AdamW(fused=True) with weight decay on matrices only, zero_grad.
On CUDA with "autocast_bf16" the forward and backward run under torch.autocast(bfloat16) with f32 master
weights (the project's AutocastGuard does the same). Perplexity, as SparseGPT's opt_eval measures it: one
window of `seqlen` tokens per forward under no_grad, the shifted cross-entropy of the logits.
"""
import torch


def make_hf_model(p, device, train):
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(vocab_size=p["vocab"], hidden_size=p["hidden"], num_hidden_layers=p["layers"],
                    ffn_dim=p["ffn"], num_attention_heads=p["heads"], max_position_embeddings=p["ctx"],
                    word_embed_proj_dim=p["hidden"], do_layer_norm_before=True, dropout=p.get("dropout", 0.0),
                    attention_dropout=0.0, enable_bias=True, tie_word_embeddings=True)
    torch.manual_seed(p.get("seed", 0))
    model = OPTForCausalLM(cfg).to(device=device, dtype=torch.float32)
    model.train(train)
    return model


def random_ids(n, t, vocab, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, t), generator=g).to(device)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())  # the tied head is one parameter, counted once


class TrainStepCase:
    def __init__(self, p, device):
        self.model = make_hf_model(p, device, train=True)
        decay = [q for n, q in self.model.named_parameters() if q.dim() >= 2]
        no_decay = [q for n, q in self.model.named_parameters() if q.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": p.get("weight_decay", 0.01)},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=p.get("lr", 1e-5), fused=True)
        self.params = decay + no_decay
        self.ids = random_ids(p["batch"], p["seqlen"], p["vocab"], device, seed=3)
        self.autocast = bool(p.get("autocast_bf16", False)) and device.type == "cuda"
        self.info = {"parameters": count_parameters(self.model),
                     "attn_implementation": self.model.config._attn_implementation}

    def run(self):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model(input_ids=self.ids, labels=self.ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"loss": loss.detach()}

    def check(self, last):
        return {"loss": float(last["loss"])}


class PerplexityCase:
    def __init__(self, p, device):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[p.get("dtype", "f32")]
        self.model = make_hf_model(p, device, train=False).to(dtype)
        self.ids = random_ids(p.get("batch", 1), p["seqlen"], p["vocab"], device, seed=4)
        self.info = {"parameters": count_parameters(self.model),
                     "attn_implementation": self.model.config._attn_implementation}

    @torch.no_grad()
    def run(self):
        logits = self.model(input_ids=self.ids).logits
        shift = logits[:, :-1, :].float()
        nll = torch.nn.functional.cross_entropy(shift.reshape(-1, shift.shape[-1]), self.ids[:, 1:].reshape(-1))
        return {"nll": nll}

    def check(self, last):
        return {"nll": float(last["nll"])}


OPT_CASES = {
    "train_step": TrainStepCase,
    "perplexity": PerplexityCase,
}
