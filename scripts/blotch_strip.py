#!/usr/bin/env python
"""Before/after strip for false colour: the photos where BEFORE paints most vivid colour on grey.

    python scripts/blotch_strip.py BEFORE.pt AFTER.pt --json dev_before.json --out strip.png

``--json`` is an ``eval_dev.py --json`` report of BEFORE; its ``--count`` photos with the highest
false-colour share are shown, one per row: grey input | BEFORE | AFTER | truth.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eval_dev import REPO, load_rgb, make_sheet
from vidcolor.evaluate import grey_baseline, resize_rgb, short_side_shape
from vidcolor.train import predict_rgb
from vidcolor.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--json", required=True, help="eval_dev.py --json report of BEFORE")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--temperature", type=float, default=0.38)
    ap.add_argument("--out", default="blotch_strip.png")
    a = ap.parse_args()
    torch.set_num_threads(1)
    items = json.loads(Path(a.json).read_text())["items"]
    worst = sorted(items, key=lambda r: -r["pred_false_colour"])[:a.count]
    models = [load_model(a.before), load_model(a.after)]
    rows = []
    for r in worst:
        img = load_rgb(Path(a.data_dir) / "train" / r["file"])
        img = resize_rgb(img, short_side_shape(img.shape[0], img.shape[1], 256))
        rgb = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
        outs = [(predict_rgb(m, rgb, a.temperature)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                for m in models]
        rows.append((r["file"], grey_baseline(img), *outs, img))
    make_sheet(rows, Path(a.out))
    print(f"wrote {a.out}: {', '.join(r['file'] for r in worst)}")


if __name__ == "__main__":
    main()
