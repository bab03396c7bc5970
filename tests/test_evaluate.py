"""`vidcolor eval`: metric values on tiny synthetic images and videos, the JSON report and user errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from vidcolor.cli import main
from vidcolor.errors import InputError
from vidcolor.evaluate import evaluate, grey_baseline, rgb_to_lab_np
from vidcolor.metrics import colorfulness
from vidcolor.temporal_metrics import CDCAccumulator, flow_pair, js_divergence, warp_errors


def texture(dx: float = 0.0, dy: float = 0.0, h: int = 48, w: int = 64, hue: float = 0.0) -> np.ndarray:
    """A smooth colour texture shifted by (dx, dy) pixels; values stay inside 30..225 (no clipping)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = x - dx, y - dy
    r = 128 + 55 * np.sin(x / 5.0) + 40 * np.cos(y / 7.0)
    g = 128 + 45 * np.sin((x + y) / 6.0 + hue)
    b = 128 + 45 * np.cos((x - 2 * y) / 9.0 + 2 * hue)
    return np.clip(np.stack([r, g, b], axis=-1), 30, 225).round().astype(np.uint8)


def write_dir(folder: Path, images: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        iio.imwrite(folder / name, img)
    return folder


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    """Lossless (FFV1) so decoded frames equal the arrays written."""
    out = av.open(str(path), "w")
    s = out.add_stream("ffv1", rate=10)
    s.height, s.width = frames[0].shape[:2]
    s.pix_fmt = "bgr0"
    for f in frames:
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


@pytest.fixture()
def gt_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "gt", {"a.png": texture(), "b.png": texture(3, 1, hue=1.0)})


def test_identical_images_are_perfect(gt_dir: Path) -> None:
    r = evaluate(gt_dir, gt_dir)
    p = r["pred_metrics"]
    assert r["count"] == 2 and r["kind"] == "images"
    assert math.isinf(p["psnr"]) and p["ssim"] == pytest.approx(1.0) and p["auc"] == pytest.approx(1.0)
    assert p["colorfulness_ratio"] == pytest.approx(1.0)
    # the grey baseline is clearly worse and has (almost) no colour
    g = r["grey_metrics"]
    assert g["psnr"] < 30 and g["auc"] < 0.99 and g["colorfulness_ratio"] < 0.02


def test_known_shift_gives_known_psnr(tmp_path: Path, gt_dir: Path) -> None:
    pred = write_dir(tmp_path / "pred", {n: iio.imread(gt_dir / n) + np.uint8(8) for n in ("a.png", "b.png")})
    r = evaluate(pred, gt_dir)
    assert r["pred_metrics"]["psnr"] == pytest.approx(20 * math.log10(255 / 8), abs=1e-9)
    assert r["pred_metrics"]["ssim"] < 1.0


def test_colourfulness_of_grey_is_zero_and_grey_baseline_keeps_l() -> None:
    grey = np.repeat(np.arange(0, 256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert colorfulness(np.repeat(grey, 8, axis=0)) == 0.0
    img = texture()
    base = grey_baseline(img)
    assert np.abs(base.astype(int)[..., 0] - base[..., 2]).max() <= 1  # R = G = B up to rounding
    assert np.abs(rgb_to_lab_np(base)[..., 0] - rgb_to_lab_np(img)[..., 0]).max() < 0.5


def test_cli_writes_json_with_expected_keys(tmp_path: Path, gt_dir: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["eval", str(gt_dir), str(gt_dir), "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.stdout and "per-image mean over 2 images" in res.stdout
    r = json.loads(out.read_text())  # strict JSON: inf is written as a string
    assert {"kind", "count", "resolution", "averaging", "pred_metrics", "grey_metrics", "gt_metrics",
            "items"} <= set(r)
    assert {"psnr", "ssim", "auc", "colorfulness", "colorfulness_ratio"} <= set(r["pred_metrics"])
    assert r["pred_metrics"]["psnr"] == "inf"
    assert len(r["items"]) == 2 and r["items"][0]["name"] == "a.png"


def test_mismatched_dirs_fail_in_one_line(tmp_path: Path, gt_dir: Path) -> None:
    pred = write_dir(tmp_path / "pred", {"a.png": texture(), "c.png": texture()})
    res = CliRunner().invoke(main, ["eval", str(pred), str(gt_dir)])
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in res.output
    assert err.startswith("vidcolor: error:") and "c.png" in err and "b.png" in err


def test_size_mismatch_and_kind_mismatch(tmp_path: Path, gt_dir: Path) -> None:
    pred = write_dir(tmp_path / "pred", {"a.png": texture(h=24, w=32), "b.png": texture(h=24, w=32)})
    with pytest.raises(InputError, match="--short-side"):
        evaluate(pred, gt_dir)
    r = evaluate(pred, gt_dir, short_side=24)  # both brought to 32x24
    assert r["resolution"].startswith("resized to short side 24")
    video = write_video(tmp_path / "v.mkv", [texture()] * 2)
    with pytest.raises(InputError, match="both"):
        evaluate(gt_dir, video)


def test_flow_direction_and_warp_error_on_known_motion() -> None:
    a, b = texture(), texture(2, 1)  # frame t is frame t-1 moved right 2 px, down 1 px
    L = [rgb_to_lab_np(x)[..., 0] / 100 for x in (a, b)]
    flow, mask = flow_pair(L[0], L[1], "tvl1")
    centre = flow[:, 12:36, 16:48].reshape(2, -1).mean(axis=1)
    assert centre == pytest.approx([-1.0, -2.0], abs=0.1)  # where each pixel of t was in t-1 (row, col)
    assert 0.7 < mask.mean() < 1.0  # the strip that entered the frame is masked out
    err, err_sq = warp_errors(a, b, flow, mask)
    assert err < 0.005 and err_sq < 1e-4
    assert warp_errors(a, b, -flow, mask)[0] > 10 * err  # the wrong direction is clearly wrong


def test_cdc_pieces() -> None:
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert js_divergence(p, q) == pytest.approx(math.log(2))
    assert js_divergence(p, p) == 0.0
    acc = CDCAccumulator()
    for _ in range(5):
        acc.push(texture())
    assert acc.value() == 0.0 and set(acc.by_dilation()) == {1, 2, 4}


def test_video_identical_steady_and_flickering(tmp_path: Path) -> None:
    frames = [texture(2 * i, i) for i in range(6)]
    gt = write_video(tmp_path / "gt.mkv", frames)
    tint = np.array([25, 0, -25])  # every other frame warmer: the colour distribution jumps
    flicker = write_video(tmp_path / "flicker.mkv", [(f + (i % 2) * tint).astype(np.uint8) for i, f in enumerate(frames)])
    same = evaluate(gt, gt, flow="ilk")
    assert same["kind"] == "video" and same["count"] == 6
    assert math.isinf(same["pred_metrics"]["psnr"])
    t = same["temporal"]
    assert t["pairs"] == 5 and t["pred"]["warp_error"] == pytest.approx(t["gt"]["warp_error"])
    assert t["pred"]["warp_error"] < 0.01
    assert set(t["pred"]["cdc_by_dilation"]) == {"1", "2", "4"} and t["cdc_dilations"] == [1, 2, 4]
    bad = evaluate(flicker, gt, flow="ilk")["temporal"]
    assert bad["pred"]["warp_error"] > 5 * bad["gt"]["warp_error"]
    assert bad["pred"]["cdc"] > 2 * bad["gt"]["cdc"]
    short = write_video(tmp_path / "short.mkv", frames[:4])
    res = CliRunner().invoke(main, ["eval", str(short), str(gt), "--flow", "ilk", "-q"])
    assert res.exit_code != 0 and "frames" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_false_colour_counts_vivid_pixels_only_where_truth_is_grey() -> None:
    from vidcolor.metrics import false_colour

    gt = np.zeros((4, 4, 2))
    gt[:, 2:] = [40.0, 0.0]  # right half truly red
    pred = np.zeros((4, 4, 2))
    pred[:2, :] = [0.0, 30.0]  # top half predicted vivid yellow
    # vivid over grey truth: the top-left quarter only (top-right is vivid where truth is vivid)
    assert false_colour(pred, gt) == pytest.approx(0.25)
    assert false_colour(gt, gt) == 0.0
