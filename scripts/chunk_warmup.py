#!/usr/bin/env python
"""How many frames a Ray chunk's keyframe carrier needs before it colours like one run (issue 35).

    OMP_NUM_THREADS=1 python scripts/chunk_warmup.py CLIP --start 600 --warm 48 96 192 384 [--frames 48]

A chunk that starts at frame START inside a shot cannot have the state that the run before it
carried there; it starts its carrier afresh WARM frames early (``keyframes.WARM``). This predicts
the clip once (default settings, the shipped weights), then runs the smoother and the carrier over
the cached predictions from frame 0 (one run) and from each START - WARM, and prints how far the
chunk's a,b at render size are from the single run's over frames START .. START + FRAMES - 1.
"""
from __future__ import annotations

import argparse
import copy

import av
import numpy as np
import torch

from vidcolor.engine import Engine
from vidcolor.pipeline import Settings
from vidcolor.stream import _predict_batch, _stages, build_stages
from vidcolor.temporal import Item, Smoother
from vidcolor.weights import default_weights_path, load_model


def run(items: list[Item], settings: Settings, start: int, fresh_from: int) -> dict[int, torch.Tensor]:
    """The final a,b of frames >= ``start`` when the carrier starts afresh at ``fresh_from``."""
    smoother = Smoother(settings.temporal_window, settings.cut_threshold)
    st = build_stages(settings, smoother, settings.batch_size, start, 10 ** 9, fresh_from=fresh_from)
    out: dict[int, torch.Tensor] = {}
    for it in items[st.first:]:
        for done in _stages(st.smoother, st.carrier, copy.copy(it)):
            if done.index >= start:
                out[done.index] = done.ab.clone()
    for done in _stages(st.smoother, st.carrier, None):
        if done.index >= start:
            out[done.index] = done.ab.clone()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip")
    p.add_argument("--start", type=int, default=600)
    p.add_argument("--warm", type=int, nargs="+", default=[48, 96, 192, 384])
    p.add_argument("--frames", type=int, default=48, help="frames compared from START on")
    a = p.parse_args()
    settings = Settings()
    engine = Engine(load_model(default_weights_path()), "cpu", settings.render_size, settings.temperature,
                    settings.guided_temperature)
    end = a.start + a.frames + 2 * 48 + 8  # the carrier's look-ahead past the frames compared
    items: list[Item] = []
    with av.open(a.clip) as c:
        batch = []
        for i, f in enumerate(c.decode(c.streams.video[0])):
            if i >= end:
                break
            batch.append((i, f.to_ndarray(format="rgb24"), None))
            if len(batch) == settings.batch_size:
                items += _predict_batch(engine, batch, None)
                batch = []
        items += _predict_batch(engine, batch, None) if batch else []
    ref = run(items, settings, a.start, 0)
    span = range(a.start, a.start + a.frames)
    print("| warm-up frames | max abs a,b difference | mean abs a,b difference | at the first frame (mean) |")
    print("| --- | --- | --- | --- |")
    for w in a.warm:
        got = run(items, settings, a.start, a.start - w)
        d = [(got[t] - ref[t]).abs() for t in span]
        print(f"| {w} | {max(float(x.max()) for x in d):.4f} | {float(np.mean([float(x.mean()) for x in d])):.4f} "
              f"| {float(d[0].mean()):.4f} |")


if __name__ == "__main__":
    main()
