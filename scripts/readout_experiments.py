"""scripts/eval_dev.py with an experimental readout or test-time augmentation (session 16).

    python scripts/readout_experiments.py {flip,entropy,pool,devignette} [--t0 T --beta B --k K] EVAL_DEV_ARGS...

- ``flip``: the mean of the log-probabilities of the input and of its mirror image.
- ``entropy``: a per-pixel temperature, ``t0`` on confident pixels rising by up to ``beta`` with the
  entropy of the bin distribution (from 2.5 nats up to log(244)).
- ``pool``: the bin probabilities averaged over a ``k``x``k`` window (at the net's 1/4 resolution)
  before the annealed readout at eval_dev's ``--temperature``.
- ``devignette``: the network's L divided by a radial falloff (a + b r^2 + c r^4 fitted to log L
  about the centre; corners only brightened, by at most 2x). The colour goes on the photo's own L.
None of these is used by vidcolor: weights/README.md, Session 16, has the figures.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_dev  # noqa: E402

from vidcolor.model import Colorizer  # noqa: E402


def _probs(model: Colorizer, out: torch.Tensor) -> torch.Tensor:
    """Bin probabilities at T = 1 after the readout bias, (N, bins, h, w)."""
    return torch.softmax(out.float() - model.readout_bias.view(1, -1, 1, 1), 1)


def _anneal(model: Colorizer, logp: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Annealed mean of log-probabilities (N, bins, h, w) at temperature ``t`` (scalar or (N, h, w, 1))."""
    q = torch.softmax(logp.permute(0, 2, 3, 1) / t, dim=-1)
    return (q @ model.bins.to(q)).permute(0, 3, 1, 2)


def devignette(L: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) L with a fitted radial falloff divided out."""
    n, _, h, w = L.shape
    ar = w / h

    def r2(rows: int, cols: int) -> torch.Tensor:  # 0 at the centre, 1 at the corners
        y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")
        return ((x * ar) ** 2 + y ** 2) / (ar ** 2 + 1)
    small = F.adaptive_avg_pool2d(L, (24, 24)).clamp_min(1.0).log()
    rs, R = r2(24, 24), r2(h, w)
    A = torch.stack([torch.ones_like(rs), rs, rs ** 2], -1).reshape(-1, 3)
    out = []
    for i in range(n):
        c = torch.linalg.lstsq(A, small[i, 0].reshape(-1, 1)).solution[:, 0]
        out.append((L[i:i + 1] * torch.exp(-(c[1] * R + c[2] * R ** 2)).clamp(1.0, 2.0)).clamp(0, 100))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("flip", "entropy", "pool", "devignette"))
    ap.add_argument("--t0", type=float, default=0.3)
    ap.add_argument("--beta", type=float, default=0.6)
    ap.add_argument("--k", type=int, default=5)
    a, rest = ap.parse_known_args()  # the rest goes to eval_dev.py
    forward = Colorizer.forward

    if a.kind == "flip":
        def flip_forward(self: Colorizer, x: torch.Tensor) -> torch.Tensor:
            y, z = forward(self, x), forward(self, torch.flip(x, dims=[-1]))
            return (torch.log_softmax(y.float(), 1) + torch.flip(torch.log_softmax(z.float(), 1), dims=[-1])) / 2
        Colorizer.forward = flip_forward
    elif a.kind == "entropy":
        def entropy_decode(self: Colorizer, out: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
            p = _probs(self, out)
            h = -(p * p.clamp_min(1e-12).log()).sum(1, keepdim=True)
            w = ((h - 2.5) / (math.log(out.shape[1]) - 2.5)).clamp(0, 1)
            return _anneal(self, p.clamp_min(1e-12).log(), (a.t0 + a.beta * w).permute(0, 2, 3, 1))
        Colorizer.decode_ab = entropy_decode
    elif a.kind == "devignette":
        import vidcolor.train as T
        make_input = T.D.make_input
        T.D.make_input = lambda L, *args, **kw: make_input(devignette(L), *args, **kw)
    else:
        def pool_decode(self: Colorizer, out: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
            p = F.avg_pool2d(F.pad(_probs(self, out), [a.k // 2] * 4, mode="replicate"), a.k, 1)
            return _anneal(self, p.clamp_min(1e-12).log(), float(temperature))
        Colorizer.decode_ab = pool_decode
    sys.argv = ["eval_dev.py"] + rest
    eval_dev.main()


if __name__ == "__main__":
    main()
