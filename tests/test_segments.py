"""Segments and chunks carry a shot's colour (issue 35): no colour pop where a segment or a Ray chunk
starts, the same frames whatever --segment-frames, and resumes that stay bit-exact."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidcolor import pipeline, stream
from vidcolor.settings import EncodeOptions
from vidcolor.errors import Interrupted, JobMismatch
from vidcolor.job import job_dir
from vidcolor.pipeline import Settings, colorize_frames, colorize_video
from vidcolor.temporal_metrics import frame_changes, seam_figures

from .conftest import frame_pattern, read_video, write_pictures

LOSSLESS = EncodeOptions(crf=0, preset="ultrafast")  # so that only the colours can differ between two runs


def _static_clip(path: Path, n: int, w: int = 96, h: int = 64) -> None:
    """A still shot: the same grey picture ``n`` times."""
    write_pictures(path, [frame_pattern(0, w, h)] * n)


@pytest.fixture()
def flickering(monkeypatch: pytest.MonkeyPatch, one_model: None) -> None:
    """The untrained network's colour is nearly flat: add colour and noise per frame (seeded by the frame,
    so every run sees the same), as a real network's colour wanders, so that carrying shows."""
    real = stream._predict_batch

    def noisy(engine, batch, guides, yuv=None, context=None):  # noqa: ANN001, ANN202
        items = real(engine, batch, guides, yuv, context)
        for it in items:
            g = torch.Generator().manual_seed(it.index)
            it.ab = it.ab + 20.0 + 12.0 * torch.randn(it.ab.shape, generator=g)
        return items
    monkeypatch.setattr(stream, "_predict_batch", noisy)


def _settings(weights: Path, **kw) -> Settings:  # noqa: ANN003
    return Settings(**{"weights": str(weights), "batch_size": 4, "render_size": 64, "keyframes": "auto", **kw})


def _video(src: Path, out: Path, weights: Path, segment_frames: int, **kw) -> pipeline.Result:  # noqa: ANN003
    return colorize_video(src, out, _settings(weights, **kw), LOSSLESS, segment_frames=segment_frames,
                          progress=False, log=lambda s: None)


def _spikes(frames: list[np.ndarray], starts: list[int]) -> list[float]:
    """The a,b change into each start frame over the median change within 12 frames of it."""
    ab, L = frame_changes(frames)
    return [r["ratio"] for r in seam_figures(ab, L, starts)]


@pytest.fixture(scope="module")
def still(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("still") / "still.mp4"
    _static_clip(p, 132)
    return p


def test_no_colour_pop_at_segment_starts_and_segment_size_changes_nothing(still, tmp_path, random_weights,
                                                                         flickering):
    """On a still shot the colour must not jump where a segment starts (the carrier used to restart there),
    and two runs with other segment sizes give the same frames."""
    _video(still, tmp_path / "s60.mp4", random_weights, 60)
    _video(still, tmp_path / "s240.mp4", random_weights, 240)
    a, b = (read_video(tmp_path / n)["frames"] for n in ("s60.mp4", "s240.mp4"))
    assert len(a) == len(b) == 132
    ratios = _spikes(a, [60, 120])
    assert max(ratios) <= 2.0, ratios
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"frame {i} differs"


def test_a_crash_between_state_and_record_resumes_exactly(still, tmp_path, monkeypatch, random_weights, flickering):
    """A kill after a segment and its state are renamed into place but before the manifest records
    them: the resume redoes that segment from the state recorded before it, and the result is the
    uninterrupted run's, bit for bit. A damaged state file is never trusted."""
    from vidcolor import job as jobmod

    ref = tmp_path / "ref.mp4"
    _video(still, ref, random_weights, 8, temporal_window=3)
    out = tmp_path / "out.mp4"
    real, calls = jobmod.write_json_atomic, [0]

    def dies(path, obj):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] == 5:  # the record of segment 4, after its state file and segment file are in place
            raise KeyboardInterrupt
        real(path, obj)
    with monkeypatch.context() as m:
        m.setattr(jobmod, "write_json_atomic", dies)
        with pytest.raises(Interrupted):
            _video(still, out, random_weights, 8, temporal_window=3)
    folder = job_dir(out)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["frames_done"] == 32 and man["segments"][-1]["state"]["file"] == "state_000003.npz"
    assert (folder / "state_000004.npz").is_file()  # written, but not recorded: not used
    assert _video(still, out, random_weights, 8, temporal_window=3).resumed_at == 32
    assert all(np.array_equal(x, y) for x, y in zip(read_video(out)["frames"], read_video(ref)["frames"]))

    out2 = tmp_path / "out2.mp4"
    with monkeypatch.context() as m:
        m.setattr(jobmod, "write_json_atomic", dies)
        calls[0] = 0
        with pytest.raises(Interrupted):
            _video(still, out2, random_weights, 8, temporal_window=3)
    (job_dir(out2) / "state_000003.npz").write_bytes(b"damaged")
    res = _video(still, out2, random_weights, 8, temporal_window=3)
    assert res.resumed_at == 0  # the only state kept was damaged: coloured again from the start
    assert all(np.array_equal(x, y) for x, y in zip(read_video(out2)["frames"], read_video(ref)["frames"]))


def _interrupted_job(monkeypatch: pytest.MonkeyPatch, run, out: Path) -> Path:  # noqa: ANN001
    """Run ``run`` with Ctrl-C after 20 frames written; the unfinished job's manifest path."""
    calls = [0]
    real = pipeline.SegmentWriter

    class Stopping(real):
        def write(self, image, pts):  # noqa: ANN001, ANN202
            calls[0] += 1
            if calls[0] > 20:
                raise KeyboardInterrupt
            super().write(image, pts)
    with monkeypatch.context() as m:
        m.setattr(pipeline, "SegmentWriter", Stopping)
        with pytest.raises(Interrupted):
            run()
    return job_dir(out) / "manifest.json"


def test_a_job_begun_under_the_old_rule_is_refused_clearly(still, tmp_path, monkeypatch, random_weights, one_model):
    out = tmp_path / "out.mp4"
    man_path = _interrupted_job(monkeypatch, lambda: _video(still, out, random_weights, 8), out)
    man = json.loads(man_path.read_text())
    man["version"], man["spec"]["keyframe_carrier"] = 1, 4  # what vidcolor wrote before this change
    for seg in man["segments"]:
        seg.pop("state")
    man_path.write_text(json.dumps(man))
    with pytest.raises(JobMismatch, match="older vidcolor.*--restart"):
        _video(still, out, random_weights, 8)


def test_a_guided_job_begun_under_the_old_guide_rule_is_refused_clearly(still, tmp_path, monkeypatch,
                                                                      random_weights, one_model):
    """Pinned frames are coloured differently since guide rules 2 and 3 (pins_in_net, the spread, full-colour pins): a job
    with pins begun before must not resume and mix two colourings; it says so and names --restart."""
    hints = tmp_path / "pins.json"
    hints.write_text(json.dumps([{"frame": 3, "x": 10, "y": 10, "rgb": [200, 40, 40]}]))
    out = tmp_path / "out.mp4"
    man_path = _interrupted_job(monkeypatch, lambda: _video(still, out, random_weights, 8, hints=str(hints)), out)
    man = json.loads(man_path.read_text())
    assert man["spec"]["guide_rule"] == 3
    del man["spec"]["guide_rule"]  # what vidcolor wrote before the rule was recorded
    man_path.write_text(json.dumps(man))
    with pytest.raises(JobMismatch, match="guide_rule: None -> 3.*--restart"):
        _video(still, out, random_weights, 8, hints=str(hints))


def test_frame_folder_resumes_from_its_kept_state(tmp_path, monkeypatch, random_weights, flickering):
    """A frame folder keeps the carrier's state every checkpoint period (here 8 frames); a resume goes on
    from the last one kept and gives the uninterrupted run's frames, bit for bit."""
    from skimage import io

    src = tmp_path / "in"
    src.mkdir()
    for i in range(40):
        io.imsave(src / f"f{i:03d}.png", frame_pattern(i, 96, 64)[..., 0], check_contrast=False)
    monkeypatch.setattr(pipeline, "DEFAULT_SEGMENT", 8)
    s = _settings(random_weights)
    colorize_frames(src, tmp_path / "ref", s, progress=False)
    out = tmp_path / "out"
    real, calls = pipeline.frameio.write_frame, [0]

    def dies(*a):  # noqa: ANN002, ANN202
        calls[0] += 1
        if calls[0] > 21:
            raise KeyboardInterrupt
        real(*a)
    with monkeypatch.context() as m:
        m.setattr(pipeline.frameio, "write_frame", dies)
        with pytest.raises(Interrupted):
            colorize_frames(src, out, s, progress=False)
    assert [p.name for p in out.glob(".vidcolor-state-*")] == [".vidcolor-state-000000016.npz"]
    assert colorize_frames(src, out, s, progress=False).resumed_at == 21
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert names == sorted(p.name for p in out.iterdir())  # no state or manifest left
    for n in names:
        assert (tmp_path / "ref" / n).read_bytes() == (out / n).read_bytes(), n


def test_chunk_starts_inside_a_shot_show_no_pop(tmp_path, monkeypatch, random_weights, flickering):
    """A Ray chunk cannot wait for the state of the chunk before it: it starts its carrier WARM frames
    early. Inside a still shot its first frame then follows the one before it (written by the chunk
    before, as in one run) without a pop, where a carrier started at the chunk's first frame jumps."""
    from vidcolor.chunks import VideoTask
    from vidcolor.settings import RunOptions
    from vidcolor.keyframes import WARM

    src = tmp_path / "still.mp4"
    n, first = WARM + 40, (WARM + 16) // 8  # the chunk starts past WARM, so it does not warm from frame 0
    _static_clip(src, n, 64, 48)
    settings = _settings(random_weights, render_size=32)
    VideoTask(src, tmp_path / "one.mp4", RunOptions(settings, LOSSLESS, segment_frames=8)).run()
    one = read_video(tmp_path / "one.mp4")["frames"]
    s = first * 8

    def chunk_frames(name: str) -> list[np.ndarray]:
        task = VideoTask(src, tmp_path / name, RunOptions(settings, LOSSLESS, segment_frames=8))
        task.run((first, None))
        segs = sorted(job_dir(task.output).glob("seg_*.mp4"))
        return [f for seg in segs for f in read_video(seg)["frames"]]
    with monkeypatch.context() as m:
        m.setattr(pipeline, "CARRIER_WARM", 0)  # no warm-up: the old, restarting behaviour
        cold = one[:s] + chunk_frames("cold.mp4")
    warm = one[:s] + chunk_frames("warm.mp4")
    assert len(cold) == len(warm) == n
    assert _spikes(cold, [s])[0] > 2.0, _spikes(cold, [s])  # the test can see a pop
    assert _spikes(warm, [s])[0] <= 2.0, _spikes(warm, [s])
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(warm[s:], one[s:]))
    assert diff <= 2, diff  # within one step of U, V (up to 2 in RGB) of the single run's frames
