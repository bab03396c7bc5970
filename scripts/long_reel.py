#!/usr/bin/env python
"""A long test reel: a clip and its audio, N times back to back (for trying resume by hand, and for
``scripts/batch_bench.py reel``).

    python scripts/long_reel.py ../shared/data/clips/imageio_cockatoo_8s.mp4 /tmp/long.mp4 8

The video is re-encoded (x264 crf 18) and the audio re-encoded to AAC with continuous timestamps.
"""
from __future__ import annotations

import argparse
from fractions import Fraction

import av


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("times", type=int)
    a = p.parse_args()
    with av.open(a.src) as c:
        v = c.streams.video[0]
        rate = v.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
    with av.open(a.src) as c:
        aud = c.streams.audio[0]
        sr, layout = aud.rate, aud.layout.name
        aframes = list(c.decode(aud))
    with av.open(a.dest, "w") as o:
        s = o.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.codec_context.options = {"preset": "veryfast", "crf": "18"}
        sa = o.add_stream("aac", rate=sr, layout=layout)
        apts = 0
        for _ in range(a.times):
            for f in frames:
                for pk in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    o.mux(pk)
            for af in aframes:
                nf = av.AudioFrame.from_ndarray(af.to_ndarray(), format=af.format.name, layout=layout)
                nf.sample_rate, nf.pts, nf.time_base = sr, apts, Fraction(1, sr)
                apts += af.samples
                for pk in sa.encode(nf):
                    o.mux(pk)
        for pk in s.encode():
            o.mux(pk)
        for pk in sa.encode():
            o.mux(pk)


if __name__ == "__main__":
    main()
