"""Temporal ab smoothing between neighbouring frames (streaming, bounded window).

Interface: ``push(item)`` returns the items whose output is final, in order;
``flush()`` returns the rest at the end of the clip. With window 0 every item
passes through untouched (pure per-frame output).

How a frame t is smoothed (on the items' device, at half the render size;
only the resulting correction of frame t's own ab is upsampled):

1. Shots. A hard cut between frames a and a+1 is decided from frames a-1..a+2
   only (see :meth:`Smoother._decide_cut`). Frame t uses only the neighbours
   t-window..t+window of its own shot, so the frames after a cut are computed
   exactly as at the start of a clip.
2. Motion. Flow between consecutive frames is estimated on standardized L
   (pyramidal Lucas-Kanade, :mod:`vidcolor.flow`) in both directions; flows
   to farther neighbours are chained from those, together with a
   forward-backward occlusion mask.
3. Weights. Each neighbour's L and ab are warped onto frame t. A pixel's
   weight is the product of a temporal taper, the occlusion mask, an in-frame
   mask, and the agreement of the warped L with frame t's L (both
   standardized, so film flicker does not count as disagreement). Where the
   content moved and the flow missed it, L disagrees and the neighbour gets
   no say, so a moving object leaves no colour trail. An unwarped copy of the
   neighbour competes per pixel on the same L test, which keeps the still
   background next to a moving object smoothed where the flow is smeared.

The output for frame t depends only on frames t-window-1..t+window+1 (the
outer two only through the cut decisions at the window's ends), which is
what :attr:`Smoother.warmup` tells a resumed run to re-predict.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from . import flow as fl

CUT_SCALE = fl.CUT_SCALE  # kept here too: vidcolor.guide reads it from this module
L_SIGMA = 6.0      # L units: how far warped L may differ before a neighbour is ignored
FLOW_RADIUS = 3    # LK window 7x7 at half render size: a little steadier on real footage than 5x5
TAPER = 0.5        # temporal weight of the farthest neighbour, relative to the frame itself


@contextlib.contextmanager
def _one_cpu_thread(like: torch.Tensor) -> Iterator[None]:
    """Run the smoother's many small CPU ops on one thread.

    Each op is too small to gain from a second thread, and on a busy machine
    (training alongside, two cores) OpenMP's fork/join made the smoother 10
    to 100 times slower with two threads than with one. The caller's setting,
    which the engine's big convolutions need, is restored on the way out.
    """
    n = torch.get_num_threads()
    if like.device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class Item:
    """One frame travelling from the engine to the encoder."""

    index: int
    L: torch.Tensor   # (1, h, w) at render size
    ab: torch.Tensor  # (2, h, w) at render size; replaced by the smoothed ab
    payload: Any = None  # carried along untouched (vidcolor.stream's Carried: full-resolution L, pts, dtype)
    # the smoother's flow pair with frame index-1, (2, 3, h/2, w/2): [prev->this, this->prev] flow and
    # forward-backward validity, left for the keyframe carrier, which needs the same flow
    prev_flow: torch.Tensor | None = None
    # where a checkpoint may follow this frame: the keyframe carrier's forward state after it
    # (vidcolor.keyframes.CarriedState), which the job stores so that a resumed run goes on from it
    carry: Any = None


@dataclass
class _Frame:
    item: Item
    ab: torch.Tensor          # (1, 2, h, w) the engine's own ab; item.ab is overwritten on output,
                              # and neighbours must only ever see predictions
    half: torch.Tensor        # (1, 4, h/2, w/2): standardized L, ab, ones (the ones become the in-frame mask)
    std: torch.Tensor         # L std, to turn standardized L differences back into L units
    cues: tuple[torch.Tensor, torch.Tensor]


class Smoother:
    """Motion-compensated, shot-aware temporal smoothing of ab over +-``window`` frames."""

    def __init__(self, window: int = 0, cut_threshold: float = 0.5):
        if window < 0:
            raise ValueError(f"--temporal-window must be >= 0, got {window}")
        if not 0.0 <= cut_threshold <= 1.0:
            raise ValueError(f"--cut-threshold must be from 0 to 1, got {cut_threshold}")
        self.window = window
        self.cut_threshold = cut_threshold
        self.cuts: list[int] = []  # indices that start a new shot (for reports and tests)
        self._reset()

    def _reset(self) -> None:
        self._frames: dict[int, _Frame] = {}
        self._dist: dict[int, torch.Tensor] = {}   # a -> distance(a, a+1)
        self._cut: dict[int, bool] = {}            # a -> hard cut between a and a+1
        self._pairs: dict[int, torch.Tensor] = {}  # a -> (2, 3, h/2, w/2): [a->a+1, a+1->a] flow + valid
        self._next: int | None = None  # next index to emit
        self._last: int | None = None  # last index pushed

    @property
    def warmup(self) -> int:
        """Frames before a resume point whose predictions the smoother needs."""
        return self.window + 1 if self.window > 0 else 0

    # -- streaming -------------------------------------------------------------------------

    def push(self, item: Item) -> list[Item]:
        """Add the next frame; return the frames whose smoothed ab is now final, in order."""
        if self.window == 0:
            return [item]
        if self._last is not None and item.index != self._last + 1:
            raise ValueError(f"frames must arrive in order: got {item.index} after {self._last}")
        with torch.inference_mode(), _one_cpu_thread(item.L):
            j = item.index
            if self._next is None:
                self._next = j
            self._frames[j] = self._features(item)
            self._last = j
            if j - 1 in self._frames:
                self._dist[j - 1] = fl.frame_distance(self._frames[j - 1].cues, self._frames[j].cues)
            if j - 2 in self._frames:
                self._decide_cut(j - 2)
            out = []
            # frame t is final once the cut decisions up to the pair (t+w-1, t+w) are in,
            # which needs frame t+w+1
            while self._next + self.window + 1 <= j:
                out.append(self._emit(self._next))
            return out

    def flush(self) -> list[Item]:
        """End of the clip: return every frame still held, in order."""
        if self.window == 0 or self._last is None:
            return []
        with torch.inference_mode(), _one_cpu_thread(self._frames[self._last].half):
            if self._last - 1 in self._frames and self._last - 1 not in self._cut:
                self._decide_cut(self._last - 1)
            out = []
            while self._next <= self._last:
                out.append(self._emit(self._next))
        self._reset()  # ready for another clip
        return out

    # -- per frame -------------------------------------------------------------------------

    def _features(self, item: Item) -> _Frame:
        L = item.L.unsqueeze(0).float()
        ab = item.ab.unsqueeze(0).float()
        half = fl.half_size(torch.cat([L, ab], dim=1))
        # standardizing removes film flicker (global gain and offset) before flow and L matching
        std = half[:, :1].std().clamp_min(2.0)
        Ls = (half[:, :1] - half[:, :1].mean()) / std
        half = torch.cat([Ls, half[:, 1:], torch.ones_like(Ls)], dim=1)
        return _Frame(item, ab, half, std, fl.cut_features(Ls))

    def _decide_cut(self, a: int) -> None:
        """Is there a hard cut between a and a+1? Uses frames a-1..a+2 only: the jump
        d(a, a+1) against d(a-1, a) and d(a+1, a+2) (:func:`vidcolor.flow.cut_confidence`)."""
        if self._frames[a].half.shape != self._frames[a + 1].half.shape:
            is_cut = True  # a folder of frames may change size; nothing to align across that
        else:
            is_cut = fl.is_cut(self._dist, a, self.cut_threshold)  # one scalar sync per frame
        self._cut[a] = is_cut
        if is_cut:
            self.cuts.append(a + 1)

    def _pair(self, a: int) -> torch.Tensor:
        """Flows a->a+1 and a+1->a at half render size, each with its occlusion mask (cached)."""
        p = self._pairs.get(a)
        if p is None:
            s0, s1 = self._frames[a].half[:, :1], self._frames[a + 1].half[:, :1]
            f = fl.lk_flow(torch.cat([s0, s1]), torch.cat([s1, s0]), radius=FLOW_RADIUS)
            p = torch.cat([f, fl.fb_valid(f, f.flip(0))], dim=1)
            self._pairs[a] = p
        return p

    def _emit(self, t: int) -> Item:
        w = self.window
        lo, hi = t, t
        while lo - 1 >= t - w and lo - 1 in self._frames and not self._cut.get(lo - 1, False):
            lo -= 1
        while hi + 1 <= t + w and hi + 1 in self._frames and not self._cut.get(hi, False):
            hi += 1
        item = self._frames[t].item
        if hi > lo:  # a frame alone in its shot window keeps its own ab, untouched
            item.ab = self._smooth(t, lo, hi)
        item.prev_flow = self._pairs.get(t - 1)
        self._next = t + 1
        for dct in (self._frames, self._pairs, self._dist, self._cut):
            for k in [k for k in dct if k < t - w]:
                del dct[k]
        return item

    def _smooth(self, t: int, lo: int, hi: int) -> torch.Tensor:
        """Frame t's ab plus the correction toward the weighted mean of its warped neighbours.

        The mean is taken at half the render size (4x cheaper; predicted ab is
        smooth anyway) and only the correction is upsampled, so frame t's own
        ab detail survives at full render size.
        """
        fr = self._frames[t]
        own = fr.half[:, 1:3]
        acc = own.clone()
        wsum = torch.ones_like(fr.half[:, :1])
        # backward chain (t-1, t-2, ...) then forward chain, always in the same order so that
        # the sums, and so the bits, depend only on which neighbours are in the shot window
        for direction, stop in ((-1, lo), (1, hi)):
            chain = None
            for k in range(t + direction, stop + direction, direction):
                # one more step toward k: the backward flow of pair (k, k+1) or the forward one of (k-1, k)
                step = self._pair(k)[1:2] if direction < 0 else self._pair(k - 1)[0:1]
                if chain is None:
                    chain = step
                else:
                    s = fl.warp(step, chain[:, :2])
                    chain = torch.cat([chain[:, :2] + s[:, :2], chain[:, 2:] * s[:, 2:]], dim=1)
                wgt, ab_n = self._neighbour(fr, self._frames[k], chain, abs(k - t))
                acc.addcmul_(wgt, ab_n)
                wsum.add_(wgt)
        delta = acc / wsum - own
        delta = F.interpolate(delta, size=fr.ab.shape[-2:], mode="bilinear", align_corners=False)
        return (fr.ab + delta).squeeze(0).to(fr.item.ab.dtype)

    def _neighbour(self, fr: _Frame, nb: _Frame, chain: torch.Tensor, dist: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbour nb's ab aligned to frame fr, and its per-pixel weight.

        Two hypotheses per pixel, the one whose L agrees better wins: the chained
        flow, and "nothing moved". The second is free and rescues the still
        background right next to a moving object, where the cheap flow is
        smeared by the object's motion and fails its occlusion check.
        """
        warped = fl.warp(nb.half, chain[:, :2], padding="zeros")
        inside = warped[:, 3:4]  # sampled ones: 1 inside the frame, falling to 0 outside
        warped = warped[:, :3] / inside.clamp_min(1e-3)  # undo the fade to zero at the border
        Lt = fr.half[:, :1]
        diff = fl.box(torch.cat([warped[:, :1] - Lt, nb.half[:, :1] - Lt], dim=1).pow(2), 1)
        agree = torch.exp(diff * (fr.std.pow(2) * (-0.5 / L_SIGMA ** 2)))  # diff back in L units squared
        taper = math.exp(math.log(TAPER) * (dist / self.window) ** 2)
        # up to half a pixel outside the frame still counts (flow near the border is rarely exactly 0),
        # fading out to nothing a full pixel out
        edge = ((inside - 0.5) * 2.0).clamp(0.0, 1.0)
        w_flow = (taper * chain[:, 2:3]) * edge * agree[:, :1]
        w_still = taper * agree[:, 1:2]
        use_still = w_still > w_flow
        wgt = torch.where(use_still, w_still, w_flow)
        return wgt, torch.where(use_still, nb.half[:, 1:3], warped[:, 1:3])
