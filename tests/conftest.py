"""Shared fixtures: tiny clips made with PyAV, and weights files made on the spot.

Pipeline mechanics are tested with an untrained network (fast, no dependency on
training); colour quality is tested with the shipped weights where it matters.
"""
from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np
import pytest
import torch

from vidcolor.testclips import TONE_RATE, write_tone
from vidcolor.model import build_model, default_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "weights" / "vidcolor.pt"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained default network, saved in the shipped file format."""
    torch.manual_seed(0)
    model = build_model(default_config("vidcolor"))
    model.eval()
    path = tmp_path_factory.mktemp("w") / "random.pt"
    torch.save({"config": model.config, "model": model.state_dict()}, path)
    return path


_MODELS: dict = {}


@pytest.fixture()
def one_model(monkeypatch: pytest.MonkeyPatch, random_weights: Path) -> None:
    """Build the random network once for all in-process runs: pipeline mechanics, not loading, are tested."""
    from vidcolor import engine
    from vidcolor.weights import load_model

    key = str(random_weights)
    cache = _MODELS.get(key) or _MODELS.setdefault(key, load_model(random_weights))
    monkeypatch.setattr(engine, "load_model", lambda p: cache if str(p) == str(random_weights) else load_model(p))


def run_cli(*args: str) -> tuple[int, str]:
    """The ``vidcolor`` command run in this process (no start-up cost): (exit code, stderr)."""
    import contextlib
    import io

    from vidcolor.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args], prog_name="vidcolor")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, err.getvalue()


def frame_pattern(i: int, w: int, h: int, grey: bool = True) -> np.ndarray:
    """A moving, textured test picture (so the encoder and flow have something to chew on)."""
    y, x = np.mgrid[0:h, 0:w]
    v = 128 + 60 * np.sin((x + 3 * i) / 5.0) + 40 * np.cos((y - 2 * i) / 7.0)
    img = np.clip(v, 0, 255).astype(np.uint8)
    if grey:
        return np.stack([img] * 3, axis=-1)
    return np.stack([img, np.roll(img, 5, axis=1), 255 - img], axis=-1)


def make_clip(path: Path, n: int = 24, w: int = 64, h: int = 48, fps: int = 24, audio: bool = True,
              vfr: bool = False, grey: bool = True, subtitles: bool = False, codec: str = "libx264",
              pix_fmt: str = "yuv420p") -> dict:
    """Write a small clip (with sine-wave AAC audio) and return what was written."""
    tb = Fraction(1, 12800)
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.time_base = tb
    vs.codec_context.time_base = tb
    step = int(12800 / fps)
    pts, t = [], 0
    aus = out.add_stream("aac", rate=TONE_RATE) if audio else None
    for i in range(n):
        fmt = "rgb24" if pix_fmt in ("yuv420p", "yuv444p", "gray") else "rgb48le"
        img = frame_pattern(i, w, h, grey)
        if fmt == "rgb48le":
            img = img.astype(np.uint16) * 257
        f = av.VideoFrame.from_ndarray(img, format=fmt)
        f.pts, f.time_base = t, tb
        pts.append(t)
        t += step * (2 if (vfr and i % 3 == 2) else 1)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if aus is not None:
        write_tone(out, aus, int(TONE_RATE * t / 12800))
    out.close()
    return {"pts": pts, "time_base": tb, "n": n, "w": w, "h": h}


def read_video(path: Path) -> dict:
    """Decode a file: frames (rgb24), their times in seconds, and audio packet bytes/pts."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(v):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
        size = (v.codec_context.width, v.codec_context.height)
        rate = v.average_rate
    with av.open(str(path)) as c:
        audio = [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(*c.streams.audio) if p.size] \
            if c.streams.audio else []
    return {"frames": frames, "times": times, "size": size, "audio": audio, "rate": rate}


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    p = tmp_path / "clip.mp4"
    make_clip(p)
    return p


def cli(*args: str) -> list[str]:
    """The vidcolor command run as a real subprocess (exit codes, stderr, signals)."""
    return [sys.executable, "-m", "vidcolor.cli", *args]


def env() -> dict:
    """Environment for :func:`cli`: this checkout's package, and one thread so every process
    computes the same numerics."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO)
    e["OMP_NUM_THREADS"] = "1"
    return e


def write_pictures(path: Path, pictures: Iterable[np.ndarray], fps: int = 24) -> None:
    """Write RGB pictures as an H.264 clip without audio, one frame each (for clips make_clip cannot draw)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.time_base = vs.codec_context.time_base = Fraction(1, fps)
        for i, img in enumerate(pictures):
            if i == 0:
                vs.width, vs.height, vs.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
