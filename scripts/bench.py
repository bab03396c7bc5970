#!/usr/bin/env python
"""Speed and memory of the pipeline, on one clip at one render size.

Prints, in this order:
  model GFLOPs and fps at 256x256 (issue 3 budget: <= 4 GFLOPs, >= 15 fps);
  (a) model-only fps on the clip's frames (engine.predict on frames already in memory);
  (b) end-to-end `vidcolor video` fps;
  (c) end-to-end fps with the model replaced by an identity (everything but the network);
  temporal smoothing's share of end-to-end time (issue 4), checkpointing cost (issue 5);
  peak RSS of a run on the clip and on a clip 10x longer (bounded memory).
The last line is exactly: e2e_fps=X model_fps=Y ratio=Z  (Z = X / Y).
Model-only frames are what the pipeline's prediction takes for this clip: Y planes
(vidcolor.yuv) for YUV input, RGB with --rgb or for other formats.

    python scripts/bench.py [--clip PATH] [--render-size 256] [--threads 2] [--rgb]

With --stages it prints only the cost of each per-frame step outside the network,
RGB path against plane path, in ms per frame on one thread (median of 3 passes over the clip).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from statistics import median
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

from vidcolor import videoio, yuv
from vidcolor.decode import iter_frames
from vidcolor.encode import EncodeOptions, plane_spec as encode_plane_spec
from vidcolor.engine import Engine
from vidcolor.model import build_model, count_macs, default_config
from vidcolor.pipeline import Settings, colorize_video
from vidcolor.settings import DEFAULT_SEGMENT, DEFAULT_WINDOW
from vidcolor.testclips import write_rgb_video
from vidcolor.weights import default_weights_path, load_model


RGB_PATH = False  # --rgb: every figure through the RGB compose path


# CPU time of the whole process (every thread, x264's too) per frame, by run kind: on a shared
# machine this is steadier than wall-clock fps, because it does not count time spent waiting
CORE_MS: dict = {}


def e2e(clip: Path, weights: Path, render: int, batch: int, window: int = DEFAULT_WINDOW, segment: int = 240) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.mp4"
        t, cpu = time.perf_counter(), time.process_time()
        res = colorize_video(clip, out, Settings(weights=str(weights), render_size=render, batch_size=batch,
                                                 temporal_window=window), progress=False, segment_frames=segment,
                             yuv_planes=not RGB_PATH)
        CORE_MS.setdefault(window if weights.name != "identity.pt" else "identity", []).append(
            1000 * (time.process_time() - cpu) / res.frames)
        return res.frames / (time.perf_counter() - t)


def plane_spec(clip: Path) -> yuv.YuvSpec | None:
    """The plane path colorize_video takes for this clip with default encoding, or None (RGB path)."""
    return None if RGB_PATH else encode_plane_spec(videoio.probe(clip), EncodeOptions())


def model_fps(clip: Path, weights: Path, render: int, batch: int) -> float:
    spec = plane_spec(clip)
    frames = [f.image for f in iter_frames(clip, videoio.probe(clip).bit_depth > 8, yuv=spec)]
    eng = Engine(load_model(weights), "auto", render)
    eng.predict(frames[:batch], yuv=spec)  # warm-up
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(frames), batch):
        eng.predict(frames[i:i + batch], yuv=spec)
    CORE_MS.setdefault("model-only", []).append(1000 * (time.process_time() - cpu) / len(frames))
    return len(frames) / (time.perf_counter() - t)


def loop_clip(src: Path, dest: Path, times: int) -> None:
    """A clip `times` longer: the same frames over and over, re-encoded fast."""
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        rate = v.average_rate
    write_rgb_video(dest, (f for _ in range(times) for f in frames), rate, options={"preset": "ultrafast"})


def peak_rss_mb(clip: Path, weights: Path, render: int, batch: int, threads: int) -> float:
    """Peak RSS of a fresh process running the CLI on `clip` (ru_maxrss of the child)."""
    with tempfile.TemporaryDirectory() as d:
        code = ("import sys,resource,torch; torch.set_num_threads(%d); from vidcolor.pipeline import Settings, colorize_video; "
                "colorize_video(sys.argv[1], sys.argv[2], Settings(weights=sys.argv[3], render_size=%d, "
                "batch_size=%d), progress=False, yuv_planes=%s); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
                % (threads, render, batch, not RGB_PATH))
        r = subprocess.run([sys.executable, "-c", code, str(clip), str(Path(d) / "o.mp4"), str(weights)],
                           capture_output=True, text=True, cwd=REPO, check=True)
        return int(r.stdout.strip().splitlines()[-1]) / 1024


def _per_frame_ms(fn, items: list) -> float:
    """Median over 3 passes of fn over items (one call per batch or frame), in ms per frame."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        n = sum(fn(x) for x in items)
        times.append((time.perf_counter() - t) * 1000 / n)
    return median(times)


def stages(clip: Path, render: int, batch: int) -> None:
    """Per-frame cost of the steps that the plane path replaces, each path's way, on one thread."""
    from vidcolor.encode import _zero_padding

    torch.set_num_threads(1)
    info = videoio.probe(clip)
    spec = encode_plane_spec(info, EncodeOptions())
    if spec is None:
        raise SystemExit(f"{clip} takes the RGB path ({info.pix_fmt}); nothing to compare")
    with av.open(str(clip)) as c:
        vf = list(c.decode(video=0))
    eng = Engine(build_model(default_config("identity")), "cpu", render)
    rgb = [f.to_ndarray(format="rgb24") for f in vf]
    ys = [yuv.luma_plane(f, spec) for f in vf]
    rb = [rgb[i:i + batch] for i in range(0, len(rgb), batch)]
    yb = [ys[i:i + batch] for i in range(0, len(ys), batch)]
    with torch.inference_mode():
        L = [eng.full_l(b) for b in rb]
        ab = [torch.randn(len(b), 2, *eng.render_l(b[:1]).shape[-2:]) * 20 for b in rb]
        comp_rgb = [x for b, a in zip(L, ab) for x in eng.compose_l(b, a, np.uint8)]
        comp_uv = [x for b, a in zip(L, ab) for x in eng.compose_uv(b, a, spec)]
    planes = [yuv.Planes(y, u, v) for y, (u, v) in zip(ys, comp_uv)]
    rows = [
        ("decoded frame -> network input", _per_frame_ms(lambda f: f.to_ndarray(format="rgb24") is not None, vf),
         _per_frame_ms(lambda f: (yuv.luma_plane(f, spec), yuv.has_colour(f, spec)) is not None, vf)),
        ("full-resolution L", _per_frame_ms(lambda b: len(eng.full_l(b)), rb),
         _per_frame_ms(lambda b: len(eng.full_l(b, spec)), yb)),
        ("composition (L + ab -> output)", _per_frame_ms(lambda i: len(eng.compose_l(L[i], ab[i], np.uint8)), range(len(L))),
         _per_frame_ms(lambda i: len(eng.compose_uv(L[i], ab[i], spec)), range(len(L)))),
        ("encoder frame (to the codec's format)",
         _per_frame_ms(lambda x: _zero_padding(av.VideoFrame.from_ndarray(x, format="rgb24").reformat(
             format=spec.out_fmt)) is not None, comp_rgb),
         _per_frame_ms(lambda p: _zero_padding(yuv.to_frame(p, spec)) is not None, planes)),
    ]
    print(f"per-frame cost, ms on 1 thread ({clip.name}, {info.width}x{info.height} {info.pix_fmt} -> {spec.out_fmt}):")
    print(f"{'step':40s} {'RGB path':>9s} {'planes':>9s} {'saved':>9s}")
    for name, a_ms, b_ms in rows:
        print(f"{name:40s} {a_ms:9.2f} {b_ms:9.2f} {a_ms - b_ms:9.2f}")
    ta, tb = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':40s} {ta:9.2f} {tb:9.2f} {ta - tb:9.2f}")


def _fmt(xs: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/clips/intel_car_aerial_8s_silentaudio.mp4")
    p.add_argument("--weights", type=Path, default=default_weights_path())
    p.add_argument("--render-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=int, default=None, help="temporal window for the smoothing figure")
    p.add_argument("--repeat", type=int, default=3, help="runs per end-to-end figure (the median is printed)")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-checkpoint", action="store_true")
    p.add_argument("--rgb", action="store_true", help="force the RGB compose path (the path before issue 17)")
    p.add_argument("--stages", action="store_true", help="only the per-step costs, RGB path vs plane path")
    a = p.parse_args()
    global RGB_PATH
    RGB_PATH = a.rgb
    if a.stages:
        stages(a.clip, a.render_size, a.batch_size)
        return
    torch.set_num_threads(a.threads)
    window = DEFAULT_WINDOW if a.window is None else a.window
    model = load_model(a.weights)
    macs = count_macs(model.net if hasattr(model, "net") else model, 256)
    x = torch.zeros(8, 4, 256, 256)
    m = Engine(model, "cpu", 256).model  # fused and channels_last, as the engine runs it
    with torch.inference_mode():
        m(x)
        t = time.perf_counter()
        for _ in range(3):
            m(x.contiguous(memory_format=torch.channels_last))
        fps256 = 24 / (time.perf_counter() - t)
    print(f"model: {model.config['arch']} {2 * macs / 1e9:.2f} GFLOPs per 256x256 frame, {fps256:.1f} fps at 256x256 "
          f"(batch 8, {a.threads} threads)")
    with tempfile.TemporaryDirectory() as d:
        ident = Path(d) / "identity.pt"
        im = build_model(default_config("identity"))
        torch.save({"config": im.config, "model": im.state_dict()}, ident)
        mf = median([model_fps(a.clip, a.weights, a.render_size, a.batch_size) for _ in range(a.repeat)])
        print(f"(a) model-only: {mf:.2f} fps")
        # end-to-end figures that are compared with each other are measured interleaved (ABAB...),
        # so a slow spell of the machine hits both sides alike; each is the median of --repeat runs
        runs: dict[str, list[float]] = {"b": [], "c": [], "w0": []}
        for _ in range(a.repeat):
            runs["b"].append(e2e(a.clip, a.weights, a.render_size, a.batch_size, window=window))
            runs["c"].append(e2e(a.clip, ident, a.render_size, a.batch_size, window=window))
            if window:
                runs["w0"].append(e2e(a.clip, a.weights, a.render_size, a.batch_size, window=0))
        ef, idf = median(runs["b"]), median(runs["c"])
        label = {"identity": "identity model", "model-only": "model-only"}
        print("core-ms per frame (process CPU time, all threads): " + ", ".join(
            f"{label.get(k, f'window {k}')} {median(v):.1f} (runs {_fmt(v)})" for k, v in CORE_MS.items()))
        print(f"(b) end-to-end: {ef:.2f} fps (temporal window {window}; runs {_fmt(runs['b'])})")
        print(f"(c) end-to-end, identity model: {idf:.2f} fps (runs {_fmt(runs['c'])})")
        if window:
            pf = median(runs["w0"])
            share = 1 - ef / pf  # (t_smooth - t_plain) / t_smooth, per frame
            print(f"temporal window 0: {pf:.2f} fps end-to-end (runs {_fmt(runs['w0'])}); smoothing's share of "
                  f"end-to-end time at window {window}: {100 * share:.1f}%")
        long_clip = Path(d) / "long.mp4"
        loop_clip(a.clip, long_clip, 10)
        if not a.skip_checkpoint:
            ones, segs = [], []
            for _ in range(a.repeat):
                ones.append(e2e(long_clip, a.weights, a.render_size, a.batch_size, window=window, segment=10**9))
                segs.append(e2e(long_clip, a.weights, a.render_size, a.batch_size, window=window,
                                segment=DEFAULT_SEGMENT))
            one, seg = median(ones), median(segs)
            print(f"checkpointing (10x clip): {one:.2f} fps as one segment (runs {_fmt(ones)}), {seg:.2f} fps with "
                  f"a checkpointed segment every {DEFAULT_SEGMENT} frames (runs {_fmt(segs)}; "
                  f"cost {100 * (1 - seg / one):.1f}%)")
        if not a.skip_rss:
            r1 = peak_rss_mb(a.clip, a.weights, a.render_size, a.batch_size, a.threads)
            r10 = peak_rss_mb(long_clip, a.weights, a.render_size, a.batch_size, a.threads)
            print(f"peak RSS: {r1:.0f} MB for the clip, {r10:.0f} MB for 10x the clip ({100 * (r10 / r1 - 1):+.1f}%)")
    print(json.dumps({"clip": str(a.clip), "render_size": a.render_size, "batch_size": a.batch_size,
                      "threads": a.threads, "compose": "yuv" if plane_spec(a.clip) else "rgb"}))
    print(f"e2e_fps={ef:.2f} model_fps={mf:.2f} ratio={ef / mf:.3f}")


if __name__ == "__main__":
    main()
