"""Image-quality metrics for colorization, on 8-bit RGB unless said otherwise."""
from __future__ import annotations

import numpy as np


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB images (peak 255), over all pixels and channels."""
    mse = np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of two uint8 RGB images (scikit-image, Gaussian window, per channel, averaged)."""
    from skimage.metrics import structural_similarity

    side = min(pred.shape[:2])
    win = 7 if side >= 7 else (side if side % 2 else side - 1)
    return float(structural_similarity(pred, gt, channel_axis=-1, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, win_size=max(win, 3)))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk 2003, eq. 1 as published (signed rg and yb, no abs()).

    M = sqrt(s_rg^2 + s_yb^2) + 0.3 * sqrt(m_rg^2 + m_yb^2), with rg = R - G and
    yb = (R + G)/2 - B on 0..255 values.
    """
    x = rgb.astype(np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


AUC_THRESHOLDS = np.arange(0, 151, 1.0)


def ab_auc(pred_ab: np.ndarray, gt_ab: np.ndarray) -> float:
    """Zhang 2016 AuC: the area under the curve of the fraction of pixels whose
    ab L2 error is within a threshold, thresholds 0..150, normalised to [0, 1]."""
    err = np.sqrt(((pred_ab.astype(np.float64) - gt_ab.astype(np.float64)) ** 2).sum(axis=-1)).ravel()
    err.sort()
    frac = np.searchsorted(err, AUC_THRESHOLDS, side="right") / err.size
    return float(np.trapezoid(frac, AUC_THRESHOLDS) / (AUC_THRESHOLDS[-1] - AUC_THRESHOLDS[0]))


def false_colour(pred_ab: np.ndarray, gt_ab: np.ndarray, vivid: float = 25.0, grey: float = 10.0) -> float:
    """Share of pixels coloured vividly (ab chroma >= ``vivid``) where the truth is nearly grey
    (chroma < ``grey``): the red and orange blotches on grey walls and floors that users see."""
    pc = np.hypot(pred_ab[..., 0], pred_ab[..., 1])
    gc = np.hypot(gt_ab[..., 0], gt_ab[..., 1])
    return float(((pc >= vivid) & (gc < grey)).mean())
