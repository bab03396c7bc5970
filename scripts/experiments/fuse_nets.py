"""Colour photos with the product of two networks' bin distributions (a "product of experts").

    python scripts/experiments/fuse_nets.py EFFDEC.pt weights/vidcolor.pt --limit 120            # dev-120
    python scripts/experiments/fuse_nets.py EFFDEC.pt weights/vidcolor.pt \\
        --data-dir /tmp/vidcolor-test --split all --per-photo                                  # test-21

Each net's logits, less its own readout bias, become log-probabilities; the second net's are
resized to the first's grid. For each mixing weight w and temperature T the photo is read out from
``w * log p1 + (1 - w) * log p2`` (with ``--mix``: ``log(w p1 + (1 - w) p2)``) at T, on its own L at 256 px (as ``scripts/eval_dev.py``). Both
nets must classify over the same ab bins. Measured in docs/lab-notes/2026-12-07-effdec-run4.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor import data as D
from vidcolor.color import rgb_to_lab
from vidcolor.evaluate import image_metrics, photo_at
from vidcolor.train import readout_rgb
from vidcolor.weights import load_model


def log_probs(model, x: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(model(x).float() - model.readout_bias[None, :, None, None], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--split", choices=("dev", "all"), default="dev")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--weights", default="1,0.75,0.6,0.5,0.35,0", help="mixing weights w of the first net")
    ap.add_argument("--temperatures", default="0.38,0.5,0.6")
    ap.add_argument("--mix", action="store_true",
                    help="mix the probabilities (w p1 + (1 - w) p2) instead of multiplying them")
    ap.add_argument("--per-photo", action="store_true", help="also print each photo's PSNR at the first T")
    a = ap.parse_args()
    torch.set_num_threads(1)
    m1, m2 = load_model(a.first), load_model(a.second)
    if not torch.equal(m1.bins, m2.bins):
        raise SystemExit("the two nets classify over different ab bins")
    ws = [float(v) for v in a.weights.split(",")]
    ts = [float(v) for v in a.temperatures.split(",")]
    rows: dict[tuple[float, float], list[dict]] = {(w, t): [] for w in ws for t in ts}
    for it in D.eval_items(a.data_dir, a.split, a.limit):
        img = photo_at(a.data_dir / "train" / it.file, 256)
        lab = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0)
        with torch.no_grad():
            x = D.make_input(lab[:, :1])
            lp1 = log_probs(m1, x)
            lp2 = F.interpolate(log_probs(m2, x), size=lp1.shape[-2:], mode="bilinear", align_corners=False)
            bias = m1.readout_bias.clone()
            m1.readout_bias.zero_()  # already taken out of lp1 and lp2
            psnr = []
            for w, t in rows:
                fused = (torch.logaddexp(lp1 + np.log(max(w, 1e-12)), lp2 + np.log(max(1 - w, 1e-12))) if a.mix
                         else w * lp1 + (1 - w) * lp2)
                pred = readout_rgb(m1, fused, lab, t)[0].permute(1, 2, 0).numpy()
                m = image_metrics((pred * 255.0 + 0.5).astype(np.uint8), img)
                rows[(w, t)].append({f"{who}_{k}": v for who, d in m.items() for k, v in d.items()})
                if t == ts[0]:
                    psnr.append(m["pred"]["psnr"])
            m1.readout_bias.copy_(bias)
        if a.per_photo:
            print(f"{it.file[:44]:<44}" + "".join(f"{v:7.2f}" for v in psnr), flush=True)
    print(f"{'w':>5}{'T':>6}  {'PSNR':>6}{'grey':>7}  {'colour':>6}  {'false%':>6}")
    for (w, t), rs in rows.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        colour = mean["pred_colorfulness"] / mean["gt_colorfulness"]
        print(f"{w:>5.2f}{t:>6.2f}  {mean['pred_psnr']:>6.2f}{mean['grey_psnr']:>7.2f}  {colour:>6.3f}"
              f"  {100 * mean['pred_false_colour']:>6.2f}")


if __name__ == "__main__":
    main()
