"""The streaming core: decoded frames -> engine batches -> smoother -> keyframe carrier -> composition.

:func:`stream_colour` takes (index, frame, payload) in order, predicts ab in batches at fixed frame
positions (multiples of the batch size), runs the temporal smoother and the keyframe carrier (on by
default since session 9) over them, and composes each frame's ab with its own full-resolution L
(RGB, or U and V on the plane path). :func:`build_stages` wires the stages once for every kind
of run and says where a run's warm-up starts, and :func:`segment_length` where segments sit, so
a resumed run computes exactly what an uninterrupted one does. Files, jobs and encoding are :mod:`vidcolor.pipeline`'s.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from . import yuv as yuvmod
from .context import SceneContext
from .engine import Engine, render_shape
from .guide import blend, hints_for
from .keyframes import Carrier, CarriedState
from .prefetch import Prefetcher
from .temporal import Item, Smoother

if TYPE_CHECKING:
    from .settings import Settings


@dataclass
class Stages:
    """A run's stages after the engine, wired once from the settings and where the run starts.

    :func:`build_stages` makes them for ``colorize_video`` (whole or a Ray chunk) and
    ``colorize_frames`` alike. Frames ``first`` to ``start - 1`` are predicted only to warm the
    stages (not composed or written); output begins at ``start``."""

    smoother: Smoother
    carrier: Carrier | None
    context: SceneContext | None
    first: int  # first frame to predict (a batch boundary)
    start: int  # first frame to output


def build_stages(settings: Settings, smoother: Smoother, batch_size: int, start: int, period: int,
                 guides: dict | None = None, state: tuple[int, CarriedState] | None = None,
                 fresh_from: int = 0) -> Stages:
    """The stages for a run that outputs frames from ``start`` on.

    ``period``: the checkpoint interval at which the keyframe carrier leaves its state on the items
    (``Item.carry``). ``state``: ``(at, state)``, the carrier's state an earlier run left before frame
    ``at`` <= ``start``, so that this run is that run's continuation, bit for bit. Without it the carrier
    starts afresh at frame ``fresh_from``: 0 to be exact, or ``start - keyframes.WARM`` for a Ray chunk,
    which cannot wait for the state of the chunk before it.
    The smoother's and the scene context's memories are finite, so their warm-up frames are simply
    predicted again; the carrier's forward memory is not, which is why it is restored or warmed.
    """
    context = SceneContext() if settings.scene_context == "steady" else None
    carrier = None
    resume_at = start
    if settings.keyframes != "off":
        carrier = Carrier(period, settings.cut_threshold, settings.keyframe_every, frozenset(guides or ()))
        if state is not None:
            resume_at = state[0]
            carrier.restore(*state)
        else:
            resume_at = max(0, min(fresh_from, start))
    # everything from ``resume_at`` on must be predicted exactly as in an uninterrupted run: the
    # smoother's window before it, the carrier's cut cue, and the scene context those frames read
    first = resume_at - smoother.warmup if carrier is None else min(resume_at - smoother.warmup,
                                                                    carrier.warm_from(resume_at))
    if context is not None:
        first -= context.history
    return Stages(smoother, carrier, context, _warm_start(resume_at, resume_at - first, batch_size), start)


def _stages(smoother: Smoother, carrier: Carrier | None, item: Item | None) -> list[Item]:
    """Push ``item`` through the smoother, then the carrier; None flushes both at the end of the clip."""
    out = smoother.push(item) if item is not None else smoother.flush()
    if carrier is None:
        return out
    done = [d for it in out for d in carrier.push(it)]
    return done + carrier.flush() if item is None else done


def stream_colour(engine: Engine, stages: Stages, frames: Iterable[tuple[int, np.ndarray, Any]],
                  batch_size: int, guides: dict | None = None,
                  yuv: yuvmod.YuvSpec | None = None, defer: bool = False,
                  ) -> Iterator[tuple[Item, np.ndarray | yuvmod.Planes | Callable[[], Any]]]:
    """Colour a stream of (index, rgb, payload) through ``stages``; yield (item, coloured rgb) for
    index >= ``stages.start``.

    With ``defer`` each picture comes as a function that composes it when called, so that the
    caller can run composition elsewhere (the video encoder's thread: :class:`vidcolor.encode.SegmentWriter`).

    With ``yuv`` (the plane path, :mod:`vidcolor.yuv`) the frames are Y planes and
    the coloured pictures :class:`vidcolor.yuv.Planes`: the same Y plus new U, V.

    Frames before ``start`` (the warm-up after a resume) are predicted so
    the stages see them, but not composed or yielded. ``guides`` maps frame
    indices to :class:`vidcolor.guide.FrameGuide` (reference colour carried
    through the shot): those frames get hint points and are blended towards it.
    The stages hold the stream's state, so they must be new for each stream.

    Prediction runs in a thread of its own (with the caller's torch thread
    count), ahead of smoothing and composition here. The smoother's many small
    ops run on one thread and leave the second core idle; this way the
    network's next batch uses it meanwhile (+12% end to end on 2 cores). Every
    result is computed by the same ops in the same order, so the output is the
    same as a serial run's.
    """
    threads = torch.get_num_threads()
    smoother, carrier, context, start = stages.smoother, stages.carrier, stages.context, stages.start

    def predicted() -> Iterator[Item]:
        torch.set_num_threads(threads)  # per thread: a new thread does not inherit the caller's setting
        batch: list[tuple[int, np.ndarray, Any]] = []
        for idx, img, payload in frames:
            if idx < stages.first:
                continue
            if batch and (idx % batch_size == 0 or img.shape != batch[0][1].shape or img.dtype != batch[0][1].dtype):
                yield from _predict_batch(engine, batch, guides, yuv, context)
                batch = []
            batch.append((idx, img, payload))
        if batch:
            yield from _predict_batch(engine, batch, guides, yuv, context)

    ahead = Prefetcher(predicted(), maxsize=2 * batch_size)
    compose = _deferred if defer else _compose
    try:
        for item in ahead:
            yield from compose(engine, _stages(smoother, carrier, item), start, yuv)
        yield from compose(engine, _stages(smoother, carrier, None), start, yuv)
    finally:
        ahead.close()


class Carried(NamedTuple):
    """An :class:`Item`'s payload from prediction to composition and the writer."""

    # (1, H, W) the input's own full-resolution L, so it is computed once. None where composition can
    # compute it again from something smaller, since the keyframe carrier holds up to 3 * AHEAD
    # frames and 4 bytes a pixel each is 1 GB at 1080p and 6 GB for 4K scans: on the plane path
    # from ``luma``, through the same lookup table; for grey RGB frames (scans) from ``grey``.
    L_full: torch.Tensor | None
    tag: Any              # the caller's payload for the frame (the video's pts)
    dtype: np.dtype       # the input's sample type (uint8 or uint16), kept in the output
    luma: np.ndarray | None = None  # the plane path: the input's Y plane, which goes out untouched
    grey: np.ndarray | None = None  # an RGB frame whose three channels are equal: one of them, (H, W)

    @property
    def shape(self) -> tuple[int, int]:
        plane = self.luma if self.luma is not None else self.grey
        return tuple(plane.shape[-2:]) if plane is not None else tuple(self.L_full.shape[-2:])


def _predict_batch(engine: Engine, batch: list[tuple[int, np.ndarray, Any]], guides: dict | None,
                   yuv: yuvmod.YuvSpec | None = None, context: SceneContext | None = None) -> list[Item]:
    """Predict one batch; guided frames get hint points and are blended toward their guide."""
    hint = mask = None
    guided = [guides.get(b[0]) for b in batch] if guides else []
    if any(g is not None for g in guided):
        rs = render_shape(batch[0][1].shape[0], batch[0][1].shape[1], engine.render_size)
        pairs = [hints_for(g, b[0], rs) if g is not None else (torch.zeros(2, *rs), torch.zeros(1, *rs))
                 for g, b in zip(guided, batch)]
        hint, mask = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    pred = engine.predict([b[1] for b in batch], hint, mask, yuv=yuv, context=context,
                          indices=[b[0] for b in batch])
    items = []
    for i, (idx, img, payload) in enumerate(batch):
        ab = pred.ab[i]
        if guided and guided[i] is not None:
            ab = blend(ab, guided[i], pred.L[i])
        # the item carries to composition the input's full-resolution L, or what L is made from again:
        # on the plane path its Y plane, for a grey RGB frame one of its channels
        if yuv is not None:
            carried = Carried(None, payload, img.dtype, luma=img)
        else:
            grey = pred.grey[i]
            carried = Carried(pred.L_full[i] if grey is None else None, payload, img.dtype, grey=grey)
        items.append(Item(idx, pred.L[i], ab, carried))
    return items


# Pixels composed at once (at most 8 frames). The keyframe carrier releases a block of AHEAD frames
# together, and composing all of them in one go holds several full-resolution float copies of each:
# 19 GB for 48 2K scans. Each frame is composed by the same ops whatever the group, so the bits do not change.
COMPOSE_PIXELS = 8_000_000


def _compose(engine: Engine, items: list[Item], start: int,
             yuv: yuvmod.YuvSpec | None = None) -> Iterator[tuple[Item, np.ndarray | yuvmod.Planes]]:
    items = [it for it in items if it.index >= start]
    if not items:
        return
    i = 0
    while i < len(items):
        j = i + 1
        shape, dtype = items[i].payload.shape, items[i].payload.dtype
        group_max = min(8, max(1, COMPOSE_PIXELS // (shape[0] * shape[1])))
        grey = items[i].payload.grey is not None
        while (j < len(items) and j - i < group_max and items[j].payload.shape == shape
               and items[j].payload.dtype == dtype and (items[j].payload.grey is not None) == grey):
            j += 1
        group = items[i:j]
        ab = torch.stack([it.ab for it in group])
        if yuv is not None:
            L = engine.full_l([it.payload.luma for it in group], yuv)
            out = [yuvmod.Planes(it.payload.luma, u, v) for it, (u, v) in zip(group, engine.compose_uv(L, ab, yuv))]
        elif grey:  # the same ops as predict's for an all-grey batch
            out = engine.compose_l(engine.grey_l([it.payload.grey for it in group]), ab, dtype)
        else:
            out = engine.compose_l(torch.stack([it.payload.L_full for it in group]), ab, dtype)
        yield from zip(group, out)
        i = j


def _deferred(engine: Engine, items: list[Item], start: int,
              yuv: yuvmod.YuvSpec | None = None) -> Iterator[tuple[Item, Callable[[], Any]]]:
    """:func:`_compose` one frame at a time, each left to be run by whoever calls it.

    On 2 cores the thread that smooths was also composing (full-resolution chroma, about 9 ms a
    frame) while the encoder's thread waited on it; composing in the encoder's thread instead lets
    the two overlap. Each frame is composed alone, by the same ops as in a group, so the bits are
    the same."""
    for it in items:
        if it.index >= start:
            yield it, functools.partial(_compose_one, engine, it, yuv)


def _compose_one(engine: Engine, item: Item, yuv: yuvmod.YuvSpec | None) -> np.ndarray | yuvmod.Planes:
    return next(_compose(engine, [item], item.index, yuv))[1]


def segment_length(segment_frames: int, batch_size: int) -> int:
    """Frames per checkpointed segment: ``segment_frames`` rounded down to whole batches."""
    return max(segment_frames // batch_size, 1) * batch_size


def _warm_start(start: int, warmup: int, batch_size: int) -> int:
    """First frame to predict when resuming at ``start``: aligned to a batch boundary."""
    return max(0, (start - warmup) // batch_size * batch_size) if start > 0 else 0
