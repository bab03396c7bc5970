"""Frame-directory I/O: natural-order listing, reading any of grey/RGB/RGBA at
8 or 16 bit, and atomic writing that keeps the name, size, depth and alpha."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError, VidcolorError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# film-scan and VFX formats that a folder of frames may hold instead, named in the error
SCAN_FORMATS = (".dpx", ".cin", ".exr", ".hdr", ".webp", ".bmp", ".jp2")


def natural_key(name: str) -> list:
    """'f2.png' before 'f10.png'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural sort order (hidden and temp files skipped)."""
    if not folder.exists():
        raise InputError(f"input folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"input is not a folder: {folder} (use 'vidcolor video' for video files)")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
             and not p.name.startswith(".")]
    if not files:
        others = sorted({p.suffix.lower() for p in folder.iterdir() if p.suffix.lower() in SCAN_FORMATS})
        if others:  # a scanner's own format: say how to get frames this command reads
            raise InputError(f"no PNG, JPEG or TIFF frames in {folder}, only {', '.join(others)} files, which vidcolor "
                             f"does not read; convert them to 16-bit TIFF first (for example ffmpeg -i "
                             f"NAME%06d{others[0]} -pix_fmt rgb48le NAME%06d.tif)")
        raise InputError(f"no PNG, JPEG or TIFF frames in {folder}")
    return sorted(files, key=lambda p: natural_key(p.name))


@dataclass
class Frame:
    """An image split into what the engine colours (rgb) and what is kept (alpha, grey-ness)."""

    rgb: np.ndarray  # (H, W, 3) uint8 or uint16
    alpha: np.ndarray | None  # (H, W) same dtype, or None


def read_frame(path: Path) -> Frame:
    """Read one frame as RGB (grey is replicated) plus alpha, keeping 8 or 16 bit."""
    import imageio.v3 as iio

    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(str(path))
        elif _png_depth(path) == 16:
            img = _read_png16(path)  # imageio's Pillow reads 16-bit colour PNGs as 8 bit
        else:
            img = iio.imread(path)
    except Exception as e:  # decoders raise many types; a user needs the file and the reason
        raise InputError(f"cannot read frame {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)  # planar TIFF
    if img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    if img.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(img.dtype, np.floating):
            img = (np.clip(img, 0, 1) * 65535 + 0.5).astype(np.uint16)
        else:
            raise InputError(f"unsupported sample type {img.dtype} in {path}; frames must be 8- or 16-bit")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image layout {img.shape} in {path}; expected grey, RGB or RGBA")
    c = img.shape[-1]
    alpha = img[..., -1].copy() if c in (2, 4) else None
    rgb = img[..., :3] if c >= 3 else np.repeat(img[..., :1], 3, axis=-1)
    return Frame(np.ascontiguousarray(rgb), alpha)


def _png_depth(path: Path) -> int | None:
    """The bit depth in a PNG's IHDR, or None if the file does not start like a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG as (H, W[, C]) uint16, decoded by FFmpeg's PNG decoder."""
    import av

    cc = av.CodecContext.create("png", "r")
    frames = cc.decode(av.Packet(path.read_bytes())) + cc.decode(None)
    if not frames:
        raise ValueError("no picture in the file")
    f = frames[0]
    name = f.format.name
    if name.startswith(("rgba", "ya")):
        img = f.to_ndarray(format="rgba64le")
        return img[..., [0, 3]] if name.startswith("ya") else img
    if name.startswith("gray"):
        return f.to_ndarray(format="gray16le")
    return f.to_ndarray(format="rgb48le")


def _png16_bytes(img: np.ndarray) -> bytes:
    """Encode (H, W, 3|4) uint16 as a 16-bit PNG (Pillow, behind imageio, cannot write these)."""
    import av

    h, w, c = img.shape
    cc = av.CodecContext.create("png", "w")
    cc.width, cc.height, cc.time_base = w, h, Fraction(1, 1)
    cc.pix_fmt = "rgba64be" if c == 4 else "rgb48be"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgba64le" if c == 4 else "rgb48le")
    frame.pts = 0
    return b"".join(bytes(p) for p in cc.encode(frame) + cc.encode(None))


def temp_path(final: Path) -> Path:
    """A hidden name in the same folder (same filesystem, so rename is atomic), same extension."""
    return final.with_name(f".{final.stem}.vidcolor-tmp{final.suffix}")


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """uint8 or uint16 samples -> uint8 (16-bit is rounded, not truncated): how a 16-bit picture
    is shown, judged and written to 8-bit files."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype == np.uint16:
        return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise InputError(f"unsupported sample type {rgb.dtype}; expected 8- or 16-bit RGB")


def write_frame(path: Path, rgb: np.ndarray, alpha: np.ndarray | None) -> None:
    """Write to a temporary name, fsync, then rename: a finished name is always a whole file."""
    import imageio.v3 as iio

    img = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=-1)
    ext = path.suffix.lower()
    tmp = temp_path(path)
    try:
        if ext in (".jpg", ".jpeg"):
            img = to_uint8(img)  # JPEG has no 16-bit mode
            if img.shape[-1] == 4:  # nor alpha
                img = img[..., :3]
            iio.imwrite(tmp, img, extension=ext, quality=95)
        elif ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), img, photometric="rgb")
        elif img.dtype == np.uint16:
            tmp.write_bytes(_png16_bytes(img))
        else:
            iio.imwrite(tmp, img, extension=".png")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VidcolorError(f"cannot write {path}: {e.strerror or e}; the frames written so far are kept, "
                            f"run the same command again to resume") from None


def is_complete(path: Path) -> bool:
    """A finished frame exists under its final name and is not empty."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False
