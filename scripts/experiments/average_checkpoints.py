"""Average the EMA weights of several training checkpoints of one net (SWA-style) and export them.

    python scripts/experiments/average_checkpoints.py OUT.pt A.pt B.pt C.pt [--prior-alpha 0.05]
    python scripts/experiments/average_checkpoints.py OUT.pt BEFORE.pt AFTER.pt --weights 0.5,0.5

Equal weights average points of one run (docs/lab-notes/2026-12-06-readouts-and-averaging.md).
``--weights`` interpolates a net and its fine-tuned self, as WiSE-FT does (Wortsman et al. 2022):
both must come from one starting point, or the average is meaningless. The BatchNorm running
statistics and the rebalancing prior are averaged like the weights. The rest of the checkpoint
(config, step, history) is the last file's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vidcolor.train import export_weights, save_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("ckpts", type=Path, nargs="+")
    ap.add_argument("--prior-alpha", type=float, default=0.05)
    ap.add_argument("--weights", default=None, help="comma-separated share of each checkpoint (default: equal)")
    a = ap.parse_args()
    try:
        w = [1.0 / len(a.ckpts)] * len(a.ckpts) if a.weights is None else [float(x) for x in a.weights.split(",")]
    except ValueError:
        w = []
    if len(w) != len(a.ckpts) or abs(sum(w) - 1.0) > 1e-6:
        ap.error(f"--weights {a.weights!r}: need {len(a.ckpts)} shares that sum to 1")
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in a.ckpts]
    merged = states[-1]
    merged["ema"] = {k: sum(wi * s["ema"][k].float() for wi, s in zip(w, states)).to(v.dtype)
                     if v.is_floating_point() else v for k, v in merged["ema"].items()}
    if all(s.get("rebalance") is not None for s in states):
        merged["rebalance"] = sum(wi * s["rebalance"].float() for wi, s in zip(w, states))
    tmp = a.out.with_name(a.out.name + ".ckpt")
    save_atomic(merged, tmp)
    export_weights(tmp, a.out, prior_alpha=a.prior_alpha)
    tmp.unlink()
    print(f"wrote {a.out}: steps {[s['step'] for s in states]} with shares {w}")


if __name__ == "__main__":
    main()
