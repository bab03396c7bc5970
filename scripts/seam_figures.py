#!/usr/bin/env python
"""Seam figures (issue 35): the a,b change at each segment start against the median change nearby.

    python scripts/seam_figures.py OUT.mp4 --every 240 [--radius 12] [--json seams.json]

Decodes a coloured video, measures each frame's mean a,b and L change from the frame before at
160x90 (Lab units), and prints them at every multiple of ``--every`` (the segment starts of a
run with ``--segment-frames``) with their medians over the frames within ``--radius``.
"""
from __future__ import annotations

import argparse
import json

import av
import numpy as np

from vidcolor.temporal_metrics import frame_changes, seam_figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("--every", type=int, default=240, help="segment length: seams at its multiples")
    p.add_argument("--radius", type=int, default=12, help="frames each side for the median")
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    with av.open(a.video) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    ab, L = frame_changes(frames)
    rows = seam_figures(ab, L, list(range(a.every, len(frames), a.every)), a.radius)
    print("| frame | a,b change | median a,b nearby | ratio | L change | median L nearby |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['frame']} | {r['ab']:.3f} | {r['ab_median']:.3f} | {r['ratio']:.2f}x | {r['L']:.3f} "
              f"| {r['L_median']:.3f} |")
    worst = int(ab[1:].argmax()) + 1
    print(f"all frames: median a,b change {np.median(ab[1:]):.3f}, max {ab[worst]:.3f} at {worst}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
