"""The Ray path on a local two-CPU Ray: chunked reels equal one run, frame for frame, also when a worker
is killed in the middle of a chunk. Ray takes seconds to start on 2 cores, so one Ray serves the module."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray  # the `ray` extra: `scripts/setup.sh --test` installs it; the plain commands never need it
import torch

from vidcolor.batch import Item, Options
from vidcolor.batch_item import video_task
from vidcolor.job import job_dir
from vidcolor.pipeline import Settings

from .conftest import REPO, make_clip, read_video


SEG, CHUNK = 8, 48  # 6 segments a chunk, so a kill can land after a chunk's first segment and before its last


@pytest.fixture(scope="module")
def local_ray():
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS")}
    os.environ["PYTHONPATH"] = str(REPO)  # workers import this checkout's vidcolor
    os.environ["OMP_NUM_THREADS"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def reel(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("reel") / "reel.mp4"
    make_clip(p, n=140, w=96, h=64)  # 18 segments, the last one partial: chunks 0-6, 6-12, 12-end
    return p


def _opts(weights: Path) -> Options:
    return Options(Settings(weights=str(weights), batch_size=4, render_size=64, temporal_window=3), segment_frames=SEG)


@pytest.fixture(scope="module")
def reference(reel, random_weights, tmp_path_factory) -> dict:
    """One uninterrupted run in this process, with one thread as the Ray tasks use."""
    out = tmp_path_factory.mktemp("ref") / "ref.mp4"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        video_task(Item(reel, out, "video"), _opts(random_weights)).run()
    finally:
        torch.set_num_threads(n)
    return read_video(out)


def _same(ref: dict, path: Path) -> None:
    got = read_video(path)
    assert len(got["frames"]) == len(ref["frames"]) == 140
    assert got["times"] == ref["times"] and got["audio"] == ref["audio"]
    for i, (a, b) in enumerate(zip(ref["frames"], got["frames"])):
        assert np.array_equal(a, b), f"frame {i} differs"


def test_ray_batch_chunks_reels_and_isolates_failures(local_ray, reel, reference, random_weights, tmp_path):
    from vidcolor.cluster import run_ray

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    short = tmp_path / "short.mp4"
    make_clip(short, n=12)
    items = [Item(reel, tmp_path / "out" / "reel.mp4", "video"), Item(bad, tmp_path / "out" / "bad.mp4", "video"),
             Item(short, tmp_path / "out" / "short.mp4", "video")]
    rows = {r.item.input.name: r for r in run_ray(items, _opts(random_weights), chunk_frames=CHUNK)}
    assert rows["reel.mp4"].ok and rows["reel.mp4"].frames == 140
    assert rows["short.mp4"].ok and rows["short.mp4"].frames == 12
    assert rows["bad.mp4"].exit_code == 2 and "cannot read" in rows["bad.mp4"].error
    assert not (tmp_path / "out" / "bad.mp4").exists()
    _same(reference, tmp_path / "out" / "reel.mp4")
    assert not job_dir(tmp_path / "out" / "reel.mp4").exists()


def _chunk_workers() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().startswith(b"ray::colour_chunk"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def test_worker_killed_mid_chunk_is_retried_with_identical_frames(local_ray, reel, reference, random_weights,
                                                                   tmp_path):
    from vidcolor.cluster import run_ray

    out = tmp_path / "reel.mp4"
    rows: list = []
    t = threading.Thread(target=lambda: rows.extend(run_ray([Item(reel, out, "video")], _opts(random_weights),
                                                            chunk_frames=CHUNK)))
    t.start()
    killed: list[int] = []
    deadline = time.time() + 120
    while t.is_alive() and not killed and time.time() < deadline:
        for man in job_dir(out).glob("chunk_*.json"):
            try:
                state = json.loads(man.read_text())
            except (OSError, ValueError):
                continue
            if state["segments"] and not state.get("complete"):  # this chunk is between its segments
                for pid in _chunk_workers():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                break
        time.sleep(0.01)
    t.join(timeout=300)
    assert killed, "no chunk was caught mid-way"
    assert len(rows) == 1 and rows[0].ok, rows
    assert rows[0].status == "resumed"  # a retried chunk went on from its checkpoint, not from its start
    _same(reference, out)
