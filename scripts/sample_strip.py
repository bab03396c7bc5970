#!/usr/bin/env python
"""Before/after strip of the bundled sample: frames of ``samples/sample.mp4`` coloured by each
weights file with the default options, under the true colour of the clip it was made from.

    python scripts/sample_strip.py OLD.pt NEW.pt [--frames 10 30 50] --out weights/sample_strip.png

Rows: truth (``../shared/data/clips/intel_person_walk_8s.mp4``, the sample's source) | one row per
weights file, at half size. The sample is grey with a vignette, grain and flicker like an old
print (``scripts/make_sample.py``), so the strip shows what that damage makes each net paint.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from skimage import io

REPO = Path(__file__).resolve().parent.parent
from vidcolor.evaluate import resize_rgb
from vidcolor.pipeline import Settings, colorize_video


def frames_of(path: Path, picks: list[int]) -> list[np.ndarray]:
    """The frames numbered ``picks`` of a video, as RGB."""
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in picks:
                out[i] = f.to_ndarray(format="rgb24")
            if i >= max(picks):
                break
    missing = [p for p in picks if p not in out]
    if missing:
        sys.exit(f"sample_strip: error: {path} has no frames {missing}")
    return [out[p] for p in picks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--sample", default=str(REPO / "samples" / "sample.mp4"))
    ap.add_argument("--truth", default=str(REPO.parent / "shared" / "data" / "clips" / "intel_person_walk_8s.mp4"))
    ap.add_argument("--frames", type=int, nargs="+", default=[10, 30, 50])
    ap.add_argument("--out", default="sample_strip.png")
    a = ap.parse_args()
    rows = [frames_of(Path(a.truth), a.frames)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, w in enumerate(a.weights):
            out = Path(tmp) / f"w{i}.mp4"
            colorize_video(a.sample, out, Settings(weights=w), progress=False, log=lambda s: None)
            rows.append(frames_of(out, a.frames))
    h, w = rows[0][0].shape[:2]
    lines = [np.concatenate([resize_rgb(f, (h // 2, w // 2)) for f in row], axis=1) for row in rows]
    io.imsave(a.out, np.concatenate(lines, axis=0), check_contrast=False)
    print(f"wrote {a.out}: rows truth, {', '.join(a.weights)}; frames {a.frames}")


if __name__ == "__main__":
    main()
