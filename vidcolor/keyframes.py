"""Shot-consistent colour (issue 15): decide a shot's colour at a keyframe, carry it with flow.

Interface, like :class:`vidcolor.temporal.Smoother`: ``push(item)`` returns the
items whose ab is final, in order; ``flush()`` the rest at the end of the clip.
It runs after the smoother, on the ab the smoother emits.

Per shot (the smoother's cut rule, :func:`vidcolor.flow.is_cut`), the
carrier keeps an ab map at render size and, at half render size, a map of
how many frames' worth of evidence stands behind it:

- A *keyframe* takes the frame's own ab with the evidence of one frame: the
  first frame of a shot, every ``every`` frames if asked, and every frame a
  ``--reference`` or pins guide (its guided
  colour becomes the carried one, with the evidence of a full memory,
  ``KEY_WEIGHT``, so a painting overrides the automatic colour in its shot).
- Any other frame warps the carried ab and its evidence ``n`` from the frame
  before with flow on standardized L at half render size
  (:func:`vidcolor.flow.lk_flow`); ``n`` is multiplied by ``DECAY`` per frame.
  The carried colour applies with probability ``p``: lower where the flow
  fails its forward-backward check, where the warped L disagrees with the
  frame's own L (new content, occlusions), and 0 for content that enters
  from outside the frame. The forward state is ``w * carried + (1 - w) * own``
  with ``w = p * n / (n + 1)``, and its evidence becomes ``p * n + 1``.
- The same recursion runs backward, from the frames after t down to t, so
  each frame also gets the colour of the frames that follow it in its shot
  (``cb`` with evidence ``p_b * n_b``). The output weighs the three by their
  evidence, as one running mean over both sides would:
  ``own + wf * (cf - own) + wb * (cb - own)``, ``wf = p_f n_f / (n_f + n_b + 1)``,
  ``wb = p_b n_b / (n_f + n_b + 1)``. A shot's first frames, which a forward
  carry gives only their own colour, so get the colour the shot settles on.
  The backward pass restarts only at cuts and guided frames, so it also
  bridges the forward side's forced keyframes (below).

So on content the flow follows, the output is a mean of the network's colour
over up to about ``1 / (1 - DECAY)`` frames either side in the shot, instead
of following the network's slow drift. Sessions 13-14 carried forward only
(docs/lab-notes/2026-12-05-running-mean-carrier.md); session 15 added the backward side and, with both
sides, a longer memory won on the dev clips (docs/lab-notes/2026-12-06-two-sided-carrier.md).

Look-ahead and memory: frames are emitted in blocks of ``AHEAD`` frames that
sit on multiples of ``AHEAD`` counted from frame 0; a block goes out when the
frames two blocks past its end have arrived. Each frame's backward colour mixes
two backward passes (begun at the last frames of the next two blocks), weighted
so that it changes smoothly from frame to frame: see ``HOLD_BLOCKS``. Up to
``3 * AHEAD`` = 120 frames (with what composition needs at full resolution) are held:
memory is flat with length and grows with frame size (docs/lab-notes/2026-12-06-two-sided-carrier.md: 1.40 GB at 1080p).

Checkpoints (issue 35): until rule 4 a keyframe was forced at every segment start so that a
resumed run needed no history, and the colour jumped there. Now nothing restarts at a segment:
after each frame that ends a checkpoint period (``(t + 1) % period == 0``) the carrier leaves
its forward state (:class:`CarriedState`: the carried ab at render size, its evidence at half
render size, the last keyframe) on the item, the job stores it beside the segment, and
:meth:`Carrier.restore` puts it back in a resumed run. The backward side only reads frames after
the one it colours, and block edges do not move with where a run starts, so a resumed run fed
from :meth:`Carrier.warm_from` (two frames before, for the cut cue) reproduces the uninterrupted
one bit for bit. A run that has no state to restore (a Ray chunk, :mod:`vidcolor.chunks`) starts
the carrier afresh ``WARM`` frames early: see ``WARM``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import flow as fl
from .temporal import FLOW_RADIUS, L_SIGMA, Item, _one_cpu_thread

DECAY = 0.985      # evidence kept per frame carried: a memory of about 67 frames (2.7 s at 25 fps) each side
FB_KEEP = 0.6      # evidence kept where the flow fails its forward-backward check (LK fails often on film)
KEY_WEIGHT = 1.0 / (1.0 - DECAY)  # a guided keyframe's colour counts as a full memory of frames
# The carrying rule's version, kept in a job's manifest: 6 mixes two backward passes (no step at block
# edges), 5 carries the state across segments (issue 35),
# 4 is the two-sided running mean that restarted at every segment (session 15), 3 the forward-only one
# (session 13), 2 the renewed decaying trust. A job begun under another rule does not resume, which
# would mix two rules in one film.
RULE = 6
# Frames a carrier started afresh runs before its first output frame when it has no state to restore
# (a Ray chunk that starts inside a shot). The forward state forgets its start at about DECAY per
# frame: on a still real shot (scripts/chunk_warmup.py, docs/segments-and-chunks.md) the a,b at render
# size then differ from one run's by at most 0.57 after 192 frames, 0.13 after 288 and 0.036 after
# 384 (mean 0.0007), below one step of 8-bit chroma.
WARM = 384
# Frames per emitted block. A block goes out once HOLD_BLOCKS - 1 more blocks stand behind it, so up to
# HOLD_BLOCKS * AHEAD frames are held. Each frame's colour carried back from the frames after it mixes two
# backward passes, begun at the last frames of the next two blocks, weighted by how far into its block
# the frame is: it sees 2..3 blocks ahead (2 on average), and the mix changes smoothly across a block
# edge. Until rule 6 one pass per block gave the frames before an edge 48 frames ahead and those after
# it 96, and the colour stepped there (5x the median change on a still shot,
# docs/segments-and-chunks.md). With 32-frame blocks (as many frames held as 48 x 2) the mean look-ahead
# fell from 72 to 64 frames and the aerial dev clip drifted more (4 s: 7.54 -> 8.57); 40 (120 frames
# held) keeps the old figures (7.77; warp ab 0.344 -> 0.346).
AHEAD = 40
HOLD_BLOCKS = 3


@dataclass
class CarriedState:
    """What the carrier's forward side holds between two frames: enough to go on from a checkpoint."""

    ab: torch.Tensor      # (1, 2, h, w) carried ab at render size, float32
    weight: torch.Tensor  # (1, 1, h/2, w/2) frames' worth of evidence behind it
    key: int              # the last keyframe's index (for --keyframe-every)

    def arrays(self) -> dict[str, np.ndarray]:
        """As numpy arrays, for a checkpoint file (exact: float32 in, float32 out)."""
        return {"ab": self.ab.cpu().numpy(), "weight": self.weight.cpu().numpy(), "key": np.array(self.key)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> CarriedState:
        return cls(torch.from_numpy(np.array(a["ab"])), torch.from_numpy(np.array(a["weight"])), int(a["key"]))


@dataclass
class _State:
    Ls: torch.Tensor     # (1, 1, h/2, w/2) standardized L at half render size
    std: torch.Tensor    # its L std, to read standardized differences in L units
    cues: tuple[torch.Tensor, torch.Tensor]


class Carrier:
    """Carry each shot's keyframe colour through the shot; see the module docstring."""

    def __init__(self, period: int, cut_threshold: float = 0.5, every: int = 0,
                 guided: set[int] | frozenset[int] = frozenset(), ahead: int | None = None):
        """``period``: after every frame t with ``(t + 1) % period == 0`` the item carries the forward state
        (``Item.carry``) for a checkpoint; it does not change any colour."""
        ahead = AHEAD if ahead is None else ahead
        if period < 1 or every < 0 or ahead < 0:
            raise ValueError(f"bad keyframe period {period}, --keyframe-every {every} or look-ahead {ahead}")
        self.period, self.every, self.cut_threshold, self.guided = period, every, cut_threshold, guided
        self.block = ahead  # frames emitted together; each sees block..2*block frames ahead (0: forward only)
        # frames held past a frame before it is final: its block's backward span, plus one for the cut cue
        self.lookahead = HOLD_BLOCKS * ahead if ahead else 1
        self.keys: list[int] = []  # the keyframes chosen (for reports and tests)
        self._restore: tuple[int, CarriedState] | None = None
        self._reset()

    def _reset(self) -> None:
        self._held: list[Item] = []                 # items waiting for their cut decision / look-ahead
        self._feat: dict[int, _State] = {}
        self._dist: dict[int, torch.Tensor] = {}    # a -> distance(a, a+1)
        self._pairs: dict[int, torch.Tensor] = {}   # t -> flow pair (t-1, t), Item.prev_flow's layout
        self._ab: torch.Tensor | None = None        # (1, 2, h, w) carried ab at render size
        self._weight: torch.Tensor | None = None    # (1, 1, h/2, w/2) frames' worth of evidence behind _ab
        self._key = -1                              # index of the current keyframe
        self._passes: dict[int, dict] = {}          # backward pass start -> {frame: its reading}, until read

    def warm_from(self, start: int) -> int:
        """First frame a run resumed at ``start`` must feed the carrier: the cut decision between
        ``start - 1`` and ``start`` reads the frame distance from ``start - 2``."""
        return max(0, start - 2)

    def restore(self, at: int, state: CarriedState) -> None:
        """Go on at frame ``at`` from ``state``, the forward state an earlier run left after frame ``at - 1``."""
        self._restore = (at, state)

    def push(self, item: Item) -> list[Item]:
        """Add the next frame; return the frames whose ab is now final, in order."""
        with torch.inference_mode(), _one_cpu_thread(item.L):
            self._add(item)
            if not self.block:
                out = []
                while len(self._held) > self.lookahead:
                    out.append(self._emit(self._held.pop(0), None))
                return out
            # blocks sit on multiples of ``block`` counted from frame 0, not from where feeding began,
            # so a resumed run emits each frame with the same look-ahead as an uninterrupted one
            first = self._held[0].index
            end = (first // self.block + 1) * self.block
            if self._held[-1].index < end + (HOLD_BLOCKS - 1) * self.block:
                return []
            return self._emit_block(end, final=False)

    def flush(self) -> list[Item]:
        """End of the clip: return every frame still held, in order."""
        if not self._held:
            return []
        with torch.inference_mode(), _one_cpu_thread(self._held[0].L):
            if self.block:
                out = self._emit_block(self._held[-1].index + 1, final=True)
            else:
                out = [self._emit(it, None) for it in self._held]
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
            if item.prev_flow is not None and item.prev_flow.shape[-2:] == Ls.shape[-2:]:
                self._pairs[j] = item.prev_flow  # the smoother's flow on the same L: reused, not computed twice
        item.prev_flow = None  # taken; do not keep it alive downstream
        self._held.append(item)

    def _pair(self, t: int) -> torch.Tensor:
        """Flows (t-1 -> t, t -> t-1) at half render size with their forward-backward checks (cached)."""
        p = self._pairs.get(t)
        if p is None:
            a, b = self._feat[t - 1].Ls, self._feat[t].Ls
            f = fl.lk_flow(torch.cat([a, b]), torch.cat([b, a]), radius=FLOW_RADIUS)
            p = self._pairs[t] = torch.cat([f, fl.fb_valid(f, f.flip(0))], dim=1)
        return p

    def _is_cut(self, a: int) -> bool:
        """The smoother's rule for a cut between a and a+1, from frames a-1..a+2."""
        if a not in self._dist:
            return True  # no frame before, or a change of size: nothing to carry across
        return fl.is_cut(self._dist, a, self.cut_threshold)

    def _emit_block(self, end: int, final: bool) -> list[Item]:
        """Emit the held frames before index ``end``, each with the colour carried back from the frames
        after it: a mix of two backward passes, so that it changes smoothly from frame to frame (``HOLD_BLOCKS``)."""
        b = self.block
        # mid-clip the last held frame only gives the cut cue for the pair before it (is_cut(a) reads
        # frame a+2), so a pass starts one frame earlier at most; at the clip's end it may start at the end
        last = self._held[-1].index - (0 if final else 1)
        out = []
        while self._held and self._held[0].index < end:
            t = self._held[0].index
            # t is k frames into its block; the passes begun at the last frame of the next block and of
            # the one after see 2b-1-k and 3b-1-k frames ahead of it, and weigh (b-1-k)/b and (k+1)/b
            near = (t // b + 2) * b - 1
            w = (t % b + 1) / b
            x, y = (self._backward(s, last, t) for s in (near, near + b))
            back = tuple((1.0 - w) * u + w * v for u, v in zip(x, y)) if x and y else x or y
            out.append(self._emit(self._held.pop(0), back))
            for rows in self._passes.values():
                rows.pop(t, None)
        for s in [s for s, rows in self._passes.items() if not rows]:
            del self._passes[s]  # every frame that reads it is out
        return out

    def _backward(self, nominal: int, last: int, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Frame ``t``'s reading of the backward pass begun at frame ``nominal`` (or at ``last``, the last
        frame a pass may start from now, where that comes first): the colour carried back to t, ``p * n``
        and ``n`` (as :meth:`_history`), or None where t begins the pass. A pass runs once, from its start
        down to the first frame that reads it, and keeps the rows its readers will ask for: a pass serves
        the frames 2b to 3b-1 before its nominal start (all before it, when it starts at ``last``)."""
        b = self.block
        start = min(nominal, last)
        if start not in self._passes:
            # a pass that starts at ``last`` may be read later by frames that clamp to it too: keep all
            keep = nominal - b if nominal < last else start
            rows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
            g_ab = g_n = None
            items = {it.index: it for it in self._held}
            for u in range(start, max(self._held[0].index, nominal - 3 * b + 1) - 1, -1):
                own = items[u].ab.unsqueeze(0).float()
                if g_ab is None or u in self.guided or self._is_cut(u):  # the pass restarts here
                    g_ab, g_n = own, self._key_weight(u)
                    continue
                cb, pn, n = self._history(u, u + 1, g_ab, g_n)
                if u <= keep:
                    rows[u] = (cb, pn, n)
                g_ab, g_n = self._blend(own, cb, pn, n)
            self._passes[start] = rows
        return self._passes[start].get(t)

    def _emit(self, item: Item, back: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> Item:
        t = item.index
        own = item.ab.unsqueeze(0).float()
        if self._restore is not None and self._restore[0] == t:
            st = self._restore[1]
            self._ab, self._weight, self._key = st.ab.to(own.device), st.weight.to(own.device), st.key
            self._restore = None
        new_key = (t in self.guided or self._ab is None or self._is_cut(t - 1)
                   or (self.every and t - self._key >= self.every))
        if not new_key:
            fwd = self._history(t, t - 1, self._ab, self._weight)
            self._ab, self._weight = self._blend(own, *fwd)
            out = self._ab if back is None else self._mix(own, [fwd, back])
            item.ab = out.squeeze(0).to(item.ab.dtype)
        else:
            self._ab, self._key, self._weight = own, t, self._key_weight(t)
            self.keys.append(t)
            if back is not None:  # (a guided frame has none: a painted keyframe keeps its painting)
                item.ab = self._mix(own, [back]).squeeze(0).to(item.ab.dtype)
        if (t + 1) % self.period == 0:  # a checkpoint may follow this frame: leave what goes on from it
            item.carry = CarriedState(self._ab.detach().cpu().clone(), self._weight.detach().cpu().clone(), self._key)
        for k in [k for k in self._feat if k < t - 1]:
            del self._feat[k]
            self._dist.pop(k, None)
        for k in [k for k in self._pairs if k < t]:
            del self._pairs[k]
        return item

    def _key_weight(self, t: int) -> torch.Tensor:
        """The evidence a keyframe's own colour starts with: one frame, or a full memory if guided."""
        return torch.full_like(self._feat[t].Ls, KEY_WEIGHT if t in self.guided else 1.0)

    @staticmethod
    def _mix(own: torch.Tensor, sides: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The output of one running mean over ``own`` and the histories ``sides`` ((carried, p * n, n)
        each, as :meth:`_history` gives): each side weighs ``p * n / (sum of n + 1)``."""
        den = sides[0][2]
        for _, _, n in sides[1:]:
            den = den + n
        den = den + 1.0
        out = own
        for carried, pn, _ in sides:
            w = F.interpolate(pn / den, size=own.shape[-2:], mode="bilinear", align_corners=False)
            out = out + w * (carried - own)
        return out

    @staticmethod
    def _blend(own: torch.Tensor, hist: torch.Tensor, pn: torch.Tensor, n: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A running mean's next state: ``hist`` (evidence ``n``, trusted with probability ``p``) and ``own``."""
        w = F.interpolate(pn / (n + 1.0), size=own.shape[-2:], mode="bilinear", align_corners=False)
        return w * hist + (1 - w) * own, pn + 1.0

    def _history(self, t: int, s: int, ab: torch.Tensor, weight: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The colour ``ab`` of neighbour ``s`` (t-1 or t+1) and its ``weight``, warped onto frame t:
        the warped ab at render size, ``p * n`` and ``n`` (the decayed evidence) at half render size."""
        a, b = self._feat[s], self._feat[t]
        pair = self._pair(max(s, t))
        i = 1 if s < t else 0  # [0]: t -> t+1 on t's grid, [1]: t -> t-1 on t's grid
        flow, ok = pair[i:i + 1, :2], pair[i:i + 1, 2:3]
        moved = fl.warp(torch.cat([a.Ls, weight, torch.ones_like(a.Ls)], dim=1), flow, padding="zeros")
        inside = moved[:, 2:3]
        L_nb = moved[:, :1] / inside.clamp_min(1e-3)  # undo the fade to zero at the border
        diff = fl.box((L_nb - b.Ls).pow(2), 1) * b.std.pow(2)  # back in L units squared
        agree = torch.exp(diff * (-0.5 / L_SIGMA ** 2))
        edge = ((inside - 0.5) * 2.0).clamp(0.0, 1.0)  # content from outside the frame: no history
        # The history is the colour of n neighbouring frames' worth of evidence (a running mean along the
        # flow), and it applies here with probability p: the flow checks out, the L agrees, the content
        # was inside the frame. p gates the blend itself, not only the evidence, so that a long history
        # cannot outvote new content (a car entering, an occlusion).
        n = moved[:, 1:2] * DECAY
        p = (FB_KEEP + (1 - FB_KEEP) * ok) * agree * edge
        carried = fl.warp(ab, fl.resize_flow(flow, ab.shape[-2:]))
        return carried, p * n, n
