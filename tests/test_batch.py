"""`vidcolor batch` on this machine: inputs found and named, finished outputs skipped, unfinished ones
resumed, one bad file reported without stopping the others, and the exit code."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vidcolor.batch import Item, Row, exit_code, find_items, summary
from vidcolor.workers import Machine, plan_workers

from .conftest import cli, env, frame_pattern, make_clip, read_video
from .test_resume import N_LONG, run_and_kill, video_progress

OPTS = ["--batch-size", "4", "--render-size", "64", "--segment-frames", "8"]


def _tag(p: Path) -> str:
    return hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]


def test_inputs_are_found_and_named_predictably(tmp_path):
    root = tmp_path / "archive"
    (root / "reel1").mkdir(parents=True)
    (root / "reel2").mkdir()
    (root / "scans").mkdir()
    (root / ".hidden").mkdir()
    for p in (root / "reel1" / "a.mp4", root / "reel2" / "a.mp4", root / "b.webm", root / ".hidden" / "c.mp4",
              root / "notes.pdf"):
        p.write_bytes(b"x")
    (root / "scans" / "f1.png").write_bytes(b"x")
    (root / "dpx").mkdir()  # scans vidcolor cannot read: a frame folder, which then fails saying what to do
    (root / "dpx" / "r000001.dpx").write_bytes(b"x")
    (tmp_path / "nothing").mkdir()  # named, but holds neither videos nor frames: reported, not passed over
    (tmp_path / "nothing" / "notes.txt").write_text("x")
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "a.mp4").write_bytes(b"x")
    lst = tmp_path / "lists" / "todo.txt"
    lst.parent.mkdir()
    lst.write_text("# tonight\n../loose/a.mp4\n\n../archive/reel1/a.mp4\n../missing.mov\n")
    out = root / "colour"  # inside an input folder: never searched as input
    out.mkdir()
    (out / "old.mp4").write_bytes(b"x")
    got = {(it.kind, str(it.output.relative_to(out))) for it in find_items([root, lst, tmp_path / "nothing"], out)}
    assert got == {
        ("video", "reel1/a.mp4"), ("video", "reel2/a.mp4"),  # below a folder: the path below it
        ("video", "b.mkv"),  # x264 does not go in .webm
        ("frames", "scans"), ("frames", "dpx"),
        ("empty", "nothing"),
        ("video", "a.mp4"),  # a file named on its own keeps its name...
        ("missing", "missing.mov"),  # reported as failed, with the others done
    }  # reel1/a.mp4, named twice (in the folder and the list), is coloured once
    # ...until two inputs claim one name: each then gets its own input's hash, whatever the order
    a, b = tmp_path / "x" / "clip.mp4", tmp_path / "y" / "clip.mp4"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"x")
    names = {it.input.parent.name: it.output.name for it in find_items([b, a], tmp_path / "out")}
    assert names == {"x": f"clip~{_tag(a)}.mp4", "y": f"clip~{_tag(b)}.mp4"}


def test_workers_are_sized_to_the_machine():
    gib = 1 << 30
    assert vars(plan_workers(20, Machine(cores=2, gpus=0, memory=20 * gib))) == \
        {"workers": 2, "threads": 1, "gpus": [None, None]}  # two on two cores: one thread each
    assert plan_workers(1, Machine(2, 0, 20 * gib)).threads == 2  # one file gets both cores
    assert plan_workers(20, Machine(32, 0, 6 * gib)).workers == 4  # memory caps it
    p = plan_workers(20, Machine(16, 4, 64 * gib))
    assert (p.workers, p.threads, p.gpus) == (4, 4, [0, 1, 2, 3])  # one per GPU
    p = plan_workers(2, Machine(8, 0, 64 * gib), workers=8)  # more workers asked for than files
    assert (p.workers, p.threads) == (2, 4)  # the cores go to the workers that have a file


def test_summary_and_exit_code():
    ok = Row(Item(Path("a.mp4"), Path("/o/a.mp4"), "video"), "done", 0, 48, 4.0, ["input is in colour"])
    bad = Row(Item(Path("b.mp4"), Path("/o/b.mp4"), "video"), "failed", 4, error="damaged")
    text = summary([ok, bad], Path("/o"))
    assert "12.0" in text.splitlines()[1] and "failed (exit 4)" in text.splitlines()[2]
    assert "b.mp4: error: damaged" in text and "a.mp4: warning: input is in colour" in text
    assert exit_code([ok]) == 0 and exit_code([ok, bad]) == 1


@pytest.fixture()
def archive(tmp_path) -> Path:
    root = tmp_path / "in"
    for sub in ("day1", "day2"):
        (root / sub).mkdir(parents=True)
        make_clip(root / sub / "reel.mp4", n=20)  # the same name in two folders
    (root / "day2" / "broken.mp4").write_bytes(b"\x00" * 4096)
    scans = root / "scans"
    scans.mkdir()
    import imageio.v3 as iio

    for i in range(3):
        iio.imwrite(scans / f"s{i}.png", frame_pattern(i, 32, 24)[..., 0])
    return root


def test_batch_colours_skips_and_reports(archive, random_weights, tmp_path):
    out = tmp_path / "out"
    args = cli("batch", str(archive), "--out", str(out), "--weights", str(random_weights), "--workers", "2", *OPTS)
    r = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # the broken file fails, the rest is done
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith(str(archive))}
    assert "failed (exit 2)" in lines[str(archive / "day2" / "broken.mp4")]
    for sub in ("day1", "day2"):
        row = lines[str(archive / sub / "reel.mp4")].split()
        assert row[2] == "20" and row[4] == "done"
        assert len(read_video(out / sub / "reel.mp4")["frames"]) == 20
    assert sorted(p.name for p in (out / "scans").iterdir()) == ["s0.png", "s1.png", "s2.png"]
    assert "4 inputs: 3 coloured, 0 skipped (finished before), 1 failed" in r.stdout
    # run again without the broken file: everything is skipped and the exit code is 0
    (archive / "day2" / "broken.mp4").unlink()
    before = (out / "day1" / "reel.mp4").stat().st_mtime_ns
    r = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 inputs: 0 coloured, 3 skipped (finished before), 0 failed" in r.stdout
    assert (out / "day1" / "reel.mp4").stat().st_mtime_ns == before


def test_batch_resumes_an_unfinished_job_with_identical_frames(random_weights, tmp_path):
    src = tmp_path / "in" / "reel.mp4"
    src.parent.mkdir()
    n = N_LONG  # the keyframe carrier's look-ahead leaves a kill point mid-run
    make_clip(src, n=n, w=96, h=64)
    ref = tmp_path / "ref.mp4"
    r = subprocess.run(cli("video", str(src), str(ref), "--weights", str(random_weights), "-q", *OPTS), env=env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    killed = run_and_kill(cli("video", str(src), str(out / "reel.mp4"), "--weights", str(random_weights), "-q",
                              *OPTS), video_progress(out / "reel.mp4"), 16)
    assert killed != 0 and not (out / "reel.mp4").exists()  # an unfinished job is left
    r = subprocess.run(cli("batch", str(src.parent), "--out", str(out), "--weights", str(random_weights), *OPTS),
                       env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed" in r.stdout
    a, b = read_video(ref), read_video(out / "reel.mp4")
    assert len(a["frames"]) == len(b["frames"]) == n
    assert all(np.array_equal(x, y) for x, y in zip(a["frames"], b["frames"]))


def test_ray_is_only_imported_for_ray():
    code = ("import sys, vidcolor.cli, vidcolor.batch, vidcolor.batch_item, vidcolor.workers, vidcolor.chunks, "
            "vidcolor.cluster; assert 'ray' not in sys.modules, 'imported ray'")
    r = subprocess.run([*cli()[:1], "-c", code], env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
