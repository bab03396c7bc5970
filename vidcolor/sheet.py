"""The contact sheet of ``vidcolor preview``: one row per frame, grey then colour, labelled.

Layout (all sizes in pixels, see :class:`Layout`): a header band with the
film's name and the column titles, then one row per frame. A row is a label
cell (frame index, timecode or file name, and how the frame is guided) and
then the tiles: the grey frame, then one colour tile per ``--saturation``.
Tiles are the frames scaled to ``tile_width`` (0: their own size), with
``PAD`` pixels between. Text is drawn with Pillow, which scikit-image already
brings. The PNG is written under a temporary name and renamed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import VidcolorError

PAD = 8
LABEL_W = 150
HEADER_H = 44
BACKGROUND = (28, 28, 28)
TEXT = (235, 235, 235)
MUTED = (160, 160, 160)
FONT_PX = 14
LABEL_H = 3 * (FONT_PX + 4)  # a row is at least this tall, so the label's three lines fit beside small frames


@dataclass(frozen=True)
class Layout:
    """Where everything sits on a sheet of ``rows`` frames and ``columns`` tiles a row."""

    rows: int
    columns: int  # the grey tile plus one per saturation
    tile_w: int
    tile_h: int

    @property
    def row_h(self) -> int:
        return max(self.tile_h, LABEL_H)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the sheet."""
        return (LABEL_W + self.columns * (self.tile_w + PAD) + PAD,
                HEADER_H + self.rows * (self.row_h + PAD) + PAD)

    def tile(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left corner of a tile."""
        return LABEL_W + PAD + col * (self.tile_w + PAD), HEADER_H + PAD + row * (self.row_h + PAD)


def tile_size(h: int, w: int, tile_width: int) -> tuple[int, int]:
    """(tile_w, tile_h) of an h x w frame scaled down to ``tile_width`` (0: its own size), keeping its shape.
    Small frames are not blown up: the sheet shows what the film holds."""
    if tile_width <= 0 or tile_width >= w:
        return w, h
    return tile_width, max(1, int(round(h * tile_width / w)))


def fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 picture scaled to ``size`` (w, h); unchanged when it is that size already."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _font(px: int):  # noqa: ANN202 - a PIL font
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # scalable where Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _clip(draw, text: str, font, width: int) -> str:  # noqa: ANN001
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def render(layout: Layout, title: str, headings: list[str], labels: list[list[str]],
           tiles: list[list[np.ndarray]]) -> np.ndarray:
    """The sheet as an (H, W, 3) uint8 array. ``labels[r]`` are row r's text lines, ``tiles[r][c]``
    its pictures (already ``layout``'s tile size)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    font, small = _font(FONT_PX), _font(FONT_PX - 2)
    draw.text((PAD, PAD), _clip(draw, title, font, layout.size[0] - 2 * PAD), fill=TEXT, font=font)
    for c, h in enumerate(headings):
        x, _ = layout.tile(0, c)
        draw.text((x, HEADER_H - PAD - FONT_PX), _clip(draw, h, small, layout.tile_w), fill=MUTED, font=small)
    for r, (lines, row) in enumerate(zip(labels, tiles)):
        _, y = layout.tile(r, 0)
        for k, line in enumerate(lines):
            draw.text((PAD, y + k * (FONT_PX + 4)), _clip(draw, line, font if k == 0 else small, LABEL_W - 2 * PAD),
                      fill=TEXT if k == 0 else MUTED, font=font if k == 0 else small)
        for c, pic in enumerate(row):
            img.paste(Image.fromarray(pic), layout.tile(r, c))
    return np.asarray(img)


def write_png(path: Path, sheet: np.ndarray) -> None:
    """Write the sheet under a temporary name in the same folder, then rename it into place."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VidcolorError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:  # Ctrl-C while saving: no half-written file is left either
        tmp.unlink(missing_ok=True)
        raise
