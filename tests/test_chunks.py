"""Chunked colouring (the Ray path's unit of work) equals one uninterrupted run, frame for frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidcolor.chunks import VideoTask, colorize_chunked, plan_chunks
from vidcolor.job import job_dir
from vidcolor.settings import RunOptions, Settings

from .conftest import SHIPPED, make_clip, read_video


def test_plan_chunks_are_segment_aligned_and_cover_the_film():
    assert plan_chunks(100, 8, 16) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, None)]
    assert plan_chunks(100, 8, 20) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, None)]
    assert plan_chunks(16, 8, 16) == [(0, None)]  # one chunk's worth: not split
    assert plan_chunks(0, 8, 16) == [(0, None)]   # unknown length: not split
    assert plan_chunks(100, 8, 1) == [(k, k + 1) for k in range(12)] + [(12, None)]


@pytest.fixture(scope="module")
def clip72(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("c") / "in.mp4"
    make_clip(p, n=70, w=96, h=64)  # 70: the last segment and the last batch are partial
    return p


@pytest.fixture(scope="module")
def clip66(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("c") / "in66.mp4"
    make_clip(p, n=66, w=96, h=64)  # the film ends inside the look-ahead of the chunk ending at 64
    return p


def _task(src: Path, out: Path, weights: Path) -> VideoTask:
    return VideoTask(src, out, RunOptions(Settings(weights=str(weights), batch_size=4, render_size=64,
                                                   temporal_window=3), segment_frames=8))


@pytest.mark.parametrize("name,n", [("clip72", 70), ("clip66", 66)])
def test_chunked_run_equals_one_run(name, n, request, tmp_path):
    # The shipped weights, not the untrained net: its colours barely change from frame to frame, so a
    # chunk that skipped the smoother's warm-up or look-ahead came out the same in 8 bits (tried).
    clip = request.getfixturevalue(name)
    one = _task(clip, tmp_path / "one.mp4", SHIPPED).run()
    task = _task(clip, tmp_path / "chunked.mp4", SHIPPED)
    # 16 frames per chunk: 2 segments of 8, with batches of 4 and the smoother's 4 frames each side
    res = colorize_chunked(task, chunk_frames=16)
    assert res.frames == one.frames == n
    a, b = read_video(tmp_path / "one.mp4"), read_video(tmp_path / "chunked.mp4")
    assert len(a["frames"]) == len(b["frames"]) == n
    assert a["times"] == b["times"] and a["audio"] == b["audio"]
    for i, (x, y) in enumerate(zip(a["frames"], b["frames"])):
        assert np.array_equal(x, y), f"frame {i} differs"
    assert not job_dir(task.output).exists()


def test_merge_refuses_a_missing_chunk(clip72, random_weights, tmp_path):
    from vidcolor.errors import VidcolorError
    from vidcolor.job import merge_chunks

    task = _task(clip72, tmp_path / "out.mp4", random_weights)
    task.run((0, 2))
    with pytest.raises(VidcolorError, match="unfinished|missing"):
        merge_chunks(task.output, [(0, 2), (2, None)])  # chunk 2.. never ran
    man = job_dir(task.output) / "chunk_000000_000002.json"
    state = json.loads(man.read_text())
    assert [s["start"] for s in state["segments"]] == [0, 8] and state["total_frames"] is None
