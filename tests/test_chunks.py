"""Chunked colouring (the Ray path's unit of work) equals one uninterrupted run, frame for frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidcolor.chunks import VideoTask, colorize_chunked, plan_chunks
from vidcolor.job import job_dir
from vidcolor.settings import RunOptions, Settings

from .conftest import SHIPPED, frame_pattern, make_clip, read_video, write_pictures


def test_plan_chunks_are_segment_aligned_and_cover_the_film():
    def ranges(chunks):
        assert all(c.carrier_from is None for c in chunks)  # placed later, by place_chunks
        return [(c.first, c.stop) for c in chunks]

    assert ranges(plan_chunks(100, 8, 16)) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, None)]
    assert ranges(plan_chunks(100, 8, 20)) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, None)]
    assert ranges(plan_chunks(16, 8, 16)) == [(0, None)]  # one chunk's worth: not split
    assert ranges(plan_chunks(0, 8, 16)) == [(0, None)]   # unknown length: not split
    assert ranges(plan_chunks(100, 8, 1)) == [(k, k + 1) for k in range(12)] + [(12, None)]


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


def _two_shot_clip(path: Path, n: int, cut: int) -> None:
    """The moving stripes, then from frame ``cut`` a disc moving over a ramp: one hard cut."""
    def disc(i: int) -> np.ndarray:
        y, x = np.mgrid[0:64, 0:96]
        v = 30 + 2 * x + 120 * (((x - i) ** 2 + (y - 32) ** 2) < 200)
        return np.stack([np.clip(v, 0, 255).astype(np.uint8)] * 3, -1)
    write_pictures(path, (frame_pattern(i, 96, 64) if i < cut else disc(i) for i in range(n)))


def test_place_chunks_moves_boundaries_to_just_after_cuts():
    from vidcolor.cuts import place_chunks

    plan = [(0, 4), (4, 8), (8, None)]  # segments of 8 frames, chunks of 32
    # a cut at 30: the boundary at 32 stays (2 frames after it); a cut at 75 pulls the one at 64 to 80
    assert place_chunks(plan, 8, [30, 75], warm=40) == [(0, 4, 0), (4, 10, 30), (10, None, 75)]
    # no cut near: the planned boundaries, each chunk's carrier warmed ``warm`` frames (or from 0)
    assert place_chunks(plan, 8, [], warm=40) == [(0, 4, 0), (4, 8, 0), (8, None, 24)]
    assert place_chunks([(0, None)], 8, [5], warm=40) == [(0, None, 0)]


def test_chunks_that_start_after_a_cut_equal_one_run(tmp_path, random_weights, monkeypatch):
    """The cut pass finds the cut, the boundary moves there, and the chunk's carrier starts at the cut,
    not at frame 0: its frames are one run's, bit for bit. Started at its first frame instead (the old
    rule), the same chunk differs."""
    from vidcolor.chunks import chunks_for, join, prepare
    from vidcolor.cuts import find_cuts
    from vidcolor.settings import EncodeOptions

    src = tmp_path / "in.mp4"
    _two_shot_clip(src, 72, 30)
    assert find_cuts(src, 0.5) == [30]

    def task(out: Path) -> VideoTask:
        return VideoTask(src, out, RunOptions(Settings(weights=str(SHIPPED), batch_size=4, render_size=64),
                                              EncodeOptions(crf=0, preset="ultrafast"), segment_frames=8))
    task(tmp_path / "one.mp4").run()
    one = read_video(tmp_path / "one.mp4")["frames"]
    monkeypatch.setattr("vidcolor.chunks.WARM", 8)  # so no chunk simply warms up from frame 0
    t = task(tmp_path / "chunked.mp4")
    plan = chunks_for(t, 24)
    assert plan == [(0, 4, 0), (4, 6, 30), (6, None, 40)], plan
    prepare(t, plan)
    for c in plan:
        t.run(c)
    join(t, plan)
    got = read_video(tmp_path / "chunked.mp4")["frames"]
    assert len(got) == len(one) == 72
    for i in range(48):  # up to the third chunk, which starts inside a shot after a short warm-up
        assert np.array_equal(got[i], one[i]), f"frame {i} differs"

    t2 = task(tmp_path / "cold.mp4")
    t2.run((5, 6, 40))  # a chunk 10 frames after the cut, its carrier started at its first frame (the old rule)
    segs = sorted(job_dir(t2.output).glob("seg_*.mp4"))
    cold = [f for s in segs for f in read_video(s)["frames"]]
    assert len(cold) == 8 and not all(np.array_equal(a, b) for a, b in zip(cold, one[40:48]))
