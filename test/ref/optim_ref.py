"""Independent float64 reference of the optimizer for test/train.test.ts: torch.optim.AdamW and
torch.nn.utils.clip_grad_norm_ themselves, in float64.

Usage: python3 optim_ref.py DIR. DIR/case.json: {"params": {name: spec}, "steps": [{"lr": x,
"grads": {name: spec}, "clip": max_norm | null}], "betas", "eps", "weight_decay",
"no_decay": [names]}; a spec is {"file", "shape"} of little-endian float32. Writes
DIR/out_<name>.bin (float64, the parameters after the last step) and DIR/out.json with each
step's gradient norm before clipping ("norms").
"""
import json
import os
import sys

import numpy as np
import torch

D64 = torch.float64


def load(d, spec):
    return torch.from_numpy(np.fromfile(os.path.join(d, spec["file"]), dtype="<f4").reshape(spec["shape"]).copy()).to(D64)


def main():
    d = sys.argv[1]
    case = json.load(open(os.path.join(d, "case.json")))
    params = {k: torch.nn.Parameter(load(d, s)) for k, s in case["params"].items()}
    nd = set(case["no_decay"])
    groups = [
        {"params": [p for k, p in params.items() if k not in nd], "weight_decay": case["weight_decay"]},
        {"params": [p for k, p in params.items() if k in nd], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1.0, betas=tuple(case["betas"]), eps=case["eps"])
    norms = []
    for st in case["steps"]:
        for k, p in params.items():
            p.grad = load(d, st["grads"][k])
        if st.get("clip") is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), st["clip"])))
        for g in opt.param_groups:
            g["lr"] = st["lr"]
        opt.step()
    for k, p in params.items():
        p.detach().numpy().astype(np.float64).tofile(os.path.join(d, f"out_{k}.bin"))
    json.dump({"norms": norms}, open(os.path.join(d, "out.json"), "w"))


if __name__ == "__main__":
    main()
