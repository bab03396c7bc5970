"""One process per job: a second run on a locked output exits 1 at once, naming the holder; a lock
left by a killed process never blocks a resume; write errors say what failed."""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidcolor.errors import write_failed
from vidcolor.job import ChunkJob, VideoJob, job_dir
from vidcolor.lock import BATCH_LOCK, LOCK_NAME, JobBusy, JobLock

from .conftest import cli, env, make_clip, run_cli
from .test_resume import N_LONG, run_and_kill, video_progress

FAST = ["--batch-size", "4", "--render-size", "64", "-q"]


class Holder:
    """Another process holding a lock file (as a running vidcolor job does), until stopped."""

    def __init__(self, lock: Path, output: Path):
        code = ("import sys, time; from pathlib import Path; from vidcolor.lock import JobLock; "
                f"Path({str(lock.parent)!r}).mkdir(parents=True, exist_ok=True); "
                f"lk = JobLock(Path({str(lock)!r}), Path({str(output)!r})).acquire(); print('held', flush=True); "
                "time.sleep(600)")
        self.p = subprocess.Popen([sys.executable, "-c", code], env=env(), stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=30)


def _refused(code: int, err: str, holder: Holder) -> None:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("vidcolor: error: another vidcolor process is colouring"), err
    assert f"PID {holder.p.pid} on {socket.gethostname()}" in lines[0] and "wait for it" in lines[0], err
    assert f"kill {holder.p.pid}" in lines[0], err


def test_second_video_run_exits_at_once_naming_the_first(tmp_path, random_weights, one_model):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=16)
    holder = Holder(job_dir(out) / LOCK_NAME, out)
    try:
        t0 = time.time()
        code, err = run_cli("video", src, out, "--weights", random_weights, *FAST)
        took = time.time() - t0
        _refused(code, err, holder)
        assert took < 10, took
        assert sorted(p.name for p in job_dir(out).iterdir()) == [LOCK_NAME]  # nothing of the holder's touched
        assert not out.exists()
        holder.kill()
        # the killed holder's lock file is still there, and does not block the same command
        assert (job_dir(out) / LOCK_NAME).exists()
        code, err = run_cli("video", src, out, "--weights", random_weights, *FAST)
        assert code == 0, err
        assert out.is_file() and not job_dir(out).exists()
    finally:
        holder.kill()


def test_second_frames_run_is_refused(tmp_path, random_weights, one_model):
    import numpy as np
    from vidcolor.frameio import write_frame

    src, dest = tmp_path / "scans", tmp_path / "colour"
    src.mkdir()
    for i in range(3):
        write_frame(src / f"f{i}.png", np.full((16, 16, 3), 40 * i, np.uint8), None)
    holder = Holder(dest / LOCK_NAME, dest)
    try:
        code, err = run_cli("frames", src, dest, "--weights", random_weights, *FAST)
        _refused(code, err, holder)
        assert sorted(p.name for p in dest.iterdir()) == [LOCK_NAME]
        holder.kill()
        code, err = run_cli("frames", src, dest, "--weights", random_weights, *FAST)
        assert code == 0, err
        assert sorted(p.name for p in dest.iterdir()) == ["f0.png", "f1.png", "f2.png"]  # no lock file left
    finally:
        holder.kill()


def test_second_batch_into_one_folder_is_refused(tmp_path, random_weights):
    src, out = tmp_path / "in.mp4", tmp_path / "colour"
    make_clip(src, n=8)
    holder = Holder(out / BATCH_LOCK, out)
    try:
        r = subprocess.run(cli("batch", str(src), "--out", str(out), "--weights", str(random_weights), *FAST),
                           env=env(), capture_output=True, text=True, timeout=120)
        _refused(r.returncode, r.stderr, holder)
        assert not (out / "in.mp4").exists()
    finally:
        holder.kill()


def test_chunks_of_one_reel_lock_only_their_own_chunk(tmp_path):
    out = tmp_path / "out.mp4"
    spec = {"x": 1}
    a = ChunkJob(out, spec, 0, 2)
    b = ChunkJob(out, spec, 2, None)  # another chunk of the same reel runs beside it
    with pytest.raises(JobBusy, match=f"PID {os.getpid()}"):
        ChunkJob(out, spec, 0, 2)  # a retry of a chunk whose first try still runs
    with pytest.raises(JobBusy, match=f"PID {os.getpid()}"):
        VideoJob(out, spec)  # a whole-reel run beside running chunks
    a.release()
    b.release()
    VideoJob(out, spec).remove()  # every chunk done: the join takes the whole job


def test_restart_does_not_clear_a_running_jobs_folder(tmp_path):
    out = tmp_path / "out.mp4"
    job = VideoJob(out, {"x": 1})
    (job.dir / "seg_000000.mp4").write_bytes(b"segment")
    with pytest.raises(JobBusy):
        VideoJob(out, {"x": 1}, restart=True)
    assert (job.dir / "seg_000000.mp4").exists()
    job.release()
    VideoJob(out, {"x": 1}, restart=True)
    assert not (job.dir / "seg_000000.mp4").exists()


def test_a_lock_dies_with_its_process(tmp_path):
    lock = tmp_path / LOCK_NAME
    holder = Holder(lock, tmp_path / "out.mp4")
    with pytest.raises(JobBusy, match=f"PID {holder.p.pid}"):
        JobLock(lock, tmp_path / "out.mp4").acquire()
    holder.kill()
    JobLock(lock, tmp_path / "out.mp4").acquire().release()


@pytest.mark.slow
def test_resume_after_kill9_with_its_lock_left(tmp_path, random_weights):
    """A real run killed with -9 leaves its lock file; the same command resumes past it."""
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    # long enough that the keyframe carrier emits frames before the clip's end, so the kill lands mid-run
    make_clip(src, n=N_LONG, w=96, h=64)
    cmd = cli("video", str(src), str(out), "--weights", str(random_weights), "--segment-frames", "8", *FAST)
    code = run_and_kill(cmd, video_progress(out), 8)
    if code == 0:
        pytest.skip("the run finished before its kill point")
    assert code == -signal.SIGKILL
    assert (job_dir(out) / LOCK_NAME).exists()
    r = subprocess.run(cli(*cmd[3:-1]), env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming at frame" in r.stderr and out.is_file()


@pytest.mark.parametrize("err, says, not_says", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/.o.vidcolor-job/seg_000001.tmp.mp4"),
     "write failed at /out/.o.vidcolor-job/seg_000001.tmp.mp4: No space left on device; free space and run",
     "gone"),
    (OSError(errno.ENOENT, "No such file or directory", "/out/.o.vidcolor-job/manifest.json.tmp"),
     "at /out/.o.vidcolor-job/manifest.json.tmp: No such file or directory: the job's file or folder has gone",
     "free space"),
])
def test_write_errors_say_what_failed(tmp_path, random_weights, one_model, monkeypatch, err, says, not_says):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=16)

    def fail(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise err
    monkeypatch.setattr(VideoJob, "commit_segment", fail)
    code, msg = run_cli("video", src, out, "--weights", random_weights, "--segment-frames", "8", *FAST)
    assert code == 1 and says in msg and not_says not in msg, msg
    assert msg.count("\n") == 1
    assert "free space" not in write_failed(OSError(errno.ENOENT, "gone"))



@pytest.mark.parametrize("command", ["video", "frames", "batch"])
def test_refused_before_torch_loads(tmp_path, command):
    """The refusal comes before the seconds it takes to load torch and the weights."""
    src, out = tmp_path / "in.mp4", tmp_path / "out"
    make_clip(src, n=4)
    where = {"video": job_dir(out) / LOCK_NAME, "frames": out / LOCK_NAME, "batch": out / BATCH_LOCK}[command]
    args = {"video": [str(src), str(out)], "frames": [str(tmp_path), str(out)], "batch": [str(src), "--out", str(out)]}
    holder = Holder(where, out)
    code = ("import sys; from vidcolor.cli import main\n"
            f"try:\n    main({[command, *args[command]]!r}, prog_name='vidcolor')\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    try:
        r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
        assert r.stdout.split() == ["1", "False"], (r.stdout, r.stderr)
        assert f"PID {holder.p.pid}" in r.stderr
    finally:
        holder.kill()


def test_a_lock_is_freed_when_its_call_ends_or_its_job_is_dropped(tmp_path):
    from vidcolor.lock import released_on_return

    lock = tmp_path / LOCK_NAME
    JobLock(lock, tmp_path).acquire()  # dropped at once: freed
    kept = []

    @released_on_return
    def fails() -> None:
        kept.append(JobLock(lock, tmp_path).acquire())
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        fails()
    JobLock(lock, tmp_path).acquire().release()  # free, though the caller still holds the failed call's lock object
    assert kept[0].fd is None


def test_a_chunked_restart_leaves_a_running_job_alone(tmp_path):
    from vidcolor.chunks import VideoTask, prepare
    from vidcolor.settings import RunOptions

    out = tmp_path / "out.mp4"
    job = VideoJob(out, {"x": 1})
    (job.dir / "seg_000000.mp4").write_bytes(b"segment")
    with pytest.raises(JobBusy):
        prepare(VideoTask(tmp_path / "in.mp4", out, RunOptions(restart=True)), [(0, 2), (2, None)])
    assert (job.dir / "seg_000000.mp4").exists()
    job.release()
    prepare(VideoTask(tmp_path / "in.mp4", out, RunOptions(restart=True)), [(0, 2), (2, None)])
    assert not job.dir.exists()
