"""One input of a batch: what it is, how it is coloured, and its line in the summary.

This sits below :mod:`vidcolor.batch` (which finds the inputs and prints the
table), :mod:`vidcolor.workers` (local processes) and :mod:`vidcolor.cluster`
(Ray), so that all three can use it without importing each other.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chunks import Chunk, VideoTask
from .errors import InputError, VidcolorError
from .pipeline import colorize_frames
from .settings import RunOptions


@dataclass
class Item:
    """One input and where its colour version goes."""

    input: Path
    output: Path
    kind: str  # "video", "frames", or "missing" / "empty" (a folder without either; reported as failed, never run)
    shown: str = ""  # the input as the user named it, for the table

    def __post_init__(self) -> None:
        self.shown = self.shown or str(self.input)


@dataclass
class Row:
    """One line of the summary: what happened to one input."""

    item: Item
    status: str  # done, resumed, skipped, failed, interrupted
    exit_code: int = 0
    frames: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def status_text(self) -> str:
        return self.status if self.ok else f"{self.status} (exit {self.exit_code})"

    @classmethod
    def from_result(cls, item: Item, res: Any) -> "Row":
        """The row of a finished run (a :class:`vidcolor.pipeline.Result`)."""
        return cls(item, "resumed" if res.resumed_at else "done", 0, res.frames, res.seconds, list(res.warnings))


def video_task(item: Item, opts: RunOptions) -> VideoTask:
    """The video job of ``item`` with the batch's options."""
    return VideoTask(item.input, item.output, opts)


def run_item(item: Item, opts: RunOptions, chunk: Chunk | None = None) -> Row:
    """Colour one input (or one ``chunk`` of a video) here and now; never raises for the input's sake
    (the row says what went wrong)."""
    t0 = time.time()
    try:
        if item.kind == "missing":
            raise InputError(f"input not found: {item.input}")
        if item.kind == "empty":
            raise InputError(f"no videos or frames found in the folder {item.input}")
        item.output.parent.mkdir(parents=True, exist_ok=True)
        if chunk is not None:  # --restart was applied once, before the chunks (chunks.prepare)
            res = video_task(item, opts).run(chunk, restart=False)
        elif item.kind == "video":
            res = video_task(item, opts).run()
        else:
            res = colorize_frames(item.input, item.output, opts.settings, overwrite=opts.overwrite,
                                  restart=opts.restart, progress=False, log=lambda s: None)
    except VidcolorError as e:
        return Row(item, "interrupted" if e.exit_code == 130 else "failed", e.exit_code, error=str(e),
                   seconds=time.time() - t0)
    except KeyboardInterrupt:
        return Row(item, "interrupted", 130, error="interrupted; run the same command again to resume")
    except Exception as e:  # noqa: BLE001  one file's surprise must not stop the others
        return Row(item, "failed", 1, error=f"unexpected {type(e).__name__}: {e}", seconds=time.time() - t0)
    return Row.from_result(item, res)
