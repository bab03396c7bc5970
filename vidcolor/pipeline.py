"""The library API: colorize a video file or a folder of frames.

Flow: decoder thread -> bounded queue -> batched engine (ab at render size)
-> temporal smoother -> keyframe carrier (on by default; ``--keyframes off``)
-> composition with the full-resolution L -> encoder (segments) -> final mux
with the original audio. Batches sit at fixed frame positions (multiples of
the batch size) and segments at multiples of the segment length, so a
resumed run computes exactly what an uninterrupted one does. The stages from
the engine to composition are :mod:`vidcolor.stream`'s; this module owns the
files, jobs, checkpoints and encoding around them.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import frameio, mux, videoio, yuv as yuvmod
from .decode import DecodeReport, iter_frames
from .encode import SegmentWriter, check_codec, check_output_format, plane_spec
from .engine import Engine, engine_for, render_shape
from .errors import DamagedInput, InputError, Interrupted, VidcolorError, raise_if_interrupted, write_failed
from .guide import RULE as GUIDE_RULE, build_keyframes, guide_spec, plan_guides
from .keyframes import RULE as CARRIER_RULE, WARM as CARRIER_WARM, CarriedState
from .job import (FOLDER_MANIFEST, FOLDER_STATE_PREFIX, Chunk, ChunkJob, Job, VideoJob, clear_finished_leftover,
                  describe_difference, file_identity, folder_identity, folder_state, folder_states, job_dir,
                  write_folder_state)
from .lock import LOCK_NAME, JobLock, ensure_free, released_on_return
from .prefetch import Prefetcher
from .stream import Stages, build_stages, segment_length, stream_colour
from .temporal import Smoother
from .weights import sha256_file

from .settings import DEFAULT_SEGMENT, EncodeOptions, Settings  # Settings re-exported: vidcolor.pipeline.Settings


@dataclass
class Result:
    frames: int = 0
    seconds: float = 0.0
    resumed_at: int = 0
    damaged_frames: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # about the input or the run; shown even with -q


def _progress(total: int | None, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, initial=initial, unit="frame", desc=desc, dynamic_ncols=True,
                disable=not enabled or not sys.stderr.isatty(), smoothing=0.1)


def _prepare(settings: Settings) -> tuple[Engine, Smoother, str]:
    engine, wpath = engine_for(settings)
    smoother = Smoother(settings.temporal_window, settings.cut_threshold)
    return engine, smoother, sha256_file(wpath)


def _spec(settings: Settings, engine: Engine, weights_sha: str, **extra: Any) -> dict[str, Any]:
    return {"weights_sha256": weights_sha, "device": engine.device.type, "batch_size": settings.batch_size,
            "render_size": settings.render_size, "temperature": settings.temperature,
            "temporal_window": settings.temporal_window, "cut_threshold": settings.cut_threshold,
            **({"guides": guide_spec(list(settings.references), settings.hints),
                "guided_temperature": settings.guided_temperature, "guide_rule": GUIDE_RULE}
               if settings.references or settings.hints else {}),
            # only when on, so the manifests of jobs started without keyframes still match
            **({"keyframes": settings.keyframes, "keyframe_every": settings.keyframe_every,
                "keyframe_carrier": CARRIER_RULE}
               if settings.keyframes != "off" else {}),
            **({"scene_context": settings.scene_context} if settings.scene_context != "off" else {}), **extra}


def _plan(settings: Settings, engine: Engine, size: Callable[[int], tuple[int, int]], n_frames: int | None,
          frames: Callable[[], Iterable[tuple[int, np.ndarray]]], names: list[str] | None = None,
          yuv: yuvmod.YuvSpec | None = None) -> dict | None:
    """Guides for every frame a reference or pin reaches, or None without any (a pre-pass over L).

    ``size(i)`` is frame i's (h, w); ``names`` a folder's file names, which pins may use. ``size`` and
    ``frames`` are callables so nothing is read unless there are guides; ``frames`` gives Y planes
    when ``yuv`` is set (the plane path), RGB otherwise."""
    if not settings.references and not settings.hints:
        return None
    keys = build_keyframes(list(settings.references), settings.hints, size,
                           lambda hw: render_shape(hw[0], hw[1], engine.render_size), n_frames, names)
    Ls = ((i, engine.render_l([img], yuv)[0].cpu()) for i, img in frames())
    return plan_guides(Ls, keys, settings.cut_threshold)


def _check_output(src: Path, dest: Path, overwrite: bool) -> None:
    if dest.exists() and (dest.resolve() == src.resolve() or (src.exists() and os.path.samefile(src, dest))):
        raise VidcolorError(f"output is the same file as the input: {dest}; choose another output name")
    if src.resolve() == dest.resolve():
        raise VidcolorError(f"output is the same path as the input: {dest}; choose another output name")
    parent = dest.parent if str(dest.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise VidcolorError(f"output folder is not a folder: {parent}")
    if not parent.is_dir():
        raise VidcolorError(f"output folder does not exist: {parent}")
    _check_writable(parent)
    if dest.is_dir():
        raise VidcolorError(f"output is a directory: {dest}; give a file name such as {dest / 'out.mp4'}")
    if dest.exists() and not overwrite:
        raise VidcolorError(f"output exists: {dest}; use --overwrite to replace it")


def make_output_folder(dest: Path) -> None:
    """Create the output folder ``dest`` if missing, and check that it is a writable folder."""
    if dest.exists() and not dest.is_dir():
        raise VidcolorError(f"output exists and is not a folder: {dest}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VidcolorError(f"cannot create output folder {dest}: {e.strerror or e}") from None
    _check_writable(dest)


def _check_writable(folder: Path) -> None:
    """Create and drop a file there: unlike os.access this also catches read-only mounts, and root."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise VidcolorError(f"output folder is not writable: {folder} ({e.strerror or e})") from None


@released_on_return  # on an error too: a caller that catches it may run the same job again
def colorize_video(input: str | Path, output: str | Path, settings: Settings | None = None,
                   encode: EncodeOptions | None = None, overwrite: bool = False, restart: bool = False,
                   segment_frames: int = DEFAULT_SEGMENT, progress: bool = True,
                   log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                   deinterlace: bool = False, chunk: Chunk | tuple | None = None,
                   yuv_planes: bool = True) -> Result:
    """Colorize the video ``input`` into ``output``, resuming an interrupted job for the same command.

    ``chunk`` (a :class:`vidcolor.job.Chunk`, or a tuple ``(first, stop[, carrier_from])``) only
    computes segments ``first`` to ``stop - 1`` (``stop`` None: to the end) into the job folder and
    writes no ``output``, with the keyframe carrier started afresh at frame ``carrier_from`` (None:
    ``keyframes.WARM`` frames before the chunk); :mod:`vidcolor.chunks` runs chunks on many workers
    and joins them.

    The output keeps the input's frame count, pts, time_base, size, sample
    aspect ratio, bit depth (where the codec allows) and display matrix
    (rotation); audio and subtitle streams are copied packet for packet.
    For YUV input the output's Y plane is the input's, bit for bit, and its
    colour tags are the input's (:mod:`vidcolor.yuv`); ``yuv_planes=False``
    forces the RGB path that other formats take (for comparisons).
    ``deinterlace`` blends each frame's fields first. Damaged input is coloured
    as far as it is readable; :class:`vidcolor.DecodeReport` gives the
    rule for when that still succeeds, and ``Result.warnings`` what was met.
    """
    src, dest = Path(input), Path(output)
    chunk = Chunk(*chunk) if chunk is not None else None
    settings = settings or Settings()
    encode = encode or EncodeOptions()
    fmt = videoio.output_format(dest)
    # a run killed after renaming its output into place but before removing its job folder
    leftover = clear_finished_leftover(dest) if chunk is None and not overwrite else None
    _check_output(src, dest, overwrite or leftover is not None)
    if chunk is None:
        ensure_free(job_dir(dest) / LOCK_NAME, dest)  # a second run on this output stops here, before any slow start
    info = videoio.probe(src)
    check_codec(encode)
    container = check_output_format(dest, fmt, info, encode)
    engine, smoother, wsha = _prepare(settings)
    seg_len = segment_length(segment_frames, settings.batch_size)
    yuv = plane_spec(info, encode) if yuv_planes else None
    spec = _spec(settings, engine, wsha, input=file_identity(src), encode=encode.as_dict(), segment_frames=seg_len,
                 high_depth=info.bit_depth > 8, compose="yuv" if yuv else "rgb",
                 **({"deinterlace": True} if deinterlace else {}))
    if leftover is not None:
        if restart or describe_difference(leftover.get("spec", {}), spec):
            raise VidcolorError(f"output exists: {dest}; use --overwrite to replace it")
        log(f"{dest} was already finished by an earlier run of this command (stopped while tidying up)")
        return Result(frames=int(leftover.get("total_frames") or 0))
    carried = settings.keyframes != "off"  # the keyframe carrier's state goes on from segment to segment
    job = (VideoJob(dest, spec, restart=restart, carried=carried) if chunk is None
           else ChunkJob(dest, spec, chunk.first, chunk.stop, carried=carried))
    start = max(job.frames_done, chunk.first * seg_len if chunk else 0)
    res = Result(resumed_at=job.frames_done)  # a chunk that starts later is not a resume
    t0 = time.time()
    if job.resumed:
        log(f"resuming at frame {start:,} of {info.frames:,}" if info.frames else f"resuming at frame {start:,}")
    if not job.complete:
        guides = _plan(settings, engine, lambda i: (info.height, info.width), None,
                       lambda: ((f.index, f.image) for f in iter_frames(src, info.bit_depth > 8,
                                                                        deinterlace=deinterlace, yuv=yuv)), yuv=yuv)
        saved = job.carried_state()
        # a chunk cannot wait for the state of the chunk before it: its carrier starts WARM frames early
        fresh_from = 0 if chunk is None else start - CARRIER_WARM if chunk.carrier_from is None else chunk.carrier_from
        stop = chunk.stop * seg_len if chunk is not None and chunk.stop is not None else None
        stages = build_stages(settings, smoother, settings.batch_size, start, seg_len, guides,
                              (start, CarriedState.from_arrays(saved)) if saved is not None else None,
                              fresh_from=fresh_from)
        _encode_segments(src, info, engine, stages, settings, encode, job, seg_len, progress, res,
                         guides, deinterlace, yuv, stop=stop, container=container)
    if chunk is not None:
        job.release()  # the join, in this process or another, takes the whole job next
        res.frames, res.seconds, res.warnings = job.frames_done - start, time.time() - t0, engine.warnings
        return res
    report = DecodeReport(**job.state.get("decode_report", {}))
    if job.state.get("total_frames", 0) == 0:
        job.remove()
        raise InputError(f"no frame of {src} could be decoded")
    if not report.faithful:
        job.remove()
        raise DamagedInput(f"{report.dropped} frames of {src} have timestamps that repeat or run backwards, so "
                           f"the output cannot keep them at their times; no output written (remux the input "
                           f"with fresh timestamps first)")
    res.warnings += report.warnings() + engine.warnings
    res.damaged_frames = report.filled + report.concealed
    if info.display_matrix:
        res.notes.append(f"kept the input's display rotation ({info.rotation} degrees) as metadata")
    if info.other_video:  # a warning, not a note: the output lacks them, and the user may need them
        res.warnings.append(f"coloured the film's video stream #{info.video_index}; the input's other video "
                            f"streams ({', '.join(info.other_video)}: a cover picture, thumbnails or a second "
                            f"angle) are not in the output")
    partial = dest.with_name(f".{dest.stem}.partial{dest.suffix}")
    try:
        joined = mux.join_segments(job.segment_paths(), src, partial, fmt)
        if joined.lost:
            raise DamagedInput(f"{joined.lost} audio/subtitle packets of {src} could not be copied (damaged), so "
                               f"the output would not be faithful; no output written")
        problem = mux.verify_output(partial, job.state["total_frames"], report)
        if problem:
            raise DamagedInput(f"the timestamps of {src} are too damaged to keep: {problem}; no output written")
        res.warnings += joined.warnings()
        job.record_output(partial)
        os.replace(partial, dest)
    except DamagedInput:
        partial.unlink(missing_ok=True)
        job.remove()  # the same input fails the same way: nothing to resume
        raise
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise VidcolorError(f"cannot write {dest}: {e.strerror or e}; the job is kept, re-run to finish") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    videoio.fsync_dir(dest.parent if str(dest.parent) else Path("."))
    res.frames = job.state["total_frames"]
    job.remove()
    res.seconds = time.time() - t0
    return res


def _encode_segments(src: Path, info: videoio.VideoInfo, engine: Engine, stages: Stages, settings: Settings,
                     encode: EncodeOptions, job: VideoJob, seg_len: int, progress: bool,
                     res: Result, guides: dict | None = None, deinterlace: bool = False,
                     yuv: yuvmod.YuvSpec | None = None, stop: int | None = None,
                     container: str | None = None) -> None:
    """Encode and commit the segments from frame ``stages.start`` on (to frame ``stop``, a segment boundary,
    if given), into segment files of the ``container`` format (:func:`vidcolor.encode.segment_format`), each
    with the stream state that follows it."""
    start = stages.start
    if job.state.get("oom_batch_limit"):
        # an earlier run ran out of memory and split its batches; split them the same way here so
        # the resumed frames are computed exactly as that run would have gone on computing them
        engine.limit = int(job.state["oom_batch_limit"])
    report = DecodeReport()
    frames = Prefetcher(iter_frames(src, high_depth=info.bit_depth > 8, report=report, deinterlace=deinterlace,
                                    yuv=yuv), maxsize=2 * settings.batch_size)
    # a chunk reads on past ``stop`` (to a batch boundary) for the smoother's look-ahead, so its last
    # frames, and every batch, are computed exactly as in one uninterrupted run
    ahead = stages.smoother.warmup + (stages.carrier.lookahead if stages.carrier else 0)
    feed_end = None if stop is None else -(-(stop + ahead) // settings.batch_size) * settings.batch_size
    at_end: list[bool] = []

    def gen() -> Iterator[tuple[int, np.ndarray, Any]]:
        for f in frames:
            if feed_end is not None and f.index >= feed_end:
                return
            yield f.index, f.image, f.pts
        at_end.append(True)
    writer: SegmentWriter | None = None
    seg_start = start
    bar = _progress(info.frames, start, progress, src.name)
    last = start - 1
    coloured = stream_colour(engine, stages, gen(), settings.batch_size, guides, yuv, defer=True)
    try:
        for item, picture in coloured:
            if stop is not None and item.index >= stop:
                break
            k = item.index // seg_len
            if writer is None:
                seg_start = k * seg_len
                writer = SegmentWriter(job.temp_segment(k), info, encode, yuv=yuv, source=str(src), container=container)
            writer.write(picture, item.payload.tag)
            last = item.index
            bar.update(1)
            raise_if_interrupted()
            if (item.index + 1) % seg_len == 0:
                writer.close()
                if getattr(engine, "limit", None):
                    job.state["oom_batch_limit"] = engine.limit
                job.commit_segment(k, seg_start, writer.frames,
                                   item.carry.arrays() if item.carry is not None else None)
                writer = None
        if writer is not None:
            writer.close()
            job.commit_segment(last // seg_len, seg_start, writer.frames)
            writer = None
        if at_end:  # only a run that read to the end has the whole decode report and the total
            job.state["decode_report"] = report.as_dict()  # a resume with nothing left to decode still reports it
        # a chunk whose look-ahead read to the end of the input but stopped writing at ``stop`` does not
        # know the total from the frames it wrote
        job.mark_complete(last + 1 if at_end and (stop is None or last + 1 < stop) else None)
    except KeyboardInterrupt:
        if writer is not None:
            writer.abort()  # left as a .tmp file, which a resume deletes
        raise Interrupted(f"interrupted after frame {job.frames_done:,}; run the same command again to resume") from None
    except OSError as e:
        if writer is not None:
            writer.abort()
        raise VidcolorError(write_failed(e)) from None
    except Exception:
        if writer is not None:
            writer.abort()  # the job folder and its finished segments stay: the same command resumes
        raise
    finally:
        # closed here, not left to the garbage collector: an exception's traceback keeps the generator alive
        # until exit, and its prediction thread would still be running torch when the interpreter kills
        # daemon threads (an abort: "terminate called without an active exception")
        coloured.close()
        frames.close()
        bar.close()


@released_on_return
def colorize_frames(input_dir: str | Path, output_dir: str | Path, settings: Settings | None = None,
                    overwrite: bool = False, restart: bool = False, progress: bool = True,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Result:
    """Colorize a folder of frames into ``output_dir`` with the same names, sizes, depths and alpha."""
    src, dest = Path(input_dir), Path(output_dir)
    settings = settings or Settings()
    files = frameio.list_frames(src)
    if dest.exists() and dest.resolve() == src.resolve():
        raise VidcolorError(f"output folder is the input folder: {dest}; choose another")
    make_output_folder(dest)
    lock = JobLock(dest / LOCK_NAME, dest).acquire()  # before another run's temporary frames are cleared
    engine, smoother, wsha = _prepare(settings)
    spec = _spec(settings, engine, wsha, input=folder_identity(files))
    manifest = dest / FOLDER_MANIFEST
    had_job = manifest.exists()
    for p in [*dest.glob(".*.vidcolor-tmp*"), *dest.glob(f"{FOLDER_STATE_PREFIX}*.tmp.npz")]:
        p.unlink()
    outs = [dest / f.name for f in files]
    if not had_job or restart:
        existing = [o for o in outs if o.exists()]
        if existing and not overwrite:
            raise VidcolorError(f"{dest} already holds {len(existing)} of the output frames (e.g. "
                                f"{existing[0].name}); use --overwrite to replace them")
        if restart or overwrite:
            for o in existing:
                o.unlink()
        for old in folder_states(dest):  # a state left by another job; only this job's count
            old.unlink()
    job = Job(manifest, spec, restart=restart)
    job.save()
    start = 0
    while start < len(outs) and frameio.is_complete(outs[start]):
        start += 1
    res = Result(resumed_at=start)
    if had_job and start > 0:
        log(f"resuming at frame {start:,} of {len(files):,}")
    t0 = time.time()
    guides = _plan(settings, engine, lambda i: frameio.read_frame(files[i]).rgb.shape[:2], len(files),
                   lambda: ((i, frameio.read_frame(f).rgb) for i, f in enumerate(files)), [f.name for f in files])
    # a folder has no segments: the carrier's state is kept every DEFAULT_SEGMENT frames instead, and a
    # resume goes on from the last one kept (re-predicting the frames since, which are not rewritten)
    period = segment_length(DEFAULT_SEGMENT, settings.batch_size)
    kept = folder_state(dest, start, period) if settings.keyframes != "off" else None
    stages = build_stages(settings, smoother, settings.batch_size, start, period, guides,
                          (kept[0], CarriedState.from_arrays(kept[1])) if kept is not None else None)
    alphas: dict[int, np.ndarray | None] = {}

    def read_all() -> Iterator[tuple[int, np.ndarray, Any]]:
        for i in range(stages.first, len(files)):
            fr = frameio.read_frame(files[i])
            alphas[i] = fr.alpha
            yield i, fr.rgb, None

    reader = Prefetcher(read_all(), maxsize=2 * settings.batch_size)
    bar = _progress(len(files), start, progress, src.name)
    coloured = stream_colour(engine, stages, iter(reader), settings.batch_size, guides)
    try:
        for item, rgb in coloured:
            frameio.write_frame(outs[item.index], rgb, alphas.pop(item.index, None))
            if item.carry is not None:  # written after the frame before it, so a resume past it finds it
                write_folder_state(dest, item.index + 1, item.carry.arrays())
            job.state["frames_done"] = item.index + 1
            bar.update(1)
            res.frames += 1
            raise_if_interrupted()
            for k in [k for k in alphas if k < item.index]:
                alphas.pop(k)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after frame {job.state['frames_done']:,}; run the same command again "
                          f"to resume") from None
    finally:
        coloured.close()  # as in _encode_segments: stop the prediction thread before exit
        reader.close()
        bar.close()
    job.discard()
    for old in folder_states(dest):
        old.unlink()
    (dest / LOCK_NAME).unlink(missing_ok=True)  # held until here, so no run can start in between
    lock.release()
    res.warnings += engine.warnings
    res.seconds = time.time() - t0
    return res

