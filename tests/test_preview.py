"""``vidcolor preview``: the sheet's layout, its colour tiles against a real run's frames, seeking, errors."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidcolor import videoio
from vidcolor.decode import iter_frames
from vidcolor.encode import EncodeOptions, plane_spec
from vidcolor.frameio import read_frame, write_frame
from vidcolor.seek import VideoFrames
from vidcolor.sheet import BACKGROUND, HEADER_H, LABEL_H, LABEL_W, PAD, Layout

from .conftest import frame_pattern, make_clip, read_video, run_cli

PER_FRAME = ["--temporal-window", "0", "--keyframes", "off", "--render-size", "64", "-q"]


def sheet(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def tile(img: np.ndarray, layout: Layout, row: int, col: int) -> np.ndarray:
    x, y = layout.tile(row, col)
    return img[y:y + layout.tile_h, x:x + layout.tile_w]


def gop_clip(path: Path, n: int, w: int = 64, h: int = 48, gop: int = 12) -> None:
    """A clip with a keyframe every ``gop`` frames and B-frames, so frames can be reached by seeking."""
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=24)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.gop_size = gop
    s.options = {"bf": "2", "sc_threshold": "0"}
    for i in range(n):
        f = av.VideoFrame.from_ndarray(frame_pattern(i, w, h), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, 24)
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


@pytest.fixture(scope="module")
def clip24(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("pv") / "clip.mp4"
    make_clip(p, n=24, w=64, h=48)
    return p


def test_colour_tiles_equal_a_per_frame_video_run(tmp_path, clip24, random_weights, one_model):
    """Each colour tile is, bit for bit, the frame that `vidcolor video` writes per frame (batch of 1,
    lossless ffv1 so that the encoder adds nothing)."""
    out, png = tmp_path / "out.mkv", tmp_path / "sheet.png"
    code, err = run_cli("video", clip24, out, "--weights", random_weights, "--codec", "ffv1", "--batch-size", "1",
                        *PER_FRAME)
    assert code == 0, err
    film = read_video(out)["frames"]
    code, err = run_cli("preview", clip24, png, "--weights", random_weights, "--at", "5,0,17", "--tile-width", "0",
                        "--render-size", "64", "-q")
    assert code == 0, err
    img = sheet(png)
    layout = Layout(rows=3, columns=2, tile_w=64, tile_h=48)
    assert img.shape == (layout.size[1], layout.size[0], 3)
    for row, i in enumerate([0, 5, 17]):  # rows in frame order
        assert np.array_equal(tile(img, layout, row, 1), film[i]), i
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv", "sheet.png"]  # nothing left behind


def test_colour_tiles_are_within_one_level_of_a_batched_run(tmp_path, clip24, random_weights, one_model):
    """A run in batches of 8 sums the network's products in another order (ab differs by ~5e-5): at most
    one 8-bit level on a few pixels."""
    out, png = tmp_path / "out.mkv", tmp_path / "sheet.png"
    assert run_cli("video", clip24, out, "--weights", random_weights, "--codec", "ffv1", *PER_FRAME)[0] == 0
    film = read_video(out)["frames"]
    assert run_cli("preview", clip24, png, "--weights", random_weights, "--at", "3,12,23", "--tile-width", "0",
                   "--render-size", "64", "-q")[0] == 0
    img, layout = sheet(png), Layout(3, 2, 64, 48)
    for row, i in enumerate([3, 12, 23]):
        diff = np.abs(tile(img, layout, row, 1).astype(int) - film[i].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (i, diff.max(), (diff > 0).mean())


def test_sheet_layout(tmp_path, clip24, random_weights, one_model):
    png = tmp_path / "s.png"
    code, err = run_cli("preview", clip24, png, "--weights", random_weights, "--frames", "4",
                        "--saturation", "0.8,1,1.3", "--tile-width", "32", "--render-size", "64")
    assert code == 0, err
    assert "frames 3, 9, 15, 21" in err  # spread evenly: the middle of each quarter
    img = sheet(png)
    assert run_cli("preview", clip24, tmp_path / "one.png", "--weights", random_weights, "--frames", "4",
                   "--saturation", "1.3", "--tile-width", "32", "--render-size", "64")[0] == 0
    alone = sheet(tmp_path / "one.png")
    layout = Layout(rows=4, columns=4, tile_w=32, tile_h=24)
    assert img.shape == (layout.size[1], layout.size[0], 3)
    assert img.shape == (HEADER_H + 4 * (LABEL_H + PAD) + PAD, LABEL_W + 4 * (32 + PAD) + PAD, 3)  # rows fit labels
    frames = {f.index: f.image for f in iter_frames(clip24)}
    for row, i in enumerate([3, 9, 15, 21]):
        grey = tile(img, layout, row, 0).astype(int)
        want = np.asarray(Image.fromarray(frames[i]).resize((32, 24), Image.Resampling.LANCZOS)).astype(int)
        assert np.abs(grey - want).max() <= 4  # the grey tile is the frame (its chroma made neutral)
        cols = [tile(img, layout, row, c) for c in (1, 2, 3)]
        assert not np.array_equal(cols[0], cols[1]) and not np.array_equal(cols[1], cols[2])
        assert np.array_equal(cols[2], tile(alone, Layout(4, 2, 32, 24), row, 1))  # the 1.3 column is 1.3's
        x, y = layout.tile(row, 0)
        assert (img[y - PAD:y, x:x + 32] == BACKGROUND).all()  # the gap above a tile is background
        label = img[y:y + 40, PAD:LABEL_W - PAD]
        assert (label != BACKGROUND).any(axis=-1).sum() > 50  # the frame index and timecode are written there
    assert (img[PAD:PAD + 14, PAD:200] != BACKGROUND).any()  # and the title


def test_seeking_decodes_few_frames_and_gets_the_film_s_frames(tmp_path):
    src = tmp_path / "gop.mp4"
    gop_clip(src, 240)
    info = videoio.probe(src)
    yuv = plane_spec(info, EncodeOptions())
    film = {f.index: f.image for f in iter_frames(src, yuv=yuv)}
    frames = VideoFrames(src, info, yuv)
    assert frames.count == 240 and frames.label(120) == "00:00:05.000"
    wanted = [7, 8, 130, 239]
    got = dict(frames.read(wanted))
    assert all(np.array_equal(got[i], film[i]) for i in wanted)
    assert frames.decoded < 60, frames.decoded  # not the 240 a decode from the start would take


def test_frame_folder_tiles_equal_a_frames_run(tmp_path, random_weights, one_model):
    src, dest, png = tmp_path / "scans", tmp_path / "colour", tmp_path / "s.png"
    src.mkdir()
    for i in range(6):
        write_frame(src / f"f{i}.png", frame_pattern(5 * i, 40, 32), None)
    code, err = run_cli("frames", src, dest, "--weights", random_weights, "--batch-size", "1", *PER_FRAME)
    assert code == 0, err
    code, err = run_cli("preview", src, png, "--weights", random_weights, "--at", "1,4", "--tile-width", "0",
                        "--render-size", "64", "-q")
    assert code == 0, err
    img, layout = sheet(png), Layout(2, 2, 40, 32)
    for row, i in enumerate([1, 4]):
        assert np.array_equal(tile(img, layout, row, 1), read_frame(dest / f"f{i}.png").rgb)
        assert np.array_equal(tile(img, layout, row, 0), read_frame(src / f"f{i}.png").rgb)


def test_a_reference_shows_as_in_the_film(tmp_path, random_weights, one_model):
    """The referenced frame and a frame its colour is carried to come out as the film's (per frame)."""
    src, out, png, ref = tmp_path / "in.mp4", tmp_path / "out.mkv", tmp_path / "s.png", tmp_path / "ref.png"
    gop_clip(src, 48)
    paint = frame_pattern(20, 64, 48).copy()
    paint[..., 0] = np.clip(paint[..., 0].astype(int) + 60, 0, 255)  # painted warm
    write_frame(ref, paint, None)
    guide = ["--reference", f"20={ref}", "--weights", str(random_weights)]
    assert run_cli("video", src, out, "--codec", "ffv1", "--batch-size", "1", *guide, *PER_FRAME)[0] == 0
    film = read_video(out)["frames"]
    code, err = run_cli("preview", src, png, "--at", "20,26,45", "--tile-width", "0", "--render-size", "64",
                        *guide)
    assert code == 0, err
    img, layout = sheet(png), Layout(3, 2, 64, 48)
    for row, i in enumerate([20, 26, 45]):
        assert np.array_equal(tile(img, layout, row, 1), film[i]), i


@pytest.mark.parametrize("args, code, says", [
    (["--at", "3,99"], 1, "--at 99 is not a frame of the input, which has frames 0 to 23"),
    (["--saturation", "0.8,lots"], 2, "'0.8,lots': want comma-separated numbers"),
    (["--saturation", "5"], 1, "--saturation 5 is out of range; give values from 0.1 to 3"),
    (["--at", "x"], 2, "want comma-separated frame indices"),
])
def test_bad_options_are_one_line(tmp_path, clip24, random_weights, args, code, says):
    got, err = run_cli("preview", clip24, tmp_path / "s.png", "--weights", random_weights, *args)
    assert got == code and says in err and err.count("\n") == 1, err
    assert err.startswith("vidcolor: error: ")
    assert list(tmp_path.iterdir()) == []


def test_bad_sheet_names(tmp_path, clip24, random_weights):
    code, err = run_cli("preview", clip24, tmp_path / "s.jpg", "--weights", random_weights)
    assert code == 1 and "name it NAME.png" in err
    (tmp_path / "s.png").write_bytes(b"old")
    code, err = run_cli("preview", clip24, tmp_path / "s.png", "--weights", random_weights)
    assert code == 1 and "use --overwrite" in err and (tmp_path / "s.png").read_bytes() == b"old"
    code, err = run_cli("preview", tmp_path / "nope.mp4", tmp_path / "t.png", "--weights", random_weights)
    assert code == 2 and "input not found" in err


def test_choose_spreads_frames_and_adds_guided_ones():
    from vidcolor.preview import choose

    assert choose(100, 4, None, []) == [12, 37, 62, 87]
    assert choose(3, 8, None, []) == [0, 1, 2]  # a short film shows every frame once
    assert choose(100, 2, None, [5, 25]) == [5, 25, 75]  # referenced and pinned frames are shown too
    assert choose(100, 8, [40, 2, 40], [5]) == [2, 40]  # --at as given, sorted, once each
