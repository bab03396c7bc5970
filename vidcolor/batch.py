"""Many files in one command: find the inputs, name the outputs, skip what is done,
colour the rest, and report every file in one table.

Inputs are video files, folders (searched recursively for videos and frame
folders), frame folders, and text lists of paths (``.txt``/``.list``/``.lst``,
one path a line, relative to the list's folder, ``#`` for comments). Outputs:

- a video keeps its name, ``OUT/NAME``; a video found in a folder keeps its
  path below that folder, ``OUT/SUB/NAME``. Containers vidcolor cannot write
  with x264 (``.webm``, ``.mpg``, ``.ts``...) become ``.mkv``.
- a frame folder becomes ``OUT/FOLDER/`` (below a searched folder, ``OUT/SUB/FOLDER/``).
- inputs that would get the same output (``a/reel.mp4`` and ``b/reel.mp4``)
  all get ``NAME~HASH``, HASH being the first 8 hex digits of the SHA-1 of
  the input's absolute path, so every name is fixed by its input alone.

A finished output is skipped (unless ``overwrite``); an unfinished one
resumes from its checkpoint, as ``vidcolor video`` would. Running
(:func:`run_items`) is done here, in worker processes sized to the machine
(:mod:`vidcolor.workers`), or on Ray (:mod:`vidcolor.cluster`).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from . import frameio
from .batch_item import Item, Row, run_item
from .errors import InputError, VidcolorError
from .job import FOLDER_MANIFEST, clear_finished_leftover
from .settings import DEFAULT_CHUNK, RunOptions

Options = RunOptions  # every file of a batch is coloured with one RunOptions (the name batch users know)

VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi", ".nut", ".mpg", ".mpeg", ".ts", ".m2ts",
              ".mts", ".mxf", ".wmv", ".flv", ".dv", ".ogv", ".3gp", ".vob"}
WRITABLE_EXTS = {".mp4", ".mkv", ".mov", ".m4v", ".avi", ".nut"}  # containers that take x264 and copy audio
LIST_EXTS = {".txt", ".list", ".lst"}


# -- finding inputs and naming outputs ------------------------------------------------------

def find_items(inputs: Iterable[str | Path], out: Path) -> list[Item]:
    """Every video and frame folder the inputs name, each with its output path (see the module doc)."""
    items: list[Item] = []
    for arg in inputs:
        _add(Path(arg), out, items, from_list=False)
    seen: set[Path] = set()
    unique = []
    for it in items:  # the same input named twice (e.g. a file and its folder) is coloured once
        key = it.input.resolve() if it.kind != "missing" else it.input
        if key not in seen:
            seen.add(key)
            unique.append(it)
    return _disambiguate(unique)


def _add(path: Path, out: Path, items: list[Item], from_list: bool) -> None:
    if not path.exists():
        items.append(Item(path, out / path.name, "missing"))
    elif path.is_dir():
        if _holds_frames(path):
            items.append(Item(path, out / path.name, "frames"))
        else:
            found = len(items)
            _walk(path, path, out, items)
            if len(items) == found:  # named by the user, so its emptiness is reported, not passed over
                items.append(Item(path, out / path.name, "empty"))
    elif path.suffix.lower() in LIST_EXTS and not from_list:
        for line in _read_list(path):
            p = Path(line)
            _add(p if p.is_absolute() else path.parent / p, out, items, from_list=True)
    else:  # named on its own: tried whatever its extension, and its error reported if it is no video
        items.append(Item(path, out / _video_name(path), "video"))


def _walk(root: Path, folder: Path, out: Path, items: list[Item]) -> None:
    for p in sorted(folder.iterdir(), key=lambda q: frameio.natural_key(q.name)):
        if p.name.startswith("."):  # hidden, including vidcolor's own job folders and temporary files
            continue
        rel = p.relative_to(root)
        if p.is_dir():
            if out.resolve() == p.resolve():
                continue  # the output folder inside an input folder: never its own input
            if _holds_frames(p):
                items.append(Item(p, out / rel, "frames"))
            else:
                _walk(root, p, out, items)
        elif p.suffix.lower() in VIDEO_EXTS:
            items.append(Item(p, out / rel.parent / _video_name(p), "video"))


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the list {path}: {getattr(e, 'strerror', None) or e}") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _holds_frames(folder: Path) -> bool:
    """Frames vidcolor reads, or scans it does not (DPX...): such a folder fails with what to do about it."""
    exts = frameio.EXTENSIONS + frameio.SCAN_FORMATS
    return any(p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file() for p in folder.iterdir())


def _video_name(path: Path) -> str:
    return path.name if path.suffix.lower() in WRITABLE_EXTS else path.stem + ".mkv"


def _disambiguate(items: list[Item]) -> list[Item]:
    """Outputs that collide (also by case alone, for case-insensitive disks) get ``~HASH`` of their input."""
    by_name: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_name[str(it.output).casefold()].append(it)
    for group in by_name.values():
        if len(group) > 1:
            for it in group:
                tag = hashlib.sha1(str(it.input.resolve()).encode()).hexdigest()[:8]
                o = it.output
                it.output = o.with_name(f"{o.stem}~{tag}{o.suffix}" if it.kind == "video" else f"{o.name}~{tag}")
    return items


# -- what is done already -------------------------------------------------------------------

def is_finished(item: Item) -> bool:
    """A finished output: the video file (written under a temporary name and renamed when whole), or a
    frame folder holding every frame with no job manifest left in it."""
    if item.kind == "video":
        if item.output.is_file():
            clear_finished_leftover(item.output)  # a kill may have cut the finished job's tidy-up short
        return item.output.is_file()
    if item.kind == "frames" and item.output.is_dir() and not (item.output / FOLDER_MANIFEST).exists():
        try:
            return all(frameio.is_complete(item.output / f.name) for f in frameio.list_frames(item.input))
        except VidcolorError:
            return False
    return False


# -- running --------------------------------------------------------------------------------

def pending(items: list[Item], opts: Options) -> tuple[list[Item], list[Row]]:
    """Split the batch into what to run and the rows of what is not run (finished, or not there)."""
    todo, skipped = [], []
    for it in items:
        if it.kind in ("missing", "empty"):
            skipped.append(run_item(it, opts))  # fails at once: no worker needed
        elif not opts.overwrite and is_finished(it):
            skipped.append(Row(it, "skipped"))
        else:
            todo.append(it)
    return todo, skipped


def run_items(items: list[Item], opts: Options, runner: Callable[[list[Item], Options], list[Row]]) -> list[Row]:
    """Skip the finished inputs, run the rest with ``runner``, and return the rows in the inputs' order."""
    todo, rows = pending(items, opts)
    rows += runner(todo, opts) if todo else []
    order = {str(it.output): k for k, it in enumerate(items)}  # rows come back from workers as copies
    return sorted(rows, key=lambda r: order[str(r.item.output)])


def colorize_batch(inputs: Iterable[str | Path], out: str | Path, opts: Options, workers: int | None = None,
                   threads: int | None = None, ray: str | None = None, chunk_frames: int | None = None,
                   on_row: Callable[[Row], None] = lambda r: None,
                   log: Callable[[str], None] = lambda s: None) -> list[Row]:
    """Colour every input into the folder ``out``: one :class:`Row` per input, in the inputs' order.

    Locally on worker processes sized to the machine (``workers``, ``threads``
    override); with ``ray`` ("auto" or a cluster address) on Ray, long videos in
    chunks of about ``chunk_frames`` frames. ``on_row`` is called as each input finishes.
    """
    from .pipeline import make_output_folder

    out = Path(out)
    make_output_folder(out)
    items = find_items(inputs, out)
    if not items:
        raise InputError("no videos or frame folders found in the inputs")

    def local(todo: list[Item], o: Options) -> list[Row]:
        from .workers import machine, plan_workers, run_local

        plan = plan_workers(len(todo), machine(o.settings.device), workers, threads)
        log(f"{len(todo)} to colour on {plan.workers} worker(s), {plan.threads} thread(s) each")
        return run_local(todo, o, plan, on_row)

    def on_ray(todo: list[Item], o: Options) -> list[Row]:
        from . import cluster

        cluster.connect(ray)
        device, have = o.settings.device, cluster.cluster_gpus()
        gpus = 1.0 if device == "cuda" or (device == "auto" and have > 0) else 0.0
        log(f"{len(todo)} to colour on Ray ({cluster.cluster_cpus():g} CPUs, {have:g} GPUs)")
        return cluster.run_ray(todo, o, chunk_frames or DEFAULT_CHUNK, threads or 1, gpus, on_row)

    return run_items(items, opts, on_ray if ray else local)


# -- the summary ----------------------------------------------------------------------------

def summary(rows: list[Row], out: Path) -> str:
    """The table printed at the end of a batch, then each file's errors and warnings."""
    head = ("file", "output", "frames", "fps", "status", "warnings")
    lines = [head]
    for r in rows:
        try:
            shown_out = str(r.item.output.relative_to(out))
        except ValueError:
            shown_out = str(r.item.output)
        fps = f"{r.frames / r.seconds:.1f}" if r.frames and r.seconds else "-"
        lines.append((r.item.shown, shown_out, str(r.frames) if r.frames else "-", fps, r.status_text,
                      str(len(r.warnings))))
    widths = [max(len(ln[c]) for ln in lines) for c in range(len(head))]
    right = {2, 3, 5}
    text = ["  ".join(v.rjust(w) if c in right else v.ljust(w) for c, (v, w) in enumerate(zip(ln, widths))).rstrip()
            for ln in lines]
    for r in rows:
        text += [f"{r.item.shown}: error: {r.error}"] if r.error else []
        text += [f"{r.item.shown}: warning: {w}" for w in r.warnings]
    failed = sum(not r.ok for r in rows)
    done = sum(r.status in ("done", "resumed") for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    text.append(f"{len(rows)} inputs: {done} coloured, {skipped} skipped (finished before), {failed} failed")
    return "\n".join(text)


def exit_code(rows: list[Row]) -> int:
    """0 when every input is done or skipped; 130 if interrupted; otherwise 1 (the table has each file's code)."""
    if any(r.exit_code == 130 for r in rows):
        return 130
    return 0 if all(r.ok for r in rows) else 1
