"""A job and its checkpoints: what was asked, what is done, and whether a re-run
may continue it.

A video job lives in a hidden folder next to OUTPUT, ``.NAME.vidcolor-job/``:
finished segments (``seg_000000.mp4``...), the stream state that follows the
last of them (``state_000000.npz``: what the keyframe carrier needs to go on,
issue 35) and ``manifest.json``. All are written under temporary names and
renamed, so a kill at any instant leaves either the old or the new state,
never a torn one. A segment's manifest entry names its state file and hash,
so a state only counts with the segment it follows. A frame job keeps its
manifest in OUT_DIR as ``.vidcolor-job.json``; its frames are its segments.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import JobMismatch, VidcolorError
from .lock import LOCK_GLOB, LOCK_NAME, JobLock, chunk_lock_name

# 2: segments carry the stream's state (issue 35). A version-1 job with keyframes on was coloured under
# the old carrier rule and is refused by its spec (keyframe_carrier); one without resumes as it was.
MANIFEST_VERSION = 2
JOB_MANIFEST = "manifest.json"  # a video job's, in its job folder
FOLDER_MANIFEST = ".vidcolor-job.json"  # a frame folder job's, in OUT_DIR
HEAD_BYTES = 1 << 20


def file_identity(path: Path) -> dict[str, Any]:
    """Path, size, mtime and a hash of the first MiB: cheap, and catches a replaced file."""
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(HEAD_BYTES))
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": h.hexdigest()}


def folder_identity(files: list[Path]) -> dict[str, Any]:
    """Identity of a frame folder: its names, sizes and mtimes, hashed."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"path": str(files[0].parent.resolve()), "frames": len(files), "listing_sha256": h.hexdigest()}


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_state_file(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` to ``path`` (temporary name, fsync, rename); return the file's SHA-256."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read_state_file(path: Path, sha256: str | None = None) -> dict[str, np.ndarray] | None:
    """The arrays in ``path``, or None if it is missing, unreadable or (given ``sha256``) not that file."""
    try:
        data = path.read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            return None
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


FOLDER_STATE_PREFIX = ".vidcolor-state-"  # a frame folder job's carrier state before frame N, in OUT_DIR


def folder_states(dest: Path) -> list[Path]:
    """The carrier states kept in the output folder ``dest``, oldest first (temporary files excluded)."""
    return sorted(p for p in dest.glob(f"{FOLDER_STATE_PREFIX}*.npz") if ".tmp" not in p.name)


def write_folder_state(dest: Path, at: int, arrays: dict[str, np.ndarray]) -> None:
    """Keep the state before frame ``at`` in ``dest``, then drop the older ones (only the newest is read)."""
    write_state_file(dest / f"{FOLDER_STATE_PREFIX}{at:09d}.npz", arrays)
    for old in folder_states(dest)[:-1]:
        old.unlink(missing_ok=True)


def folder_state(dest: Path, start: int, period: int) -> tuple[int, dict[str, np.ndarray]] | None:
    """The latest kept state at or before frame ``start``, as (frame, arrays); None: go on from frame 0."""
    for path in reversed(folder_states(dest)):
        at = int(path.name[len(FOLDER_STATE_PREFIX):].split(".")[0])
        arrays = read_state_file(path) if 0 < at <= start and at % period == 0 else None
        if arrays is not None:
            return at, arrays
    return None


def describe_difference(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str | None:
    """The first key whose value differs, as 'key: old -> new'."""
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            d = describe_difference(a, b, f"{prefix}{k}.")
            if d:
                return d
        elif a != b:
            return f"{prefix}{k}: {a!r} -> {b!r}"
    return None


class Job:
    """Manifest handling shared by video and frame jobs."""

    def __init__(self, manifest_path: Path, spec: dict[str, Any], restart: bool = False):
        self.manifest_path = manifest_path
        self.spec = spec
        self.state: dict[str, Any] = {"version": MANIFEST_VERSION, "spec": spec, "segments": [], "frames_done": 0}
        self.resumed = False
        if restart:
            self.discard()
        elif manifest_path.exists():
            try:
                old = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                raise VidcolorError(f"checkpoint {manifest_path} is unreadable; re-run with --restart") from None
            diff = describe_difference(old.get("spec", {}), spec)
            if diff and diff.startswith("keyframe_carrier:"):
                raise JobMismatch(f"an unfinished job for this output was started by an older vidcolor, whose "
                                  f"colour restarted at every segment ({diff}); re-run with --restart to colour "
                                  f"it again from the start")
            if diff:
                raise JobMismatch(f"an unfinished job for this output was started with different settings "
                                  f"({diff}); re-run with --restart to discard it, or use the original settings")
            self.state = old
            self.resumed = old.get("frames_done", 0) > 0

    @property
    def frames_done(self) -> int:
        return int(self.state["frames_done"])

    def save(self) -> None:
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path, self.state)

    def discard(self) -> None:
        self.manifest_path.unlink(missing_ok=True)


class VideoJob(Job):
    """Segments of a video job, in a hidden folder beside OUTPUT."""

    def __init__(self, output: Path, spec: dict[str, Any], restart: bool = False, manifest: str = JOB_MANIFEST,
                 carried: bool = False):
        """``carried``: the run leaves a stream state after each segment, and resumes only where one is kept."""
        self.dir = job_dir(output)
        self.carried = carried
        self.dir.mkdir(parents=True, exist_ok=True)
        # locked before anything in the folder is touched: the files may be another living run's
        self.locks = self._lock(output, manifest)
        if restart:
            for p in self.dir.iterdir():
                if p.match(LOCK_GLOB):  # our own lock stays, held
                    continue
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        super().__init__(self.dir / manifest, spec, restart=False)
        for p in self._torn_files():  # a torn segment or manifest from a kill: never trusted
            p.unlink(missing_ok=True)
        self._check_segments()

    def _lock(self, output: Path, manifest: str) -> list[JobLock]:
        """The whole job's lock, exclusive (:mod:`vidcolor.lock`)."""
        return [JobLock(self.dir / LOCK_NAME, output).acquire()]

    def release(self) -> None:
        """Let another run take the job (also done when the process ends, however it ends)."""
        for lock in self.locks:
            lock.release()

    def _torn_files(self) -> list[Path]:
        return list(self.dir.glob("*.tmp*"))

    def _check_segments(self) -> None:
        """Drop manifest entries whose file is gone (e.g. deleted by hand), and all after them."""
        good = []
        for seg in self.state["segments"]:
            if not (self.dir / seg["file"]).is_file():
                break
            good.append(seg)
        if self.carried and not (len(good) == len(self.state["segments"]) and self.complete):
            # a resume goes on from the state after the last segment: without it, that segment is redone
            while good and self.state_after(good[-1]) is None:
                good.pop()
        if len(good) != len(self.state["segments"]):
            self.state["segments"] = good
            self.state["frames_done"] = good[-1]["start"] + good[-1]["frames"] if good else 0
            self.state.pop("complete", None)  # the lost segments must be coloured again
            self.state.pop("total_frames", None)

    def segment_paths(self) -> list[Path]:
        return [self.dir / s["file"] for s in self.state["segments"]]

    def temp_segment(self, k: int) -> Path:
        return self.dir / f"seg_{k:06d}.tmp.mp4"

    def commit_segment(self, k: int, start: int, frames: int, carry: dict[str, np.ndarray] | None = None) -> None:
        """Rename the finished segment and the state that follows it (``carry``) into place, then record
        both (in that order: a kill before the record leaves an unrecorded segment that is simply redone,
        from the state recorded before it)."""
        name = f"seg_{k:06d}.mp4"
        tmp = self.temp_segment(k)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        entry: dict[str, Any] = {"file": name, "start": start, "frames": frames}
        if carry is not None:
            state = f"state_{k:06d}.npz"
            entry["state"] = {"file": state, "sha256": write_state_file(self.dir / state, carry)}
        os.replace(tmp, self.dir / name)
        before = self.state["segments"][-1] if self.state["segments"] else None
        self.state["segments"].append(entry)
        self.state["frames_done"] = start + frames
        self.save()
        if before is not None and "state" in before:  # only the last state is ever read again
            (self.dir / before["state"]["file"]).unlink(missing_ok=True)

    def state_after(self, seg: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """The stream state recorded after segment ``seg``, if its file is there and whole."""
        rec = seg.get("state")
        return read_state_file(self.dir / rec["file"], rec["sha256"]) if rec else None

    def carried_state(self) -> dict[str, np.ndarray] | None:
        """The state to go on from at :attr:`frames_done` (None at the job's start)."""
        return self.state_after(self.state["segments"][-1]) if self.state["segments"] else None

    def mark_complete(self, total: int | None) -> None:
        self.state["complete"] = True
        self.state["total_frames"] = total
        self.save()

    @property
    def complete(self) -> bool:
        return bool(self.state.get("complete"))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()

    def record_output(self, joined: Path) -> None:
        """Record the joined file about to be renamed to OUTPUT. A kill after the rename and before
        :meth:`remove` then leaves a job folder that :func:`clear_finished_leftover` recognises as done."""
        self.state["written"] = _stamp(joined)
        self.save()


def job_dir(output: Path) -> Path:
    """The hidden checkpoint folder of a video job for ``output``."""
    return output.parent / f".{output.name}.vidcolor-job"


def _stamp(path: Path) -> dict[str, int]:
    # a rename in one folder keeps size, mtime and inode, and a later write or replacement changes them
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def clear_finished_leftover(output: Path) -> dict[str, Any] | None:
    """If the job folder beside ``output`` belongs to a job that finished (``output`` is the very file
    it renamed into place) and only the folder's removal was cut short, remove the folder (it is only
    waste now) and return its manifest; else None, touching nothing."""
    try:
        state = json.loads((job_dir(output) / JOB_MANIFEST).read_text())
        if not isinstance(state, dict) or state.get("written") != _stamp(output):
            return None
    except (OSError, ValueError):  # no folder, no manifest, or no output: not this case
        return None
    shutil.rmtree(job_dir(output), ignore_errors=True)
    return state


class Chunk(NamedTuple):
    """Segments ``first`` to ``stop - 1`` of one video job (``stop`` None: to the end of the film), and
    the frame its keyframe carrier starts from (None: ``keyframes.WARM`` frames before the chunk)."""

    first: int
    stop: int | None
    carrier_from: int | None = None


class ChunkJob(VideoJob):
    """Segments ``first`` to ``stop - 1`` (``stop`` None: to the end) of a video job, done by one worker.

    Chunks of one output share its job folder, each with its own manifest
    (``chunk_FIRST_STOP.json``) and segment files, so workers never write the same
    file; :func:`merge_chunks` then writes the job's manifest for the final mux.
    """

    def __init__(self, output: Path, spec: dict[str, Any], first: int, stop: int | None, carried: bool = False):
        self.first, self.stop = first, stop
        super().__init__(output, spec, manifest=chunk_manifest_name(first, stop), carried=carried)

    def _lock(self, output: Path, manifest: str) -> list[JobLock]:
        """The reel's lock shared (chunks of one reel run side by side), and this chunk's own exclusive."""
        shared = JobLock(self.dir / LOCK_NAME, output, shared=True).acquire()
        try:
            return [shared, JobLock(self.dir / chunk_lock_name(manifest), output).acquire()]
        except VidcolorError:
            shared.release()
            raise

    def _torn_files(self) -> list[Path]:
        # only this chunk's own: the other chunks' temporary files may be in the middle of being written
        def mine(p: Path) -> bool:
            k = int(p.name.split("_")[1][:6])
            return k >= self.first and (self.stop is None or k < self.stop)
        own = [p for p in [*self.dir.glob("seg_*.tmp.mp4"), *self.dir.glob("state_*.tmp.npz")] if mine(p)]
        return own + [self.manifest_path.with_name(self.manifest_path.name + ".tmp")]


def chunk_manifest_name(first: int, stop: int | None) -> str:
    """Named by the whole range, so a batch re-run with other chunk sizes never mistakes an old chunk's."""
    return f"chunk_{first:06d}_{'end' if stop is None else f'{stop:06d}'}.json"


def merge_chunks(output: Path, chunks: list[Chunk]) -> None:
    """Write the manifest of ``output``'s job from its finished ``chunks`` (segment ranges).

    The result is the manifest one uninterrupted run would have left before
    its final mux: every segment in order, the decode report of a chunk that
    read to the end of the input (every chunk decodes from the start, so that
    one saw the whole file), and the total.
    """
    d = job_dir(output)
    states = []
    for chunk in sorted((Chunk(*c) for c in chunks), key=lambda c: c.first):
        path = d / chunk_manifest_name(chunk.first, chunk.stop)
        try:
            states.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            raise VidcolorError(f"chunk checkpoint {path} is missing or unreadable; run the batch again") from None
    specs = [st["spec"] for st in states]
    if any(sp != specs[0] for sp in specs) or not all(st.get("complete") for st in states):
        raise VidcolorError(f"the chunks of {output} are unfinished or were made with different settings; "
                            f"run the batch again")
    segments: list[dict[str, Any]] = []
    ended = [st for st in states if "decode_report" in st]
    if not ended:
        raise VidcolorError(f"no chunk of {output} read its input to the end; run the batch again")
    for st in states:  # a chunk that read to the end in its look-ahead is not the last one with frames
        segments += st["segments"]
    if segments and segments[0]["start"] != 0:
        raise VidcolorError(f"the first chunk of {output} is missing; run the batch again")
    for prev, seg in zip(segments, segments[1:]):
        if seg["start"] != prev["start"] + prev["frames"]:
            raise VidcolorError(f"the chunks of {output} leave a gap at frame {prev['start'] + prev['frames']}; "
                                f"run the batch again")
    total = segments[-1]["start"] + segments[-1]["frames"] if segments else 0
    write_json_atomic(d / JOB_MANIFEST, {"version": MANIFEST_VERSION, "spec": specs[0], "segments": segments,
                                            "frames_done": total, "decode_report": ended[0]["decode_report"],
                                            "complete": True, "total_frames": total})
