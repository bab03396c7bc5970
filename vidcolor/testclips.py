"""Clips made from known frames, for the tests and for the scripts that build test and evaluation clips
(``scripts/fuzz.py``, ``bench.py``, ``eval_temporal.py``, ``motion_clips.py``, ``build_real_clips.py``).

Not used by colouring: vidcolor writes colour video only through :class:`vidcolor.encode.SegmentWriter`.
It lives in the package so that scripts and tests import it alike, without path tricks.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from vidcolor.encode import X264_AVX2_CPU_MASK, _has_avx512

TONE_RATE = 16000  # sample rate of write_tone's test-clip audio


def write_rgb_video(path: Path | str, frames: Iterable[np.ndarray], rate: int | Fraction,
                    pix_fmt: str = "yuv420p", options: dict[str, str] | None = None, tone: bool = False,
                    container_options: dict[str, str] | None = None) -> None:
    """Encode RGB uint8 frames (H, W, 3), all one size, with libx264 into a new file.

    For making test and evaluation clips (the same frames give the same bytes on every run);
    coloured output goes through :class:`vidcolor.encode.SegmentWriter`. ``tone`` adds a sine-wave AAC track
    as long as the video, so a clip has audio to copy.
    """
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = aus = None
        n = 0
        for f in frames:
            if s is None:
                s = c.add_stream("libx264", rate=rate)
                s.width, s.height, s.pix_fmt = f.shape[1], f.shape[0], pix_fmt
                o = dict(options or {})
                if _has_avx512():  # the same run-to-run determinism fix as SegmentWriter's
                    o.setdefault("x264-params", f"asm={X264_AVX2_CPU_MASK}")
                s.codec_context.options = o
                aus = c.add_stream("aac", rate=TONE_RATE) if tone else None  # before the first mux
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
            n += 1
        if s is None:
            raise ValueError(f"no frames to write to {path}")
        for p in s.encode(None):
            c.mux(p)
        if aus is not None:
            write_tone(c, aus, int(TONE_RATE * n / rate))


def write_tone(c: av.container.OutputContainer, stream: av.audio.stream.AudioStream, samples: int) -> None:
    """Encode ``samples`` of a 440 Hz mono sine into ``stream`` (an AAC stream at TONE_RATE) of ``c``."""
    for k in range(0, samples, 1024):
        a = (0.3 * np.sin(2 * np.pi * 440 * (np.arange(1024) + k) / TONE_RATE)).astype(np.float32)[None]
        af = av.AudioFrame.from_ndarray(a, format="fltp", layout="mono")
        af.sample_rate, af.pts = TONE_RATE, k
        for p in stream.encode(af):
            c.mux(p)
    for p in stream.encode(None):
        c.mux(p)
