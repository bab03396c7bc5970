"""Colour in the video's own YUV planes: the decoded luma kept bit for bit, only chroma computed.

For YUV input the RGB round trip (YUV -> RGB -> Lab at full resolution, and
back) is skipped. The network's L comes from the Y plane through a lookup
table built with :func:`vidcolor.color.rgb_to_l` (the L the network was trained
on, for the grey R'G'B' that this Y decodes to), and the output frame gets the
input's Y plane untouched plus U,V computed at chroma resolution from the
predicted ab, with the stream's own matrix (BT.601/709/...) and range
(limited/full), which are also tagged on the output.

:func:`plan` decides per input and output pixel format whether this applies;
anything whose luma plane cannot be reused as it is (RGB, paletted, packed or
MSB-aligned formats, or a bit depth the output does not keep) keeps the RGB path.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import av
import numpy as np
import torch
import torch.nn.functional as F

from .color import lab_to_rgb, rgb_to_l
from .videoio import COLOUR_SPREAD

# AVColorSpace values -> (Kr, Kb) of the luma/chroma matrix. Unspecified (2) and
# reserved (3) are decoded as BT.601, as swscale does; the output is then tagged so.
_MATRICES = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
             7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
UNSPECIFIED_MATRIX, BT601 = (2, 3), 6  # AVCOL_SPC_UNSPECIFIED/RESERVED, AVCOL_SPC_SMPTE170M
RANGE_LIMITED, RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG / AVCOL_RANGE_JPEG


class Planes(NamedTuple):
    """One output picture: the input's own Y plane and the new U and V planes (same dtype)."""

    y: np.ndarray  # (H, W)
    u: np.ndarray  # (Hc, Wc)
    v: np.ndarray


@dataclass(frozen=True)
class YuvSpec:
    """How one stream's frames go through the plane path: read Y of ``in_fmt``, write ``out_fmt``."""

    in_fmt: str
    out_fmt: str
    depth: int  # bits per luma sample, the same in and out
    full_range: bool
    kr: float
    kb: float
    colorspace: int  # tags written on the output (AVColorSpace, AVColorRange, primaries, trc)
    color_range: int
    primaries: int
    trc: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.depth <= 8 else np.uint16)

    @property
    def mid(self) -> int:
        """The code of zero chroma."""
        return 1 << (self.depth - 1)

    @property
    def chroma_scale(self) -> float:
        """Codes per unit of Cb or Cr (0..1 R'G'B'): the full code range, or 224 levels at 8 bit."""
        return (1 << self.depth) - 1 if self.full_range else 224.0 * (1 << (self.depth - 8))

    @property
    def lut(self) -> np.ndarray:
        """Y code value -> L (float32, indexable by every value of the sample type)."""
        return luma_lut(self.depth, self.full_range, self.dtype.itemsize)

    def chroma_shape(self, h: int, w: int) -> tuple[int, int]:
        f = av.VideoFormat(self.out_fmt)
        return f.chroma_height(h), f.chroma_width(w)


def _luma_format(name: str) -> av.VideoFormat | None:
    """The format if its plane 0 holds luma alone, LSB-aligned, in 8 or 16-bit samples; else None."""
    try:
        f = av.VideoFormat(name)
    except (ValueError, av.error.FFmpegError):
        return None
    comps = f.components
    if not comps or f.is_rgb or f.has_palette or f.is_big_endian or comps[0].plane != 0 \
            or sum(c.plane == 0 for c in comps) != 1 or comps[0].bits > 16 or comps[0].is_alpha:
        return None
    if name.startswith(("p0", "p1", "p2", "p4", "bayer", "xyz")):  # MSB-aligned semi-planar, raw, XYZ
        return None
    return f


def _yuv_output(name: str) -> bool:
    """An encoder format that takes one plane each of Y, U and V (no alpha)."""
    f = _luma_format(name)
    return f is not None and len(f.components) == 3 and [c.plane for c in f.components] == [0, 1, 2]


def plan(in_fmt: str, out_fmt: str, colour: tuple[int, int, int, int]) -> YuvSpec | None:
    """The plane path for decoded ``in_fmt`` encoded as ``out_fmt``, or None where it does not apply.

    ``colour`` is the first decoded frame's (colorspace, color_range, color_primaries,
    color_trc). Luma is kept only at the same bit depth and range, so a conversion of
    depth (say 12-bit in, 10-bit out) or into a ``yuvj`` output of limited input uses RGB.
    """
    fin = _luma_format(in_fmt)
    if fin is None or not _yuv_output(out_fmt):
        return None
    depth = fin.components[0].bits
    if av.VideoFormat(out_fmt).components[0].bits != depth or depth < 8:
        return None
    space, rng, prim, trc = colour
    grey = len(fin.components) == 1
    if space not in _MATRICES and space not in UNSPECIFIED_MATRIX:
        return None  # RGB-coded (GBR) or YCgCo and the like: let swscale handle them
    # swscale reads yuvj* and grey formats as full range unless the frame says otherwise
    full = rng == RANGE_FULL or (rng != RANGE_LIMITED and (in_fmt.startswith("yuvj") or grey))
    if out_fmt.startswith("yuvj") and not full:
        return None
    matrix = space if space in _MATRICES else BT601
    kr, kb = _MATRICES[matrix]
    return YuvSpec(in_fmt, out_fmt, depth, full, kr, kb, matrix, RANGE_FULL if full else RANGE_LIMITED, prim, trc)


@lru_cache(maxsize=8)
def luma_lut(depth: int, full_range: bool, itemsize: int = 1) -> np.ndarray:
    """L (0..100, float32) for every luma code of the sample type: the L of the grey R'G'B' it decodes to.

    Limited range maps 16..235 (scaled by 2**(depth - 8)) to 0..1 and full range
    0..2**depth - 1; values outside clip, as an 8-bit RGB conversion would.
    """
    y = np.arange(1 << (8 * itemsize), dtype=np.float64)
    v = y / ((1 << depth) - 1) if full_range else (y / (1 << (depth - 8)) - 16.0) / 219.0
    grey = torch.from_numpy(np.clip(v, 0.0, 1.0)).expand(3, 1, -1)
    return rgb_to_l(grey)[0, 0].numpy().astype(np.float32)


def luma_to_l(ys: list[np.ndarray], spec: YuvSpec) -> torch.Tensor:
    """(N, 1, H, W) float32 L of a batch of Y planes."""
    return torch.from_numpy(spec.lut[np.stack(ys)]).unsqueeze(1)


def chroma(L: torch.Tensor, ab: torch.Tensor, spec: YuvSpec, shape: tuple[int, int]) -> torch.Tensor:
    """U,V codes (N, 2, Hc, Wc) for full-resolution L (N, 1, H, W) and ab at render size.

    L is area-averaged and ab resampled (antialiased) to the chroma grid, Lab goes
    to R'G'B' there, and R'G'B' to Cb,Cr with the stream's matrix and range. Rounded
    to integers (int32; the caller casts to the plane's type).
    """
    Lc = L if tuple(L.shape[-2:]) == shape else F.interpolate(L, size=shape, mode="area")
    abc = ab if tuple(ab.shape[-2:]) == shape else \
        F.interpolate(ab, size=shape, mode="bilinear", align_corners=False, antialias=True)
    r, g, b = lab_to_rgb(torch.cat([Lc, abc], dim=1)).unbind(1)
    y = spec.kr * r + (1.0 - spec.kr - spec.kb) * g + spec.kb * b
    cbcr = torch.stack([(b - y) / (2.0 * (1.0 - spec.kb)), (r - y) / (2.0 * (1.0 - spec.kr))], dim=1)
    top = (1 << spec.depth) - 1
    return torch.floor(cbcr * spec.chroma_scale + spec.mid + 0.5).clamp_(0, top).to(torch.int32)


def _plane_view(plane: av.video.plane.VideoPlane, dtype: np.dtype) -> np.ndarray:
    """A plane's memory as rows of samples, padding included (line_size may exceed the width)."""
    return np.frombuffer(plane, dtype).reshape(-1, plane.line_size // dtype.itemsize)


def luma_plane(frame: av.VideoFrame, spec: YuvSpec, size: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of the frame's Y plane (H, W). A frame of another format or size (``size`` = (W, H))
    is converted to the stream's own first."""
    if frame.format.name != spec.in_fmt or (size is not None and (frame.width, frame.height) != size):
        w, h = size or (frame.width, frame.height)
        frame = frame.reformat(width=w, height=h, format=spec.in_fmt)
    return _plane_view(frame.planes[0], spec.dtype)[:frame.height, :frame.width].copy()


def has_colour(frame: av.VideoFrame, spec: YuvSpec) -> bool:
    """True when the frame's own chroma is far from neutral (the plane path's vidcolor.decode.has_colour)."""
    fmt = frame.format
    if len(fmt.components) < 3:
        return False  # grey
    if len(frame.planes) < 3:  # interleaved chroma (nv12 and the like): spread it into planes first
        if spec.depth > 8:
            return False
        frame, fmt = frame.reformat(format="yuv444p"), av.VideoFormat("yuv444p")
    hc, wc = fmt.chroma_height(frame.height), fmt.chroma_width(frame.width)
    cb, cr = ((_plane_view(frame.planes[k], spec.dtype)[:hc:4, :wc:4].astype(np.float32) - spec.mid)
              / spec.chroma_scale for k in (1, 2))
    # R', G', B' minus Y' (0..1) for these Cb, Cr: the inverse of chroma()'s matrix
    dr, db = 2.0 * (1.0 - spec.kr) * cr, 2.0 * (1.0 - spec.kb) * cb
    d = np.stack([dr, -(spec.kr * dr + spec.kb * db) / (1.0 - spec.kr - spec.kb), db])
    return float((d.max(axis=0) - d.min(axis=0)).mean()) * 255.0 > COLOUR_SPREAD


def to_frame(p: Planes, spec: YuvSpec) -> av.VideoFrame:
    """An encoder frame of ``spec.out_fmt`` holding the three planes, colour tagged (the encoder zeroes
    the row padding, as for every frame: vidcolor.encode._zero_padding)."""
    h, w = p.y.shape
    frame = av.VideoFrame(w, h, spec.out_fmt)
    for plane, arr in zip(frame.planes, p):
        view = _plane_view(plane, spec.dtype)
        view[:arr.shape[0], :arr.shape[1]] = arr
    frame.colorspace, frame.color_range = spec.colorspace, spec.color_range
    frame.color_primaries, frame.color_trc = spec.primaries, spec.trc
    return frame


def tag_stream(cc: av.video.codeccontext.VideoCodecContext, spec: YuvSpec) -> None:
    """Put the stream's matrix, range, primaries and transfer on the encoder (into its VUI / container)."""
    cc.colorspace, cc.color_range = spec.colorspace, spec.color_range
    cc.color_primaries, cc.color_trc = spec.primaries, spec.trc
