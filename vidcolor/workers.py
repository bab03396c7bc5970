"""Local parallelism for a batch: worker processes sized to the machine.

Each worker is a process of its own (spawned, so no torch state is
inherited) that colours one file at a time with a share of the cores: on a
CPU machine one worker per core with one torch thread each (two workers on
two cores do not fight over threads), with GPUs one worker per GPU. Memory
caps the count too. A worker that dies (killed, out of memory) fails only
the file it held; a fresh worker takes its place for the rest.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable

from .batch_item import Item, Row, run_item
from .settings import RunOptions
from .errors import on_stop_signal, quiet_unraisable

WORKER_BYTES = 3 << 29  # 1.5 GiB: a worker's peak RSS was 1.2 GB on 640x360 at render size 256


@dataclass
class Machine:
    cores: int
    gpus: int
    memory: int  # bytes available


def machine(device: str = "auto") -> Machine:
    """Cores this process may use (affinity and cgroup quota), visible CUDA GPUs, and available memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # a container's CPU quota (cgroup v2) can be below the cores it may run on
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    gpus = 0
    if device != "cpu":
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                memory = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return Machine(cores, gpus, memory or WORKER_BYTES * cores)


@dataclass
class Plan:
    workers: int
    threads: int  # torch threads per worker
    gpus: list[int | None]  # the GPU of each worker slot (None: CPU)


def plan_workers(files: int, m: Machine, workers: int | None = None, threads: int | None = None) -> Plan:
    """How many workers and threads: one per GPU, else one per core, never more than memory or files allow."""
    auto = m.gpus or m.cores
    n = min(workers or max(1, min(auto, m.memory // WORKER_BYTES)), max(files, 1))
    t = threads or max(1, m.cores // n)
    return Plan(n, t, [k % m.gpus if m.gpus else None for k in range(n)])


def _worker(conn: Connection, threads: int, opts: RunOptions) -> None:
    """A worker's loop: colour each item it is sent, send back its row."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops workers with SIGTERM

    signal.signal(signal.SIGTERM, on_stop_signal)  # checkpoints are saved as for `vidcolor video`
    sys.unraisablehook = quiet_unraisable
    torch.set_num_threads(threads)
    while True:
        try:
            item = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if item is None:
            return
        row = run_item(item, opts)
        conn.send(row)
        if row.exit_code == 130:
            return


class _Slot:
    def __init__(self, ctx: mp.context.BaseContext, plan: Plan, k: int, opts: RunOptions):
        env = {"OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads)}
        if plan.gpus[k] is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(plan.gpus[k])
        old = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # a spawned child copies the environment as it starts
        try:
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_worker, args=(child, plan.threads, opts), daemon=True,
                                    name=f"vidcolor-worker-{k}")
            self.proc.start()
            child.close()
        finally:
            for key, v in old.items():
                os.environ.pop(key) if v is None else os.environ.__setitem__(key, v)
        self.item: Item | None = None


def run_local(items: list[Item], opts: RunOptions, plan: Plan,
              on_row: Callable[[Row], None] = lambda r: None) -> list[Row]:
    """Colour ``items`` on ``plan.workers`` processes; one row per item, whatever happens to a worker."""
    ctx = mp.get_context("spawn")
    todo = deque(items)
    rows: list[Row] = []
    slots = [_Slot(ctx, plan, k, opts) for k in range(plan.workers)]
    stopping = False

    def finish(slot: _Slot, row: Row) -> None:
        rows.append(row)
        on_row(row)
        slot.item = None

    try:
        while True:
            for k, s in enumerate(slots):
                if s.item is None and todo and not stopping:
                    if not s.proc.is_alive():
                        slots[k] = s = _Slot(ctx, plan, k, opts)
                    s.item = todo.popleft()
                    s.conn.send(s.item)
            busy = [s for s in slots if s.item is not None]
            if not busy:
                break
            try:
                ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy])
            except KeyboardInterrupt:
                stopping = True
                for s in busy:  # each saves its checkpoint and answers "interrupted"
                    if s.proc.is_alive():
                        os.kill(s.proc.pid, signal.SIGTERM)
                continue
            for s in busy:
                if s.conn in ready or s.proc.sentinel in ready:
                    try:
                        finish(s, s.conn.recv())
                    except (EOFError, OSError):  # died without answering
                        s.proc.join(timeout=5)
                        finish(s, Row(s.item, "failed", 1, error=f"the worker process died "
                                      f"({_death(s.proc.exitcode)}) while colouring it; run the batch again "
                                      f"to resume it"))
    finally:
        for s in slots:
            if s.proc.is_alive():
                try:
                    s.conn.send(None)
                except (OSError, ValueError):
                    pass
        for s in slots:
            s.proc.join(timeout=10)
            if s.proc.is_alive():
                s.proc.kill()
    if stopping:
        rows += [Row(it, "interrupted", 130, error="not started: the batch was interrupted") for it in todo]
    return rows


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return f"{name}{', probably out of memory' if -code == signal.SIGKILL else ''}"
    return f"exit code {code}"
