"""PyTorch baseline for `npm run bench -- train`: one training step (forward + backward) of a plain
Qwen2 decoder in float32 on the CPU.

Written from the architecture's public description in torch modules and ops (transformers is not
needed): token embedding; per layer RMSNorm, q/k/v projections with biases, rotary embedding
(rotate-half, theta 1e6, positions 0..T-1), grouped-query causal attention, o_proj without bias,
residual, RMSNorm, SwiGLU MLP without biases, residual; final RMSNorm; an untied LM head; loss =
mean cross-entropy of each next token. Attention uses
torch.nn.functional.scaled_dot_product_attention where the installed PyTorch has it (2.0 and
later) and an explicit matmul + softmax otherwise (PyTorch 1.13); the JSON says which.

Usage:
  python3 torch_train_step.py --layers 24 --hidden 896 --heads 14 --kv-heads 2 --intermediate 4864 \\
      --vocab 151936 --tokens 512 --threads 2 --steps 3 --warmup 1 [--seed 0] [--json]
With --json, stdout is one JSON line:
  {"ms_median", "ms_all", "tokens", "params", "torch", "threads", "attention": "sdpa"|"explicit"}
(params counts every parameter, embedding and LM head included). Without it, one readable line.
Only loss.backward() is timed after the forward: no optimizer step.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.heads, self.kv_heads = a.heads, a.kv_heads
        self.hd = a.hidden // a.heads
        kv = a.kv_heads * self.hd
        self.input_layernorm = RMSNorm(a.hidden)
        self.q_proj = nn.Linear(a.hidden, a.hidden, bias=True)
        self.k_proj = nn.Linear(a.hidden, kv, bias=True)
        self.v_proj = nn.Linear(a.hidden, kv, bias=True)
        self.o_proj = nn.Linear(a.hidden, a.hidden, bias=False)
        self.post_attention_layernorm = RMSNorm(a.hidden)
        self.gate_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.up_proj = nn.Linear(a.hidden, a.intermediate, bias=False)
        self.down_proj = nn.Linear(a.intermediate, a.hidden, bias=False)

    def forward(self, x, cos, sin, causal):
        T = x.shape[0]
        h = self.input_layernorm(x)
        # [heads, T, hd]: attention batches over heads.
        q = self.q_proj(h).view(T, self.heads, self.hd).transpose(0, 1)
        k = self.k_proj(h).view(T, self.kv_heads, self.hd).transpose(0, 1)
        v = self.v_proj(h).view(T, self.kv_heads, self.hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # Each kv head serves heads / kv_heads consecutive query heads.
        rep = self.heads // self.kv_heads
        k = k.repeat_interleave(rep, 0)
        v = v.repeat_interleave(rep, 0)
        if HAS_SDPA:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = q @ k.transpose(-1, -2) * (self.hd ** -0.5) + causal
            a = torch.softmax(s, -1) @ v
        x = x + self.o_proj(a.transpose(0, 1).reshape(T, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Qwen2(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        hd = a.hidden // a.heads
        inv = 1.0 / (1e6 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(a.tokens, dtype=torch.float32).unsqueeze(1) * inv
        emb = torch.cat([ang, ang], -1)
        # Constant tables (positions are fixed), so they are built once and not timed.
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("causal", torch.full((a.tokens, a.tokens), float("-inf")).triu(1), persistent=False)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.causal)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits[:-1], ids[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", type=int, default=896)
    p.add_argument("--heads", type=int, default=14)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=4864)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()
    if a.hidden % a.heads or a.heads % a.kv_heads or (a.hidden // a.heads) % 2:
        p.error("--hidden must split into --heads even-sized heads and --heads into --kv-heads groups")
    if a.tokens < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        p.error("need --tokens >= 2, --steps >= 1, --warmup >= 0, --threads >= 1")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Qwen2(a)
    ids = torch.randint(a.vocab, (a.tokens,), generator=torch.Generator().manual_seed(a.seed + 1))
    params = sum(t.numel() for t in model.parameters())

    ms = []
    for i in range(a.warmup + a.steps):
        # Fresh gradients every step (as after optimizer.zero_grad(set_to_none=True)), so each
        # timed backward does the same work rather than accumulating into the previous step's.
        for t in model.parameters():
            t.grad = None
        t0 = time.perf_counter()
        loss = model(ids)
        loss.backward()
        dt = (time.perf_counter() - t0) * 1e3
        if not torch.isfinite(loss):
            sys.exit(f"loss is {loss.item()}")
        if i >= a.warmup:
            ms.append(dt)
        if not a.json:
            print(f"{'warmup' if i < a.warmup else 'step'} {i}: {dt:.0f} ms, loss {loss.item():.4f}", file=sys.stderr)

    res = {"ms_median": statistics.median(ms), "ms_all": ms, "tokens": a.tokens, "params": params,
           "torch": torch.__version__, "threads": a.threads, "attention": "sdpa" if HAS_SDPA else "explicit"}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"torch {res['torch']} float32 train step (forward + backward), {a.layers} layers, hidden {a.hidden}, "
              f"{params / 1e6:.1f} M params, {a.tokens} tokens, {a.threads} threads, {res['attention']} attention: "
              f"median {res['ms_median']:.1f} ms over {a.steps} steps")


if __name__ == "__main__":
    main()
