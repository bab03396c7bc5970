"""Temporal-stability metrics of a coloured video: warp error over optical flow, and CDC.

The definitions (Lai et al. 2018; Liu et al. 2021) are in :mod:`vidcolor.evaluate`, which
reports them; ``scripts/eval_temporal.py`` reuses the flow and its consistency check.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import VidcolorError

FLOW_METHODS = ("tvl1", "ilk")
CDC_DILATIONS = (1, 2, 4)


def _flow_fn(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from skimage.registration import optical_flow_ilk, optical_flow_tvl1

    if method not in FLOW_METHODS:
        raise VidcolorError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
    return optical_flow_tvl1 if method == "tvl1" else optical_flow_ilk


def sample_at_flow(img: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly sample (C, H, W) ``img`` at x + flow(x); flow is (2, H, W) as (row, col) offsets.

    Returns the sampled image and a (H, W) mask of positions that fall inside the frame.
    """
    _, h, w = img.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    r, c = rows + flow[0], cols + flow[1]
    inside = (r >= 0) & (r <= h - 1) & (c >= 0) & (c <= w - 1)
    grid = torch.stack([2 * c / max(w - 1, 1) - 1, 2 * r / max(h - 1, 1) - 1], dim=-1)[None]
    out = F.grid_sample(img[None].to(flow.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0], inside


def flow_pair(L_prev: np.ndarray, L_cur: np.ndarray, method: str = "tvl1") -> tuple[np.ndarray, np.ndarray]:
    """Backward flow of frame t to t-1 and its validity mask, from the L channels (H, W) in [0, 1].

    ``flow[:, y, x]`` is the (row, col) offset of pixel (y, x) of frame t in
    frame t-1. A pixel is valid (not occluded) when it lands inside frame t-1
    and the forward flow there points back to it (Ruder et al. 2016):
    |w_b + w_f(x + w_b)|^2 <= 0.01 (|w_b|^2 + |w_f(x + w_b)|^2) + 0.5.
    """
    fn = _flow_fn(method)
    # skimage returns flow such that moving(x + flow(x)) ~ reference(x)
    bw = fn(L_cur.astype(np.float32), L_prev.astype(np.float32)).astype(np.float32)
    fw = fn(L_prev.astype(np.float32), L_cur.astype(np.float32)).astype(np.float32)
    bw_t, fw_t = torch.from_numpy(bw), torch.from_numpy(fw)
    fw_w, inside = sample_at_flow(fw_t, bw_t)
    d = ((fw_w + bw_t) ** 2).sum(0)
    ok = d <= 0.01 * ((fw_w ** 2).sum(0) + (bw_t ** 2).sum(0)) + 0.5
    return bw, (ok & inside).numpy()


def warp_errors(prev_rgb: np.ndarray, cur_rgb: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Warp error of one frame pair, RGB in [0, 1], over the ``mask`` pixels.

    Returns (mean absolute difference over valid pixels and channels,
    mean over valid pixels of the squared L2 norm of the RGB difference).
    NaN when no pixel is valid.
    """
    n = int(mask.sum())
    if n == 0:
        return float("nan"), float("nan")
    prev = torch.from_numpy(np.ascontiguousarray(prev_rgb)).permute(2, 0, 1).float() / 255.0
    cur = torch.from_numpy(np.ascontiguousarray(cur_rgb)).permute(2, 0, 1).float() / 255.0
    warped, _ = sample_at_flow(prev, torch.from_numpy(flow))
    diff = (warped - cur)[:, torch.from_numpy(mask)]
    return float(diff.abs().mean()), float((diff ** 2).sum(0).mean())


def rgb_histograms(rgb: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histograms of a uint8 RGB image, each summing to 1: (3, 256)."""
    n = rgb.shape[0] * rgb.shape[1]
    return np.stack([np.bincount(rgb[..., c].ravel(), minlength=256)[:256] / n for c in range(3)])


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log) along the last axis of two distributions."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / np.where(m > 0, m, 1.0)), 0.0).sum(-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


class CDCAccumulator:
    """Streaming CDC: keeps only the last max(dilation) histograms."""

    def __init__(self, dilations: tuple[int, ...] = CDC_DILATIONS):
        self.dilations = dilations
        self.recent: deque[np.ndarray] = deque(maxlen=max(dilations))
        self.sums = {d: np.zeros(3) for d in dilations}
        self.counts = {d: 0 for d in dilations}

    def push(self, rgb: np.ndarray) -> None:
        """Add the next frame (uint8 RGB)."""
        h = rgb_histograms(rgb)
        for d in self.dilations:
            if len(self.recent) >= d:
                self.sums[d] += js_divergence(self.recent[-d], h)
                self.counts[d] += 1
        self.recent.append(h)

    def by_dilation(self) -> dict[int, float]:
        """Channel-averaged mean JS per dilation (only dilations with at least one pair)."""
        return {d: float((self.sums[d] / self.counts[d]).mean()) for d in self.dilations if self.counts[d]}

    def value(self) -> float:
        """CDC: equal-weight mean over the dilations that had pairs (NaN for a one-frame video)."""
        v = self.by_dilation()
        return float(np.mean(list(v.values()))) if v else float("nan")


SEAM_SIZE = (90, 160)  # (h, w) at which seams are measured, as in issue 35


def frame_changes(frames: list[np.ndarray], size: tuple[int, int] = SEAM_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Mean change of a,b (Euclidean, Lab units) and of L from each frame to the next, at ``size``.

    ``frames``: RGB uint8 (H, W, 3). Entry t is the change from frame t - 1 to t (entry 0 is 0)."""
    from .color import rgb_to_lab

    labs = []
    for f in frames:
        t = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 255.0
        labs.append(rgb_to_lab(F.interpolate(t, size=size, mode="area"))[0])
    ab, L = np.zeros(len(frames)), np.zeros(len(frames))
    for t in range(1, len(labs)):
        d = labs[t] - labs[t - 1]
        ab[t] = float(d[1:].norm(dim=0).mean())
        L[t] = float(d[0].abs().mean())
    return ab, L


def seam_figures(ab: np.ndarray, L: np.ndarray, starts: list[int], radius: int = 12) -> list[dict[str, float]]:
    """At each start s: the a,b and L change into frame s and their medians over frames s-radius..s+radius
    (s itself left out), from :func:`frame_changes`; ``ratio`` is the a,b change over its median."""
    rows = []
    for s in starts:
        near = [t for t in range(max(1, s - radius), min(len(ab), s + radius + 1)) if t != s]
        if not 0 < s < len(ab) or not near:
            continue
        med_ab, med_L = float(np.median(ab[near])), float(np.median(L[near]))
        rows.append({"frame": s, "ab": float(ab[s]), "ab_median": med_ab, "L": float(L[s]), "L_median": med_L,
                     "ratio": float(ab[s]) / max(med_ab, 1e-9)})
    return rows
