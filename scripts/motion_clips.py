"""Build synthetic colour clips with known motion from the training photos.

    .venv/bin/python scripts/motion_clips.py OUT_DIR [--data ../shared/data] [--frames 48]

Writes into OUT_DIR (never into the repo):
  pan.mp4      a still photo panned (sub-pixel, diagonal)
  zoom.mp4     a still photo zoomed in
  cut.mp4      three shots of different photos (pan, reverse pan, zoom), hard cuts at n/3 and 2n/3
  object.mp4   a disc cut from a face photo moving over another, still photo
  flicker.mp4  a slow pan with film-like brightness flicker and one flash frame (no cut)
  splice.mp4   real footage with real motion: 24 frames each of three DAVIS clips from
               DATA/clips, hard cuts at 24 and 48 (only if those clips are there)
  clips.json   frame count, size and true cut positions of each clip

Photos come from the held-out dev split (vidcolor.data.is_dev), so the model
has not seen them; the choice is fixed by --seed.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidcolor.data import is_dev
from vidcolor.testclips import write_rgb_video

W, H = 448, 256  # 16:9-ish, a multiple of 8, short side = the default render size
FPS = 24


def pick_photos(data: Path, seed: int) -> tuple[list[Path], list[Path]]:
    """Wide dev photos (for pans) and dev face photos (the moving object), each in a seeded order.

    The object is a face because any colorizer trained on these photos gives
    skin a clear colour, so a trail behind it would be easy to see.
    """
    with open(data / "train_manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if is_dev(r["file"])]
    rng = np.random.default_rng(seed)
    wide = [data / "train" / r["file"] for r in rows if int(r["width"]) >= 1.45 * int(r["height"])]
    faces = [data / "train" / r["file"] for r in rows if r["source"] == "lfw"]
    return [wide[i] for i in rng.permutation(len(wide))], [faces[i] for i in rng.permutation(len(faces))]


def view(photo: Image.Image, cx: float, cy: float, s: float) -> np.ndarray:
    """The W x H frame showing the photo around (cx, cy) at s photo pixels per frame pixel."""
    data = (s, 0.0, cx - s * W / 2, 0.0, s, cy - s * H / 2)
    return np.asarray(photo.transform((W, H), Image.AFFINE, data, resample=Image.BICUBIC))


def fit_scale(photo: Image.Image, margin: float) -> float:
    """Largest s (photo px per frame px) that leaves ``margin`` of the photo free to move in."""
    return min(photo.width * (1 - margin) / W, photo.height * (1 - margin) / H)


def pan(photo: Image.Image, n: int, direction: float = 1.0) -> list[np.ndarray]:
    s = fit_scale(photo, 0.25)
    fw, fh = W * s, H * s
    x0, x1 = fw / 2 + 1, photo.width - fw / 2 - 1
    y0, y1 = fh / 2 + 1, photo.height - fh / 2 - 1
    out = []
    for i in range(n):
        u = i / max(n - 1, 1)
        u = u if direction > 0 else 1 - u
        out.append(view(photo, x0 + (x1 - x0) * u, y0 + (y1 - y0) * (0.3 + 0.4 * u), s))
    return out


def zoom(photo: Image.Image, n: int) -> list[np.ndarray]:
    s0 = fit_scale(photo, 0.02)
    return [view(photo, photo.width / 2, photo.height / 2, s0 * 0.55 ** (i / max(n - 1, 1))) for i in range(n)]


def moving_object(bg: Image.Image, obj: Image.Image, n: int, radius: int = 44) -> list[np.ndarray]:
    back = view(bg, bg.width / 2, bg.height / 2, fit_scale(bg, 0.0)).astype(np.float32)
    side = 2 * radius + 4
    c = min(obj.size) * 0.7  # the central part of the photo: the face, not the backdrop
    box = ((obj.width - c) / 2, (obj.height - c) / 2, (obj.width + c) / 2, (obj.height + c) / 2)
    patch = np.asarray(obj.resize((side, side), Image.LANCZOS, box=box)).astype(np.float32)
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2
    alpha = np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)[..., None]  # anti-aliased rim
    out = []
    for i in range(n):
        u = i / max(n - 1, 1)
        cx = 50 + (W - 100) * u
        cy = H / 2 + 50 * np.sin(2 * np.pi * u)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        f = back.copy()
        f[y0:y0 + side, x0:x0 + side] = alpha * patch + (1 - alpha) * f[y0:y0 + side, x0:x0 + side]
        out.append(np.clip(f + 0.5, 0, 255).astype(np.uint8))
    return out


def flicker(photo: Image.Image, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    gains = 1.0 + 0.08 * rng.standard_normal(n)
    gains[n // 2] = 1.7  # one overexposed frame, as in a flash or a splice
    out = []
    for g, f in zip(gains, pan(photo, n)):
        out.append(np.clip(f.astype(np.float32) * g + 0.5, 0, 255).astype(np.uint8))
    return out


SPLICE = ("davis_kite-surf.mp4", "davis_dance-twirl.mp4", "davis_car-roundabout.mp4")


def splice(clips: Path, per: int = 24) -> list[np.ndarray]:
    """The first ``per`` frames of each SPLICE clip, resized to W x H, back to back."""
    out = []
    for name in SPLICE:
        with av.open(str(clips / name)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i >= per:
                    break
                out.append(np.asarray(f.to_image().resize((W, H), Image.LANCZOS)))
    return out


def write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    write_rgb_video(path, frames, Fraction(FPS), options={"crf": "14", "preset": "medium"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--seed", type=int, default=4)
    a = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    if a.out.resolve().is_relative_to(repo):
        sys.exit(f"refusing to write clips inside the repository ({repo}); choose another folder")
    a.out.mkdir(parents=True, exist_ok=True)
    wide, faces = pick_photos(a.data, a.seed)
    img = [Image.open(p).convert("RGB") for p in wide[:6]]
    n = a.frames
    third = n // 3
    clips = {
        "pan.mp4": (pan(img[0], n), []),
        "zoom.mp4": (zoom(img[1], n), []),
        "cut.mp4": (pan(img[2], third) + pan(img[3], third, -1.0) + zoom(img[4], n - 2 * third),
                    [third, 2 * third]),
        "object.mp4": (moving_object(img[5], Image.open(faces[0]).convert("RGB"), n), []),
        "flicker.mp4": (flicker(img[1], n, a.seed), []),
    }
    if all((a.data / "clips" / name).exists() for name in SPLICE):
        clips["splice.mp4"] = (splice(a.data / "clips"), [24, 48])
    meta = {}
    for name, (frames, cuts) in clips.items():
        write_mp4(a.out / name, frames)
        meta[name] = {"frames": len(frames), "width": W, "height": H, "cuts": cuts}
        print(f"{a.out / name}: {len(frames)} frames, cuts at {cuts}")
    meta["_photos"] = [p.name for p in wide[:6]] + [faces[0].name]
    (a.out / "clips.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
