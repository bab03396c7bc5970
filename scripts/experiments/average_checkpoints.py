"""Average the EMA weights of several training checkpoints of one run (SWA-style) and export them.

    python scripts/experiments/average_checkpoints.py OUT.pt A.pt B.pt C.pt [--prior-alpha 0.05]

The BatchNorm running statistics are averaged like the weights. The rest of the checkpoint (config,
step, history) is the last file's. Measured in docs/lab-notes/2026-12-06-readouts-and-averaging.md (not shipped).
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
    a = ap.parse_args()
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in a.ckpts]
    merged = states[-1]
    merged["ema"] = {k: (sum(s["ema"][k].float() for s in states) / len(states)).to(v.dtype)
                     if v.is_floating_point() else v for k, v in merged["ema"].items()}
    tmp = a.out.with_name(a.out.name + ".ckpt")
    save_atomic(merged, tmp)
    export_weights(tmp, a.out, prior_alpha=a.prior_alpha)
    tmp.unlink()
    print(f"wrote {a.out}: the mean of steps {[s['step'] for s in states]}")


if __name__ == "__main__":
    main()
