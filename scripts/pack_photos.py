#!/usr/bin/env python
"""Pack a training folder smaller, for a machine that can take only so much (a lent GPU: 64 MiB).

    python scripts/pack_photos.py runs/data runs/pack [--short-side 144] [--quality 80] [--count 8000]

Every photo of ``SRC/train`` (or ``--count`` of them, drawn without replacement by the training
sampler's source weights, ``vidcolor.data.source_weights``, with a fixed seed) is resized (Lanczos)
so its short side is at most ``--short-side`` and saved as JPEG at ``--quality`` under
``DEST/train``, with the same name. ``DEST/train_manifest.csv`` lists the photos kept, so the dev
split (by file name) and the sources stay the same. Train at a crop no larger than the short side.
Existing files in DEST are kept, so a stopped run resumes.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vidcolor import data as D


def pack(src: Path, dest: Path, short_side: int, quality: int, count: int | None = None) -> int:
    """Write the packed copy; returns its size in bytes."""
    items = D.read_manifest(src)
    if count is not None and count < len(items):
        keep = np.random.default_rng(0).choice(len(items), count, replace=False, p=D.source_weights(items))
        items = [items[i] for i in sorted(keep)]
    (dest / "train").mkdir(parents=True, exist_ok=True)
    for it in items:
        f = src / "train" / it.file
        out = dest / "train" / f.name
        if out.exists():
            continue
        img = Image.open(f).convert("RGB")
        k = short_side / min(img.size)
        if k < 1:
            img = img.resize((round(img.size[0] * k), round(img.size[1] * k)), Image.LANCZOS)
        tmp = out.with_name(out.name + ".tmp")
        img.save(tmp, "JPEG", quality=quality)
        tmp.replace(out)  # a stopped run never leaves a half-written photo under its real name
    with open(dest / "train_manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "source"])
        w.writerows([it.file, it.source] for it in items)
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--short-side", type=int, default=144)
    p.add_argument("--quality", type=int, default=80)
    p.add_argument("--count", type=int, default=None, help="keep this many photos (default: all)")
    a = p.parse_args()
    if not (a.src / "train").is_dir():
        sys.exit(f"error: {a.src} has no train/ folder of photos")
    if a.short_side < 32 or not 1 <= a.quality <= 100 or (a.count is not None and a.count < 1):
        sys.exit(f"error: need --short-side >= 32, --quality in 1..100 and --count >= 1, got {a.short_side}, "
                 f"{a.quality} and {a.count}")
    size = pack(a.src, a.dest, a.short_side, a.quality, a.count)
    print(f"wrote {a.dest}: {size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()
