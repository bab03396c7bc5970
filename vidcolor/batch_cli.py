"""``vidcolor batch``: the command over :mod:`vidcolor.batch` (local workers) and :mod:`vidcolor.cluster` (Ray)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli import _settings, common, interruptible, video_options


@click.command("batch")
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
              help="On Ray, split videos longer than two chunks into chunks of about this many frames "
                   "(whole segments; default 2400).")
def batch_cmd(inputs: tuple[Path, ...], out: Path, codec: str, crf: int, preset: str, pix_fmt: str | None,
              segment_frames: int, deinterlace: bool, workers: int | None, threads: int | None,
              ray_address: str | None, chunk_frames: int | None, **kw: Any) -> None:
    """Colour every video and frame folder in INPUTS (files, folders, or text lists of paths) into --out.

    Finished outputs are skipped, unfinished ones resume. One table at the end lists every input; the exit
    code is 0 only if none failed."""
    from .lock import BATCH_LOCK, ensure_free

    ensure_free(out / BATCH_LOCK, out)  # before torch loads: a second batch into --out stops at once
    from .batch import Options, colorize_batch, exit_code, summary
    from .encode import EncodeOptions

    opts = Options(_settings(kw), EncodeOptions(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt),
                   segment_frames, deinterlace, kw["overwrite"], kw["restart"])
    count = [0]

    def on_row(r: Any) -> None:
        count[0] += 1
        if not kw["quiet"]:
            click.echo(f"vidcolor: [{count[0]}] {r.item.shown}: {r.status_text}", err=True)

    with interruptible():  # the workers' own interrupts become rows; this catches the rest (Ray start-up, probes)
        rows = colorize_batch(inputs, out, opts, workers, threads, ray_address, chunk_frames, on_row,
                              log=(lambda s: None) if kw["quiet"] else (lambda s: click.echo(f"vidcolor: {s}", err=True)))
    click.echo(summary(rows, out))
    sys.exit(exit_code(rows))
