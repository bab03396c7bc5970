"""How well a net colours photos of the batches it trained on against photos it never saw.

    python scripts/experiments/teacher_gap.py weights/vidcolor.pt --side train --batch new

Takes the first ``--n`` photos (by SHA-1 of the file name) of one side of the split (``train`` or
``dev``) and one part of ``../shared/data``: ``old`` (the first two batches) or ``new`` (the third
batch: scenes, sky, people outdoors, ImageNet). Prints the mean PSNR, grey's, and the gain, at 256 px
and readout T 0.38. Measured in docs/lab-notes/2026-12-07-effdec-run4.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vidcolor import data as D
from vidcolor.evaluate import image_metrics, photo_at
from vidcolor.settings import DEFAULT_TEMPERATURE
from vidcolor.train import predict_rgb
from vidcolor.weights import load_model

THIRD_BATCH = {"intel_scenes", "sun8", "weather4", "flickr8k", "imagenet1k", "imagenetdet"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--side", choices=("train", "dev"), default="dev")
    ap.add_argument("--batch", choices=("old", "new"), default="new")
    ap.add_argument("--n", type=int, default=60)
    a = ap.parse_args()
    torch.set_num_threads(1)
    train, dev = D.split(D.read_manifest(a.data_dir))
    pool = [it for it in (train if a.side == "train" else dev) if (it.source in THIRD_BATCH) == (a.batch == "new")]
    pool = D.sha1_order(pool)[:a.n]
    model = load_model(a.weights)
    ours, grey = [], []
    for it in pool:
        img = photo_at(a.data_dir / "train" / it.file, 256)
        pred = predict_rgb(model, torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0, DEFAULT_TEMPERATURE)
        m = image_metrics((pred[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8), img)
        ours.append(m["pred"]["psnr"])
        grey.append(m["grey"]["psnr"])
    print(f"{a.side} side, {a.batch} batches, {len(pool)} photos: {np.mean(ours):.2f} dB, grey {np.mean(grey):.2f}, "
          f"gain {np.mean(ours) - np.mean(grey):+.2f}")


if __name__ == "__main__":
    main()
