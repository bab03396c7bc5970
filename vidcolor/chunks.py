"""Long reels in chunks: split one video job into runs of whole segments that
separate workers colour at the same time, then join them with the usual final mux.

A chunk is a range of segments ``[first, stop)`` (``stop`` None: to the end of
the film), and the frame its keyframe carrier starts from. Each chunk starts at a
segment boundary, re-predicts the frames the temporal smoother needs before it
(as a resumed run does) and reads on past its end for the look-ahead. The
carrier's state at the chunk's first frame would need the chunk before it, so
boundaries are moved to just after a cut where one is near (:mod:`vidcolor.cuts`),
and the carrier starts at that cut, or ``keyframes.WARM`` frames early inside a
long shot. After a cut every frame is computed exactly as in one uninterrupted
run; after a warm-up inside a shot, to within what ``keyframes.WARM`` says. The
segments are written into the output's job folder, so the result is the file a
single machine would write. A killed chunk resumes from its own last finished
segment and the state kept after it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av

from . import videoio
from .cuts import find_cuts, place_chunks
from .job import JOB_MANIFEST, Chunk, job_dir, merge_chunks
from .keyframes import WARM
from .lock import LOCK_NAME, JobLock
from .pipeline import Result, colorize_video
from .settings import DEFAULT_CHUNK, RunOptions
from .stream import segment_length

__all__ = ["Chunk", "VideoTask", "chunks_for", "colorize_chunked", "join", "plan_chunks", "prepare"]


@dataclass
class VideoTask:
    """Everything a worker needs to colour one video (picklable, for worker processes and Ray)."""

    input: Path
    output: Path
    options: RunOptions = field(default_factory=RunOptions)

    def run(self, chunk: Chunk | None = None, restart: bool | None = None) -> Result:
        """Colour the whole video (``chunk`` None) or one chunk of it."""
        o = self.options
        return colorize_video(self.input, self.output, o.settings, o.encode, overwrite=o.overwrite,
                              restart=o.restart if restart is None else restart,
                              segment_frames=o.segment_frames, progress=False, log=lambda s: None,
                              deinterlace=o.deinterlace, chunk=chunk)


def plan_chunks(frames: int, seg_len: int, chunk_frames: int) -> list[Chunk]:
    """Segment ranges of about ``chunk_frames`` frames each; the last runs to the end of the film.

    ``frames`` is the container's estimate; it need not be exact, because the
    last chunk reads to the end and chunks past the end are simply empty."""
    per = max(chunk_frames // seg_len, 1)
    segments = -(-max(frames, 0) // seg_len)
    firsts = list(range(0, segments, per))
    if len(firsts) < 2:
        return [Chunk(0, None)]
    return [Chunk(a, b) for a, b in zip(firsts, firsts[1:])] + [Chunk(firsts[-1], None)]


def chunks_for(task: VideoTask, chunk_frames: int) -> list[Chunk]:
    """How to split ``task``: one chunk when it is short, when its frame count is unknown, or when an
    unchunked job for it is already under way (it is resumed as it was started)."""
    if (job_dir(task.output) / JOB_MANIFEST).exists() and not task.options.restart:
        return [(0, None)]
    try:
        frames = videoio.probe(task.input).frames
    except Exception:  # noqa: BLE001  the run itself reports what is wrong with the input, per file
        return [(0, None)]
    o = task.options
    seg_len = segment_length(o.segment_frames, o.settings.batch_size)
    plan = plan_chunks(frames, seg_len, chunk_frames)
    if len(plan) < 2 or o.settings.keyframes == "off":  # only the carrier's memory reaches past a chunk's warm-up
        return plan
    try:
        cuts = find_cuts(task.input, o.settings.cut_threshold)
    except (av.FFmpegError, OSError):  # the run itself reports a damaged input; chunks then warm up in full
        cuts = []
    return place_chunks(plan, seg_len, cuts, WARM)


def prepare(task: VideoTask, chunks: list[Chunk]) -> None:
    """Before the chunks start: ``--restart`` discards the old job here, once, not in each chunk."""
    d = job_dir(task.output)
    if task.options.restart and d.is_dir():
        with JobLock(d / LOCK_NAME, task.output):  # never while another run still works in the folder
            shutil.rmtree(d, ignore_errors=True)


def join(task: VideoTask, chunks: list[Chunk]) -> Result:
    """After every chunk is done: write the job's manifest from them, then run the final mux."""
    merge_chunks(task.output, chunks)
    return task.run(restart=False)


def colorize_chunked(task: VideoTask, chunk_frames: int = DEFAULT_CHUNK) -> Result:
    """Colour ``task`` chunk by chunk in this process (what the Ray path does across workers)."""
    chunks = chunks_for(task, chunk_frames)
    if len(chunks) == 1:
        return task.run()
    prepare(task, chunks)
    seconds = sum(task.run(c, restart=False).seconds for c in chunks)
    res = join(task, chunks)
    res.seconds += seconds
    return res
