"""``vidcolor preview``: colour a handful of frames spread over a film and lay them out on one sheet.

A preview answers "how will this look" in seconds instead of hours: it seeks to
each chosen frame (:mod:`vidcolor.seek`), colours it with the engine, weights
and colour settings a ``vidcolor video`` / ``frames`` run would use, and writes
one PNG (:mod:`vidcolor.sheet`). No job folder is made and nothing else is
written.

Each frame is coloured by :func:`vidcolor.stream.stream_colour` on its own (a
batch of one, no temporal smoother, no keyframe carrier), so its colour tile is
the film's per-frame colour: what ``vidcolor video --temporal-window 0
--keyframes off --batch-size 1`` writes for that frame, bit for bit on the
same machine (tested). A run with batches of 8 computes the network's sums
in another order and differs from it in the fifth decimal of ab, which moves a
few pixels by one 8-bit level (tested too). ``--reference`` and ``--hints``
act as in the film: the guides are carried through the shot from each
reference or pinned frame to the chosen frames near it, decoding only the
frames in between.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import videoio, yuv as yuvmod
from .settings import DEFAULT_GUIDED_TEMPERATURE, DEFAULT_PREVIEW_FRAMES, DEFAULT_TEMPERATURE, Settings
from .encode import EncodeOptions, plane_spec
from .engine import OomGuard, engine_for, render_shape
from .errors import VidcolorError
from .frameio import to_uint8
from .guide import DEFAULT_REACH, build_keyframes, parse_reference, plan_guides
from .seek import FolderFrames, VideoFrames
from .sheet import Layout, fit, render, tile_size, write_png
from .stream import Stages, stream_colour
from .temporal import Smoother

CUT_MARGIN = 3  # frames decoded either side of a guide's carry, so its cut decisions are the film's


@dataclass
class PreviewResult:
    sheet: Path
    frames: list[int]  # the frame indices shown, in order
    decoded: int  # pictures decoded (a preview decodes few of the film's)
    seconds: float = 0.0


def spread(count: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``count`` frames: the middle of each of n equal parts."""
    n = max(1, min(n, count))
    return sorted({min(count - 1, int((k + 0.5) * count / n)) for k in range(n)})


def choose(count: int, n: int, at: list[int] | None, guided: list[int]) -> list[int]:
    """The frames to show: ``at`` as given, else ``n`` spread frames plus every referenced or pinned one."""
    if at:
        bad = [i for i in at if not 0 <= i < count]
        if bad:
            raise VidcolorError(f"--at {bad[0]} is not a frame of the input, which has frames 0 to {count - 1}")
        return sorted(set(at))
    return sorted(set(spread(count, n)) | set(guided))


def _guides(source: VideoFrames | FolderFrames, settings: Settings, engine: OomGuard,
            chosen: list[int], keys: list) -> dict | None:
    """The guide of each chosen frame, carried from the keyframes as in the film (:func:`plan_guides`), from
    only the frames between each keyframe and the chosen frames it reaches."""
    if not keys:
        return None
    wanted: set[int] = set()
    for k in (kf.index for kf in keys):
        near = [c for c in chosen if abs(c - k) <= DEFAULT_REACH] + [k]
        wanted.update(range(max(0, min(near) - CUT_MARGIN), min(source.count, max(near) + CUT_MARGIN + 1)))
    Ls = ((i, engine.render_l([img], source.yuv)[0].cpu()) for i, img in source.read(sorted(wanted)))
    return plan_guides(Ls, keys, settings.cut_threshold)


def display_rgb(picture: np.ndarray | yuvmod.Planes, yuv: yuvmod.YuvSpec | None) -> np.ndarray:
    """A coloured picture as 8-bit RGB: plane-path planes go through swscale with their own tags, as a
    player (and PyAV's ``to_ndarray``) shows the encoded frame; 16-bit RGB is rounded to 8 bits."""
    if isinstance(picture, yuvmod.Planes):
        return yuvmod.to_frame(picture, yuv).to_ndarray(format="rgb24")
    return to_uint8(picture)


def grey_rgb(engine: OomGuard, image: np.ndarray, yuv: yuvmod.YuvSpec | None) -> np.ndarray:
    """What the engine colours, as 8-bit RGB: a Y plane with neutral chroma, or an RGB frame's own L with
    no colour (an input in colour is coloured from its luminance)."""
    if yuv is None:
        import torch

        return display_rgb(engine.compose_l(engine.full_l([image]), torch.zeros(1, 2, 1, 1), image.dtype)[0], None)
    h, w = yuv.chroma_shape(*image.shape)
    mid = np.full((h, w), yuv.mid, yuv.dtype)
    return display_rgb(yuvmod.Planes(image, mid, mid), yuv)


def colour_frames(source: VideoFrames | FolderFrames, settings: Settings,
                  saturations: list[float], chosen: list[int], engine: OomGuard | None = None,
                  ) -> tuple[dict[int, np.ndarray], dict[int, list[np.ndarray]], set[int]]:
    """Grey and coloured 8-bit RGB of each chosen frame, one colour per saturation: (grey, colours,
    the frames a guide reaches)."""
    engine = engine or engine_for(settings)[0]
    names = getattr(source, "names", None)
    keys = build_keyframes(list(settings.references), settings.hints, source.size,
                           lambda hw: render_shape(hw[0], hw[1], engine.render_size), source.count, names) \
        if settings.references or settings.hints else []
    guides = _guides(source, settings, engine, chosen, keys)
    grey: dict[int, np.ndarray] = {}
    colours: dict[int, list[np.ndarray]] = {}
    for i, img in source.read(chosen):
        grey[i] = grey_rgb(engine, img, source.yuv)
        colours[i] = []
        for s in saturations:
            engine.engine.temperature = DEFAULT_TEMPERATURE / s
            engine.engine.guided_temperature = DEFAULT_GUIDED_TEMPERATURE / s
            # one frame through the film's own stream: a batch of one, no smoothing, no carrier
            stages = Stages(Smoother(0, settings.cut_threshold), None, None, first=i, start=i)
            (_, picture), = stream_colour(engine, stages, [(i, img, None)], 1, guides, source.yuv)
            colours[i].append(display_rgb(picture, source.yuv))
    return grey, colours, set(guides or ())


def open_source(path: Path, deinterlace: bool = False) -> VideoFrames | FolderFrames:
    """A frame folder, or a video read through the plane path that ``vidcolor video`` would take."""
    if path.is_dir():
        if deinterlace:
            raise VidcolorError("--deinterlace is for videos; a frame folder's scans are whole frames")
        return FolderFrames(path)
    info = videoio.probe(path)
    return VideoFrames(path, info, plane_spec(info, EncodeOptions()), deinterlace)


def default_sheet(path: Path) -> Path:
    """``NAME_preview.png`` in the current folder (the input's own folder may be a read-only archive)."""
    return Path(f"{path.stem if path.is_file() else path.resolve().name}_preview.png")


def check_sheet(src: Path, sheet: Path, overwrite: bool) -> None:
    """Refuse a sheet name that is not a .png, is the input, sits in a missing folder, or exists."""
    if sheet.suffix.lower() != ".png":
        raise VidcolorError(f"the sheet is written as PNG; name it NAME.png, not {sheet}")
    if sheet.exists() and sheet.resolve() == src.resolve():
        raise VidcolorError(f"the sheet is the input: {sheet}; choose another name")
    parent = sheet.parent if str(sheet.parent) else Path(".")
    if not parent.is_dir():
        raise VidcolorError(f"folder for the sheet does not exist: {parent}")
    if sheet.is_dir():
        raise VidcolorError(f"the sheet is a folder: {sheet}; give a file name such as {sheet / 'preview.png'}")
    if sheet.exists() and not overwrite:
        raise VidcolorError(f"sheet exists: {sheet}; use --overwrite to replace it")


def make_preview(input: str | Path, sheet: str | Path | None = None, settings: Settings | None = None,
                 saturations: list[float] | None = None, frames: int = DEFAULT_PREVIEW_FRAMES, at: list[int] | None = None,
                 tile_width: int = 320, deinterlace: bool = False, overwrite: bool = False) -> PreviewResult:
    """Write the contact sheet of ``input`` (a video or frame folder) to ``sheet`` (default
    ``NAME_preview.png`` here) and say what it shows. ``saturations`` are the ``--saturation`` values,
    one colour column each; ``settings.temperature`` is not used."""

    t0 = time.time()
    src = Path(input)
    settings = settings or Settings()
    saturations = saturations or [1.0]
    for s in saturations:
        if not 0.1 <= s <= 3.0:
            raise VidcolorError(f"--saturation {s:g} is out of range; give values from 0.1 to 3")
    out = Path(sheet) if sheet else default_sheet(src)
    check_sheet(src, out, overwrite)
    for spec in settings.references:
        parse_reference(spec)  # a wrong reference is refused before anything is decoded
    source = open_source(src, deinterlace)
    engine, wpath = engine_for(dataclasses.replace(settings, temperature=DEFAULT_TEMPERATURE / saturations[0]))
    referenced = [parse_reference(r)[0] for r in settings.references]
    pinned = sorted(set(_pinned(settings, source)) - set(referenced))
    chosen = choose(source.count, frames, at, [i for i in referenced + pinned if i < source.count])
    grey, colours, guided = colour_frames(source, settings, saturations, chosen, engine)
    h, w = grey[chosen[0]].shape[:2]
    tw, th = tile_size(h, w, tile_width)
    layout = Layout(len(chosen), 1 + len(saturations), tw, th)
    labels = [[f"frame {i}", source.label(i), _guide_note(i, referenced, pinned, guided)] for i in chosen]
    tiles = [[fit(p, (tw, th)) for p in [grey[i], *colours[i]]] for i in chosen]
    title = (f"{src.name}: {len(chosen)} of {source.count} frames, render {settings.render_size}, "
             f"weights {wpath.name}")
    headings = ["grey"] + [f"saturation {s:g}" for s in saturations]
    write_png(out, render(layout, title, headings, labels, tiles))
    return PreviewResult(out, chosen, source.decoded, time.time() - t0)


def _pinned(settings: Settings, source: VideoFrames | FolderFrames) -> list[int]:
    """The frames a ``--hints`` file pins (checked in full when the keyframes are built)."""
    if not settings.hints:
        return []
    from .guide import load_pins

    return list(load_pins(Path(settings.hints), getattr(source, "names", None)))


def _guide_note(i: int, referenced: list[int], pinned: list[int], guided: set[int]) -> str:
    if i in referenced:
        return "reference"
    if i in pinned:
        return "colour pins"
    return "guided (carried)" if i in guided else ""
