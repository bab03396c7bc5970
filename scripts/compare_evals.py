#!/usr/bin/env python
"""Compare two ``eval_dev.py --json`` reports photo by photo: is the difference bigger than the noise?

    python scripts/compare_evals.py base.json new.json [--rows 10]

A ship decision reads two means over a few dozen photos, and a mean moves with which photos happen
to be in the split. This prints the mean PSNR difference (new - base) over the photos both reports
hold, its paired standard error and a 95% bootstrap interval (photos resampled, fixed seed), how
many photos got better and worse, the difference per source and over sources (panorama tiles of one
source are not independent photos), and the photos that moved most each way.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_items(path: Path) -> dict[str, tuple[str, float, float]]:
    """(source, PSNR, grey PSNR) of each photo of one report, by file name."""
    try:
        rep = json.loads(path.read_text())
        return {r["file"]: (str(r["source"]), float(r["pred_psnr"]), float(r["grey_psnr"])) for r in rep["items"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: {path} is not an eval_dev.py --json report ({e})")


def paired_stats(d: np.ndarray, boot: int = 10000, seed: int = 0) -> tuple[float, float, float, float]:
    """Mean, standard error and a 95% bootstrap interval of the paired differences ``d``."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(boot, len(d)))].mean(1)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se, float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rows", type=int, default=5, help="photos to list at each end (default 5)")
    a = ap.parse_args()
    base, new = load_items(a.base), load_items(a.new)
    files = sorted(set(base) & set(new))
    if not files:
        sys.exit(f"error: {a.base} and {a.new} share no photos")
    if len(files) < max(len(base), len(new)):
        print(f"note: comparing the {len(files)} photos both hold ({len(base)} and {len(new)} in the reports)")
    b = np.array([base[f][1] for f in files])
    d = np.array([new[f][1] for f in files]) - b
    mean, se, lo, hi = paired_stats(d)
    print(f"photos {len(files)}: base {b.mean():.2f} dB, new {(b + d).mean():.2f} dB")
    print(f"difference {mean:+.2f} dB, paired SE {se:.2f}, 95% bootstrap interval [{lo:+.2f}, {hi:+.2f}]; "
          f"better on {(d > 0).sum()}, worse on {(d < 0).sum()}")
    by_source: dict[str, list[float]] = defaultdict(list)
    for f, x in zip(files, d):
        by_source[base[f][0]].append(float(x))
    src = np.array([np.mean(v) for v in by_source.values()])
    smean, sse, slo, shi = paired_stats(src)
    print(f"over {len(src)} sources: {smean:+.2f} dB, SE {sse:.2f}, 95% interval [{slo:+.2f}, {shi:+.2f}]")
    for s, v in sorted(by_source.items(), key=lambda kv: np.mean(kv[1])):
        print(f"  {s:18s} n {len(v):3d}  {np.mean(v):+.2f}")
    order = np.argsort(d)
    picks = list(order[:a.rows]) + [i for i in order[::-1][:a.rows] if i not in order[:a.rows]]
    print("most changed photos (grey / base / new):")
    for i in picks:
        f = files[i]
        print(f"  {f[:48]:48s} {base[f][2]:6.2f} {base[f][1]:6.2f} {new[f][1]:6.2f}  {d[i]:+.2f}")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # `| head` closed the pipe: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(0)
