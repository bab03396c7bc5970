"""Shot-consistent colour (vidcolor.keyframes): steadier colour, cuts, frame-exact resume, refused changes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidcolor import pipeline, stream
from vidcolor.errors import Interrupted, JobMismatch
from vidcolor.keyframes import Carrier, CarriedState
from vidcolor.pipeline import Settings, colorize_video
from vidcolor.temporal import Item

from .conftest import frame_pattern, make_clip, read_video, run_cli


def _L(i: int, still: bool = True, shift: int = 0) -> torch.Tensor:
    """(1, 48, 64) L of a textured picture; ``shift`` moves to an unrelated picture (another shot)."""
    img = frame_pattern(0 if still else i, 64 + shift, 48)[:, shift:, 0].astype(np.float32)
    if shift:
        img = 255.0 - np.rot90(img, 2)  # other layout and tones: a hard cut
    return torch.from_numpy(img.copy() / 2.55)[None]


def _noisy_ab(i: int, base: float) -> torch.Tensor:
    """A network that flickers: the same colour plus fresh noise every frame (seeded by the frame)."""
    g = torch.Generator().manual_seed(100 + i)
    return base + 8.0 * torch.randn(2, 48, 64, generator=g)


def _run(carrier: Carrier, items: list[Item]) -> list[torch.Tensor]:
    out = [o for it in items for o in carrier.push(it)] + carrier.flush()
    assert [o.index for o in out] == [it.index for it in items]
    return [o.ab for o in out]


def test_carried_colour_is_steadier_on_a_still_shot():
    n = 20
    raw = [_noisy_ab(i, 10.0) for i in range(n)]
    carrier = Carrier(period=1000)
    out = _run(carrier, [Item(i, _L(i), raw[i].clone()) for i in range(n)])
    change = lambda abs_: float(np.mean([(abs_[i] - abs_[i - 1]).abs().mean() for i in range(1, n)]))  # noqa: E731
    assert change(out) < 0.5 * change(raw), (change(out), change(raw))
    assert carrier.keys[0] == 0


def test_a_breathing_colour_is_held_through_the_shot():
    """The network's colour swings slowly (a period of 24 frames) on a still shot: frame-to-frame
    smoothing cannot remove that, a running mean over the shot does."""
    n = 72
    raw = [_noisy_ab(i, 10.0 + 6.0 * float(np.sin(2 * np.pi * i / 24))) for i in range(n)]
    carrier = Carrier(period=1000)
    out = _run(carrier, [Item(i, _L(i), raw[i].clone()) for i in range(n)])
    swing = lambda abs_: float(np.std([float(x.mean()) for x in abs_[24:]]))  # noqa: E731
    assert swing(out) < 0.6 * swing(raw), (swing(out), swing(raw))  # the session-10 rule: 0.92
    assert carrier.keys == [0]  # one shot, one keyframe


def test_look_ahead_steadies_the_start_of_a_shot():
    """Forward only, a shot's first frames have little history behind them and keep most of the
    network's noise; carried back from the frames after them, they are as steady as the rest."""
    n = 40
    raw = [_noisy_ab(i, 10.0) for i in range(n)]
    err = {}
    for ahead in (0, 8):
        out = _run(Carrier(period=1000, ahead=ahead), [Item(i, _L(i), raw[i].clone()) for i in range(n)])
        err[ahead] = float(np.mean([(out[i] - 10.0).abs().mean() for i in range(3)]))
    assert err[8] < 0.5 * err[0], err


def test_no_step_at_block_edges():
    """The network's colour drifts slowly on a still shot. Frames are emitted in blocks, and each
    block's frames see a different span of frames ahead; the colour carried back must still change
    smoothly across a block edge (one backward pass per block stepped there, 5x the median change)."""
    b, n = 8, 96
    raw = [torch.full((2, 48, 64), 0.25 * i) for i in range(n)]
    out = _run(Carrier(period=1000, ahead=b), [Item(i, _L(i), raw[i].clone()) for i in range(n)])
    change = np.abs([float((out[i] - out[i - 1]).mean()) for i in range(1, n)])
    assert change.max() < 1.5 * np.median(change), (change.argmax() + 1, change.max(), np.median(change))


@pytest.mark.parametrize("resume", [20, 40, 44])
def test_a_restored_carrier_equals_the_uninterrupted_one(resume):
    """A resumed run feeds the carrier from two frames before its checkpoint and restores the state the
    uninterrupted run left there (through its checkpoint file's arrays): from there on its output must
    be the uninterrupted run's, bit for bit, wherever the checkpoint sits among the look-ahead blocks."""
    n, period = 70, 4
    raw = [_noisy_ab(i, 10.0 + 0.3 * i) for i in range(n)]
    whole_items = [Item(i, _L(i), raw[i].clone()) for i in range(n)]
    whole = _run(Carrier(period=period, ahead=8), whole_items)
    state = CarriedState.from_arrays(whole_items[resume - 1].carry.arrays())
    carrier = Carrier(period=period, ahead=8)
    start = carrier.warm_from(resume)
    carrier.restore(resume, state)
    part = _run(carrier, [Item(i, _L(i), raw[i].clone()) for i in range(start, n)])
    for i in range(resume, n):
        assert torch.equal(part[i - start], whole[i]), i
    fresh = Carrier(period=period, ahead=8)  # without the state, the colour would jump here
    cold = _run(fresh, [Item(i, _L(i), raw[i].clone()) for i in range(start, n)])
    assert not torch.equal(cold[resume - start], whole[resume])
    assert carrier.keys[0] == start and resume not in carrier.keys  # no keyframe at the checkpoint


def test_new_content_is_not_outvoted_by_a_long_history():
    """A bright square appears at frame 30 of a still shot, in a colour of its own: however much
    history stands behind the old colour there, the square takes the network's colour at once."""
    n = 34
    items = []
    for i in range(n):
        L, ab = _L(i), torch.full((2, 48, 64), 10.0)
        if i >= 30:
            L[:, 16:32, 20:40] = 95.0
            ab[:, 16:32, 20:40] = -40.0
        items.append(Item(i, L, ab))
    out = _run(Carrier(period=1000), items)
    inner = out[30][:, 20:28, 24:36]  # away from the square's edge, where half-size maps blur
    assert float(inner.mean()) < -30.0, float(inner.mean())
    assert abs(float(out[30][:, :, :10].mean()) - 10.0) < 0.5  # the rest keeps its colour


def test_a_cut_starts_a_new_keyframe():
    items = [Item(i, _L(i, shift=16 if i >= 10 else 0), _noisy_ab(i, 30.0 if i < 10 else -30.0)) for i in range(20)]
    carrier = Carrier(period=1000)
    out = _run(carrier, items)
    assert 10 in carrier.keys
    for i in range(10):  # shot 1 takes nothing from shot 2, whichever way colour is carried
        assert float(out[i].mean()) > 25.0, (i, float(out[i].mean()))
    for i in range(10, 20):  # shot 2 is carried from its own keyframe, near -30, never toward +30
        assert float(out[i].mean()) < -25.0, (i, float(out[i].mean()))
        assert float(out[i].max()) < 0.0


@pytest.fixture()
def flickering(monkeypatch: pytest.MonkeyPatch, one_model: None) -> None:
    """The untrained network's colour is almost flat, which the carrier cannot change: add noise per
    frame (seeded by the frame index, so every run sees the same) so that carrying shows."""
    real = stream._predict_batch

    def noisy(engine, batch, guides, yuv=None, context=None):  # noqa: ANN001, ANN202
        items = real(engine, batch, guides, yuv, context)
        for it in items:
            g = torch.Generator().manual_seed(it.index)
            it.ab = it.ab + 12.0 * torch.randn(it.ab.shape, generator=g)
        return items
    monkeypatch.setattr(stream, "_predict_batch", noisy)  # where stream_colour looks it up


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, frames: int) -> None:
    """Ctrl-C while the writer is given frame number ``frames`` of the run."""
    seen = [0]

    class Stopping(pipeline.SegmentWriter):
        def write(self, image, pts):  # noqa: ANN001, ANN202
            seen[0] += 1
            if seen[0] > frames:
                raise KeyboardInterrupt
            super().write(image, pts)
    monkeypatch.setattr(pipeline, "SegmentWriter", Stopping)


def _settings(weights: Path, **kw) -> Settings:  # noqa: ANN003
    return Settings(**{"weights": str(weights), "batch_size": 4, "render_size": 64, "keyframes": "auto", **kw})


@pytest.mark.parametrize("window", [0, 3])
def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, random_weights, flickering, window):
    src = tmp_path / "in.mp4"
    make_clip(src, n=40, w=96, h=64)
    def run(out: Path, **kw) -> pipeline.Result:  # noqa: ANN003
        return colorize_video(src, out, _settings(random_weights, temporal_window=window, **kw), segment_frames=8,
                              progress=False, log=lambda s: None)
    run(tmp_path / "ref.mp4")
    run(tmp_path / "off.mp4", keyframes="off")
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _interrupt_after(m, 19)  # mid-segment: frames 16.. are coloured again
        with pytest.raises(Interrupted):
            run(out)
    assert run(out).resumed_at == 16
    ref, got, off = (read_video(p)["frames"] for p in (tmp_path / "ref.mp4", out, tmp_path / "off.mp4"))
    assert len(got) == len(ref) == 40
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert not all(np.array_equal(a, b) for a, b in zip(off, ref))  # the carrier did change the colour


def test_a_changed_keyframe_setting_is_refused_on_resume(tmp_path, monkeypatch, random_weights, one_model):
    src = tmp_path / "in.mp4"
    make_clip(src, n=24, w=64, h=48)
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _interrupt_after(m, 9)
        with pytest.raises(Interrupted):
            colorize_video(src, out, _settings(random_weights), segment_frames=8, progress=False)
    base = ["video", src, out, "--weights", random_weights, "--segment-frames", "8", "--batch-size", "4",
            "--render-size", "64", "-q"]
    for change in (["--keyframes", "off"], ["--keyframes", "auto", "--keyframe-every", "5"]):
        code, err = run_cli(*base, *change)
        assert code == 3 and "keyframe" in err and "--restart" in err, (code, err)
    with pytest.raises(JobMismatch):
        colorize_video(src, out, _settings(random_weights, keyframe_every=5), segment_frames=8, progress=False)
    code, err = run_cli(*base, "--keyframes", "auto")
    assert code == 0, err
    assert len(read_video(out)["frames"]) == 24


def test_chunked_run_equals_one_run(tmp_path, random_weights, flickering):
    from vidcolor.chunks import VideoTask, colorize_chunked
    from vidcolor.settings import RunOptions

    src = tmp_path / "in.mp4"
    make_clip(src, n=38, w=96, h=64)  # the film ends inside the last chunk's look-ahead
    task = lambda out: VideoTask(src, out, RunOptions(_settings(random_weights, temporal_window=0), segment_frames=8))  # noqa: E731
    task(tmp_path / "one.mp4").run()
    colorize_chunked(task(tmp_path / "chunked.mp4"), chunk_frames=16)
    a, b = (read_video(tmp_path / n)["frames"] for n in ("one.mp4", "chunked.mp4"))
    assert len(a) == len(b) == 38
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
