"""Steady scene context (issue 15): the global branch's image-level vector, filtered over recent frames.

The network's global branch (:class:`vidcolor.model.GlobalFusion`) pools each frame's features
into one vector that says what kind of scene this is, and through its MLP that vector steers every
pixel's colour. Per frame it wanders a little (an actor walks across, the camera tilts), and the
whole picture's colour wanders with it: slow "breathing" that is smooth from frame to frame, so
the temporal smoother cannot see it, and that outlasts the keyframe carrier's trust.

Here frame t's pooled vector becomes a weighted mean of the raw vectors of frames t, ..., t-K+1:

    p'_t = sum_k w_k p_{t-k} / sum_k w_k,   w_k = BETA**k * exp(-(|p_{t-k} - p_t| / (SIGMA |p_t|))**2)

- *Causal and finite*: only the K - 1 frames before t count, and only their raw vectors, so a run
  resumed at frame s that re-predicts K - 1 frames more than before (:attr:`SceneContext.history`)
  gives the same vectors, bit for bit, as an uninterrupted run. Batches need no look-ahead.
- *Gated, so scene cuts need no detector*: across a cut the vector jumps (relative distance 0.57
  to 0.95 at the cuts of ``scripts/motion_clips.py``'s cut and splice clips, against medians of
  0.006 to 0.08 and at most 0.14 between neighbours inside a shot), so the old shot's frames get a
  weight near 0 and the new shot starts from its own context. A flash frame (0.54) is left out
  the same way, and film flicker (0.08 to 0.2) is only partly averaged.
- Filtering the pooled features, before the MLP, and SIGMA 0.07 cost less PSNR on the flicker
  and dance clips than filtering the MLP's output or SIGMA 0.15
  (docs/lab-notes/2026-12-04-steady-scene-context.md).
- Frames with colour hints (``--reference``, pins) keep their own vector and do not enter the
  history: hints change what the network sees. A gap in the frame numbers or a change of size
  empties the history.

:meth:`SceneContext.bind` gives the filter for one batch; its :meth:`_Bound.commit` adds the
batch's raw vectors to the history once the batch has succeeded, so a batch that is retried in
halves after running out of memory (:class:`vidcolor.engine.OomGuard`) sees the same history.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

import torch


FRAMES = 24     # K: frames (this one included) whose vectors are averaged; 1 s at 24 fps
BETA = 0.95     # per-frame weight decay: the EMA that took the drift down in the experiment
SIGMA = 0.07    # relative distance at which an older frame's weight falls to 1/e (cuts are >= 0.57)


class SceneContext:
    """The filter state of one stream of frames; see the module docstring."""

    def __init__(self, frames: int = FRAMES, beta: float = BETA, sigma: float = SIGMA):
        if frames < 1 or not 0.0 < beta <= 1.0 or sigma <= 0.0:
            raise ValueError(f"bad scene-context filter: frames={frames}, beta={beta}, sigma={sigma}")
        self.frames, self.beta, self.sigma = frames, beta, sigma
        self._hist: deque[tuple[int, tuple[int, ...], torch.Tensor]] = deque(maxlen=max(frames - 1, 1))

    @property
    def history(self) -> int:
        """Frames before the first one that matters that a resumed run must also predict."""
        return self.frames - 1

    def bind(self, indices: Sequence[int], shape: tuple[int, ...], hinted: Sequence[bool]) -> _Bound:
        """The filter for one batch of frames ``indices`` (in order) of size ``shape``."""
        return _Bound(self, list(indices), tuple(shape), list(hinted))


class _Bound:
    def __init__(self, ctx: SceneContext, indices: list[int], shape: tuple[int, ...], hinted: list[bool]):
        self.ctx, self.indices, self.shape, self.hinted = ctx, indices, shape, hinted
        self._raw: torch.Tensor | None = None

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """(N, C) raw vectors of the batch -> (N, C) filtered ones."""
        if g.shape[0] != len(self.indices):
            raise ValueError(f"scene context bound to {len(self.indices)} frames, got {g.shape[0]}")
        raw = g.detach().float()
        self._raw = raw
        ctx = self.ctx
        hist = [(i, r) for i, s, r in ctx._hist if s == self.shape]
        out = []
        for n, t in enumerate(self.indices):
            if self.hinted[n]:
                out.append(raw[n])
                continue
            # this batch's earlier frames come after the history; keep only the unbroken run before t
            past = hist + [(self.indices[m], raw[m]) for m in range(n) if not self.hinted[m]]
            run, want = [], t - 1
            for i, r in reversed(past):
                if i != want or t - i >= ctx.frames:
                    break
                run.append((t - i, r))
                want -= 1
            own = raw[n]
            if not run:
                out.append(own)
                continue
            ks = torch.tensor([k for k, _ in run], dtype=torch.float32)
            R = torch.stack([r for _, r in run])
            d = (R - own).norm(dim=1) / (own.norm() * ctx.sigma).clamp_min(1e-6)
            w = ctx.beta ** ks * torch.exp(-d.square())
            out.append((own + (w[:, None] * R).sum(0)) / (1.0 + w.sum()))
        return torch.stack(out).to(g.dtype)

    def commit(self) -> None:
        """The batch succeeded: its raw vectors join the history (hinted frames break the run)."""
        if self._raw is None:
            return
        ctx = self.ctx
        for n, t in enumerate(self.indices):
            last = ctx._hist[-1] if ctx._hist else None
            if last is not None and (last[0] != t - 1 or last[1] != self.shape):
                ctx._hist.clear()
            if not self.hinted[n]:
                ctx._hist.append((t, self.shape, self._raw[n].clone()))
        self._raw = None
