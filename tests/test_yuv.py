"""The plane path (vidcolor.yuv): luma kept bit for bit, chroma computed in the stream's own matrix and range."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from skimage import color

from vidcolor import Settings, colorize_video, encode, yuv
from vidcolor.color import lab_to_rgb
from vidcolor.encode import EncodeOptions
from vidcolor.errors import Interrupted

from .conftest import frame_pattern, make_clip

LOSSLESS = EncodeOptions(crf=0, preset="ultrafast")  # x264 at crf 0 is lossless for 8-bit


def planes_of(path: Path) -> list[list[np.ndarray]]:
    """Every decoded frame's planes (row padding cut off), as stored."""
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            dt = np.uint16 if f.format.components[0].bits > 8 else np.uint8
            out.append([np.frombuffer(p, dt).reshape(-1, p.line_size // np.dtype(dt).itemsize)[:p.height, :p.width]
                        .copy() for p in f.planes])
        return out


def tagged_clip(path: Path, pix_fmt: str, colorspace: int, color_range: int, n: int = 6, w: int = 64,
                h: int = 48) -> None:
    """A grey clip encoded with explicit colour tags (AVColorSpace, AVColorRange) by libx264."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.codec_context.colorspace, s.codec_context.color_range = colorspace, color_range
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame_pattern(i, w, h), format="rgb24")
            f = f.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range)
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def settings(weights: Path) -> Settings:
    return Settings(weights=str(weights), batch_size=4, render_size=64)


@pytest.mark.parametrize("depth,full", [(8, False), (8, True), (10, False), (10, True)])
def test_luma_lut_matches_skimage(depth, full):
    """The network's L from Y equals scikit-image's L of the grey R'G'B' that Y decodes to."""
    lut = yuv.luma_lut(depth, full, 1 if depth == 8 else 2)
    codes = np.arange(1 << depth)
    top = (1 << depth) - 1
    v = codes / top if full else np.clip((codes / (1 << (depth - 8)) - 16) / 219, 0, 1)
    ref = color.rgb2lab(np.repeat(v[None, :, None], 3, axis=2))[0, :, 0]
    assert np.abs(lut[codes] - ref).max() < 0.5
    assert lut[top if full else 235 << (depth - 8)] == pytest.approx(100, abs=0.01)  # white
    assert lut[0 if full else 16 << (depth - 8)] == pytest.approx(0, abs=0.01)  # black


def test_luma_lut_matches_swscale_grey():
    """A Y ramp decoded to RGB by swscale (the RGB path) has the L of the lookup table."""
    f = av.VideoFrame(256, 2, "yuv444p")
    for k, plane in enumerate(f.planes):
        view = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        view[:] = np.arange(plane.line_size) % 256 if k == 0 else 128
    rgb = f.to_ndarray(format="rgb24")[0]
    assert np.ptp(rgb.astype(int), axis=1).max() == 0  # grey stays grey
    ref = color.rgb2lab(rgb[None].astype(np.float64) / 255)[0, :, 0]
    assert np.abs(yuv.luma_lut(8, False)[:256] - ref).max() < 0.5


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("space,rng", [(6, 1), (1, 1), (1, 2), (9, 1)])
def test_chroma_matches_swscale(space, rng):
    """U,V from Lab equal swscale's conversion of the same colours (RGB to 4:4:4, same matrix and range)."""
    g = np.random.default_rng(4)
    lab = np.stack([g.uniform(5, 95, (16, 24)), g.uniform(-60, 60, (16, 24)), g.uniform(-60, 60, (16, 24))])
    lab_t = torch.from_numpy(lab).float()[None]
    rgb8 = (lab_to_rgb(lab_t)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    spec = yuv.plan("yuv444p", "yuv444p", (space, rng, 2, 2))
    got = yuv.chroma(lab_t[:, :1], lab_t[:, 1:], spec, (16, 24))[0].numpy()
    f = av.VideoFrame.from_ndarray(rgb8, format="rgb24").reformat(format="yuv444p", dst_colorspace=space,
                                                                  dst_color_range=rng)
    want = np.stack([np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:16, :24] for p in f.planes[1:]])
    assert np.abs(got - want.astype(int)).max() <= 2  # swscale saw 8-bit RGB, chroma() the exact colour
    if (space, rng) == (6, 1):  # and scikit-image's BT.601 studio-range YCbCr
        ref = color.rgb2ycbcr(lab_to_rgb(lab_t)[0].permute(1, 2, 0).numpy())[..., 1:].transpose(2, 0, 1)
        assert np.abs(got - ref).max() <= 0.51


def test_plan_chooses_per_format():
    unspecified = (2, 0, 2, 2)
    for fmt, out in [("yuv420p", "yuv420p"), ("yuv444p", "yuv420p"), ("yuv420p10le", "yuv420p10le"),
                     ("nv12", "yuv420p"), ("gray", "yuv420p"), ("yuvj420p", "yuv420p")]:
        assert yuv.plan(fmt, out, unspecified) is not None, fmt
    for fmt, out in [("rgb24", "yuv420p"), ("pal8", "yuv420p"), ("bgr0", "yuv444p"), ("p010le", "yuv420p10le"),
                     ("yuv420p12le", "yuv420p10le"), ("yuv420p", "yuv420p10le"), ("yuv420p", "nv12"),
                     ("yuyv422", "yuv422p"), ("yuv420p", "yuvj420p")]:
        assert yuv.plan(fmt, out, unspecified) is None, fmt
    assert yuv.plan("yuv420p", "yuv420p", (0, 2, 2, 2)) is None  # RGB-coded (GBR) planes
    assert not yuv.plan("yuv420p", "yuv420p", unspecified).full_range
    assert yuv.plan("yuvj420p", "yuv420p", unspecified).full_range
    assert yuv.plan("gray", "yuv420p", unspecified).full_range  # as swscale reads grey
    s = yuv.plan("yuv420p", "yuv420p", (1, 1, 1, 1))
    assert (s.kr, s.kb, s.colorspace) == (0.2126, 0.0722, 1)
    assert yuv.plan("yuv420p", "yuv420p", unspecified).colorspace == 6  # decoded as BT.601, tagged so


@pytest.mark.parametrize("src_fmt,out_fmt", [("yuv420p", None), ("yuv444p", "yuv444p"), ("yuv444p", None)])
def test_luma_is_the_input_bit_for_bit(tmp_path, random_weights, src_fmt, out_fmt):
    src = tmp_path / "in.mp4"
    make_clip(src, n=10, pix_fmt=src_fmt)
    out = tmp_path / "out.mp4"
    colorize_video(src, out, settings(random_weights), EncodeOptions(crf=0, preset="ultrafast", pix_fmt=out_fmt),
                   progress=False, segment_frames=8)
    a, b = planes_of(src), planes_of(out)
    assert len(a) == len(b) == 10
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert b[0][1].shape == ((48, 64) if out_fmt == "yuv444p" else (24, 32))


def sent_luma(monkeypatch) -> list[np.ndarray]:
    """The Y planes of the frames handed to the encoder, filled in as they are made."""
    sent = []
    real = encode.to_frame

    def spy(p, spec):
        f = real(p, spec)
        plane = f.planes[0]
        sent.append(np.frombuffer(plane, spec.dtype).reshape(-1, plane.line_size // spec.dtype.itemsize)
                    [:f.height, :f.width].copy())
        return f

    monkeypatch.setattr(encode, "to_frame", spy)
    return sent


def test_ten_bit_luma_reaches_the_encoder_untouched(tmp_path, random_weights, monkeypatch):
    """x264 is not lossless at 10 bits with --crf 0, so compare the frames handed to the encoder."""
    src = tmp_path / "ten.mp4"
    make_clip(src, n=6, pix_fmt="yuv420p10le")
    sent = sent_luma(monkeypatch)
    colorize_video(src, tmp_path / "out.mp4", settings(random_weights), progress=False)
    want = [x[0] for x in planes_of(src)]
    assert len(sent) == len(want) == 6 and sent[0].max() > 255  # really 10-bit codes
    assert all(np.array_equal(x, y) for x, y in zip(sent, want))
    assert planes_of(tmp_path / "out.mp4")[0][1].dtype == np.uint16


def test_chroma_agrees_with_the_rgb_path(tmp_path):
    """Same colours as the RGB path within a small tolerance (trained weights, so there is colour)."""
    src = tmp_path / "in.mp4"
    make_clip(src, n=8, w=96, h=64)
    outs = {}
    for planes in (True, False):
        outs[planes] = tmp_path / f"out_{planes}.mp4"
        colorize_video(src, outs[planes], Settings(batch_size=4, render_size=64), LOSSLESS, progress=False,
                       yuv_planes=planes)
    a, b = planes_of(outs[True]), planes_of(outs[False])
    uv_new = np.stack([np.stack(x[1:]) for x in a]).astype(int)
    uv_old = np.stack([np.stack(x[1:]) for x in b]).astype(int)
    assert np.abs(uv_old - 128).mean() > 3  # there is colour to compare
    d = np.abs(uv_new - uv_old)
    assert d.mean() < 1.0 and np.percentile(d, 99) <= 4, (d.mean(), np.percentile(d, 99))
    # the RGB path's Y is close, not exact: that path keeps CIE lightness, not the input's luma, and the
    # two part where colour is vivid (on this clip a mean of 0.5 codes with the session-12 weights, 2.7 with
    # the effdec weights shipped 2026-12-07); a wrong range or frame would be off by 10 codes or more
    dy = np.concatenate([np.abs(x[0].astype(int) - y[0]).ravel() for x, y in zip(a, b)])
    assert dy.mean() < 4.0 and np.percentile(dy, 99) <= 8, (dy.mean(), np.percentile(dy, 99))


@pytest.mark.parametrize("space,rng", [(1, 2), (5, 1)])
def test_colour_tags_are_kept_and_used(tmp_path, space, rng):
    """A BT.709 full-range (or BT.470BG) input: output tagged alike, and decoded colours match the RGB path."""
    src = tmp_path / "in.mp4"
    tagged_clip(src, "yuv420p", space, rng)
    outs = {}
    for planes in (True, False):
        outs[planes] = tmp_path / f"out_{planes}.mp4"
        colorize_video(src, outs[planes], Settings(batch_size=4, render_size=64), LOSSLESS, progress=False,
                       yuv_planes=planes)
    with av.open(str(outs[True])) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (space, rng)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(planes_of(src), planes_of(outs[True])))
    ref = np.stack([f.to_ndarray(format="rgb24").astype(int) for f in av.open(str(outs[False])).decode(video=0)])

    def hue_error(matrix: int) -> float:
        """Mean RGB difference to the RGB path, each pixel's mean over R, G, B taken out: the two paths
        differ in brightness where colour is vivid (the plane path keeps the input's luma, the RGB path
        CIE lightness), by more the more vivid the shipped weights are; hue and chroma must agree."""
        got = np.stack([f.reformat(format="rgb24", src_colorspace=matrix, src_color_range=rng).to_ndarray()
                        for f in av.open(str(outs[True])).decode(video=0)]).astype(int)
        assert np.ptp(got, axis=-1).mean() > 10  # in colour
        d = got - ref
        return float(np.abs(d - d.mean(axis=-1, keepdims=True)).mean())

    right, wrong = hue_error(space), hue_error(5 if space == 1 else 1)
    assert right < 1.0 and wrong > right, (right, wrong)  # read with the other matrix, it agrees less


def test_rgb_input_takes_the_rgb_path_and_resumes_frame_exact(tmp_path, random_weights, monkeypatch):
    """Planes that cannot be reused (RGB input here) go through RGB; an interrupted job still resumes exactly."""
    src = tmp_path / "rgb.mkv"
    make_clip(src, n=16, codec="libx264rgb", pix_fmt="rgb24", grey=False, audio=False)
    assert yuv.plan(av.open(str(src)).streams.video[0].codec_context.format.name, "yuv420p", (2, 0, 2, 2)) is None
    ref = tmp_path / "ref.mp4"
    colorize_video(src, ref, settings(random_weights), progress=False, segment_frames=4)
    out = tmp_path / "out.mp4"
    real = encode.SegmentWriter.write
    written = []

    def stop_at_10(self, image, pts):
        picture = image() if callable(image) else image  # composition may be left to the encoder's thread
        assert isinstance(picture, np.ndarray) and picture.shape == (48, 64, 3)  # an RGB picture, not planes
        if len(written) == 10:  # frame 10, in the third segment
            raise KeyboardInterrupt
        written.append(pts)
        real(self, image, pts)

    monkeypatch.setattr(encode.SegmentWriter, "write", stop_at_10)
    with pytest.raises(Interrupted):
        colorize_video(src, out, settings(random_weights), progress=False, segment_frames=4)
    monkeypatch.setattr(encode.SegmentWriter, "write", real)
    res = colorize_video(src, out, settings(random_weights), progress=False, segment_frames=4)
    assert res.resumed_at == 8
    got, want = planes_of(out), planes_of(ref)
    assert len(got) == len(want) == 16
    assert all(all(np.array_equal(p, q) for p, q in zip(x, y)) for x, y in zip(got, want))


def test_grey_input_keeps_its_levels(tmp_path, random_weights, monkeypatch):
    """An 8-bit grey stream (full range, as swscale reads it): its samples become Y, tagged full range."""
    src = tmp_path / "grey.mkv"
    make_clip(src, n=6, codec="ffv1", pix_fmt="gray", audio=False)
    sent = sent_luma(monkeypatch)
    out = tmp_path / "out.mp4"
    colorize_video(src, out, settings(random_weights), progress=False)
    want = [x[0] for x in planes_of(src)]
    assert len(sent) == len(want) == 6 and all(np.array_equal(x, y) for x, y in zip(sent, want))
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.color_range == yuv.RANGE_FULL
