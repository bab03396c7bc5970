"""scripts/compare_evals.py: paired differences of two eval_dev reports, and its one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_evals.py"


def _report(path: Path, psnrs: dict[str, float]) -> Path:
    items = [{"file": f, "source": f.split("__")[0], "pred_psnr": p, "grey_psnr": 20.0} for f, p in psnrs.items()]
    path.write_text(json.dumps({"items": items}))
    return path


def _run(*args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_paired_difference_and_sources(tmp_path):
    base = _report(tmp_path / "a.json", {"pano__1.jpg": 24.0, "pano__2.jpg": 24.0, "cat__1.jpg": 20.0, "only__a.jpg": 9})
    new = _report(tmp_path / "b.json", {"pano__1.jpg": 21.0, "pano__2.jpg": 23.0, "cat__1.jpg": 21.0})
    r = _run(base, new)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "comparing the 3 photos both hold" in out
    assert "difference -1.00 dB" in out           # (-3 - 1 + 1) / 3
    assert "better on 1, worse on 2" in out
    assert "over 2 sources: -0.50 dB" in out      # pano -2.00, cat +1.00
    assert out.index("pano__1.jpg") < out.index("cat__1.jpg")  # the biggest loss is listed first


def test_bad_report_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    good = _report(tmp_path / "g.json", {"x__1.jpg": 20.0})
    r = _run(bad, good)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    no_psnr = tmp_path / "np.json"
    no_psnr.write_text(json.dumps({"items": [{"file": "x__1.jpg", "source": "x"}]}))
    r = _run(good, no_psnr)
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    r = _run(good, _report(tmp_path / "h.json", {"y__1.jpg": 20.0}))
    assert r.returncode != 0 and "share no photos" in r.stderr
