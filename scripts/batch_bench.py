"""Throughput of `vidcolor batch` against one `vidcolor video` per file, and a reel in chunks on Ray.

    python scripts/batch_bench.py files /tmp/bb --clips ../shared/data/clips --repeat 2
    python scripts/batch_bench.py reel /tmp/bb --clip ../shared/data/clips/imageio_cockatoo_8s.mp4 --times 4

`files` cuts every clip into two halves (grey, no sound) to get 20 short clips,
then times, interleaved, (a) `vidcolor video` run once per clip, one after the
other, and (b) one `vidcolor batch` over the folder; it prints files per hour.
`reel` makes a long reel (scripts/long_reel.py), then times `vidcolor video`
(one process) against `vidcolor batch --ray auto` (a local Ray with a worker
per core, the reel in chunks), and checks that their frames are identical.
Every figure is wall time of the commands as a user runs them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
VIDCOLOR = [sys.executable, "-m", "vidcolor.cli"]


def run(cmd: list[str], ok: tuple[int, ...] = (0,)) -> float:
    t0 = time.time()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode not in ok:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.time() - t0


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(c.streams.video[0]) if _.size)


def make_halves(clips: Path, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(clips.glob("*.mp4")):
        n = frame_count(src)
        for k, (a, b) in enumerate([(0, n // 2), (n // 2, n)]):
            p = dest / f"{src.stem}_{k}.mp4"
            if not p.exists():
                run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-an", "-vf",
                     f"trim=start_frame={a}:end_frame={b},setpts=PTS-STARTPTS,hue=s=0",
                     "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(p)])
            out.append(p)
    return out


def files(args: argparse.Namespace) -> None:
    work = Path(args.work)
    clips = make_halves(Path(args.clips), work / "clips")
    frames = sum(frame_count(c) for c in clips)
    print(f"{len(clips)} clips, {frames} frames")
    seq, bat = [], []
    for r in range(args.repeat):
        order = ("sequential", "batch") if args.first == "sequential" else ("batch", "sequential")
        for mode in order if r % 2 == 0 else order[::-1]:
            out = work / f"out_{mode}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if mode == "sequential":
                t = sum(run(VIDCOLOR + ["video", str(c), str(out / c.name), "-q"]) for c in clips)
                seq.append(t)
            else:
                t = run(VIDCOLOR + ["batch", str(work / "clips"), "--out", str(out), "-q"])
                bat.append(t)
            print(f"run {r + 1} {mode}: {t:.1f} s, {len(clips) * 3600 / t:.0f} files/h, {frames / t:.2f} fps "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    s, b = float(np.median(seq)), float(np.median(bat))
    print(f"median sequential {s:.1f} s ({len(clips) * 3600 / s:.0f} files/h) vs batch {b:.1f} s "
          f"({len(clips) * 3600 / b:.0f} files/h): x{s / b:.2f}")


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def reel(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "reel.mp4"
    if not src.exists():
        run([sys.executable, "scripts/long_reel.py", args.clip, str(src), str(args.times)])
    n = frame_count(src)
    seg = ["--segment-frames", str(args.segment_frames)]
    one, ray = work / "one.mp4", work / "ray"
    one.unlink(missing_ok=True)
    shutil.rmtree(ray, ignore_errors=True)
    t1 = run(VIDCOLOR + ["video", str(src), str(one), "-q", *seg])
    print(f"one process: {n} frames in {t1:.1f} s ({n / t1:.2f} fps)", flush=True)
    t2 = run(VIDCOLOR + ["batch", str(src), "--out", str(ray), "--ray", "auto", "--chunk-frames",
                         str(args.chunk_frames), "-q", *seg])
    print(f"Ray, chunks of {args.chunk_frames} frames: {t2:.1f} s ({n / t2:.2f} fps), x{t1 / t2:.2f}")
    a, b = decoded(one), decoded(ray / "reel.mp4")
    same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    print(f"frames: {len(a)} vs {len(b)}, identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("files")
    f.add_argument("work")
    f.add_argument("--clips", default=str(REPO.parent / "shared" / "data" / "clips"))
    f.add_argument("--repeat", type=int, default=2)
    f.add_argument("--first", choices=["sequential", "batch"], default="sequential")
    r = sub.add_parser("reel")
    r.add_argument("work")
    r.add_argument("--clip", default=str(REPO.parent / "shared" / "data" / "clips" / "imageio_cockatoo_8s.mp4"))
    r.add_argument("--times", type=int, default=4)
    r.add_argument("--segment-frames", type=int, default=80)
    r.add_argument("--chunk-frames", type=int, default=160)
    args = ap.parse_args()
    files(args) if args.what == "files" else reel(args)


if __name__ == "__main__":
    main()
