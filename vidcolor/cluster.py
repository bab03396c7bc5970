"""A batch on a Ray cluster: one task per file, and long reels in chunks on many workers.

Ray is optional (``pip install 'vidcolor[ray]'``) and imported only here, when
a batch is run with ``--ray``. Every worker must see the inputs and the
output folder at the same paths as the driver (a shared file system): tasks
read the input, write segments into the output's job folder and, for the
last task of a file, the output itself.

A video longer than two chunks is split (:mod:`vidcolor.chunks`): a task per
chunk, then a join task that runs the final mux once they are all done. Ray
retries a task whose worker died; the retry resumes the chunk from its last
finished segment, and the frames come out as in one run.
"""
from __future__ import annotations

from typing import Any, Callable

from . import chunks
from .batch_item import Item, Row, run_item, video_task
from .settings import DEFAULT_CHUNK, RunOptions
from .errors import VidcolorError, raise_if_interrupted

RETRIES = 3  # per task, for a worker that died (a node lost, out of memory); errors of the input are not retried


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise VidcolorError("--ray needs Ray: pip install 'vidcolor[ray]'") from None
    return ray


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one this machine belongs to, else a new local one)."""
    ray = _ray()
    if ray.is_initialized():
        return
    kw: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    if address not in (None, "auto"):
        kw["address"] = address
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise VidcolorError(f"cannot connect to the Ray cluster at {address}: {e}") from None


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def colour_file(item: Item, opts: RunOptions, threads: int) -> Row:
    """Ray task: one whole file."""
    _threads(threads)
    return run_item(item, opts)


def colour_chunk(item: Item, opts: RunOptions, chunk: chunks.Chunk, threads: int) -> Row:
    """Ray task: one chunk of a video; its row has the chunk's frames and time (or its error)."""
    _threads(threads)
    return run_item(item, opts, chunk)


def join_chunks(item: Item, opts: RunOptions, chunk_list: list[chunks.Chunk], *parts: Row) -> Row:
    """Ray task: after every chunk of ``item``, the final mux; the row covers the whole file."""
    bad = [p for p in parts if not p.ok]
    if bad:
        return bad[0]
    try:
        res = chunks.join(video_task(item, opts), chunk_list)
    except VidcolorError as e:
        return Row(item, "failed", e.exit_code, error=str(e))
    warnings = [w for p in parts for w in p.warnings] + list(res.warnings)
    seconds = sum(p.seconds for p in parts) + res.seconds  # worker time, not wall time
    return Row(item, "resumed" if any(p.status == "resumed" for p in parts) else "done", 0, res.frames,
               seconds, list(dict.fromkeys(warnings)))


def run_ray(items: list[Item], opts: RunOptions, chunk_frames: int = DEFAULT_CHUNK, threads: int = 1,
            gpus: float = 0.0, on_row: Callable[[Row], None] = lambda r: None) -> list[Row]:
    """Colour ``items`` on the connected Ray cluster (see :func:`connect`); one row per item.

    Each task asks for ``threads`` CPUs (its torch thread count) and ``gpus`` GPUs."""
    ray = _ray()
    res = {"num_cpus": threads, "num_gpus": gpus, "max_retries": RETRIES}
    file_task = ray.remote(**res)(colour_file)
    chunk_task = ray.remote(**res)(colour_chunk)
    join_task = ray.remote(**res)(join_chunks)  # the same device as its chunks: it is part of the job's settings
    refs: dict[Any, Item] = {}
    chunk_refs: dict[Any, list[Any]] = {}  # a join's chunk tasks: the driver submitted them, not the join
    for it in items:
        task = video_task(it, opts)
        plan = chunks.chunks_for(task, chunk_frames) if it.kind == "video" else [(0, None)]
        if len(plan) == 1:
            refs[file_task.remote(it, opts, threads)] = it
            continue
        chunks.prepare(task, plan)
        parts = [chunk_task.remote(it, opts, c, threads) for c in plan]
        join = join_task.remote(it, opts, plan, *parts)
        refs[join] = it
        chunk_refs[join] = parts
    rows = []
    waiting = list(refs)
    while waiting:
        try:
            raise_if_interrupted()  # a Ctrl-C that Python dropped inside a callback still stops the driver
            done, waiting = ray.wait(waiting, num_returns=1)
        except KeyboardInterrupt:
            for ref in waiting:  # a cancelled task gets KeyboardInterrupt: its chunk checkpoint is kept
                for r in [ref, *chunk_refs.get(ref, [])]:
                    ray.cancel(r)
            return rows + [Row(refs[r], "interrupted", 130, error="interrupted; run the same command again "
                                                                  "to resume") for r in waiting]
        try:
            row = ray.get(done[0])
        except Exception as e:  # noqa: BLE001  a task that died RETRIES times, or a lost node: this file only
            row = Row(refs[done[0]], "failed", 1, error=f"Ray task failed: {type(e).__name__}: "
                                                        f"{str(e).splitlines()[0] if str(e) else ''}")
        rows.append(row)
        on_row(row)
    return rows



def cluster_gpus() -> float:
    """GPUs in the connected cluster."""
    return float(_ray().cluster_resources().get("GPU", 0))


def cluster_cpus() -> float:
    """CPUs in the connected cluster."""
    return float(_ray().cluster_resources().get("CPU", 0))
