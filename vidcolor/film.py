"""Film-like damage to L: what an old print does to the grey picture the network sees.

Old black-and-white film is not a clean photo turned grey. Its exposure falls off towards the
corners (vignetting), varies across the frame and from frame to frame (uneven development,
flicker), its tone curve is not the photo's, it is soft, and it is grainy. The training photos
have none of that, and the network had learnt to read a darker top edge as sky and a dark
corner as a sunset: on ``samples/sample.mp4`` (a grey clip given a vignette) a white wall came
out orange with a blue top and a wooden floor red and blue (docs/lab-notes/2026-12-03-training-runs.md, "Film-like damage").

:func:`degrade_l` applies a random mix of these to the network's *input* only; the target
colour is the photo's own, so the network learns colour that does not depend on them.
Exposure changes are applied to luminance Y (multiplicative, as light is), the rest to L.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .color import l_to_y, srgb_to_linear, y_to_l


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (1, 1, H, W) map, separable, reflect-padded."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def exposure_map(h: int, w: int, rng: np.random.Generator) -> torch.Tensor:
    """A (1, 1, h, w) multiplier of Y: vignette, a tilt across the frame and a global exposure."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    m = torch.full((h, w), float(rng.uniform(0.7, 1.3)))  # exposure / flicker
    if rng.random() < 0.8:  # vignette, its centre off the crop's centre (a crop is part of a frame),
        # a falloff of the gamma-encoded picture as in samples/sample.mp4 (k 0.35 there: its edges
        # keep 65% of their value, 39% of their light). A first run with a gentler falloff of Y
        # itself (edges >= 55% of their light) left the sample's blue top and red floor as they were.
        cy, cx = rng.uniform(-0.3, 0.3, 2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2  # 1 at a centred crop's edge midpoints, 2 at its corners
        m = m * (1 - rng.uniform(0.05, 0.45) * r2).clamp_min(0.1) ** 2.2
    if rng.random() < 0.5:  # uneven density across the frame, in any direction
        th = rng.uniform(0, 2 * math.pi)
        m = m * (1 + rng.uniform(0.05, 0.3) * (math.cos(th) * xx + math.sin(th) * yy))
    return m[None, None]


def degrade_l(L: torch.Tensor, rng: np.random.Generator, p: float = 0.5) -> torch.Tensor:
    """A copy of L (N, 1, H, W), 0..100, in which each image is given film-like damage with
    probability ``p``: exposure (:func:`exposure_map`), a tone curve, softness and grain."""
    out = L.clone()
    n, _, h, w = L.shape
    for i in range(n):
        if rng.random() >= p:
            continue
        x = y_to_l(l_to_y(out[i:i + 1]) * exposure_map(h, w, rng))
        if rng.random() < 0.5:  # tone: gamma and contrast about mid-grey
            x = 100 * (x / 100).clamp(0, 1) ** math.exp(rng.uniform(-0.35, 0.35))
            x = 50 + (x - 50) * rng.uniform(0.7, 1.15)
        if rng.random() < 0.4:  # a soft print
            x = _blur(x, float(rng.uniform(0.5, 1.5)))
        if rng.random() < 0.6:  # grain: noise with a little spatial extent
            g = torch.from_numpy(rng.standard_normal((1, 1, h, w)).astype(np.float32)).to(x)
            if rng.random() < 0.5:
                g = _blur(g, 0.7) * 2.0  # keep about the same strength after the blur
            x = x + g * float(rng.uniform(0.5, 5.0))
        out[i:i + 1] = x.clamp(0, 100)
    return out


# How much of each linear sRGB primary reaches the grey picture. A photo's grey is its luminance
# (the first row); panchromatic stock sees red a little more weakly and blue more strongly, and
# orthochromatic stock is blind to red (red lips and brick go near black) and sees blue strongly
# (a blue sky comes out nearly white). The ranges are (low, high) per primary; green takes the rest.
LUMINANCE = (0.212671, 0.715160, 0.072169)
PANCHROMATIC = ((0.15, 0.30), (0.08, 0.20))  # (red range, blue range)
ORTHOCHROMATIC = ((0.0, 0.05), (0.30, 0.60))


def spectral_l(rgb: torch.Tensor, rng: np.random.Generator, p_pan: float = 0.35,
               p_ortho: float = 0.25) -> torch.Tensor:
    """L (N, 1, H, W) of sRGB (N, 3, H, W) in [0, 1] as a film stock drawn at random would record
    it: with ``p_ortho`` orthochromatic, with ``p_pan`` panchromatic, else the photo's own
    luminance (then equal to :func:`vidcolor.color.rgb_to_l`)."""
    lin = srgb_to_linear(rgb)
    out = []
    for i in range(rgb.shape[0]):
        u = rng.random()
        if u < p_ortho or u < p_ortho + p_pan:
            (r_lo, r_hi), (b_lo, b_hi) = ORTHOCHROMATIC if u < p_ortho else PANCHROMATIC
            r, b = rng.uniform(r_lo, r_hi), rng.uniform(b_lo, b_hi)
            w = (r, 1.0 - r - b, b)
        else:
            w = LUMINANCE
        y = sum(float(w[c]) * lin[i:i + 1, c:c + 1] for c in range(3))
        out.append(y_to_l(y))
    return torch.cat(out)
