"""Independent float64 PyTorch reference of the Qwen2.5-VL network for test/qwen.test.ts.

Written from the architecture's public description (Hugging Face transformers'
modeling_qwen2_5_vl) in plain torch ops: the window index is built the reference's way (padding
with -100, reshaping, permuting) rather than the TS code's direct loops, position ids follow
get_rope_index, and attention uses explicit masks.

Usage: python3 qwen_ref.py DIR. DIR/case.json holds the config, weight and input descriptions;
tensors are raw little-endian files in DIR. Writes DIR/out_<name>.bin (float64) and DIR/out.json.

Optional case.json fields:
  "lora": {"rank": r, "alpha": a, "weights": {"<module>.lora_A.weight": spec ([r, in]),
           "<module>.lora_B.weight": spec ([out, r])}}: the module's weight becomes
           W + (alpha / r) * B @ A (its bias is unchanged), in plain and gradient cases alike.
  "d_hidden": spec (float32 [B, L, C]) and/or "d_logits": spec (float32 [B, L, V]): autograd
           through the whole network (vision tower included) of
           S = sum(hidden * d_hidden) + sum(logits * d_logits) (each term only if given), with every
           weight (LoRA tensors included) a float64 leaf. Writes DIR/grad_<name>.bin (float64, the
           weight's shape, C order; zeros for weights S does not depend on) and lists them in
           out.json under "grads": {name: shape}.
A spec is {"file", "dtype", "shape"}. Padding rows of hidden/logits are well defined here (their
attention output is zero) but unspecified in the implementation under test: give zeros there.
With tie_word_embeddings and no lm_head.weight the head is the embedding table, so its gradient
sums both uses; rows at image/video token positions are replaced by vision embeddings and get no
gradient through those positions.
"""
import json
import os
import sys

import numpy as np
import torch

torch.set_grad_enabled(False)
D64 = torch.float64


def load(d, spec):
    arr = np.fromfile(os.path.join(d, spec["file"]), dtype=spec["dtype"]).reshape(spec["shape"])
    return torch.from_numpy(arr.copy())


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def vision_rot(grid, head_dim, merge):
    pos = []
    for t, h, w in grid:
        hp = torch.arange(h).unsqueeze(1).expand(-1, w)
        hp = hp.reshape(h // merge, merge, w // merge, merge).permute(0, 2, 1, 3).flatten()
        wp = torch.arange(w).unsqueeze(0).expand(h, -1)
        wp = wp.reshape(h // merge, merge, w // merge, merge).permute(0, 2, 1, 3).flatten()
        pos.append(torch.stack([hp, wp], -1).repeat(t, 1))
    pos = torch.cat(pos, 0)
    dim = head_dim // 2
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    inv = inv.to(D64)
    mx = int(max(max(g[1], g[2]) for g in grid))
    table = torch.outer(torch.arange(mx, dtype=D64), inv)
    return table[pos].flatten(1)  # [N, head_dim / 2]


def window_index(grid, window_size, merge, patch):
    out, cu, base = [], [0], 0
    vw = window_size // merge // patch
    for t, h, w in grid:
        gh, gw = h // merge, w // merge
        index = torch.arange(t * gh * gw).reshape(t, gh, gw)
        ph, pw = vw - gh % vw, vw - gw % vw
        nh, nw = (gh + ph) // vw, (gw + pw) // vw
        ip = torch.nn.functional.pad(index, (0, pw, 0, ph), "constant", -100)
        ip = ip.reshape(t, nh, vw, nw, vw).permute(0, 1, 3, 2, 4).reshape(t, nh * nw, vw, vw)
        seq = (ip != -100).sum([2, 3]).reshape(-1)
        ip = ip.reshape(-1)
        out.append(ip[ip != -100] + base)
        cu.extend((seq.cumsum(0) * merge * merge + cu[-1]).tolist())
        base += t * gh * gw
    cu = torch.unique_consecutive(torch.tensor(cu))
    return torch.cat(out), cu


def attend(q, k, v, allowed):
    # q [Tq, H, D], k/v [Tk, Hkv, D], allowed [Tq, Tk] bool
    H, Hkv = q.shape[1], k.shape[1]
    k = k.repeat_interleave(H // Hkv, 1)
    v = v.repeat_interleave(H // Hkv, 1)
    s = torch.einsum("qhd,khd->hqk", q, k) / (q.shape[-1] ** 0.5)
    s = s.masked_fill(~allowed.unsqueeze(0), float("-inf"))
    p = torch.softmax(s, -1)
    p = torch.nan_to_num(p, nan=0.0)
    return torch.einsum("hqk,khd->qhd", p, v)


def block_mask(cu, n):
    seg = torch.zeros(n, dtype=torch.long)
    for i in range(1, len(cu)):
        seg[cu[i - 1]:cu[i]] = i
    return seg.unsqueeze(0) == seg.unsqueeze(1)


def vision(W, vc, pixels, grid):
    C, H = vc["hidden_size"], vc["num_heads"]
    hd = C // H
    merge = vc["spatial_merge_size"]
    unit = merge * merge
    x = pixels @ W["visual.patch_embed.proj.weight"].reshape(C, -1).T
    rot = vision_rot(grid, hd, merge)
    widx, cuw = window_index(grid, vc["window_size"], merge, vc["patch_size"])
    N = x.shape[0]
    x = x.reshape(N // unit, unit, -1)[widx].reshape(N, -1)
    rot = rot.reshape(N // unit, unit, -1)[widx].reshape(N, -1)
    emb = torch.cat([rot, rot], -1)
    cos, sin = emb.cos(), emb.sin()
    cuf = torch.cat([torch.zeros(1, dtype=torch.long),
                     torch.tensor([h * w for t, h, w in grid for _ in range(t)]).cumsum(0)])
    full_mask, win_mask = block_mask(cuf.tolist(), N), block_mask(cuw.tolist(), N)
    for l in range(vc["depth"]):
        p = f"visual.blocks.{l}."
        m = full_mask if l in vc["fullatt_block_indexes"] else win_mask
        h = rms(x, W[p + "norm1.weight"], 1e-6)
        qkv = (h @ W[p + "attn.qkv.weight"].T + W[p + "attn.qkv.bias"]).reshape(N, 3, H, hd)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = q * cos.unsqueeze(1) + rotate_half(q) * sin.unsqueeze(1)
        k = k * cos.unsqueeze(1) + rotate_half(k) * sin.unsqueeze(1)
        a = attend(q, k, v, m).reshape(N, C)
        x = x + a @ W[p + "attn.proj.weight"].T + W[p + "attn.proj.bias"]
        h = rms(x, W[p + "norm2.weight"], 1e-6)
        g = h @ W[p + "mlp.gate_proj.weight"].T + W[p + "mlp.gate_proj.bias"]
        u = h @ W[p + "mlp.up_proj.weight"].T + W[p + "mlp.up_proj.bias"]
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T + W[p + "mlp.down_proj.bias"]
    h = rms(x, W["visual.merger.ln_q.weight"], 1e-6).reshape(N // unit, -1)
    h = torch.nn.functional.gelu(h @ W["visual.merger.mlp.0.weight"].T + W["visual.merger.mlp.0.bias"])
    h = h @ W["visual.merger.mlp.2.weight"].T + W["visual.merger.mlp.2.bias"]
    return h[torch.argsort(widx)]


def rope_index(cfg, ids, mask, igrid, vgrid, spg):
    B, L = ids.shape
    merge = cfg["vision_config"]["spatial_merge_size"] if "vision_config" in cfg else 2
    tps = cfg["vision_config"].get("tokens_per_second", 2) if "vision_config" in cfg else 2
    pos = torch.ones(3, B, L, dtype=torch.long)
    deltas = []
    ii = vi = 0
    for b in range(B):
        toks = ids[b][mask[b] == 1].tolist()
        parts, st = [], 0
        vs = [i for i, t in enumerate(toks) if t == cfg["vision_start_token_id"]]
        kinds = [toks[i + 1] for i in vs if i + 1 < len(toks)]
        n_img = sum(1 for t in kinds if t == cfg["image_token_id"])
        n_vid = sum(1 for t in kinds if t == cfg["video_token_id"])
        ri, rv = n_img, n_vid
        for _ in range(n_img + n_vid):
            ei = toks.index(cfg["image_token_id"], st) if cfg["image_token_id"] in toks[st:] and ri > 0 else len(toks) + 1
            ev = toks.index(cfg["video_token_id"], st) if cfg["video_token_id"] in toks[st:] and rv > 0 else len(toks) + 1
            if ei < ev:
                t, h, w = igrid[ii]; s = 0.0; ii += 1; ri -= 1; ed = ei
            else:
                t, h, w = vgrid[vi]; s = spg[vi] if spg is not None else 1.0; vi += 1; rv -= 1; ed = ev
            h, w = h // merge, w // merge
            st_idx = parts[-1].max() + 1 if parts else 0
            parts.append(torch.arange(ed - st).view(1, -1).expand(3, -1) + st_idx)
            tt = (torch.arange(t).view(-1, 1).expand(-1, h * w) * s * tps).long().flatten()
            hh = torch.arange(h).view(1, -1, 1).expand(t, -1, w).flatten()
            ww = torch.arange(w).view(1, 1, -1).expand(t, h, -1).flatten()
            parts.append(torch.stack([tt, hh, ww]) + (ed - st) + st_idx)
            st = ed + t * h * w
        if st < len(toks):
            st_idx = parts[-1].max() + 1 if parts else 0
            parts.append(torch.arange(len(toks) - st).view(1, -1).expand(3, -1) + st_idx)
        lp = torch.cat(parts, 1)
        pos[:, b, mask[b] == 1] = lp
        deltas.append(int(lp.max()) + 1 - L)
    return pos, deltas


def decoder(W, cfg, x, pos, mask):
    B, L, C = x.shape
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = C // H
    sec = cfg["rope_scaling"]["mrope_section"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    inv = inv.to(D64)
    ang = pos.to(D64).unsqueeze(-1) * inv  # [3, B, L, hd/2]
    emb = torch.cat([ang, ang], -1)
    chunks = sec * 2
    cos = torch.cat([c[i % 3] for i, c in enumerate(emb.cos().split(chunks, -1))], -1)
    sin = torch.cat([c[i % 3] for i, c in enumerate(emb.sin().split(chunks, -1))], -1)
    eps = cfg["rms_norm_eps"]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]).reshape(B, L, H, hd)
        k = (h @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]).reshape(B, L, Hkv, hd)
        v = (h @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]).reshape(B, L, Hkv, hd)
        q = q * cos.unsqueeze(2) + rotate_half(q) * sin.unsqueeze(2)
        k = k * cos.unsqueeze(2) + rotate_half(k) * sin.unsqueeze(2)
        outs = []
        for b in range(B):
            allowed = causal & (mask[b] == 1).unsqueeze(0)
            outs.append(attend(q[b], k[b], v[b], allowed))
        a = torch.stack(outs).reshape(B, L, C)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    return rms(x, W["model.norm.weight"], eps)


def with_lora(W, lora, factors):
    """The weights as the network sees them: each adapted module's W + (alpha / r) * B @ A.

    Formed out of place so that autograd reaches the base weight and both factors."""
    if not factors:
        return W
    scale = lora["alpha"] / lora["rank"]
    W = dict(W)
    mods = sorted({k[: -len(".lora_A.weight")] for k in factors if k.endswith(".lora_A.weight")} |
                  {k[: -len(".lora_B.weight")] for k in factors if k.endswith(".lora_B.weight")})
    for m in mods:
        a, b, w = factors.get(m + ".lora_A.weight"), factors.get(m + ".lora_B.weight"), W.get(m + ".weight")
        if a is None or b is None or w is None:
            raise ValueError(f"LoRA module {m} needs lora_A, lora_B and {m}.weight")
        delta = b @ a
        if a.shape[0] != lora["rank"] or delta.numel() != w.numel() or delta.shape[0] != w.shape[0]:
            raise ValueError(f"LoRA {m}: A {list(a.shape)}, B {list(b.shape)} do not fit rank "
                             f"{lora['rank']} and weight {list(w.shape)}")
        W[m + ".weight"] = w + scale * delta.reshape(w.shape)
    return W


def network(cfg, W, inp, igrid, vgrid, spg):
    """Every output the test compares, and the rope deltas; W holds the effective weights."""
    ids = inp["input_ids"].long()
    mask = inp["attention_mask"].long() if "attention_mask" in inp else torch.ones_like(ids)
    out = {}
    # Indexing makes a copy, so the vision rows below overwrite the copy, never the table: the
    # table then gets no gradient through image/video positions, as in the model.
    x = W["model.embed_tokens.weight"][ids]
    if "pixel_values" in inp:
        e = vision(W, cfg["vision_config"], inp["pixel_values"].to(D64), igrid)
        out["image_embeds"] = e
        x[ids == cfg["image_token_id"]] = e
    if "pixel_values_videos" in inp:
        e = vision(W, cfg["vision_config"], inp["pixel_values_videos"].to(D64), vgrid)
        out["video_embeds"] = e
        x[ids == cfg["video_token_id"]] = e
    pos, deltas = rope_index(cfg, ids, mask, igrid, vgrid, spg)
    out["position_ids"] = pos.to(D64)
    hidden = decoder(W, cfg, x, pos, mask)
    out["hidden"] = hidden
    lm = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    out["logits"] = hidden @ lm.T
    return out, deltas


def objective(out, cot):
    """S = sum(hidden * d_hidden) + sum(logits * d_logits): its gradient is the vector-Jacobian
    product the implementation's backward pass computes for those upstream gradients."""
    s = 0
    for k in ("hidden", "logits"):
        if k in cot:
            s = s + (out[k] * cot[k]).sum()
    return s


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    cfg = case["config"]
    cot = {k[2:]: load(d, case[k]).to(D64) for k in ("d_hidden", "d_logits") if k in case}
    grad = bool(cot)
    # Autograd only where gradients are asked for: plain forward cases stay fast.
    torch.set_grad_enabled(grad)
    leaves = {k: load(d, s).to(D64) for k, s in case["weights"].items()}
    lora = case.get("lora")
    factors = {k: load(d, s).to(D64) for k, s in lora["weights"].items()} if lora else {}
    leaves.update(factors)
    if grad:
        for t in leaves.values():
            t.requires_grad_(True)
    W = with_lora({k: leaves[k] for k in case["weights"]}, lora, factors)
    inp = {k: load(d, s) for k, s in case["inputs"].items()}
    out, deltas = network(cfg, W, inp, case.get("image_grid_thw") or [], case.get("video_grid_thw") or [],
                          case.get("second_per_grid_ts"))
    meta = {"deltas": deltas, "shapes": {}}
    if grad:
        objective(out, cot).backward()
        meta["grads"] = {}
        for k, t in leaves.items():
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            g.detach().contiguous().numpy().astype(np.float64).tofile(os.path.join(d, f"grad_{k}.bin"))
            meta["grads"][k] = list(t.shape)
    for k, v in out.items():
        v.detach().contiguous().numpy().astype(np.float64).tofile(os.path.join(d, f"out_{k}.bin"))
        meta["shapes"][k] = list(v.shape)
    json.dump(meta, open(os.path.join(d, "out.json"), "w"))


if __name__ == "__main__":
    main()
