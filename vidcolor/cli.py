"""The ``vidcolor`` command: a thin click layer over the library API."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from .errors import VidcolorError
from .pipeline import DEFAULT_BATCH, DEFAULT_RENDER, DEFAULT_TEMPERATURE, DEFAULT_WINDOW, Settings


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: save, say how to resume, exit non-zero


def common(f):  # noqa: ANN001, ANN201
    """Options shared by `video` and `frames`."""
    opts = [
        click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Weights file (default: the shipped weights/vidcolor.pt)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=DEFAULT_BATCH, show_default=True,
                     help="Frames per model call."),
        click.option("--render-size", type=click.IntRange(16, 4096), default=DEFAULT_RENDER, show_default=True,
                     help="Short side, in pixels, at which colour is predicted."),
        click.option("--saturation", type=click.FloatRange(0.1, 3.0), default=1.0, show_default=True,
                     help="Colour strength: >1 more vivid, <1 more muted (scales the readout temperature)."),
        click.option("--temporal-window", type=click.IntRange(0, 64), default=DEFAULT_WINDOW, show_default=True,
                     help="Frames each side used to smooth colour over time; 0 = per-frame."),
        click.option("--cut-threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
                     help="Scene-cut sensitivity: lower finds more cuts."),
        click.option("--overwrite", is_flag=True, help="Replace an existing finished output."),
        click.option("--restart", is_flag=True, help="Discard an unfinished job's checkpoint and start over."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar or messages."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _settings(kw: dict) -> Settings:
    return Settings(weights=str(kw["weights"]) if kw["weights"] else None, device=kw["device"],
                    batch_size=kw["batch_size"], render_size=kw["render_size"],
                    temperature=DEFAULT_TEMPERATURE / kw["saturation"], temporal_window=kw["temporal_window"],
                    cut_threshold=kw["cut_threshold"])


def _run(fn, quiet: bool) -> None:  # noqa: ANN001
    old = signal.signal(signal.SIGTERM, _on_term)
    try:
        res = fn()
    except VidcolorError as e:
        click.echo(f"vidcolor: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("vidcolor: interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, old)
    if not quiet:
        for n in res.notes:
            click.echo(f"vidcolor: {n}", err=True)
        fps = res.frames / res.seconds if res.seconds else 0.0
        click.echo(f"vidcolor: {res.frames} frames coloured in {res.seconds:.1f} s ({fps:.1f} fps)", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidcolor")
def main() -> None:
    """Bring colour to black-and-white film."""


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@common
@click.option("--codec", default="libx264", show_default=True, help="Video encoder (ffmpeg name).")
@click.option("--crf", type=click.IntRange(0, 63), default=18, show_default=True, help="Constant rate factor.")
@click.option("--preset", default="medium", show_default=True, help="Encoder preset.")
@click.option("--pix-fmt", default=None, help="Output pixel format (default yuv420p, or yuv420p10le for >8-bit input).")
@click.option("--segment-frames", type=click.IntRange(8, 100_000), default=240, show_default=True,
              help="Frames per checkpointed segment.")
def video(input: Path, output: Path, codec: str, crf: int, preset: str, pix_fmt: str | None,
          segment_frames: int, **kw: Any) -> None:
    """Colorize the video INPUT into OUTPUT (container from OUTPUT's extension), keeping its audio."""
    from .pipeline import colorize_video
    from .videoio import EncodeOptions

    enc = EncodeOptions(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt)
    _run(lambda: colorize_video(input, output, _settings(kw), enc, overwrite=kw["overwrite"],
                                restart=kw["restart"], segment_frames=segment_frames, progress=not kw["quiet"],
                                log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(s, err=True))),
         kw["quiet"])


@main.command()
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@common
def frames(input_dir: Path, output_dir: Path, **kw: Any) -> None:
    """Colorize a folder of PNG/JPEG/TIFF frames into OUTPUT_DIR (same names, sizes and bit depths)."""
    from .pipeline import colorize_frames

    _run(lambda: colorize_frames(input_dir, output_dir, _settings(kw), overwrite=kw["overwrite"],
                                 restart=kw["restart"], progress=not kw["quiet"],
                                 log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(s, err=True))),
         kw["quiet"])



if __name__ == "__main__":
    main()
