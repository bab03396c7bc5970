"""Real-world and bad input (issue 6): a corpus of inputs made here with PyAV and numpy.

Error cases run the real command in a subprocess, so exit codes and stderr are
real: each asserts the exit code, the one ``vidcolor: error: ...`` line and no
traceback. Cases with output run the library in-process (no interpreter and
torch start-up per case) and assert frame count, size, timing and audio. In
every case the input is unchanged and a failed run leaves nothing under the
final OUTPUT name.
"""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
import torch

from vidcolor import (Result, Settings, VidcolorError, colorize_frames, colorize_video, decode, encode, frameio, mux,
                      videoio)
from vidcolor.engine import Engine
from vidcolor.errors import InputError

from .conftest import cli, env, frame_pattern, make_clip, read_video, run_cli

OPTS = ["--render-size", "32", "--batch-size", "4", "-q"]



def digest(path: Path) -> str | None:
    """Hash of a file, or of every file under a folder (names and bytes); None if absent."""
    if not path.exists() and not path.is_symlink():
        return None
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(autouse=True)
def _one_model(one_model) -> None:
    """Build the network once for the in-process runs: pipeline mechanics, not loading, are tested here."""


def settings(weights: Path, **kw) -> Settings:
    return Settings(weights=str(weights), batch_size=kw.pop("batch_size", 4), render_size=32, **kw)


def colour_video(src: Path, out: Path, weights: Path, batch_size: int = 4, **kw) -> Result:
    """colorize_video with the test settings; in every case the input must come out untouched."""
    h = digest(src)
    try:
        return colorize_video(src, out, settings(weights, batch_size=batch_size), progress=False, **kw)
    finally:
        assert digest(src) == h, f"input {src} was modified"


# ---------------------------------------------------------------- input makers

def write_clip(path: Path, n: int = 8, w: int = 64, h: int = 48, fps: int = 25, rotation: int | None = None,
               x264_params: str | None = None) -> list[float]:
    """A small H.264 clip with the extras make_clip lacks; returns the frame times in seconds."""
    tb = Fraction(1, 12800)
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.time_base = tb
    if rotation is not None:
        vs.set_display_rotation(rotation)
    if x264_params:
        vs.codec_context.options = {"x264-params": x264_params}
    step = 12800 // fps
    for i in range(n):
        f = av.VideoFrame.from_ndarray(frame_pattern(i, w, h), format="rgb24")
        f.pts, f.time_base = i * step, tb
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    return [i * step / 12800 for i in range(n)]


def remux(src: Path, dest: Path, **options: str) -> None:
    """Copy every stream's packets into ``dest`` (e.g. with movflags=faststart)."""
    with av.open(str(src)) as c, av.open(str(dest), "w", options=options) as o:
        m = {s.index: o.add_stream_from_template(s) for s in c.streams}
        for p in c.demux():
            if p.dts is None:
                continue
            p.stream = m[p.stream.index]
            o.mux(p)


def video_packets(path: Path) -> list[tuple[int, int, int, bool]]:
    """(pts, pos, size, keyframe) of the video packets, in file order."""
    with av.open(str(path)) as c:
        return [(p.pts, p.pos, p.size, p.is_keyframe) for p in c.demux(video=0) if p.size]


def readable_times(path: Path) -> list[float]:
    """Sorted times of the video packets a file still holds."""
    with av.open(str(path)) as c:
        return sorted(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size and p.pts is not None)


# ---------------------------------------------------------------- the error corpus (subprocess)

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("base")
    make_clip(d / "clip.mp4", n=8, w=64, h=48)
    return d / "clip.mp4"


def _case_dir(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    return d


def _audio_only(path: Path) -> None:
    out = av.open(str(path), "w")
    s = out.add_stream("aac", rate=16000)
    for k in range(0, 16000, 1024):
        a = (0.2 * np.sin(np.arange(1024) / 5.0)).astype(np.float32)[None]
        f = av.AudioFrame.from_ndarray(a, format="fltp", layout="mono")
        f.sample_rate, f.pts = 16000, k
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


def _frames_dir(d: Path, n: int = 3) -> Path:
    import imageio.v3 as iio

    d.mkdir()
    for i in range(n):
        iio.imwrite(d / f"f{i}.png", frame_pattern(i, 40, 30)[..., 0])
    return d


# Each maker gets (case folder, base clip, weights) and returns (argv, inputs to hash, final output, cwd).
Case = Callable[[Path, Path, Path], tuple[list[str], list[Path], Path, Path | None]]


def _video(d: Path, src: Path, w: Path, out: Path | None = None, extra: tuple = ()) -> list[str]:
    return ["video", str(src), str(out or d / "out.mp4"), "--weights", str(w), *OPTS, *extra]


def c_missing(d, b, w):
    return _video(d, d / "nope.mp4", w), [], d / "out.mp4", None


def c_empty(d, b, w):
    (d / "empty.mp4").write_bytes(b"")
    return _video(d, d / "empty.mp4", w), [d / "empty.mp4"], d / "out.mp4", None


def c_random(d, b, w):
    (d / "noise.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return _video(d, d / "noise.mp4", w), [d / "noise.mp4"], d / "out.mp4", None


def c_text(d, b, w):
    (d / "notes.mp4").write_text("This is not a film.\nJust some notes.\n" * 20)
    return _video(d, d / "notes.mp4", w), [d / "notes.mp4"], d / "out.mp4", None


def c_no_moov(d, b, w):
    data = b.read_bytes()  # make_clip writes moov at the end: cut it off
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    return _video(d, d / "cut.mp4", w), [d / "cut.mp4"], d / "out.mp4", None


def c_audio_only(d, b, w):
    _audio_only(d / "song.m4a")
    return _video(d, d / "song.m4a", w), [d / "song.m4a"], d / "out.mp4", None


def c_dir_as_video(d, b, w):
    (d / "movie.mp4").mkdir()
    return _video(d, d / "movie.mp4", w), [d / "movie.mp4"], d / "out.mp4", None


def c_empty_frames(d, b, w):
    (d / "scans").mkdir()
    (d / "scans" / "readme.txt").write_text("no frames here")
    return (["frames", str(d / "scans"), str(d / "out"), "--weights", str(w), *OPTS], [d / "scans"],
            d / "out" / "readme.txt", None)


def c_dpx_frames(d, b, w):
    (d / "scans").mkdir()
    for i in range(2):
        (d / "scans" / f"reel{i:06d}.dpx").write_bytes(b"SDPX" + bytes(60))
    return (["frames", str(d / "scans"), str(d / "out"), "--weights", str(w), *OPTS], [d / "scans"],
            d / "out" / "reel000000.dpx", None)


def c_corrupt_frame(d, b, w):
    src = _frames_dir(d / "scans")
    (src / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return ["frames", str(src), str(d / "out"), "--weights", str(w), *OPTS], [src], d / "out" / "f1.png", None


def c_frames_same_dir(d, b, w):
    src = _frames_dir(d / "scans")
    return ["frames", str(src), str(src), "--weights", str(w), *OPTS], [src], src / "f0.png", None


def c_same_path(d, b, w):
    src = d / "in.mp4"
    src.write_bytes(b.read_bytes())
    return _video(d, src, w, src, ("--overwrite",)), [src], src, None


def c_same_symlink(d, b, w):
    src = d / "in.mp4"
    src.write_bytes(b.read_bytes())
    (d / "link.mp4").symlink_to(src)
    return _video(d, src, w, d / "link.mp4", ("--overwrite",)), [src], d / "link.mp4", None


def c_same_dot(d, b, w):
    src = d / "in.mp4"
    src.write_bytes(b.read_bytes())
    return (["video", "in.mp4", "./in.mp4", "--weights", str(w), *OPTS, "--overwrite"], [src], src, d)


def c_no_parent(d, b, w):
    return _video(d, b, w, d / "missing" / "out.mp4"), [b], d / "missing" / "out.mp4", None


def c_parent_is_file(d, b, w):
    (d / "file").write_text("x")
    return _video(d, b, w, d / "file" / "out.mp4"), [b], d / "file" / "out.mp4", None


def c_read_only(d, b, w):
    if os.geteuid() == 0:  # root writes anywhere chmod allows nothing; sysfs refuses new files even to root
        return _video(d, b, w, Path("/sys/vidcolor-out.mp4")), [b], Path("/sys/vidcolor-out.mp4"), None
    ro = d / "ro"
    ro.mkdir(mode=0o500)
    return _video(d, b, w, ro / "out.mp4"), [b], ro / "out.mp4", None


def c_batch(value: str) -> Case:
    def make(d, b, w):
        return _video(d, b, w, extra=("--batch-size", value)), [b], d / "out.mp4", None
    return make


def c_no_weights(d, b, w):
    return _video(d, b, w, extra=("--weights", str(d / "none.pt"))), [b], d / "out.mp4", None


def c_no_hints_file(d, b, w):
    return _video(d, b, w, extra=("--hints", str(d / "pins.json"))), [b], d / "out.mp4", None


def c_garbage_weights(d, b, w):
    (d / "junk.pt").write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return _video(d, b, w, extra=("--weights", str(d / "junk.pt"))), [b, d / "junk.pt"], d / "out.mp4", None


def c_cuda(d, b, w):
    return _video(d, b, w, extra=("--device", "cuda")), [b], d / "out.mp4", None


def c_bad_ext(d, b, w):
    return _video(d, b, w, d / "out.xyz"), [b], d / "out.xyz", None


def c_codec_without_segments(d, b, w):
    return _video(d, b, w, d / "out.mkv", ("--codec", "huffyuv")), [b], d / "out.mkv", None


def c_webm_aac(d, b, w):
    return _video(d, b, w, d / "out.webm", ("--codec", "libvpx-vp9")), [b], d / "out.webm", None


ERRORS: dict[str, tuple[Case, int, tuple[str, ...]]] = {
    "missing file": (c_missing, 2, ("input not found",)),
    "empty file": (c_empty, 2, ("empty file",)),
    "random bytes": (c_random, 2, ("cannot read", "as a video")),
    "text as mp4": (c_text, 2, ("cannot read", "as a video")),
    "mp4 without moov": (c_no_moov, 2, ("cannot read", "cut short")),
    "audio only": (c_audio_only, 2, ("no video stream", "audio")),
    "directory as video": (c_dir_as_video, 2, ("is a directory", "vidcolor frames")),
    "empty frame folder": (c_empty_frames, 2, ("no PNG, JPEG or TIFF frames",)),
    "DPX scans": (c_dpx_frames, 2, ("only .dpx files", "convert them to 16-bit TIFF")),
    "corrupt frame file": (c_corrupt_frame, 2, ("cannot read frame", "f1.png")),
    "frames into own folder": (c_frames_same_dir, 1, ("is the input folder",)),
    "output is input": (c_same_path, 1, ("same", "as the input")),
    "output is input via symlink": (c_same_symlink, 1, ("same file as the input",)),
    "output is input via ./": (c_same_dot, 1, ("same", "as the input")),
    "output folder missing": (c_no_parent, 1, ("output folder does not exist",)),
    "output folder is a file": (c_parent_is_file, 1, ("is not a folder",)),
    "output folder read-only": (c_read_only, 1, ("not writable",)),
    "batch size 0": (c_batch("0"), 2, ("--batch-size", "0")),
    "batch size -1": (c_batch("-1"), 2, ("--batch-size", "-1")),
    "batch size abc": (c_batch("abc"), 2, ("--batch-size", "abc")),
    "missing weights": (c_no_weights, 1, ("weights file not found",)),
    "garbage weights": (c_garbage_weights, 1, ("not a readable vidcolor weights file",)),
    "missing hints file": (c_no_hints_file, 1, ("hints file not found", "pins.json")),
    "cuda without cuda": (c_cuda, 1, ("CUDA is not available",)),
    "unsupported extension": (c_bad_ext, 1, ("unsupported output extension", ".xyz")),
    "codec mp4 and mov refuse": (c_codec_without_segments, 1, ("--codec huffyuv", "mp4 or mov")),
    "container cannot hold audio": (c_webm_aac, 1, (".webm files cannot hold", "aac", ".mkv")),
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory, base, random_weights) -> dict:
    """Build every error case and run them all, two processes at a time (interpreter start-up dominates)."""
    root = tmp_path_factory.mktemp("errors")
    jobs = {}
    for i, (name, (make, _, _)) in enumerate(ERRORS.items()):
        argv, inputs, out, cwd = make(_case_dir(root, f"c{i:02d}"), base, random_weights)
        jobs[name] = (argv, {p: digest(p) for p in inputs}, out, cwd, digest(out))

    def run(name: str) -> subprocess.CompletedProcess:
        argv, _, _, cwd, _ = jobs[name]
        return subprocess.run(cli(*argv), env=env(), capture_output=True, text=True, cwd=cwd, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(run, jobs)))
    return {name: (results[name], *jobs[name]) for name in jobs}


def assert_one_line_error(r: subprocess.CompletedProcess, code: int, words: tuple[str, ...]) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidcolor: error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert r.returncode == code, (r.returncode, r.stderr)


@pytest.mark.parametrize("name", list(ERRORS))
def test_error_case(name, error_runs):
    r, argv, hashes, out, cwd, out_before = error_runs[name]
    if name == "cuda without cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _, code, words = ERRORS[name]
    assert_one_line_error(r, code, words)
    for p, h in hashes.items():
        assert digest(p) == h, f"input {p} was modified"
    assert digest(out) == out_before, "something was written under the final OUTPUT name"
    for p in out.parent.glob(".*partial*") if out.parent.is_dir() else []:
        raise AssertionError(f"partial output left: {p}")


# ---------------------------------------------------------------- odd formats that must work (in-process)

def check_like(src: Path, out: Path, n: int | None = None) -> dict:
    """Output has the input's frame count, size, frame times and audio packets (bytes and times)."""
    a, b = read_video(src), read_video(out)
    assert len(b["frames"]) == (n if n is not None else len(a["frames"]))
    assert b["size"] == a["size"]
    assert np.allclose(b["times"], a["times"][: len(b["times"])], atol=1e-3)
    assert [x[0] for x in b["audio"]] == [x[0] for x in a["audio"]]
    assert np.allclose([x[1] for x in b["audio"]], [x[1] for x in a["audio"]], atol=1e-3)
    return b


def test_ten_bit_input_keeps_ten_bit(tmp_path, random_weights):
    src = tmp_path / "ten.mp4"
    make_clip(src, n=6, pix_fmt="yuv420p10le")
    h = digest(src)
    out = tmp_path / "out.mp4"
    res = colour_video(src, out, random_weights, segment_frames=8)
    assert res.frames == 6 and not res.warnings
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.format.name == "yuv420p10le"
    check_like(src, out)
    assert digest(src) == h


def test_prores_output_for_editors(tmp_path, random_weights):
    # ProRes is what editing suites take; mp4 cannot hold it, so the job's segments are mov files
    src = tmp_path / "ten.mov"
    make_clip(src, n=10, pix_fmt="yuv422p10le")
    out = tmp_path / "out.mov"
    res = colour_video(src, out, random_weights, segment_frames=4, encode=encode.EncodeOptions(codec="prores_ks"))
    assert res.frames == 10 and not res.warnings
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.format.name) == ("prores", "yuv422p10le")
    check_like(src, out)


def test_rotation_is_kept(tmp_path, random_weights):
    src = tmp_path / "phone.mp4"
    write_clip(src, n=4, w=64, h=48, rotation=90)
    out = tmp_path / "out.mp4"
    res = colour_video(src, out, random_weights)
    assert any("rotation (90" in n for n in res.notes)
    with av.open(str(out)) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 90 and (f.width, f.height) == (64, 48)  # stored as is, displayed turned
    check_like(src, out)


def test_variable_frame_rate_pts_kept(tmp_path, random_weights):
    src = tmp_path / "vfr.mp4"
    info = make_clip(src, n=9, vfr=True)
    out = tmp_path / "out.mp4"
    colour_video(src, out, random_weights)
    b = check_like(src, out)
    assert np.allclose(b["times"], [float(p * info["time_base"]) for p in info["pts"]], atol=1e-3)
    assert len(set(np.round(np.diff(b["times"]), 4))) == 2


@pytest.mark.parametrize("w,h", [(33, 17), (2, 2)])
def test_odd_and_tiny_sizes(tmp_path, random_weights, w, h):
    src = tmp_path / "odd.mkv"
    make_clip(src, n=4, w=w, h=h, pix_fmt="yuv444p")
    out = tmp_path / "out.mkv"
    res = colour_video(src, out, random_weights)
    assert res.frames == 4
    assert check_like(src, out)["size"] == (w, h)


def test_interlaced_is_reported_and_deinterlace_keeps_timing(tmp_path, random_weights):
    src = tmp_path / "tv.mp4"
    write_clip(src, n=4, w=64, h=48, x264_params="interlaced=1:tff=1")
    assert videoio.probe(src).interlaced
    res = colour_video(src, tmp_path / "a.mp4", random_weights)
    assert any("interlaced" in w and "--deinterlace" in w for w in res.warnings)
    res = colour_video(src, tmp_path / "b.mp4", random_weights, deinterlace=True)
    assert any("deinterlaced" in w for w in res.warnings)
    check_like(src, tmp_path / "b.mp4")
    combed = np.zeros((6, 4, 3), np.uint8)
    combed[::2] = 200  # two fields far apart: blending must leave no comb
    flat = decode.blend_fields(combed)
    assert np.ptp(flat[1:-1].astype(int), axis=0).max() <= 50


def test_colour_input_is_noted(tmp_path, random_weights):
    src = tmp_path / "colour.mp4"
    make_clip(src, n=4, grey=False)
    out = tmp_path / "out.mp4"
    res = colour_video(src, out, random_weights)
    assert any("already in colour" in w and "luminance" in w for w in res.warnings)
    check_like(src, out)


def test_frame_folder_mixing_sizes_depths_and_alpha(tmp_path, random_weights):
    import imageio.v3 as iio
    import tifffile

    src = tmp_path / "scans"
    src.mkdir()
    rng = np.random.default_rng(5)
    g8 = frame_pattern(0, 40, 30)[..., 0]
    rgb16 = (frame_pattern(1, 32, 24).astype(np.uint16) * 257)
    rgba8 = np.dstack([frame_pattern(2, 36, 20), rng.integers(0, 256, (20, 36), dtype=np.uint8)])
    rgba16 = np.dstack([frame_pattern(3, 30, 22).astype(np.uint16) * 257,
                        rng.integers(0, 65536, (22, 30), dtype=np.uint16)])
    g16 = frame_pattern(4, 28, 28)[..., 0].astype(np.uint16) * 257
    iio.imwrite(src / "f1.png", g8)
    frameio.write_frame(src / "f2.png", rgb16, None)
    iio.imwrite(src / "f3.png", rgba8)
    frameio.write_frame(src / "f4.png", rgba16[..., :3], rgba16[..., 3])
    tifffile.imwrite(str(src / "f5.tif"), g16)
    iio.imwrite(src / "f6.jpg", frame_pattern(5, 48, 32), quality=95)
    h = digest(src)
    out = tmp_path / "out"
    res = colorize_frames(src, out, settings(random_weights), progress=False)
    assert res.frames == 6 and digest(src) == h
    assert sorted(p.name for p in out.iterdir()) == ["f1.png", "f2.png", "f3.png", "f4.png", "f5.tif", "f6.jpg"]
    for name in ["f1.png", "f2.png", "f3.png", "f4.png", "f5.tif", "f6.jpg"]:
        a, b = frameio.read_frame(src / name), frameio.read_frame(out / name)
        assert b.rgb.shape == a.rgb.shape and b.rgb.dtype == a.rgb.dtype, name
        assert (b.alpha is None) == (a.alpha is None), name
        if a.alpha is not None:
            assert np.array_equal(a.alpha, b.alpha), name
    assert frameio.read_frame(out / "f2.png").rgb.dtype == np.uint16
    assert frameio.read_frame(out / "f4.png").rgb.dtype == np.uint16


def test_frame_folder_mixing_depths_at_one_size_keeps_each_files_depth(tmp_path, random_weights):
    """8- and 16-bit scans of one size share batches: each comes out at its own depth, the 16-bit ones
    with their 16-bit precision (not 8-bit values scaled up)."""
    import imageio.v3 as iio
    import tifffile

    src = tmp_path / "scans"
    src.mkdir()
    y, x = np.mgrid[0:48, 0:64]
    g16 = (x * 1000 + y * 7 + 3).astype(np.uint16)  # uses all 16 bits
    writers = [lambda p: iio.imwrite(p.with_suffix(".png"), (g16 >> 8).astype(np.uint8)),
               lambda p: iio.imwrite(p.with_suffix(".png"), g16),
               lambda p: tifffile.imwrite(str(p.with_suffix(".tif")), np.dstack([g16] * 3)),
               lambda p: frameio.write_frame(p.with_suffix(".png"), np.dstack([g16] * 3), None),
               lambda p: tifffile.imwrite(str(p.with_suffix(".tif")), np.dstack([(g16 >> 8).astype(np.uint8)] * 3))]
    for i in range(10):
        writers[i % len(writers)](src / f"s{i}")
    out = tmp_path / "out"
    colorize_frames(src, out, settings(random_weights, batch_size=8), progress=False)
    for p in src.iterdir():
        a, b = frameio.read_frame(p).rgb, frameio.read_frame(out / p.name).rgb
        assert b.dtype == a.dtype, p.name
        if a.dtype == np.uint16:
            assert len(np.unique(b & 255)) > 200, p.name  # low bytes vary: real 16-bit output
            grey_in, grey_out = a.astype(float).mean(-1), b.astype(float).mean(-1)
            assert np.abs(grey_in - grey_out).mean() < 3 * 257, p.name  # the scan's own lightness


# ---------------------------------------------------------------- damage in the middle of a stream

@pytest.fixture(scope="module")
def damaged(tmp_path_factory, random_weights) -> dict:
    """A clip with one zeroed packet mid-stream, and a faststart copy cut short; both run as the real command."""
    d = tmp_path_factory.mktemp("damaged")
    clean = d / "clean.mp4"
    make_clip(clean, n=24)
    pk = video_packets(clean)
    bad = d / "corrupt.mp4"
    data = bytearray(clean.read_bytes())
    _, pos, size, key = pk[10]
    assert not key
    data[pos:pos + size] = bytes(size)  # the packet is there, its content is not
    bad.write_bytes(bytes(data))
    fast = d / "fast.mp4"
    remux(clean, fast, movflags="faststart")
    cut = d / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])
    hashes = {name: digest(d / f"{name}.mp4") for name in ("corrupt", "cut")}

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli("video", str(d / f"{name}.mp4"), str(d / f"{name}_out.mp4"), "--weights",
                                  str(random_weights), *OPTS), env=env(), capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(hashes, pool.map(run, hashes)))
    runs = {name: (done[name], d / f"{name}.mp4", d / f"{name}_out.mp4", hashes[name]) for name in hashes}
    runs["clean"] = clean
    return runs


def test_corrupt_packet_mid_stream_keeps_count_and_timing(damaged):
    r, src, out, h = damaged["corrupt"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(ln.startswith("vidcolor: warning: ") for ln in lines), r.stderr
    assert any("1 of 24 frames could not be decoded" in ln for ln in lines), r.stderr
    b = read_video(out)
    clean = read_video(damaged["clean"])
    assert len(b["frames"]) == 24 and b["size"] == (64, 48)
    assert np.allclose(b["times"], clean["times"], atol=1e-3)
    assert [x[0] for x in b["audio"]] == [x[0] for x in clean["audio"]]
    assert digest(src) == h


def test_file_cut_short_keeps_what_is_readable(damaged):
    r, src, out, h = damaged["cut"]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "ends early" in r.stderr
    b = read_video(out)
    clean = read_video(damaged["clean"])
    readable = readable_times(src)  # one frame per packet that is still in the file, at its own time
    assert 4 <= len(readable) < 24 and len(b["frames"]) == len(readable)
    assert np.allclose(b["times"], readable, atol=1e-3)
    got_audio = [x[0] for x in b["audio"]]
    assert got_audio and got_audio == [x[0] for x in clean["audio"]][: len(got_audio)]
    assert digest(src) == h


def test_mkv_cut_short(tmp_path, random_weights):
    clean = tmp_path / "clean.mkv"
    make_clip(clean, n=12)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clean.read_bytes()[: int(clean.stat().st_size * 0.7)])
    res = colour_video(cut, tmp_path / "out.mkv", random_weights)
    b = read_video(tmp_path / "out.mkv")
    readable = readable_times(cut)
    assert len(b["frames"]) == res.frames == len(readable) and 4 <= res.frames < 12
    assert np.allclose(b["times"], readable, atol=1e-3)


def test_decode_report_slots_repeat_last_good_frame():
    """The slot rule on its own: a rejected packet's slot repeats the previous good picture."""
    rep = decode.DecodeReport()

    class F:  # the few VideoFrame attributes _Slots reads
        def __init__(self, pts):
            self.pts, self.dts, self.is_corrupt = pts, None, False

    slots = decode._Slots(rep, 1, lambda f: np.full((2, 2, 3), f.pts, np.uint8))
    sent = [0, 1, 2, 3, 4]
    rep.errors = 2  # packets 0 and 2 were rejected
    out = slots.place(F(1), sent) + slots.place(F(3), sent) + slots.place(F(4), sent) + slots.finish(sent)
    assert [f.pts for f in out] == [0, 1, 2, 3, 4]
    assert [f.damaged for f in out] == [True, False, True, False, False]
    assert [int(f.image[0, 0, 0]) for f in out] == [1, 1, 1, 3, 4]  # first slot takes the first good picture
    assert rep.filled == 2 and rep.faithful
    assert slots.place(F(2), sent) == [] and rep.dropped == 1 and not rep.faithful


def test_timestamp_hours_ahead_is_damage_not_a_traceback(tmp_path, random_weights):
    """One frame's pts hours ahead of its neighbours' (seen when fuzzing MPEG-TS): the mp4 segment muxer
    refuses it (pts - dts > 2^31, 'patches welcome'); that is damaged input, exit 4 in one line."""
    clean = tmp_path / "clean.mp4"
    make_clip(clean, n=24, audio=False)
    src = tmp_path / "jump.ts"
    with av.open(str(clean)) as c, av.open(str(src), "w") as out:
        s = out.add_stream_from_template(c.streams.video[0])
        for i, p in enumerate(c.demux(video=0)):
            if p.dts is None:
                continue
            if i == 10:
                p.pts += int(Fraction(9 * 3600) / p.time_base)  # 9 h later: over 2^31 ticks at 90 kHz
            p.stream = s
            out.mux(p)
    h = digest(src)
    out = tmp_path / "out.mp4"
    code, err = run_cli("video", src, out, "--weights", random_weights, *OPTS)
    lines = err.strip().splitlines()
    assert code == 4, err
    assert len(lines) == 1 and lines[0].startswith(f"vidcolor: error: a frame timestamp of {src} jumps"), err
    assert not out.exists() and digest(src) == h


# ---------------------------------------------------------------- resources running out (in-process)

def fail_from_call(monkeypatch, owner, name: str, n: int, error: Callable[[], BaseException]):
    """Patch ``owner.name`` so that its n-th call (1-based) and every later one raise ``error()``.
    Returns the original, for putting back."""
    real = getattr(owner, name)
    calls = []

    def patched(*a, **k):
        calls.append(1)
        if len(calls) >= n:
            raise error()
        return real(*a, **k)

    monkeypatch.setattr(owner, name, patched)
    return real


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_out_of_memory_retries_with_smaller_batches(tmp_path, random_weights, monkeypatch, base):
    ref = tmp_path / "ref.mp4"
    colour_video(base, ref, random_weights, batch_size=1)
    real = Engine.predict

    def predict(self, frames, *a, **k):
        if len(frames) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, frames, *a, **k)

    monkeypatch.setattr(Engine, "predict", predict)
    out = tmp_path / "out.mp4"
    res = colour_video(base, out, random_weights, batch_size=4)
    assert any("out of memory" in w and "batches of 2" in w for w in res.warnings)
    assert any("batches of 1" in w for w in res.warnings)
    b, want = check_like(base, out), read_video(ref)
    assert all(np.array_equal(x, y) for x, y in zip(b["frames"], want["frames"]))  # coloured, as batch 1 colours


def test_out_of_memory_for_one_frame_fails_cleanly(tmp_path, random_weights, monkeypatch, base):
    def predict(self, frames, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Engine, "predict", predict)
    out = tmp_path / "out.mp4"
    with pytest.raises(VidcolorError, match="even for a single frame"):
        colour_video(base, out, random_weights)
    assert not out.exists()


def test_resume_after_out_of_memory_keeps_the_smaller_batches(tmp_path, random_weights, monkeypatch, base):
    """A run that had to split its batches records that, and its resume splits them the same way,
    so the resumed frames are computed as the interrupted run would have computed them."""
    real_predict = Engine.predict
    sizes = []

    def oom_predict(self, frames, *a, **k):
        if len(frames) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_predict(self, frames, *a, **k)

    monkeypatch.setattr(Engine, "predict", oom_predict)
    real_write = fail_from_call(monkeypatch, encode.SegmentWriter, "write", 6, KeyboardInterrupt)
    out = tmp_path / "out.mp4"
    with pytest.raises(VidcolorError, match="resume"):
        colour_video(base, out, random_weights, segment_frames=4)

    def record(self, frames, *a, **k):  # plenty of memory now
        sizes.append(len(frames))
        return real_predict(self, frames, *a, **k)

    monkeypatch.setattr(Engine, "predict", record)
    monkeypatch.setattr(encode.SegmentWriter, "write", real_write)
    colour_video(base, out, random_weights, segment_frames=4)
    assert out.exists() and sizes and max(sizes) == 2


def test_encoder_thread_error_reaches_the_caller(tmp_path, random_weights, monkeypatch, base):
    """x264 and the muxer run in the writer's own thread; a disk error there must still stop the
    run with the resume message, not be lost or hang."""
    out = tmp_path / "out.mp4"
    real = fail_from_call(monkeypatch, encode.SegmentWriter, "_encode", 3, _enospc)
    with pytest.raises(VidcolorError, match="No space left on device.*resume"):
        colour_video(base, out, random_weights, segment_frames=4)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    monkeypatch.setattr(encode.SegmentWriter, "_encode", real)
    colour_video(base, out, random_weights, segment_frames=4)  # the same command resumes and finishes
    assert out.exists()


def test_full_disk_stops_cleanly_and_resumes(tmp_path, random_weights, monkeypatch, base):
    h = digest(base)
    out = tmp_path / "out.mp4"
    real = fail_from_call(monkeypatch, encode.SegmentWriter, "write", 6, _enospc)
    with pytest.raises(VidcolorError, match="No space left on device.*resume"):
        colour_video(base, out, random_weights, segment_frames=4)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    monkeypatch.setattr(encode.SegmentWriter, "write", real)

    real_join = fail_from_call(monkeypatch, mux, "join_segments", 1, _enospc)  # the disk fills again in the mux
    with pytest.raises(VidcolorError, match="No space left on device.*re-run"):
        colour_video(base, out, random_weights, segment_frames=4)
    assert not out.exists()
    monkeypatch.setattr(mux, "join_segments", real_join)

    res = colour_video(base, out, random_weights, segment_frames=4)
    assert res.resumed_at == 8  # everything was coloured before the mux failed: nothing is redone
    check_like(base, out)
    assert digest(base) == h
    assert not list(tmp_path.glob(".*"))


def test_full_disk_on_frames_stops_cleanly_and_resumes(tmp_path, random_weights, monkeypatch):
    import imageio.v3 as iio

    src = _frames_dir(tmp_path / "scans", n=5)
    out = tmp_path / "out"
    real = fail_from_call(monkeypatch, iio, "imwrite", 3, _enospc)
    with pytest.raises(VidcolorError, match="No space left on device.*resume"):
        colorize_frames(src, out, settings(random_weights), progress=False)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["f0.png", "f1.png"]
    monkeypatch.setattr(iio, "imwrite", real)
    res = colorize_frames(src, out, settings(random_weights), progress=False)
    assert res.resumed_at == 2 and sorted(p.name for p in out.iterdir()) == [f"f{i}.png" for i in range(5)]


def test_no_frame_decodes_is_an_input_error(tmp_path, random_weights):
    src = tmp_path / "allbad.mp4"
    make_clip(src, n=6, audio=False)
    data = bytearray(src.read_bytes())
    for _, pos, size, _ in video_packets(src):
        data[pos:pos + size] = bytes(size)
    src.write_bytes(bytes(data))
    with pytest.raises(InputError, match="no frame"):
        colour_video(src, tmp_path / "out.mp4", random_weights)
    assert not (tmp_path / "out.mp4").exists()


# ---------------------------------------------------------------- unexpected errors (bugs) in the CLI

@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_is_one_line_with_a_logged_traceback_and_resumes(tmp_path, random_weights, monkeypatch,
                                                                           debug):
    """A bug is still one `vidcolor: error: FILE: ...` line and exit 1: the traceback goes to a log file
    whose path is printed (or to stderr with --debug), and the job is kept so the same command resumes."""
    monkeypatch.setenv("VIDCOLOR_LOG_DIR", str(tmp_path / "logs"))
    base = tmp_path / "clip.mp4"
    make_clip(base, n=16)
    out = tmp_path / "out.mp4"
    args = ["video", base, out, "--weights", random_weights, "--batch-size", "4", "--segment-frames", "8",
            "--render-size", "32", "-q", *(["--debug"] if debug else [])]
    real = fail_from_call(monkeypatch, encode.SegmentWriter, "write", 12, lambda: RuntimeError("boom\nsecond line"))
    code, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1].startswith(f"vidcolor: error: {base}: unexpected RuntimeError: boom second line")
    logs = list((tmp_path / "logs").glob("vidcolor-*.log")) if (tmp_path / "logs").exists() else []
    if debug:
        assert "Traceback" in err and not logs
    else:
        assert len(lines) == 1 and "Traceback" not in err and len(logs) == 1
        assert lines[0].endswith(f"the traceback is in {logs[0]}")
        assert "Traceback" in logs[0].read_text() and "boom" in logs[0].read_text()
    assert not out.exists() and (tmp_path / ".out.mp4.vidcolor-job" / "seg_000000.mp4").is_file()
    monkeypatch.setattr(encode.SegmentWriter, "write", real)
    code, err = run_cli(*[a for a in args if a != "-q"])
    assert code == 0 and "resuming at frame 8" in err, err
    check_like(base, out)
