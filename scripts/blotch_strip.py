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

import torch

from eval_dev import REPO, colour_photo, make_sheet, photo_at
from vidcolor.evaluate import grey_baseline
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
    report = json.loads(Path(a.json).read_text())
    items = report["items"]
    worst = sorted(items, key=lambda r: -r["pred_false_colour"])[:a.count]
    models = [load_model(a.before), load_model(a.after)]
    rows = []
    for r in worst:
        img = photo_at(Path(a.data_dir) / "train" / r["file"], report["short_side"])
        rows.append((r["file"], grey_baseline(img), *(colour_photo(m, img, a.temperature) for m in models), img))
    make_sheet(rows, Path(a.out))
    print(f"wrote {a.out}: {', '.join(r['file'] for r in worst)}")


if __name__ == "__main__":
    main()
