#!/usr/bin/env python
"""Build the extra training photos (ground and land-cover textures) and a training folder that
holds them beside ``../shared/data/train``.

    python scripts/build_extra_data.py --out runs/data [--cache /tmp/vidcolor-extra]
    python scripts/train.py --data-dir runs/data ...

Why: the training set is 54% faces and 14% clothing, and users see grass and trees come out
brown or blue-grey (a mown meadow in the test split is coloured like water). These sources are
photographs of ground cover, which the shared set has little of:

- ``fgterrain``: FlightGear's land-cover textures (aerial photographs of fields, forest, scrub,
  towns, snow; Debian ``flightgear-data-base``, GPL-2+; many from USGS, IBGE and spaceimaging.com
  satellite images, see its ``Textures/Credits``).
- ``oadterrain``: 0 A.D.'s terrain textures (close-up photographs of grass, earth, sand, rock,
  paving, snow, seen from above; Debian ``0ad-data``, CC BY-SA 3.0 per its copyright file).

Each package is fetched with ``apt-get download`` (never installed). An image is kept when it
is opaque, at least 256 px on its short side, not a normal map or a mask (by name, and by its
mean colour), and not nearly grey (mean chroma < 4, as ``build_test_split.py``); it is resized
with Lanczos to short side 256 and saved as JPEG quality 92. Every kept image passes
``scripts/dedup.py`` against the held-out sources of ``../shared/data/README.md``, the training
photos, the test split (``--test-dir``, so nothing we judge on is trained on) and the other new
images. ``scripts/extra_data_manifest.csv`` records each file with its package, path, licence and
SHA-256, so a rebuild can be checked. OUT/train holds symbolic links to the shared photos plus
the new files and OUT/train_manifest.csv both manifests, so file names, and with them the dev
split of the shared photos, are unchanged.
"""
from __future__ import annotations

import csv
import io
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import dedup
from build_test_split import FIELDS, chroma, download_deb, parser, prepare, save_photo

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "extra_data_manifest.csv"
SKIP_NAME = re.compile(r"(mask|overlay|relief|light|norm|spec|structure|noise|perlin|_n$|_ao$|alpha)", re.I)

# (tag, package=version, member pattern, zip inside the package or None, licence)
SOURCES = [
    ("fgterrain", "flightgear-data-base=1:2020.3.16+dfsg-1",
     re.compile(r"usr/share/games/flightgear/Textures/Terrain(\.winter)?/[^/]+\.png$"), None,
     "GPL-2+ (FlightGear; satellite imagery per Textures/Credits)"),
    ("oadterrain", "0ad-data=0.0.26-1", re.compile(r"art/textures/terrain/types/.+\.dds$"),
     "usr/share/games/0ad/mods/public/public.zip", "CC BY-SA 3.0 (0 A.D. art, Wildfire Games)"),
]


def members(deb: Path, pattern: re.Pattern, inner_zip: str | None, cache: Path):
    """(path, bytes) of the package's files that match, streamed (the packages are 1.3 GB)."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        for m in tf:
            name = m.name.lstrip("./")
            if not m.isfile():
                continue
            if inner_zip is None and pattern.search(name):
                yield name, tf.extractfile(m).read()
            elif inner_zip is not None and name == inner_zip:
                local = cache / Path(inner_zip).name
                if not local.exists() or local.stat().st_size != m.size:
                    with open(local, "wb") as fh:
                        src = tf.extractfile(m)
                        while chunk := src.read(1 << 24):
                            fh.write(chunk)
                with zipfile.ZipFile(local) as zf:
                    for n in sorted(zf.namelist()):
                        if pattern.search(n):
                            yield n, zf.read(n)
    proc.wait()


def usable(data: bytes, path: str) -> tuple[Image.Image | None, str]:
    """The image as RGB, or None and why it is not a photograph we can train on."""
    if SKIP_NAME.search(Path(path).stem):
        return None, "mask/normal/overlay by name"
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return None, f"unreadable ({e})"
    if min(im.size) < 256:
        return None, "small"
    rgba = np.asarray(im.convert("RGBA"))
    if (rgba[..., 3] < 250).mean() > 0.001:
        return None, "transparent"
    mean = rgba[..., :3].reshape(-1, 3).mean(0)
    if mean[2] > 180 and mean[2] - mean[0] > 50 and mean[2] - mean[1] > 20:
        return None, "normal map by colour"
    rgb = im.convert("RGB")
    if chroma(rgb) < 4:
        return None, "nearly grey"
    return rgb, ""


def link_shared(shared: Path, out: Path) -> list[dict]:
    """OUT/train/* -> the shared photos (links, never copies); returns the shared manifest rows."""
    (out / "train").mkdir(parents=True, exist_ok=True)
    with open(shared / "train_manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        dest = out / "train" / r["file"]
        if not dest.is_symlink():
            dest.symlink_to((shared / "train" / r["file"]).resolve())
    return rows


def main() -> None:
    ap = parser(__doc__, "runs/data", "/tmp/vidcolor-extra")
    ap.add_argument("--test-dir", type=Path, default=Path("/tmp/vidcolor-test"),
                    help="the test split (scripts/build_test_split.py), also deduplicated against")
    a = ap.parse_args()
    a.cache.mkdir(parents=True, exist_ok=True)
    if not (a.test_dir / "train").is_dir():
        raise SystemExit(f"no test split at {a.test_dir}: run scripts/build_test_split.py --out {a.test_dir}")
    held, train, test = dedup.held_out_index(a.heldout_cache), dedup.train_index(a.data_dir), \
        dedup.train_index(a.test_dir)
    print(f"dedup against {len(held.names)} held-out, {len(train.names)} training, {len(test.names)} test images")
    shared_rows = link_shared(a.data_dir, a.out)
    kept, rows, skipped = dedup.Index(), [], {}
    for tag, spec, pattern, inner, licence in SOURCES:
        for path, data in members(download_deb(spec, a.cache), pattern, inner, a.cache):
            img, why = usable(data, path)
            if img is None:
                skipped[why.split(" (")[0]] = skipped.get(why.split(" (")[0], 0) + 1
                continue
            img = prepare(img)
            h = dedup.hashes(img)
            hit = held.match(h) or train.match(h) or test.match(h) or kept.match(h)
            if hit:
                print(f"skip {tag}:{path}: duplicate of {hit}")
                skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                continue
            name = f"{tag}__{Path(path).parent.name}_{Path(path).stem}".replace(".", "_") + ".jpg"
            if (a.out / "train" / name).exists() and name in kept.names:
                raise SystemExit(f"two sources would both be {name}")
            kept.add(h, name)
            rows.append(save_photo(img, a.out / "train" / name, source=tag, package=spec, path=path,
                                   licence=licence))
    with open(MANIFEST, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    with open(a.out / "train_manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "source"])
        w.writeheader()
        w.writerows({"file": r["file"], "source": r["source"]} for r in shared_rows + rows)
    by_tag = {t: sum(r["source"] == t for r in rows) for t, *_ in SOURCES}
    print(f"kept {by_tag}; skipped {skipped}; wrote {a.out / 'train_manifest.csv'} and {MANIFEST}")


if __name__ == "__main__":
    main()
