"""Guided colour: references and pins carry through a shot, stop at cuts, and parse cleanly."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage import color, io

from vidcolor import Settings, colorize_frames
from vidcolor.errors import VidcolorError
from vidcolor.guide import Keyframe, load_pins, parse_reference, plan_guides

from .conftest import REPO, make_clip, read_video


def scene(i: int, w: int = 96, h: int = 64, shift: int = 2) -> np.ndarray:
    """A textured scene panning right by `shift` px a frame; RGB colour: red left half, blue right half."""
    y, x = np.mgrid[0:h, 0:w]
    xs = x - shift * i
    tex = 0.5 + 0.25 * np.sin(xs / 3.0) * np.cos(y / 4.0)
    rgb = np.stack([tex, tex, tex], -1)
    left = (xs < w // 2)[..., None]
    rgb = np.where(left, rgb * [1.0, 0.35, 0.35], rgb * [0.35, 0.45, 1.0])
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def grey(rgb: np.ndarray) -> np.ndarray:
    L = color.rgb2lab(rgb)[..., 0]
    return (color.lab2rgb(np.stack([L, 0 * L, 0 * L], -1))[..., 0] * 255 + 0.5).astype(np.uint8)


def ab_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(color.rgb2lab(a)[..., 1:] - color.rgb2lab(b)[..., 1:]).mean())


def test_reference_carries_through_the_shot(tmp_path, random_weights):
    src, out_auto, out_ref = tmp_path / "in", tmp_path / "auto", tmp_path / "ref"
    src.mkdir()
    truth = [scene(i) for i in range(10)]
    for i, t in enumerate(truth):
        io.imsave(src / f"f{i:02d}.png", grey(t), check_contrast=False)
    io.imsave(tmp_path / "paint.png", truth[0], check_contrast=False)
    base = dict(weights=str(random_weights), render_size=64, batch_size=4)
    colorize_frames(src, out_auto, Settings(**base), progress=False)
    colorize_frames(src, out_ref, Settings(**base, references=(f"0={tmp_path / 'paint.png'}",)), progress=False)
    auto = [io.imread(out_auto / f"f{i:02d}.png") for i in range(10)]
    ref = [io.imread(out_ref / f"f{i:02d}.png") for i in range(10)]
    assert ab_err(ref[0], truth[0]) < 4.0  # the painted frame comes out as painted
    for k in (1, 5, 9):  # and the colour follows the moving content
        assert ab_err(ref[k], truth[k]) < 0.5 * ab_err(auto[k], truth[k]), k


def test_guides_stop_at_a_cut():
    L = [torch.full((1, 32, 48), 50.0) + 20 * torch.sin(torch.arange(48.0) / 3).view(1, 1, 48) for _ in range(6)]
    L += [torch.full((1, 32, 48), 20.0) + 5 * torch.cos(torch.arange(32.0) / 2).view(1, 32, 1) for _ in range(6)]
    key = Keyframe(0, torch.full((2, 32, 48), 30.0), torch.ones(1, 32, 48))
    guides = plan_guides(enumerate(L), [key], cut_threshold=0.5)
    assert set(guides) == set(range(6))  # frames 6.. are another shot
    assert float(guides[5].conf.float().mean()) > 0.5


def test_pins_and_reference_parsing(tmp_path):
    f = tmp_path / "h.json"
    f.write_text(json.dumps([{"frame": 3, "x": 10, "y": 5, "rgb": [200, 30, 30]}]))
    assert load_pins(f) == {3: [(10.0, 5.0, (200, 30, 30))]}
    f.write_text(json.dumps([{"frame": 3, "x": 10, "rgb": [1, 2, 3]}]))
    with pytest.raises(VidcolorError, match="needs frame, x, y and rgb"):
        load_pins(f)
    f.write_text("[{")
    with pytest.raises(VidcolorError, match="not valid JSON"):
        load_pins(f)
    with pytest.raises(VidcolorError, match="FRAME_INDEX=IMAGE"):
        parse_reference("still.png")
    with pytest.raises(VidcolorError, match="not found"):
        parse_reference(f"4={tmp_path / 'missing.png'}")


def test_pins_colour_their_spot(tmp_path, random_weights):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        io.imsave(src / f"f{i}.png", np.full((64, 64), 128, np.uint8), check_contrast=False)
    hints = tmp_path / "h.json"
    hints.write_text(json.dumps([{"frame": 0, "x": 32, "y": 32, "rgb": [220, 40, 40]}]))
    out = tmp_path / "out"
    colorize_frames(src, out, Settings(weights=str(random_weights), render_size=64, hints=str(hints)), progress=False)
    px = io.imread(out / "f0.png")[32, 32].astype(int)
    assert px[0] - px[2] > 30  # red where the pin is


def test_export_frame_is_the_frame_vidcolor_counts(tmp_path):
    clip = tmp_path / "c.mp4"
    make_clip(clip, n=12)
    out = tmp_path / "f7.png"
    r = subprocess.run([sys.executable, "-m", "vidcolor.cli", "export-frame", str(clip), "7", str(out)],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert np.array_equal(io.imread(out), read_video(clip)["frames"][7])
    r = subprocess.run([sys.executable, "-m", "vidcolor.cli", "export-frame", str(clip), "40", str(out)],
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert r.returncode != 0 and "has no frame 40" in r.stderr and "Traceback" not in r.stderr


def test_spread_carries_a_pin_along_its_region_only():
    from vidcolor.guide import spread

    h, w = 64, 96
    L = torch.full((1, 1, h, w), 70.0)
    L[..., 48:] = 20.0  # a dark region (a coat) right of x=48
    ab = torch.zeros(1, 2, h, w)
    target = torch.zeros(1, 2, h, w)
    conf = torch.zeros(1, 1, h, w)
    target[0, :, 30, 42] = torch.tensor([40.0, -20.0])  # one pin on the light region, 6 px from the edge
    conf[0, 0, 30, 42] = 1.0
    out = spread(ab, L, target, conf)
    assert torch.equal(spread(ab, L, target, torch.zeros_like(conf)), ab)  # no pin, no change
    near, far_same, other = out[0, :, 30, 38], out[0, :, 5, 20], out[0, :, 30, 52]
    assert near[0] > 20 and near[1] < -10          # most of the way to the pin's colour close by
    assert 0 < far_same[0] < near[0]               # fading with distance in the same region
    assert other.abs().max() < 0.05 * near.abs().max()  # the darker region next to it keeps its colour


def test_pins_on_photos_of_different_sizes_are_checked_against_their_own_photo(tmp_path, random_weights):
    """A pin at x=70 fits the 80-wide photo it is on, though frame 0 is only 64 wide; and a pin may name its
    photo by file. Photos of different sizes are separate shots: nothing is carried between them."""
    src = tmp_path / "in"
    src.mkdir()
    sizes = {"Apple.png": (48, 64), "Aqua.png": (48, 80), "Zebra.png": (40, 40)}
    for name, (h, w) in sizes.items():
        io.imsave(src / name, np.full((h, w), 128, np.uint8), check_contrast=False)
    hints = tmp_path / "h.json"
    pins = [{"file": "Aqua.png", "x": 70, "y": 30, "rgb": [220, 40, 40]},
            {"frame": 2, "file": "Zebra.png", "x": 20, "y": 20, "rgb": [40, 40, 220]}]
    hints.write_text(json.dumps(pins))
    assert load_pins(hints, sorted(sizes)) == {1: [(70.0, 30.0, (220, 40, 40))], 2: [(20.0, 20.0, (40, 40, 220))]}
    out = tmp_path / "out"
    colorize_frames(src, out, Settings(weights=str(random_weights), render_size=32, hints=str(hints)), progress=False)
    red, blue = io.imread(out / "Aqua.png")[30, 70].astype(int), io.imread(out / "Zebra.png")[20, 20].astype(int)
    assert red[0] - red[2] > 30 and blue[2] - blue[0] > 30
    for bad, words in [({"file": "Aqua.png", "x": 80, "y": 30}, "outside that 80x48 frame"),
                       ({"file": "Nope.png", "x": 1, "y": 1}, "no frame file 'Nope.png'"),
                       ({"file": "Aqua.png", "frame": 0, "x": 1, "y": 1}, "is frame 1, but")]:
        hints.write_text(json.dumps([{**bad, "rgb": [1, 2, 3]}]))
        with pytest.raises(VidcolorError, match=words):
            colorize_frames(src, tmp_path / "o2", Settings(weights=str(random_weights), render_size=32,
                                                           hints=str(hints)), progress=False, restart=True)
    with pytest.raises(VidcolorError, match="for a video"):
        load_pins(hints)


def test_a_pin_keeps_its_whole_colour_through_the_half_size_guide():
    """The guide is kept at half render size; averaging a 3 px pin with its pinless neighbours (ab 0)
    once paled it to about half. The guide's ab is confidence-weighted, so a pin, carried a frame
    and upsampled again, pulls its own pixel nearly all the way to its colour."""
    from vidcolor.guide import Keyframe, blend

    h, w = 64, 96
    ab = torch.zeros(2, h, w)
    mask = torch.zeros(1, h, w)
    ab[:, 30:33, 40:43] = torch.tensor([20.0, 50.0])[:, None, None]
    mask[:, 30:33, 40:43] = 1.0
    L = torch.full((1, h, w), 60.0)
    L[..., 32:34, :] = 55.0  # a little texture, so the flow has something to hold on to
    guides = plan_guides(iter([(0, L), (1, L)]), [Keyframe(0, ab, mask)], cut_threshold=0.5)
    for g in guides.values():
        out = blend(torch.zeros(2, h, w), g, L)
        assert out[0, 31, 41] > 17.0 and out[1, 31, 41] > 42.0, out[:, 31, 41]
