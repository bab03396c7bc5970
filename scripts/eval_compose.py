#!/usr/bin/env python
"""Plane path against RGB path: PSNR against the truth on the dev clips (issue 17).

Each colour clip is coloured automatically from its own luminance twice, once
through the RGB compose path (``yuv_planes=False``, the path before issue 17) and
once through the YUV plane path, and PSNR (8-bit RGB, per frame, averaged per
clip) against the original is printed for both, with the difference.

With --grey each clip is first made black and white the way film is: its own Y
plane with neutral chroma, encoded losslessly. Both paths then see the same L
(from colour input the plane path's L comes from Y, not from the RGB's lightness).

    python scripts/eval_compose.py [--clips DIR] [--weights W] [--window 3] [--threads 2] [--grey] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from eval_guided import frames  # noqa: E402
from vidcolor.metrics import psnr  # noqa: E402
from vidcolor.pipeline import Settings, colorize_video  # noqa: E402
from vidcolor.settings import DEFAULT_WINDOW  # noqa: E402


def grey_copy(src: Path, dest: Path) -> None:
    """``src`` with its chroma planes set to neutral, x264-lossless (its Y planes are kept exactly)."""
    with av.open(str(src)) as c, av.open(str(dest), "w") as out:
        v = c.streams.video[0]
        s = out.add_stream("libx264", rate=v.average_rate)
        s.width, s.height, s.pix_fmt = v.codec_context.width, v.codec_context.height, v.codec_context.format.name
        s.codec_context.options = {"crf": "0", "preset": "ultrafast"}
        for i, f in enumerate(c.decode(v)):
            for plane in f.planes[1:]:
                np.frombuffer(plane, np.uint8)[:] = 128
            f.pts, f.time_base = i, 1 / v.average_rate  # frame numbers: the eval compares frame by frame
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=Path, default=REPO.parent / "shared/data/clips")
    p.add_argument("--weights", default=None)
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--grey", action="store_true", help="colour black-and-white copies of the clips (see above)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    results = {}
    for clip in sorted(a.clips.glob("*.mp4")):
        gt = frames(clip)
        row = {"frames": len(gt)}
        with tempfile.TemporaryDirectory() as d:
            src = clip
            if a.grey:
                src = Path(d) / "grey.mp4"
                grey_copy(clip, src)
            for name, planes in (("rgb", False), ("yuv", True)):
                out = Path(d) / f"{name}.mp4"
                t = time.perf_counter()
                colorize_video(src, out, Settings(weights=a.weights, temporal_window=a.window), progress=False,
                               yuv_planes=planes)
                row[f"seconds_{name}"] = round(time.perf_counter() - t, 2)
                row[f"psnr_{name}"] = float(np.mean([psnr(o, g) for o, g in zip(frames(out), gt)]))
        row["diff_db"] = row["psnr_yuv"] - row["psnr_rgb"]
        results[clip.name] = row
        print(f"{clip.name:40s} frames={len(gt):4d} rgb={row['psnr_rgb']:6.2f} yuv={row['psnr_yuv']:6.2f} "
              f"diff={row['diff_db']:+.3f} dB", flush=True)
    diffs = [r["diff_db"] for r in results.values()]
    print(f"mean over {len(diffs)} clips: rgb={np.mean([r['psnr_rgb'] for r in results.values()]):.3f} "
          f"yuv={np.mean([r['psnr_yuv'] for r in results.values()]):.3f} diff={np.mean(diffs):+.3f} dB "
          f"(worst clip {min(diffs):+.3f} dB)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
