"""``vidcolor preview``: the command over :mod:`vidcolor.preview`."""
from __future__ import annotations

from pathlib import Path

import click

from .defaults import DEFAULT_CUT_THRESHOLD, DEFAULT_RENDER
from .preview import DEFAULT_FRAMES


def _numbers(kind: type, what: str, text: str | None) -> list | None:
    """'0.8,1,1.3' -> [0.8, 1.0, 1.3]; a bad item is a usage error that names it."""
    if text is None:
        return None
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: want comma-separated {what}, e.g. "
                                 f"{'0.8,1,1.3' if kind is float else '12,480,3000'}") from None


@click.command("preview")
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("sheet", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(1, 200), default=DEFAULT_FRAMES, show_default=True,
              help="Frames to show, spread evenly over the film.")
@click.option("--at", default=None, metavar="I,J,...", help="Show these frames (0-based indices) instead.")
@click.option("--saturation", default="1", show_default=True, metavar="S[,S...]",
              help="Colour strength; a comma list (0.8,1,1.3) gives one colour column per value.")
@click.option("--tile-width", type=click.IntRange(0, 8192), default=320, show_default=True,
              help="Width of each picture on the sheet in pixels (0: the frames' own size).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights file (default: the shipped weights/vidcolor.pt).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--render-size", type=click.IntRange(16, 4096), default=DEFAULT_RENDER, show_default=True,
              help="Short side, in pixels, at which colour is predicted.")
@click.option("--cut-threshold", type=click.FloatRange(0.0, 1.0), default=DEFAULT_CUT_THRESHOLD, show_default=True,
              help="Scene-cut sensitivity, where guides are carried through a shot.")
@click.option("--reference", "references", multiple=True, metavar="FRAME_INDEX=IMAGE",
              help="A colour image of that frame, as for 'vidcolor video'; the frame is shown too. Repeatable.")
@click.option("--hints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON list of {frame, x, y, rgb} colour pins, as for 'vidcolor video'.")
@click.option("--deinterlace", is_flag=True, help="Blend each frame's two fields first (videos).")
@click.option("--overwrite", is_flag=True, help="Replace an existing sheet.")
@click.option("-q", "--quiet", is_flag=True, help="No messages.")
def preview_cmd(input: Path, sheet: Path | None, n_frames: int, at: str | None, saturation: str, tile_width: int,
                weights: Path | None, device: str, render_size: int, cut_threshold: float,
                references: tuple[str, ...], hints: Path | None, deinterlace: bool, overwrite: bool,
                quiet: bool) -> None:
    """Colour a few frames of INPUT (a video or a frame folder) and lay them out on one PNG contact sheet,
    SHEET (default NAME_preview.png here): a row per frame, grey and colour side by side."""
    from .cli import interruptible
    from .pipeline import Settings
    from .preview import make_preview

    sats = _numbers(float, "numbers", saturation)
    if not sats:
        raise click.BadParameter("give at least one value", param_hint="--saturation")
    settings = Settings(weights=str(weights) if weights else None, device=device, render_size=render_size,
                        cut_threshold=cut_threshold, references=references, hints=str(hints) if hints else None)
    with interruptible():
        res = make_preview(input, sheet, settings, sats, n_frames, _numbers(int, "frame indices", at),
                           tile_width, deinterlace, overwrite)
    if not quiet:
        click.echo(f"vidcolor: wrote {res.sheet}: frames {', '.join(map(str, res.frames))} "
                   f"({res.decoded} decoded) in {res.seconds:.1f} s", err=True)
