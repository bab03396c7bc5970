"""``vidcolor batch``: the command over :mod:`vidcolor.batch` (local workers) and :mod:`vidcolor.cluster` (Ray)."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from .cli import _on_term, _settings, common, video_options
from .errors import InputError


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
    from .batch import Options, exit_code, find_items, run_items, summary
    from .encode import EncodeOptions
    from .pipeline import make_output_folder

    make_output_folder(out)
    items = find_items(inputs, out)
    if not items:
        raise InputError("no videos or frame folders found in the inputs")
    opts = Options(_settings(kw), EncodeOptions(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt),
                   segment_frames, deinterlace, kw["overwrite"], kw["restart"])
    count = [0]

    def on_row(r: Any) -> None:
        count[0] += 1
        if not kw["quiet"]:
            what = r.status if r.ok else f"{r.status} (exit {r.exit_code})"
            click.echo(f"vidcolor: [{count[0]}/{len(items)}] {r.item.shown}: {what}", err=True)

    old = signal.signal(signal.SIGTERM, _on_term)
    try:
        if ray_address:
            runner = _ray_runner(ray_address, chunk_frames, threads or 1, kw["device"], on_row)
        else:
            from .workers import machine, plan_workers, run_local

            def runner(todo: list, o: Options) -> list:
                plan = plan_workers(len(todo), machine(kw["device"]), workers, threads)
                if not kw["quiet"]:
                    click.echo(f"vidcolor: {len(todo)} to colour on {plan.workers} worker(s), "
                               f"{plan.threads} thread(s) each", err=True)
                return run_local(todo, o, plan, on_row)
        rows = run_items(items, opts, runner)
    finally:
        signal.signal(signal.SIGTERM, old)
    click.echo(summary(rows, out))
    sys.exit(exit_code(rows))


def _ray_runner(address: str, chunk_frames: int | None, threads: int, device: str, on_row: Any) -> Any:
    from . import cluster
    from .chunks import DEFAULT_CHUNK

    def runner(todo: list, o: Any) -> list:
        cluster.connect(address)
        gpus = 1.0 if device == "cuda" or (device == "auto" and cluster.cluster_gpus() > 0) else 0.0
        return cluster.run_ray(todo, o, chunk_frames or DEFAULT_CHUNK, threads, gpus, on_row)
    return runner
