"""The ``vidcolor`` command: a thin click layer over the library API."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import click

from .errors import VidcolorError, on_stop_signal, quiet_unraisable, reset_interrupted
from .settings import (CONTEXT_MODES, DEFAULT_BATCH, DEFAULT_CHUNK, DEFAULT_CUT_THRESHOLD, DEFAULT_GUIDED_TEMPERATURE,
                       DEFAULT_KEYFRAMES, DEFAULT_PREVIEW_FRAMES, DEFAULT_RENDER, DEFAULT_SCENE_CONTEXT, DEFAULT_SEGMENT, DEFAULT_TEMPERATURE,
                       DEFAULT_WINDOW, DEVICES, KEYFRAME_MODES, EncodeOptions, RunOptions, Settings)

_ENCODE = EncodeOptions()  # the encoder options' defaults, shown in --help


def common(f):  # noqa: ANN001, ANN201
    """Options shared by `video`, `frames` and `batch`."""
    opts = [
        click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Weights file (default: the shipped weights/vidcolor.pt)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=DEFAULT_BATCH, show_default=True,
                     help="Frames per model call (2 takes a third less memory on 4K scans, at the same speed)."),
        click.option("--render-size", type=click.IntRange(16, 4096), default=DEFAULT_RENDER, show_default=True,
                     help="Short side, in pixels, at which colour is predicted."),
        click.option("--saturation", type=click.FloatRange(0.1, 3.0), default=1.0, show_default=True,
                     help="Colour strength: >1 more vivid, <1 more muted (scales the readout temperature)."),
        click.option("--temporal-window", type=click.IntRange(0, 64), default=DEFAULT_WINDOW, show_default=True,
                     help="Frames each side used to smooth colour over time; 0 = per-frame."),
        click.option("--keyframes", type=click.Choice(KEYFRAME_MODES), default=DEFAULT_KEYFRAMES, show_default=True,
                     help="auto: decide each shot's colour at keyframes and carry it through the shot with "
                          "motion (steadier colour; the network's own colour fills new content); off: the temporal "
                          "smoother alone."),
        click.option("--keyframe-every", type=click.IntRange(0, 100_000), default=0, show_default=True,
                     help="With --keyframes auto: also a new keyframe every N frames (0 = only at cuts)."),
        click.option("--scene-context", type=click.Choice(CONTEXT_MODES), default=DEFAULT_SCENE_CONTEXT,
                     show_default=True,
                     help="steady: average the network's sense of the scene over the last second of the shot "
                          "(less slow colour drift); off: decide it frame by frame."),
        click.option("--cut-threshold", type=click.FloatRange(0.0, 1.0), default=DEFAULT_CUT_THRESHOLD, show_default=True,
                     help="Scene-cut sensitivity: lower finds more cuts."),
        click.option("--reference", "references", multiple=True, metavar="FRAME_INDEX=IMAGE",
                     help="A colour image of that frame (e.g. hand-coloured); its colours carry through the shot. "
                          "Repeatable."),
        click.option("--hints", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="JSON list of {frame, x, y, rgb} colour pins (full-size pixel coordinates)."),
        click.option("--overwrite", is_flag=True, help="Replace an existing finished output."),
        click.option("--restart", is_flag=True, help="Discard an unfinished job's checkpoint and start over."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar or messages."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _settings(kw: dict) -> Settings:
    """The colour settings the command line asks for."""
    return Settings(weights=str(kw["weights"]) if kw["weights"] else None, device=kw["device"],
                    batch_size=kw["batch_size"], render_size=kw["render_size"],
                    temperature=DEFAULT_TEMPERATURE / kw["saturation"],
                    guided_temperature=DEFAULT_GUIDED_TEMPERATURE / kw["saturation"], temporal_window=kw["temporal_window"],
                    cut_threshold=kw["cut_threshold"], references=tuple(kw["references"]),
                    hints=str(kw["hints"]) if kw["hints"] else None, keyframes=kw["keyframes"],
                    keyframe_every=kw["keyframe_every"], scene_context=kw["scene_context"])


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM both go to errors.on_stop_signal, and either ends the command with exit 130
    and the resume hint (checkpoints are saved on the way out). A VidcolorError becomes one line in
    _Group.main."""
    reset_interrupted()
    # SIGINT only where it is not ignored: a job started with it ignored (nohup, `cmd &`) keeps that.
    stops = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    old = {s: signal.signal(s, on_stop_signal) for s in stops}
    old_hook, sys.unraisablehook = sys.unraisablehook, quiet_unraisable
    try:
        yield
    except KeyboardInterrupt:
        click.echo("vidcolor: interrupted; run the same command again to resume", err=True)
        sys.exit(130)
    finally:
        sys.unraisablehook = old_hook
        for s, handler in old.items():
            signal.signal(s, handler)


def _run(fn, quiet: bool) -> None:  # noqa: ANN001
    with interruptible():
        res = fn()
    for w in res.warnings:  # about the input or the run: shown even with -q
        click.echo(f"vidcolor: warning: {w}", err=True)
    if not quiet:
        for n in res.notes:
            click.echo(f"vidcolor: {n}", err=True)
        fps = res.frames / res.seconds if res.seconds else 0.0
        click.echo(f"vidcolor: {res.frames} frames coloured in {res.seconds:.1f} s ({fps:.1f} fps)", err=True)


def _subject(args: list[str]) -> str:
    """The file a command works on, for an error line: its first argument that names an existing path."""
    for a in args[1:]:
        if not a.startswith("-") and os.path.exists(a):
            return a
    return args[0] if args else "vidcolor"


def _log_traceback(args: list[str]) -> Path | None:
    """Write the current exception's traceback to a new log file; its path, or None if none can be written."""
    folder = Path(os.environ.get("VIDCOLOR_LOG_DIR") or Path(tempfile.gettempdir()) / "vidcolor-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"vidcolor-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"vidcolor {' '.join(args)}\n\n{traceback.format_exc()}")
    except OSError:
        return None
    return path


def _unexpected(e: Exception, args: list[str], debug: bool) -> None:
    """A bug or an unforeseen failure: one line naming the file and what failed, the traceback in a log file
    (or on stderr with --debug), exit 1. A video job's folder is kept, so the same command resumes."""
    what = " ".join(str(e).split()) or "(no message)"
    if len(what) > 300:
        what = what[:300] + "..."
    if debug:
        traceback.print_exc()
        where = ""
    else:
        log = _log_traceback(args)
        where = f"; the traceback is in {log}" if log else ""
    click.echo(f"vidcolor: error: {_subject(args)}: unexpected {type(e).__name__}: {what}{where}", err=True)
    sys.exit(1)


class _Group(click.Group):
    """Command-line mistakes end like every other error: one ``vidcolor: error: ...`` line, exit 2.

    ``--debug``, anywhere on the command line, prints the traceback of an unexpected error instead of
    writing it to a log file."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        try:
            return self._main(args, prog_name, complete_var, **extra)
        except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback reaches the user
            _unexpected(e, args, debug)

    def _main(self, args: list[str], prog_name: str | None, complete_var: str | None, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                e.show()  # bare `vidcolor`: the help text, as before
                sys.exit(e.exit_code)
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            click.echo(f"vidcolor: error: {' '.join(e.format_message().split())}{where}", err=True)
            sys.exit(e.exit_code)
        except VidcolorError as e:  # every subcommand's user-facing errors, in one place
            click.echo(f"vidcolor: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"vidcolor: error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("vidcolor: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "eval":  # loaded on use: its imports (torch, scikit-image) are heavy
            from .evaluate import eval_cmd

            return eval_cmd
        return super().get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "eval"])


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vidcolor")
@click.option("--debug", is_flag=True, help="On an unexpected error, print its traceback instead of writing it "
              "to a log file (accepted anywhere on the command line).")
def main(debug: bool) -> None:
    """Bring colour to black-and-white film."""


def video_options(f):  # noqa: ANN001, ANN201
    """Options of `video` (and of `batch`, for its videos)."""
    opts = [
        click.option("--codec", default=_ENCODE.codec, show_default=True, help="Video encoder (ffmpeg name)."),
        click.option("--crf", type=click.IntRange(0, 63), default=_ENCODE.crf, show_default=True,
                     help="Constant rate factor."),
        click.option("--preset", default=_ENCODE.preset, show_default=True, help="Encoder preset."),
        click.option("--pix-fmt", default=None,
                     help="Output pixel format (default yuv420p, or yuv420p10le for >8-bit input)."),
        click.option("--segment-frames", type=click.IntRange(8, 100_000), default=DEFAULT_SEGMENT, show_default=True,
                     help="Frames per checkpointed segment."),
        click.option("--deinterlace", is_flag=True, help="Blend each frame's two fields before colouring "
                     "(for interlaced input; keeps count and timing)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run_options(kw: dict) -> RunOptions:
    """One video run as the command line asks for it (`video`, and every file of `batch`)."""
    enc = EncodeOptions(codec=kw["codec"], crf=kw["crf"], preset=kw["preset"], pix_fmt=kw["pix_fmt"])
    return RunOptions(_settings(kw), enc, kw["segment_frames"], kw["deinterlace"], kw["overwrite"], kw["restart"])


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@common
@video_options
def video(input: Path, output: Path, **kw: Any) -> None:
    """Colorize the video INPUT into OUTPUT (container from OUTPUT's extension), keeping its audio."""
    from .job import job_dir
    from .lock import LOCK_NAME, ensure_free

    ensure_free(job_dir(output) / LOCK_NAME, output)  # before torch loads: a second run stops at once
    from .pipeline import colorize_video  # here, not at the top: torch loads only when work starts

    o = _run_options(kw)
    _run(lambda: colorize_video(input, output, o.settings, o.encode, overwrite=o.overwrite, restart=o.restart,
                                segment_frames=o.segment_frames, progress=not kw["quiet"],
                                log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(s, err=True)),
                                deinterlace=o.deinterlace),
         kw["quiet"])


@main.command()
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.argument("output_dir", type=click.Path(path_type=Path))
@common
def frames(input_dir: Path, output_dir: Path, **kw: Any) -> None:
    """Colorize a folder of PNG/JPEG/TIFF frames into OUTPUT_DIR (same names, sizes and bit depths)."""
    from .lock import LOCK_NAME, ensure_free

    ensure_free(output_dir / LOCK_NAME, output_dir)  # before torch loads: a second run stops at once
    from .pipeline import colorize_frames

    _run(lambda: colorize_frames(input_dir, output_dir, _settings(kw), overwrite=kw["overwrite"],
                                 restart=kw["restart"], progress=not kw["quiet"],
                                 log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(s, err=True))),
         kw["quiet"])


@main.command("export-frame")
@click.argument("video", type=click.Path(path_type=Path))
@click.argument("index", type=click.IntRange(0, None))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def export_frame_cmd(video: Path, index: int, out: Path) -> None:
    """Write frame INDEX (0-based) of VIDEO as an image to paint a --reference on."""
    from .guide import export_frame

    export_frame(video, index, out)  # a VidcolorError becomes one line in _Group.main


@main.command("batch")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the colour versions (made if missing).")
@common
@video_options
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Files coloured at once on this machine (default: one per GPU, else one per core, "
                   "as memory allows).")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Torch threads per worker or Ray task (default: the cores split between workers; 1 on Ray).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Run on Ray: 'auto' joins this machine's cluster (or starts one here), or give its address.")
@click.option("--chunk-frames", type=click.IntRange(8, 10_000_000), default=None,
              help=f"On Ray, split videos longer than two chunks into chunks of about this many frames "
                   f"(whole segments; default {DEFAULT_CHUNK}).")
def batch_cmd(inputs: tuple[Path, ...], out: Path, workers: int | None, threads: int | None,
              ray_address: str | None, chunk_frames: int | None, **kw: Any) -> None:
    """Colour every video and frame folder in INPUTS (files, folders, or text lists of paths) into --out.

    Finished outputs are skipped, unfinished ones resume. One table at the end lists every input; the exit
    code is 0 only if none failed."""
    from .lock import BATCH_LOCK, ensure_free

    ensure_free(out / BATCH_LOCK, out)  # before torch loads: a second batch into --out stops at once
    from .batch import colorize_batch, exit_code, summary

    count = [0]

    def on_row(r: Any) -> None:
        count[0] += 1
        if not kw["quiet"]:
            click.echo(f"vidcolor: [{count[0]}] {r.item.shown}: {r.status_text}", err=True)

    with interruptible():  # the workers' own interrupts become rows; this catches the rest (Ray start-up, probes)
        rows = colorize_batch(inputs, out, _run_options(kw), workers, threads, ray_address, chunk_frames, on_row,
                              log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(f"vidcolor: {s}", err=True)))
    click.echo(summary(rows, out))
    sys.exit(exit_code(rows))


# ----------------------------------------------------------------------------- preview


def _numbers(kind: type, what: str, text: str | None) -> list | None:
    """'0.8,1,1.3' -> [0.8, 1.0, 1.3]; a bad item is a usage error that names it."""
    if text is None:
        return None
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: want comma-separated {what}, e.g. "
                                 f"{'0.8,1,1.3' if kind is float else '12,480,3000'}") from None


@main.command("preview")
@click.argument("input", type=click.Path(path_type=Path))
@click.argument("sheet", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--frames", "n_frames", type=click.IntRange(1, 200), default=DEFAULT_PREVIEW_FRAMES, show_default=True,
              help="Frames to show, spread evenly over the film.")
@click.option("--at", default=None, metavar="I,J,...", help="Show these frames (0-based indices) instead.")
@click.option("--saturation", default="1", show_default=True, metavar="S[,S...]",
              help="Colour strength; a comma list (0.8,1,1.3) gives one colour column per value.")
@click.option("--tile-width", type=click.IntRange(0, 8192), default=320, show_default=True,
              help="Width of each picture on the sheet in pixels (0: the frames' own size).")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Weights file (default: the shipped weights/vidcolor.pt).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
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
    from .preview import make_preview  # torch loads only when work starts

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


if __name__ == "__main__":
    main(prog_name="vidcolor")
