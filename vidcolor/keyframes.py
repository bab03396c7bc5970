"""Shot-consistent colour (issue 15): decide a shot's colour at a keyframe, carry it with flow.

Interface, like :class:`vidcolor.temporal.Smoother`: ``push(item)`` returns the
items whose ab is final, in order; ``flush()`` the rest at the end of the clip.
It runs after the smoother, on the ab the smoother emits.

Per shot (the smoother's cut rule, :func:`vidcolor.flow.is_cut`), the
carrier keeps an ab map at render size and, at half render size, a map of
how many frames' worth of evidence stands behind it:

- A *keyframe* takes the frame's own ab with the evidence of one frame: the
  first frame of a shot, every ``every`` frames if asked, every multiple of
  ``period``, and every frame a ``--reference`` or pins guide (its guided
  colour becomes the carried one, with the evidence of a full memory,
  ``KEY_WEIGHT``, so a painting overrides the automatic colour in its shot).
- Any other frame warps the carried ab and its evidence ``n`` from the frame
  before with flow on standardized L at half render size
  (:func:`vidcolor.flow.lk_flow`); ``n`` is multiplied by ``DECAY`` per frame.
  The carried colour applies with probability ``p``: lower where the flow
  fails its forward-backward check, where the warped L disagrees with the
  frame's own L (new content, occlusions), and 0 for content that enters
  from outside the frame. The output is ``w * carried + (1 - w) * own`` with
  ``w = p * n / (n + 1)``, and its evidence becomes ``p * n + 1``.

So on content the flow follows, the output is a running mean of the
network's colour over the shot so far (up to about ``1 / (1 - DECAY)``
frames): the colour settles in the first frames of a shot and then holds,
instead of following the network's slow drift. Until session 13 the blend
weight was a trust that fell by 0.985 per frame and was renewed when low, so
the network's own colour came back in a little more every frame. On the 6 dev
clips the running mean takes the ab warp error against per-frame output from
0.365x to 0.314x (pooled), the colour change between frames 4 s apart on
still content from 5.31 to 4.48 ab units, and the PSNR against per-frame from
+0.085 to +0.137 dB. A longer memory (0.95, 0.985) holds colour longer but
lags where the network's colour gets better during a shot (README, Session 13).

Resume trade-off: a keyframe is forced at every multiple of ``period`` (the
segment length), so the state at a segment start does not depend on anything
before it and a resumed run reproduces the uninterrupted one bit for bit
after re-reading one frame (for the cut cue). The cost is a possible colour
step at each segment boundary inside a shot (every 240 frames by default).
A frame folder resumes at any frame, so it re-predicts back to the last
multiple of ``period`` (:meth:`Carrier.warm_from`).

Look-ahead: one frame (the cut between t-1 and t is decided with frame t+1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import flow as fl
from .temporal import FLOW_RADIUS, L_SIGMA, Item, _one_cpu_thread

DECAY = 0.9        # evidence kept per frame carried: a memory of about 10 frames, so colour still follows a long shot
FB_KEEP = 0.6      # evidence kept where the flow fails its forward-backward check (LK fails often on film)
KEY_WEIGHT = 1.0 / (1.0 - DECAY)  # a guided keyframe's colour counts as a full memory of frames
MODES = ("off", "auto")
# The carrying rule's version, kept in a job's manifest: 3 is the running mean (session 13), 2 the renewed
# decaying trust. A job begun under another rule does not resume, which would mix two rules in one film.
RULE = 3


@dataclass
class _State:
    Ls: torch.Tensor     # (1, 1, h/2, w/2) standardized L at half render size
    std: torch.Tensor    # its L std, to read standardized differences in L units
    cues: tuple[torch.Tensor, torch.Tensor]


class Carrier:
    """Carry each shot's keyframe colour through the shot; see the module docstring."""

    lookahead = 1

    def __init__(self, period: int, cut_threshold: float = 0.5, every: int = 0,
                 guided: set[int] | frozenset[int] = frozenset()):
        if period < 1 or every < 0:
            raise ValueError(f"bad keyframe period {period} or --keyframe-every {every}")
        self.period, self.every, self.cut_threshold, self.guided = period, every, cut_threshold, guided
        self.keys: list[int] = []  # the keyframes chosen (for reports and tests)
        self._reset()

    def _reset(self) -> None:
        self._held: list[Item] = []                 # items waiting for their cut decision
        self._feat: dict[int, _State] = {}
        self._dist: dict[int, torch.Tensor] = {}    # a -> distance(a, a+1)
        self._ab: torch.Tensor | None = None        # (1, 2, h, w) carried ab at render size
        self._weight: torch.Tensor | None = None    # (1, 1, h/2, w/2) frames' worth of evidence behind _ab
        self._key = -1                              # index of the current keyframe

    def warm_from(self, start: int) -> int:
        """First frame a run resumed at ``start`` must feed the carrier: one before the last forced keyframe."""
        return max(0, start // self.period * self.period - 1) if start > 0 else 0

    def push(self, item: Item) -> list[Item]:
        """Add the next frame; return the frames whose ab is now final, in order."""
        with torch.inference_mode(), _one_cpu_thread(item.L):
            self._add(item)
            out = []
            while len(self._held) > self.lookahead:
                out.append(self._emit(self._held.pop(0)))
            return out

    def flush(self) -> list[Item]:
        """End of the clip: return every frame still held, in order."""
        if not self._held:
            return []
        with torch.inference_mode(), _one_cpu_thread(self._held[0].L):
            out = [self._emit(it) for it in self._held]
        self._reset()
        return out

    def _add(self, item: Item) -> None:
        half = fl.half_size(item.L.unsqueeze(0).float())
        std = half.std().clamp_min(2.0)
        Ls = (half - half.mean()) / std
        j = item.index
        prev = self._feat.get(j - 1)
        self._feat[j] = _State(Ls, std, fl.cut_features(Ls))
        if prev is not None and prev.Ls.shape == Ls.shape:
            self._dist[j - 1] = fl.frame_distance(prev.cues, self._feat[j].cues)
        self._held.append(item)

    def _is_cut(self, a: int) -> bool:
        """The smoother's rule for a cut between a and a+1, from frames a-1..a+2."""
        if a not in self._dist:
            return True  # no frame before, or a change of size: nothing to carry across
        return fl.is_cut(self._dist, a, self.cut_threshold)

    def _emit(self, item: Item) -> Item:
        t = item.index
        own = item.ab.unsqueeze(0).float()
        new_key = (t % self.period == 0 or t in self.guided or self._ab is None or self._is_cut(t - 1)
                   or (self.every and t - self._key >= self.every))
        if not new_key:
            ab, weight = self._carry(t, own, item.prev_flow)
            item.ab = ab.squeeze(0).to(item.ab.dtype)
            self._ab, self._weight = ab, weight
        else:
            self._ab, self._key = own, t
            self._weight = torch.full_like(self._feat[t].Ls, KEY_WEIGHT if t in self.guided else 1.0)
            self.keys.append(t)
        item.prev_flow = None  # used; do not keep it alive downstream
        for k in [k for k in self._feat if k < t - 1]:
            del self._feat[k]
            self._dist.pop(k, None)
        return item

    def _carry(self, t: int, own: torch.Tensor, pair: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Carried ab warped from frame t-1 onto t, blended with t's own ab, and the new evidence. ``pair`` is the
        smoother's flow between t-1 and t (:attr:`Item.prev_flow`): the same flow on the same L, so it
        is reused instead of computed twice; without a smoother (window 0) it is computed here."""
        a, b = self._feat[t - 1], self._feat[t]
        if pair is not None and pair.shape[-2:] == b.Ls.shape[-2:]:
            back, ok = pair[1:2, :2], pair[1:2, 2:3]  # where each pixel of t was in t-1, and its check
        else:
            f = fl.lk_flow(torch.cat([b.Ls, a.Ls]), torch.cat([a.Ls, b.Ls]), radius=FLOW_RADIUS)
            back = f[0:1]
            ok = fl.fb_valid(back, f[1:2])
        moved = fl.warp(torch.cat([a.Ls, self._weight, torch.ones_like(a.Ls)], dim=1), back, padding="zeros")
        inside = moved[:, 2:3]
        L_prev = moved[:, :1] / inside.clamp_min(1e-3)  # undo the fade to zero at the border
        diff = fl.box((L_prev - b.Ls).pow(2), 1) * b.std.pow(2)  # back in L units squared
        agree = torch.exp(diff * (-0.5 / L_SIGMA ** 2))
        edge = ((inside - 0.5) * 2.0).clamp(0.0, 1.0)  # content from outside the frame: no history
        # The history is the colour of n earlier frames' worth of evidence (a running mean along the
        # flow), and it applies here with probability p: the flow checks out, the L agrees, the content
        # was inside the frame. p gates the blend itself, not only the evidence, so that a long history
        # cannot outvote new content (a car entering, an occlusion).
        n = moved[:, 1:2] * DECAY
        p = (FB_KEEP + (1 - FB_KEEP) * ok) * agree * edge
        size = own.shape[-2:]
        carried = fl.warp(self._ab, fl.resize_flow(back, size))
        w = F.interpolate(p * n / (n + 1.0), size=size, mode="bilinear", align_corners=False)
        return w * carried + (1 - w) * own, p * n + 1.0
