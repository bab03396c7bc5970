"""Steady scene context (vidcolor.context): steadier vectors, cuts and hints keep their own, exact resumes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidcolor.context import SceneContext
from vidcolor.errors import Interrupted, JobMismatch
from vidcolor.pipeline import Settings, colorize_video

from .conftest import make_clip, read_video
from .test_keyframes import _interrupt_after

SHAPE = (32, 48)


def _feed(ctx: SceneContext, g: torch.Tensor, batch: int = 4, start: int = 0,
          hinted: set[int] = frozenset()) -> torch.Tensor:
    """Filter the rows of ``g`` (frames start, start+1, ...) batch by batch, as the engine does."""
    out = []
    for i in range(0, len(g), batch):
        idx = list(range(start + i, start + min(i + batch, len(g))))
        b = ctx.bind(idx, SHAPE, [j in hinted for j in idx])
        out.append(b(g[i:i + len(idx)]))
        b.commit()
    return torch.cat(out)


def _wander(n: int, seed: int = 0, base: torch.Tensor | None = None, rel: float = 0.05) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(16, generator=gen) + 0.5 if base is None else base
    return base + rel * base.norm() / 4 * torch.randn(n, 16, generator=gen)


def test_a_steady_scene_is_left_alone_and_a_wandering_one_is_steadied():
    const = torch.rand(16).expand(30, 16).contiguous()
    assert torch.allclose(_feed(SceneContext(), const), const, atol=1e-6)
    g = _wander(60)
    out = _feed(SceneContext(), g)
    jitter = lambda x: (x[1:] - x[:-1]).norm(dim=1)[20:].mean()  # noqa: E731  after the first second
    assert jitter(out) < 0.35 * jitter(g), (jitter(out), jitter(g))
    assert torch.equal(out[0], g[0])  # nothing before the first frame


def test_a_cut_starts_from_its_own_context():
    a = _wander(12, seed=1)
    b = _wander(12, seed=2, base=torch.rand(16, generator=torch.Generator().manual_seed(9)) * 3)
    out = _feed(SceneContext(), torch.cat([a, b]))
    # the new shot's first frame barely sees the old shot (its weights are exp(-(d / sigma)^2) ~ 0)
    assert (out[12] - b[0]).norm() < 1e-3 * b[0].norm()
    assert (out[18] - b[:7].mean(0)).norm() < (out[18] - a.mean(0)).norm() / 10


def test_hinted_frames_keep_their_own_vector_and_gaps_break_the_run():
    g = _wander(16, seed=3)
    out = _feed(SceneContext(), g, hinted={5})
    assert torch.equal(out[5], g[5])
    assert torch.equal(out[6], g[6])  # the hinted frame broke the run: nothing before 6 counts
    assert not torch.equal(out[7], g[7])
    ctx = SceneContext()
    _feed(ctx, g[:8])
    later = _feed(ctx, g[8:], start=20)  # frames 20.. after a gap
    assert torch.equal(later[0], g[8])


def test_batching_and_a_failed_batch_do_not_change_the_result():
    g = _wander(40, seed=4)
    ref = _feed(SceneContext(), g, batch=8)
    assert torch.equal(_feed(SceneContext(), g, batch=1), ref)
    ctx = SceneContext()
    _feed(ctx, g[:16], batch=8)
    failed = ctx.bind(list(range(16, 24)), SHAPE, [False] * 8)
    failed(g[16:24])  # ran out of memory later in the network: never committed
    assert torch.equal(_feed(ctx, g[16:], batch=4, start=16), ref[16:])


def test_only_the_last_second_counts():
    """What makes a resume exact: a frame's vector depends on the history frames before it, no more."""
    g = _wander(60, seed=5)
    ctx = SceneContext()
    full = _feed(ctx, g)
    start = 40
    again = _feed(SceneContext(), g[start - ctx.history:], start=start - ctx.history)
    assert torch.equal(again[ctx.history:], full[start:])
    short = _feed(SceneContext(), g[start - ctx.history + 1:], start=start - ctx.history + 1)
    assert not torch.equal(short[ctx.history - 1:], full[start:])


@pytest.fixture(scope="module")
def context_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained network whose output depends on its input. PyTorch's default init shrinks the
    signal at every layer, so the plain random network gives nearly the same ab for any frame and
    its scene vector moves by 0.07% between frames, too little to change an 8-bit pixel; with the
    weights at He gain (x sqrt(6) of the default bound) the signal, and the vector's effect, survive."""
    from vidcolor.model import build_model, default_config

    torch.manual_seed(0)
    model = build_model(default_config("vidcolor")).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight *= 6 ** 0.5
    path = tmp_path_factory.mktemp("w") / "context.pt"
    torch.save({"config": model.config, "model": model.state_dict()}, path)
    return path


@pytest.mark.parametrize("window", [0, 3])
def test_resume_with_a_steady_context_equals_an_uninterrupted_run(tmp_path, monkeypatch, context_weights, window):
    src = tmp_path / "in.mp4"
    make_clip(src, n=40, w=96, h=64)

    def run(out: Path, **kw) -> object:  # noqa: ANN003
        s = Settings(**{"weights": str(context_weights), "batch_size": 4, "render_size": 64, "temporal_window": window,
                        "scene_context": "steady", **kw})
        return colorize_video(src, out, s, segment_frames=8, progress=False, log=lambda s: None)
    run(tmp_path / "ref.mp4")
    run(tmp_path / "off.mp4", scene_context="off")
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _interrupt_after(m, 27)  # mid-segment: frames 24.. are coloured again
        with pytest.raises(Interrupted):
            run(out)
    with pytest.raises(JobMismatch, match="scene_context"):  # the other rule would mix two colourings
        run(out, scene_context="off")
    assert run(out).resumed_at == 24
    ref, got, off = (read_video(p)["frames"] for p in (tmp_path / "ref.mp4", out, tmp_path / "off.mp4"))
    assert len(got) == len(ref) == 40
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert not all(np.array_equal(a, b) for a, b in zip(off, ref))  # the context did change the colour


def test_chunked_run_with_a_steady_context_equals_one_run(tmp_path, context_weights):
    """Chunks start at segment boundaries and re-predict the frames before them, context history included."""
    from vidcolor.chunks import VideoTask, colorize_chunked
    from vidcolor.settings import RunOptions

    src = tmp_path / "in.mp4"
    make_clip(src, n=38, w=96, h=64)
    s = Settings(weights=str(context_weights), batch_size=4, render_size=64, scene_context="steady")
    task = lambda out: VideoTask(src, out, RunOptions(s, segment_frames=8))  # noqa: E731
    task(tmp_path / "one.mp4").run()
    colorize_chunked(task(tmp_path / "chunked.mp4"), chunk_frames=16)
    a, b = (read_video(tmp_path / n)["frames"] for n in ("one.mp4", "chunked.mp4"))
    assert len(a) == len(b) == 38
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
