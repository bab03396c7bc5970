#!/usr/bin/env python
"""Guided colour on clips: the first frame's true colour given as --reference vs. automatic.

For each colour clip, vidcolor colours it from its own L twice, automatically
and with frame 0's ground truth as a reference, and PSNR (8-bit RGB, per frame)
against the original is reported as a curve against the distance from the
reference. Optionally writes a strip PNG: reference | frames 1, 25, 50 | truth.

    python scripts/eval_guided.py [--clips DIR] [--weights W] [--json out.json] [--strip strip.png]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import zlib
from pathlib import Path

import av
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

from vidcolor.frameio import write_frame
from vidcolor.metrics import psnr
from vidcolor.pipeline import Settings, colorize_video


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def true_pins(frame: np.ndarray, k: int, seed: int) -> list[dict]:
    """``k`` pins on frame 0 holding the frame's own colour at random places (``--pins``)."""
    h, w = frame.shape[:2]
    rng = np.random.default_rng(seed)
    return [{"frame": 0, "x": int(x), "y": int(y), "rgb": [int(c) for c in frame[y, x]]}
            for x, y in zip(rng.integers(0, w, k), rng.integers(0, h, k))]


DISTANCES = (0, 1, 2, 5, 10, 25, 50, 75, 100, 150)


def distance_table(results: dict) -> str:
    """Mean PSNR over the clips that reach each distance from the reference (frame 0)."""
    lines = ["distance  clips  automatic  reference   gain"]
    for d in DISTANCES:
        rows = [r for r in results.values() if d < len(r["curve_auto"])]
        if rows:
            au = float(np.mean([r["curve_auto"][d] for r in rows]))
            re = float(np.mean([r["curve_reference"][d] for r in rows]))
            lines.append(f"{d:8d}  {len(rows):5d}  {au:9.2f}  {re:9.2f}  {re - au:+6.2f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=Path, default=REPO.parent / "shared/data/clips")
    p.add_argument("--weights", default=None)
    p.add_argument("--window", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--strip", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pins", type=int, default=0,
                   help="instead of the reference, K true-colour pins on frame 0 at random places (fixed seed per clip)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    results = {}
    strip_rows = []
    for clip in sorted(a.clips.glob("*.mp4")):
        gt = frames(clip)
        with tempfile.TemporaryDirectory() as d:
            ref = Path(d) / "ref.png"
            write_frame(ref, gt[0], None)
            guide = {"references": (f"0={ref}",)}
            if a.pins:
                pins = Path(d) / "pins.json"
                pins.write_text(json.dumps(true_pins(gt[0], a.pins, zlib.crc32(clip.name.encode()))))
                guide = {"hints": str(pins)}
            outs = {}
            for mode in ("auto", "reference"):
                out = Path(d) / f"{mode}.mp4"
                s = Settings(weights=a.weights, temporal_window=a.window, **(guide if mode == "reference" else {}))
                colorize_video(clip, out, s, progress=False)
                outs[mode] = frames(out)
        curve = {m: [psnr(o, g) for o, g in zip(outs[m], gt)] for m in outs}
        gain = float(np.mean(curve["reference"]) - np.mean(curve["auto"]))
        results[clip.name] = {"frames": len(gt), "psnr_auto": float(np.mean(curve["auto"])),
                              "psnr_reference": float(np.mean(curve["reference"])), "gain_db": gain,
                              "curve_auto": [round(x, 2) for x in curve["auto"]],
                              "curve_reference": [round(x, 2) for x in curve["reference"]]}
        print(f"{clip.name:40s} frames={len(gt):4d} auto={np.mean(curve['auto']):6.2f} "
              f"ref={np.mean(curve['reference']):6.2f} gain={gain:+.2f} dB  "
              f"at d=1,25,50: " + " ".join(f"{curve['reference'][k] - curve['auto'][k]:+.1f}"
                                          for k in (1, 25, 50) if k < len(gt)))
        if len(gt) > 50:
            strip_rows.append(np.concatenate([gt[0], outs["reference"][1], outs["reference"][25],
                                              outs["reference"][50], gt[50]], axis=1))
    gains = [r["gain_db"] for r in results.values()]
    print(f"mean gain over {len(gains)} clips: {np.mean(gains):+.2f} dB (per-frame PSNR averaged per clip)")
    print(distance_table(results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if a.strip and strip_rows:
        from skimage.transform import resize

        h = 120
        rows = [(resize(r, (h, int(r.shape[1] * h / r.shape[0])), anti_aliasing=True) * 255).astype(np.uint8)
                for r in strip_rows[:4]]
        wmax = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, wmax - r.shape[1]), (0, 0))) for r in rows]
        write_frame(a.strip, np.concatenate(rows, axis=0), None)
        print(f"wrote {a.strip} (rows: reference | frame 1 | frame 25 | frame 50 | truth of frame 50)")


if __name__ == "__main__":
    main()
