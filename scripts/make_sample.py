#!/usr/bin/env python
"""Build samples/sample.mp4: a short grey, film-like clip with a synthesized soundtrack.

Source: ../shared/data/clips/intel_person_walk_8s.mp4 (Intel IoT Devkit
sample-videos, CC BY 4.0). The first 6 s are turned grey, given a little grain,
vignette and brightness flicker like an old print, and encoded with H.264; the
audio is a synthesized projector hum with noise (no third-party audio).

    python scripts/make_sample.py [--src PATH] [--out samples/sample.mp4]
"""
import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default="../shared/data/clips/intel_person_walk_8s.mp4")
    p.add_argument("--out", default="samples/sample.mp4")
    p.add_argument("--seconds", type=float, default=6.0)
    a = p.parse_args()
    rng = np.random.default_rng(1927)
    src = av.open(a.src)
    vin = src.streams.video[0]
    rate = vin.average_rate or Fraction(25)
    tb = Fraction(1, 12800)
    out = av.open(a.out, "w")
    vs = out.add_stream("libx264", rate=rate)
    vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
    vs.time_base = vs.codec_context.time_base = tb
    vs.codec_context.options = {"crf": "26", "preset": "slow"}
    sr = 22050
    aus = out.add_stream("aac", rate=sr)  # both streams exist before the first packet is muxed
    aus.codec_context.bit_rate = 48000
    h, w = vs.height, vs.width
    yy, xx = np.mgrid[0:h, 0:w]
    vignette = 1.0 - 0.35 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    n = int(a.seconds * float(rate))
    for i, frame in enumerate(src.decode(vin)):
        if i >= n:
            break
        rgb = frame.to_ndarray(format="rgb24").astype(np.float32)
        grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        flicker = 1.0 + 0.04 * np.sin(i * 1.7) + 0.02 * rng.standard_normal()
        grey = grey * vignette * flicker + rng.normal(0, 2.5, (h, w))
        g = np.clip(grey, 0, 255).astype(np.uint8)
        vf = av.VideoFrame.from_ndarray(np.stack([g] * 3, -1), format="rgb24")
        vf.pts = int(round(i / float(rate) / tb))
        vf.time_base = tb
        for pk in vs.encode(vf):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    t = np.arange(int(sr * a.seconds)) / sr
    hum = 0.08 * np.sin(2 * np.pi * 48 * t) * (1 + 0.5 * np.sin(2 * np.pi * 24 * t)) + 0.02 * rng.standard_normal(t.size)
    k = 0
    while k < t.size:
        chunk = hum[k:k + 1024].astype(np.float32)
        if chunk.size < 1024:
            chunk = np.pad(chunk, (0, 1024 - chunk.size))
        af = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = sr, k
        k += 1024
        for pk in aus.encode(af):
            out.mux(pk)
    for pk in aus.encode():
        out.mux(pk)
    out.close()
    print(f"wrote {a.out}: {n} frames, {Path(a.out).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
