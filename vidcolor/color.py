"""Colour math in torch: sRGB <-> CIE Lab (D65) and the quantized ab gamut.

The conversions follow scikit-image's ``rgb2lab``/``lab2rgb`` (same matrices,
same white point, same piecewise curves) so that the model, which is trained on
Lab computed here, sees the same numbers at inference time on CPU or GPU.
Everything works on tensors shaped (..., 3, H, W) with values in [0, 1].
"""
from __future__ import annotations

import torch

# sRGB (linear) -> XYZ, and D65 reference white, as in skimage.color.colorconv.
_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)

# Lab normalisation used by every network: L in [0, 100] -> roughly [-1, 1],
# ab in about [-110, 110] -> roughly [-1, 1].
L_CENTER, L_SCALE, AB_SCALE = 50.0, 50.0, 110.0


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix over the channel axis (dim -3)."""
    m = m.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (clipped to [0, 1]) to linear light: the sRGB transfer curve."""
    rgb = rgb.clamp(0.0, 1.0)
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def _f(t: torch.Tensor) -> torch.Tensor:
    """CIE Lab's cube-root curve of a white-relative XYZ component."""
    return torch.where(t > 0.008856, t.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * t + 16.0 / 116.0)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], shape (..., 3, H, W) -> Lab with L in [0, 100]."""
    xyz = _mix(_RGB2XYZ, srgb_to_linear(rgb))
    xyz = xyz / _WHITE.to(xyz).view(3, 1, 1)
    fx, fy, fz = _f(xyz).unbind(-3)
    L = 116.0 * fy - 16.0
    return torch.stack([L, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (L in [0, 100]) -> sRGB clipped to [0, 1], shape (..., 3, H, W)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp_min(0.0)  # skimage clips negative z the same way
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
    xyz = xyz * _WHITE.to(xyz).view(3, 1, 1)
    lin = _mix(_XYZ2RGB, xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0.0, 1.0)


def rgb_to_l(rgb: torch.Tensor) -> torch.Tensor:
    """Only the L channel of :func:`rgb_to_lab`, shape (..., 1, H, W); cheaper."""
    return 116.0 * _f(_mix(_RGB2XYZ[1:2], srgb_to_linear(rgb))) - 16.0  # white Y is 1.0


def grey_to_l(grey: torch.Tensor) -> torch.Tensor:
    """:func:`rgb_to_l` of an image whose three channels are all ``grey`` (N, H, W, 1) in [0, 1], with
    the transfer curve evaluated once instead of three times. Returns (N, 1, H, W). The numbers are
    rgb_to_l's, bit for bit where the vectorised pow covers the whole array, else within an ulp
    (tests/test_color.py). Prediction and composition both use it for grey frames, so they agree."""
    lin = srgb_to_linear(grey)
    lin = lin.expand(*lin.shape[:-1], 3).contiguous().permute(0, 3, 1, 2)  # rgb_to_l's input layout
    return 116.0 * _f(_mix(_RGB2XYZ[1:2], lin)) - 16.0


def l_to_y(L: torch.Tensor) -> torch.Tensor:
    """CIE L (0..100) to relative luminance Y (0..1): the inverse of :func:`rgb_to_l`'s curve."""
    fy = (L + 16.0) / 116.0
    return torch.where(fy > 0.2068966, fy ** 3, (fy - 16.0 / 116.0) / 7.787)


def y_to_l(Y: torch.Tensor) -> torch.Tensor:
    """Relative luminance Y (clipped to 0..1) to CIE L (0..100), the curve of :func:`rgb_to_l`."""
    return 116.0 * _f(Y.clamp(0.0, 1.0)) - 16.0


def normalize_l(L: torch.Tensor) -> torch.Tensor:
    return (L - L_CENTER) / L_SCALE


def ab_grid(step: float = 10.0, limit: float = 110.0) -> torch.Tensor:
    """All bin centres of a regular ab grid, shape (K, 2)."""
    c = torch.arange(-limit, limit + 1e-6, step, dtype=torch.float32)
    a, b = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], dim=1)


def in_gamut_bins(step: float = 10.0, limit: float = 110.0) -> torch.Tensor:
    """Bin centres whose colour exists in sRGB for some L (the ECCV16-style gamut).

    A bin is kept when any L in 5..95 maps it to an sRGB colour without clipping
    by more than a small tolerance. This is data independent, so the bins are
    the same for every training run and can be rebuilt from the checkpoint.
    """
    grid = ab_grid(step, limit)
    Ls = torch.arange(5.0, 96.0, 5.0)
    keep = torch.zeros(len(grid), dtype=torch.bool)
    for Lv in Ls:
        lab = torch.cat([torch.full((len(grid), 1), float(Lv)), grid], dim=1).T.reshape(1, 3, -1, 1).double()
        L, a, b = lab.unbind(-3)
        fy = (L + 16.0) / 116.0
        f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], dim=-3)
        xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * _WHITE.view(3, 1, 1)
        lin = _mix(_XYZ2RGB, xyz)
        ok = ((lin > -0.02) & (lin < 1.02)).all(dim=-3).flatten()
        keep |= ok
    return grid[keep]
