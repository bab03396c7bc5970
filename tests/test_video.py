"""End to end: a tiny clip in, a coloured clip out with the same frames, times, size and audio."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from skimage import color

from vidcolor import Settings, colorize_video
from vidcolor.cli import main

from .conftest import SHIPPED, make_clip, read_video


def l_psnr(a: np.ndarray, b: np.ndarray) -> float:
    la, lb = color.rgb2lab(a)[..., 0], color.rgb2lab(b)[..., 0]
    return float(10 * np.log10(100.0 ** 2 / max(np.mean((la - lb) ** 2), 1e-12)))


def check_same_timing_and_audio(src: Path, out: Path) -> dict:
    a, b = read_video(src), read_video(out)
    assert len(b["frames"]) == len(a["frames"])
    assert np.abs(np.array(a["times"]) - np.array(b["times"])).max() < 1e-3
    assert b["size"] == a["size"]
    assert [x[0] for x in b["audio"]] == [x[0] for x in a["audio"]]  # identical bytes
    assert np.abs(np.array([x[1] for x in a["audio"]]) - np.array([x[1] for x in b["audio"]])).max(initial=0) < 1e-3
    for fa, fb in zip(a["frames"], b["frames"]):
        assert l_psnr(fa, fb) >= 30.0
    return b


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
def test_video_end_to_end(tmp_path, clip, random_weights, ext):
    out = tmp_path / f"out{ext}"
    res = colorize_video(clip, out, Settings(weights=str(random_weights), batch_size=4), progress=False,
                         segment_frames=8)
    assert res.frames == 24
    b = check_same_timing_and_audio(clip, out)
    assert len(b["audio"]) > 10
    # the container's stated rate too: Matroska's said 1000 fps (or the clock rate) before
    assert float(b["rate"]) == pytest.approx(float(read_video(clip)["rate"]), rel=1e-3)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no job folder or partial file left


def test_variable_frame_rate_kept(tmp_path, random_weights):
    src = tmp_path / "vfr.mp4"
    info = make_clip(src, n=18, vfr=True)
    out = tmp_path / "out.mp4"
    colorize_video(src, out, Settings(weights=str(random_weights)), progress=False)
    got = read_video(out)["times"]
    want = [float(p * info["time_base"]) for p in info["pts"]]
    assert np.abs(np.array(got) - np.array(want)).max() < 1e-3
    assert len(set(np.round(np.diff(got), 4))) == 2  # still two different frame durations


def test_odd_size_and_no_audio(tmp_path, random_weights):
    src = tmp_path / "odd.mkv"
    make_clip(src, n=5, w=33, h=17, audio=False, pix_fmt="yuv444p")
    out = tmp_path / "out.mkv"
    colorize_video(src, out, Settings(weights=str(random_weights)), progress=False)
    b = read_video(out)
    assert b["size"] == (33, 17) and len(b["frames"]) == 5 and b["audio"] == []


def test_cli_video_and_refuses_to_overwrite(tmp_path, clip, random_weights):
    out = tmp_path / "o.mp4"
    r = CliRunner().invoke(main, ["video", str(clip), str(out), "--weights", str(random_weights), "-q"])
    assert r.exit_code == 0, r.output
    mtime = out.stat().st_mtime_ns
    r = CliRunner().invoke(main, ["video", str(clip), str(out), "--weights", str(random_weights), "-q"])
    assert r.exit_code != 0 and "--overwrite" in r.output
    assert out.stat().st_mtime_ns == mtime
    r = CliRunner().invoke(main, ["video", str(clip), str(out), "--weights", str(random_weights), "-q",
                                  "--overwrite", "--crf", "30", "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output


def test_shipped_weights_give_visible_colour(tmp_path):
    """The product promise: the bundled sample comes out in colour with the shipped, trained model."""
    sample = Path(__file__).resolve().parent.parent / "samples" / "sample.mp4"
    assert SHIPPED.exists(), "weights/vidcolor.pt must ship with the repo"
    out = tmp_path / "sample_colour.mp4"
    colorize_video(sample, out, Settings(render_size=160), progress=False)
    b = check_same_timing_and_audio(sample, out)
    chroma = [np.hypot(*color.rgb2lab(f)[..., 1:].transpose(2, 0, 1)).mean() for f in b["frames"][::10]]
    assert np.mean(chroma) > 5.0  # grey in would be ~0
