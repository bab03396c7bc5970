#!/usr/bin/env python
"""Network speed of one or more weights files, measured in one run: GFLOPs and frames per second
of the bare network at SIZE x SIZE (no decoding, readout or composition).

    python scripts/bench_model.py weights/vidcolor.pt NEW.pt [--size 256] [--batch 8] [--threads 2]

Runs are interleaved (A, B, A, B, ...) so a machine whose load changes treats every file alike;
the median of ``--repeat`` timed passes is printed, with each file's fps relative to the first's.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import median

import torch

from vidcolor.engine import Engine
from vidcolor.model import IN_CH, count_macs
from vidcolor.weights import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", type=Path)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    models = [Engine(load_model(w), "cpu", a.size).model for w in a.weights]  # fused and channels_last, as the CPU engine runs
    x = torch.randn(a.batch, IN_CH, a.size, a.size).contiguous(memory_format=torch.channels_last)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for m in models:
            m(x)  # warm-up
        for _ in range(a.repeat):
            for i, m in enumerate(models):
                t = time.perf_counter()
                m(x)
                times[i].append(time.perf_counter() - t)
    base = None
    for w, m, ts in zip(a.weights, models, times):
        fps = a.batch / median(ts)
        base = base or fps
        print(f"{w}: arch {m.config['arch']}, {2 * count_macs(m, a.size) / 1e9:.2f} GFLOPs, "
              f"{fps:.1f} fps at {a.size}x{a.size} (batch {a.batch}, {a.threads} threads), {fps / base:.2f}x the first")


if __name__ == "__main__":
    main()
