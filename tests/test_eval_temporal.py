"""scripts/eval_temporal.py's drift: frame pairs that span a cut are not compared."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from vidcolor.color import rgb_to_lab

from .conftest import frame_pattern

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_temporal.py"


def _load():
    spec = importlib.util.spec_from_file_location("eval_temporal", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _clip(n: int, cut: int) -> torch.Tensor:
    """Lab (n, 3, h, w): a still colour picture, from ``cut`` on an unrelated one; both keep a black
    band at the top, which is all a pair across the cut has in common (as dark night scenes do)."""
    frames = []
    for i in range(n):
        img = frame_pattern(0, 96, 64, grey=False)
        if i >= cut:
            img = np.ascontiguousarray(np.rot90(img, 2)[:, :, ::-1] // 2 + 60)
        img[:16] = 0
        frames.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
    return rgb_to_lab(torch.stack(frames))


def test_truth_cuts_finds_the_cut_and_drift_skips_pairs_across_it():
    et = _load()
    lab = _clip(30, 17)
    assert et.truth_cuts(lab) == [17]
    assert et.truth_cuts(_clip(30, 99)) == []
    # an output whose colour in the black band changes only at the cut: no drift within a shot
    out_lab = lab.clone()
    out_lab[17:, 1:, :16] += 20.0
    from vidcolor.color import lab_to_rgb
    out = lab_to_rgb(out_lab).clamp(0, 1)
    fps = 5.0  # 1 s = 5 frames, so pairs at distance 5 straddle the cut for t in 12..16
    spanning = et.drift(out, lab, fps, [])["drift_1s"]
    within = et.drift(out, lab, fps, [17])["drift_1s"]
    assert abs(within) < 1.0 < spanning, (within, spanning)
