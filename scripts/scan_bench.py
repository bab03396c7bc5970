#!/usr/bin/env python
"""Speed and peak memory of `vidcolor frames` on a folder of grey 16-bit TIFF scans.

    python scripts/scan_bench.py [--size 2048x1556] [--frames 150] [--keyframes auto|off] [--batch-size 8] [--dir DIR]

Makes the scans (a textured picture panning sideways, as a film scan's content moves) in a
temporary folder unless --dir names a folder of frames, runs `vidcolor frames` on them in a child
process, and prints: frames, seconds, fps, and the child's peak RSS. The last line is exactly
``scan_fps=X peak_rss_gb=Y``.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def make_scans(folder: Path, n: int, w: int, h: int) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    base = (rng.random((h // 4 + 1, w // 4 + 1)) * 65535).astype(np.uint16)
    base = np.kron(base, np.ones((4, 4), np.uint16))[:h, :w]
    for i in range(n):
        tifffile.imwrite(folder / f"scan{i:06d}.tif", np.roll(base, 3 * i, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2048x1556")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--keyframes", default="auto", choices=("auto", "off"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dir", type=Path, help="a folder of frames to use instead of made-up scans")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src = a.dir or Path(tmp) / "scans"
        if a.dir is None:
            src.mkdir()
            make_scans(src, a.frames, w, h)
        n = len(list(src.iterdir()))
        cmd = [sys.executable, "-m", "vidcolor.cli", "frames", str(src), str(Path(tmp) / "out"), "-q",
               "--keyframes", a.keyframes, "--batch-size", str(a.batch_size)]
        t0 = time.time()
        subprocess.run(cmd, check=True, cwd=REPO)
        secs = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # kB -> GB (Linux)
    print(f"{n} frames ({a.size if a.dir is None else a.dir}), keyframes {a.keyframes}, batch {a.batch_size}: {secs:.1f} s, "
          f"{n / secs:.2f} fps, peak RSS {peak:.2f} GB")
    print(f"scan_fps={n / secs:.2f} peak_rss_gb={peak:.2f}")


if __name__ == "__main__":
    main()
