"""Where a reel's shots start, found cheaply before it is split into Ray chunks (issue 35).

A chunk cannot wait for the keyframe carrier's state at its first frame, which the chunk
before it is still computing. At a hard cut the carrier starts afresh anyway, so a chunk whose
carrier starts at the cut before its first frame colours exactly as one run does.
:func:`find_cuts` streams the reel once, as small grey pictures (no network), and applies the
carrier's own cut rule (:func:`vidcolor.flow.is_cut` on the same cues) to them;
:func:`place_chunks` then moves each planned chunk boundary to a segment boundary soon after a
cut, and says from which frame each chunk's carrier starts.

The pass sees the decoder's luma, not the engine's Lab L at render size, so it can miss or add a
cut the carrier decides otherwise. That costs no correctness, only exactness: a chunk whose carrier
sees no cut where the pass found one starts from that frame as from any other (see
``keyframes.WARM`` for how close that comes).
"""
from __future__ import annotations

from pathlib import Path

import av
import torch

from . import flow as fl
from .job import Chunk

SHORT_SIDE = 128  # the carrier's cues are taken at half render size: 128 pixels at the default 256


def find_cuts(path: Path, threshold: float, short_side: int = SHORT_SIDE) -> list[int]:
    """The first frame of every shot after the first, by decode order. Memory is a few frames."""
    cuts: list[int] = []
    dist: dict[int, torch.Tensor] = {}
    prev = None
    with av.open(str(path)) as container, torch.inference_mode():
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        scale = short_side / max(1, min(stream.codec_context.width, stream.codec_context.height))
        w = max(8, round(stream.codec_context.width * scale))
        h = max(8, round(stream.codec_context.height * scale))
        i = -1
        for i, frame in enumerate(container.decode(stream)):
            grey = torch.from_numpy(frame.reformat(width=w, height=h, format="gray").to_ndarray()).float()
            feat = fl.cut_features(fl.standardize(grey[None, None] / 2.55))
            if prev is not None:
                dist[i - 1] = fl.frame_distance(prev, feat)
            prev = feat
            if i - 2 in dist and fl.is_cut(dist, i - 2, threshold):  # its cues need frames i-3..i
                cuts.append(i - 1)
            dist.pop(i - 4, None)
        if i - 1 in dist and fl.is_cut(dist, i - 1, threshold):  # the last pair, as the smoother's flush does
            cuts.append(i)
    return cuts


def place_chunks(chunks: list[Chunk], seg_len: int, cuts: list[int], warm: int) -> list[Chunk]:
    """Move each boundary between ``chunks`` (segment ranges) to the segment boundary within half a
    chunk of it whose frame follows a cut most closely, and give each chunk the frame its carrier
    starts from: that cut if it lies within ``warm`` frames before the chunk, else ``warm`` frames
    before it. Returns each chunk with its carrier start."""
    if len(chunks) < 2:
        return [Chunk(c[0], c[1], 0) for c in chunks]
    per = max(chunks[1][0] - chunks[0][0], 1)
    firsts = [0]
    for a, *_ in chunks[1:]:
        options = [k for k in range(a - per // 2, a + per // 2 + 1) if k > firsts[-1]]
        firsts.append(min(options, key=lambda k: _score(k, a, seg_len, cuts, warm)))
    stops: list[int | None] = [*firsts[1:], None]
    return [Chunk(a, b, a * seg_len - _warm_needed(a * seg_len, cuts, warm)) for a, b in zip(firsts, stops)]


def _score(k: int, planned: int, seg_len: int, cuts: list[int], warm: int) -> tuple[int, int, int]:
    """Rank segment ``k`` as a chunk start: soon after a cut first, else the planned boundary ``planned``."""
    start = k * seg_len
    need = _warm_needed(start, cuts, warm)
    after_cut = need < min(start, warm) or any(c == start for c in cuts)
    return (0, need, abs(k - planned)) if after_cut else (1, 0, abs(k - planned))


def _warm_needed(start: int, cuts: list[int], warm: int) -> int:
    """Frames before ``start`` the carrier must run from: back to the last cut, at most ``warm``, none at 0."""
    before = [c for c in cuts if start - warm <= c <= start]
    return min(start, start - before[-1] if before else warm)
