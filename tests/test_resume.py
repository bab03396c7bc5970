"""Kill -9 a real vidcolor process at random points, resume, and compare with an uninterrupted run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from vidcolor.keyframes import AHEAD, HOLD_BLOCKS

from .conftest import cli, env, frame_pattern, make_clip, read_video

OPTS = ["--batch-size", "4", "--render-size", "64", "-q"]



def run_and_kill(cmd: list[str], progress_file, target: int, sig: int = signal.SIGKILL,
                 timeout: float = 120) -> int:
    """Start cmd, wait until progress_file() reports >= target frames, then send sig."""
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        if progress_file() >= target:
            time.sleep(random.uniform(0.0, 0.2))  # land anywhere, also mid-segment or mid-write
            p.send_signal(sig)
            break
        time.sleep(0.02)
    p.wait(timeout=60)
    return p.returncode


def video_progress(out: Path):
    man = out.parent / f".{out.name}.vidcolor-job" / "manifest.json"

    def get() -> int:
        try:
            return json.loads(man.read_text())["frames_done"]
        except (OSError, ValueError, KeyError):
            return 0
    return get


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(p, n=N_LONG, w=96, h=64)
    return p


# The keyframe carrier emits frames in blocks of AHEAD once HOLD more frames stand behind them, so
# progress moves in steps of AHEAD and the last HOLD frames come out at the very end: a kill
# aimed there would land on a finished run. Kill points stay below that, so each lands mid-run.
HOLD = HOLD_BLOCKS * AHEAD
N_LONG = HOLD + 2 * AHEAD
N_FRAMES = HOLD + AHEAD + 32
KILL_TARGETS = range(8, N_LONG - HOLD, 8)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, long_clip, random_weights) -> dict:
    out = tmp_path_factory.mktemp("ref") / "ref.mp4"
    r = subprocess.run(cli("video", str(long_clip), str(out), "--weights", str(random_weights),
                           "--segment-frames", "8", *OPTS), env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return read_video(out)


def test_kill9_resume_is_identical(tmp_path, long_clip, random_weights, reference):
    random.seed(7)
    out = tmp_path / "out.mp4"
    cmd = cli("video", str(long_clip), str(out), "--weights", str(random_weights), "--segment-frames", "8", *OPTS)
    prog = video_progress(out)
    seen = []
    for target in sorted(random.sample(KILL_TARGETS, 3)):
        code = run_and_kill(cmd, prog, target)
        seen.append((target, code, prog()))
        assert not out.exists() or code == 0
        if code == 0:  # on a fast machine a run can finish before its kill point
            break
    assert any(code == -signal.SIGKILL for _, code, _ in seen), seen
    if seen[-1][1] != 0:
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    got = read_video(out)
    assert len(got["frames"]) == len(reference["frames"]) == N_LONG
    assert all(np.array_equal(a, b) for a, b in zip(got["frames"], reference["frames"]))
    assert got["audio"] == reference["audio"]
    assert got["times"] == reference["times"]
    assert not (tmp_path / ".out.mp4.vidcolor-job").exists()


def test_resume_message_and_torn_segment(tmp_path, long_clip, random_weights, reference):
    out = tmp_path / "out.mp4"
    base = ["video", str(long_clip), str(out), "--weights", str(random_weights), "--segment-frames", "8",
            "--batch-size", "4", "--render-size", "64"]
    code = run_and_kill(cli(*base, "-q"), video_progress(out), 24)
    assert code != 0
    job = tmp_path / ".out.mp4.vidcolor-job"
    torn = job / "seg_000005.tmp.mp4"
    torn.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(300))  # a segment cut off mid-write
    (job / "manifest.json.tmp").write_text("{ half a manif")
    r = subprocess.run(cli(*base), env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming at frame" in r.stderr
    got = read_video(out)
    assert all(np.array_equal(a, b) for a, b in zip(got["frames"], reference["frames"]))
    assert len(got["frames"]) == N_LONG


def test_changed_input_is_refused_then_restart(tmp_path, random_weights):
    src = tmp_path / "in.mp4"
    make_clip(src, n=48, w=96, h=64)
    out = tmp_path / "out.mp4"
    cmd = cli("video", str(src), str(out), "--weights", str(random_weights), "--segment-frames", "8", *OPTS)
    run_and_kill(cmd, video_progress(out), 16)
    make_clip(src, n=40, w=96, h=64)  # the input is replaced by another file
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    assert r.returncode == 3
    assert "input." in r.stderr and "--restart" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = subprocess.run(cmd + ["--crf", "30"], env=env(), capture_output=True, text=True)
    assert r.returncode == 3 and "crf" in r.stderr
    r = subprocess.run(cmd + ["--restart"], env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(read_video(out)["frames"]) == 40


@pytest.fixture(scope="module")
def reel(tmp_path_factory) -> Path:
    """Ten times the long clip at 320x240: on a loaded machine the 72-frame clip could finish between the
    test's polls, so the Ctrl-C came too late to test anything."""
    p = tmp_path_factory.mktemp("reel") / "in.mp4"
    make_clip(p, n=720, w=320, h=240)
    return p


def test_ctrl_c_exits_nonzero_and_says_how_to_resume(tmp_path, reel, random_weights):
    out = tmp_path / "out.mp4"
    cmd = cli("video", str(reel), str(out), "--weights", str(random_weights), "--segment-frames", "8", *OPTS)
    # A shell starts background jobs (`.ci/run &`, nohup) with SIGINT ignored, and Python keeps it
    # ignored, so the child would never see the Ctrl-C; restore the default as a terminal would.
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    prog = video_progress(out)
    t0 = time.time()
    while prog() < 8 and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    state = f"frames_done={prog()} exited_before_signal={p.poll()} after {time.time() - t0:.1f}s"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, f"{state}; exit {p.returncode}; stderr: {err[-500:]}"
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert not out.exists()


def make_frames(folder: Path, n: int) -> None:
    from skimage import io

    folder.mkdir()
    for i in range(n):
        io.imsave(folder / f"f{i}.png", frame_pattern(i, 96, 64)[..., 0], check_contrast=False)


def test_frames_kill9_resume_is_identical(tmp_path, random_weights):
    src = tmp_path / "in"
    make_frames(src, N_FRAMES)
    ref = tmp_path / "ref"
    r = subprocess.run(cli("frames", str(src), str(ref), "--weights", str(random_weights), *OPTS), env=env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    cmd = cli("frames", str(src), str(out), "--weights", str(random_weights), *OPTS)

    def prog() -> int:
        return len([p for p in out.glob("f*.png")]) if out.exists() else 0

    random.seed(3)
    codes = []
    for target in sorted(random.sample(range(2, N_FRAMES - HOLD), 3)):
        codes.append(run_and_kill(cmd, prog, target))
        if codes[-1] == 0:  # on a fast machine a run can finish before its kill point
            break
    assert -signal.SIGKILL in codes, codes
    if codes[-1] != 0:
        r = subprocess.run(cmd, env=env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in ref.iterdir())
    assert names == sorted(p.name for p in out.iterdir())  # no temp files or manifest left
    for n in names:
        assert (ref / n).read_bytes() == (out / n).read_bytes(), n


def test_finished_checkpoint_with_a_lost_segment_is_redone(tmp_path):
    from vidcolor.job import VideoJob

    out = tmp_path / "out.mp4"
    job = VideoJob(out, {"k": 1})
    for k in range(3):
        job.temp_segment(k).write_bytes(b"x")
        job.commit_segment(k, 8 * k, 8)
    job.mark_complete(24)
    job.release()  # the run that wrote it has ended
    (job.dir / "seg_000001.mp4").unlink()  # deleted by hand
    again = VideoJob(out, {"k": 1})
    assert again.frames_done == 8 and [s["file"] for s in again.state["segments"]] == ["seg_000000.mp4"]
    assert not again.complete  # so the run colours frames 8 on again, instead of muxing a gap


def test_a_swallowed_stop_signal_still_stops_the_job(tmp_path, random_weights, one_model):
    """Ctrl-C can land in a weakref callback, where Python prints its KeyboardInterrupt and drops it
    (the CI failure of session 8); the frame loops must still stop, save, and say how to resume."""
    from vidcolor import errors
    from vidcolor.pipeline import Settings, colorize_frames, colorize_video

    src = tmp_path / "in"
    make_frames(src, 6)
    clip = tmp_path / "in.mp4"
    make_clip(clip, n=24, w=64, h=48)
    s = Settings(weights=str(random_weights), batch_size=2, render_size=32)
    try:
        for run in (lambda: colorize_frames(src, tmp_path / "out", s, progress=False),
                    lambda: colorize_video(clip, tmp_path / "out.mp4", s, progress=False)):
            try:  # what the interpreter does with an exception raised inside a weakref callback
                errors.on_stop_signal(2, None)
            except KeyboardInterrupt:
                pass
            with pytest.raises(errors.Interrupted, match="run the same command again to resume"):
                run()
        assert not (tmp_path / "out.mp4").exists()
        assert len(list((tmp_path / "out").glob("*.png"))) < 6
        from vidcolor.evaluate import evaluate
        with pytest.raises(KeyboardInterrupt):  # the eval loop stops too, instead of running to the end
            evaluate(src, src)
    finally:
        errors.reset_interrupted()
    res = colorize_frames(src, tmp_path / "out", s, progress=False)  # resumes and finishes
    assert len(list((tmp_path / "out").glob("*.png"))) == 6 and res.frames >= 1


def test_a_dropped_stop_signal_prints_no_traceback(monkeypatch):
    """Python reports a KeyboardInterrupt it had to drop with a traceback on stderr; once the stop is
    recorded, that report is noise for the user, while other dropped exceptions are still shown."""
    import sys
    from types import SimpleNamespace

    from vidcolor import errors

    def dropped(exc: BaseException) -> SimpleNamespace:
        return SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None, err_msg=None,
                               object="a weakref callback")

    reported = []
    monkeypatch.setattr(sys, "__unraisablehook__", lambda u: reported.append(u.exc_type))
    errors.quiet_unraisable(dropped(KeyboardInterrupt()))  # no stop recorded: Python's report stands
    try:
        try:
            errors.on_stop_signal(2, None)
        except KeyboardInterrupt as e:
            errors.quiet_unraisable(dropped(e))
        errors.quiet_unraisable(dropped(ValueError("other")))
    finally:
        errors.reset_interrupted()
    assert reported == [KeyboardInterrupt, ValueError]


def test_kill_after_the_final_rename_is_recognised_as_finished(tmp_path, monkeypatch, random_weights):
    """A kill between renaming OUTPUT into place and removing the job folder: the same command then
    reports the output finished and removes the leftover folder, instead of refusing to overwrite
    its own product and leaving a hidden copy of every segment on disk."""
    from vidcolor import Settings, VidcolorError, colorize_video
    from vidcolor.job import VideoJob, job_dir

    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=12, w=96, h=64)
    settings = Settings(weights=str(random_weights), batch_size=4, render_size=64)
    logs: list[str] = []

    def run(s: Settings = settings):
        return colorize_video(src, out, s, segment_frames=8, progress=False, log=logs.append)
    with monkeypatch.context() as m:
        m.setattr(VideoJob, "remove", lambda self: None)  # the kill: the folder is never removed
        run()
    assert job_dir(out).is_dir()
    done = out.read_bytes()
    res = run()
    assert res.frames == 12 and "already finished" in logs[-1]
    assert not job_dir(out).exists() and out.read_bytes() == done

    with monkeypatch.context() as m:  # the same leftover, but the command has changed: a plain refusal
        m.setattr(VideoJob, "remove", lambda self: None)
        colorize_video(src, out, settings, segment_frames=8, progress=False, log=logs.append, overwrite=True)
    assert job_dir(out).is_dir()
    with pytest.raises(VidcolorError, match="output exists"):
        run(Settings(weights=str(random_weights), batch_size=4, render_size=80))
    assert not job_dir(out).exists()

    out.write_bytes(b"a file the user put there")  # a folder whose record does not match is not this case
    job_dir(out).mkdir()
    (job_dir(out) / "manifest.json").write_text('{"written": {"size": 1, "mtime_ns": 1, "inode": 1}}')
    with pytest.raises(VidcolorError, match="output exists"):
        run()
    assert out.read_bytes() == b"a file the user put there"
