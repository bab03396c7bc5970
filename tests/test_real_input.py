"""The real-input matrix: files made by the ``ffmpeg`` command as users' files are (see tests/realinput.py).

For each: the exit code; for whole files, the frame count, frame times, size, bit depth, rotation, and the
audio/subtitle packets (bytes and times) against the input's, and that every output frame decodes; for
damaged files, exit 0 with an output that decodes and copies only the input's own packets, or one error
line and no output. The input is never touched and no traceback reaches stderr.
"""
from __future__ import annotations

import hashlib

import pytest

from . import realinput as ri
from .conftest import run_cli

pytestmark = pytest.mark.skipif(ri.FFMPEG is None, reason="needs the ffmpeg command (bash scripts/setup.sh --test)")


def colour(src: ri.Source, folder, weights) -> tuple[int, str, object, object]:
    """Make ``src``, run ``vidcolor video`` on it; (exit code, stderr, input path, output path)."""
    try:
        inp = ri.make(src, folder)
    except ri.MissingEncoder as e:
        pytest.skip(str(e))
    before = hashlib.sha256(inp.read_bytes()).hexdigest()
    out = folder / f"out{src.out}"
    code, err = run_cli("video", inp, out, "--weights", weights, "--render-size", "32", "--batch-size", "4",
                        "--preset", "ultrafast", *src.options)
    assert hashlib.sha256(inp.read_bytes()).hexdigest() == before, "the input was modified"
    return code, err, inp, out


@pytest.mark.parametrize("src", ri.MATRIX, ids=lambda s: s.name)
def test_real_input(src: ri.Source, tmp_path, random_weights, one_model):
    code, err, inp, out = colour(src, tmp_path, random_weights)
    folder = tmp_path
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and code in src.exits, err
    if code:
        assert len(lines) == 1 and lines[0].startswith("vidcolor: error: ") and src.says in lines[0], err
        assert not out.exists() and not list(folder.glob(".out*")), "a failed run left files behind"
        return
    assert all(ln.startswith("vidcolor: ") for ln in lines), err
    got = ri.read(out)
    problems = ri.check_damaged_output(inp, got) if src.damage else ri.check_output(ri.read(inp), got)
    assert problems == [], problems
    if src.damage:  # what was lost is said
        assert any(ln.startswith("vidcolor: warning: ") for ln in lines), err
    if src.cover:  # the stream left out is named
        assert any("other video streams (#0 mjpeg" in ln for ln in lines), err
    for key, want in src.tags.items():  # what the input must keep beyond its frames and sound
        assert got[key] == want, (key, got[key])
