#!/usr/bin/env python
"""Build the extra training photos (ground cover, walls, floors and other surfaces) and a training
folder that holds them beside ``../shared/data/train``.

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

The net also paints flat walls and floors with red and blue blotches, and faces and clothing are
68% of the data, so these add photographed surfaces, chosen folder by folder from contact sheets:

- ``sh3dtex``: Sweet Home 3D's own textures (tiles, parquet, marble, roughcast, grass, a cloudy
  sky; Debian ``sweethome3d``, GPL-2+).
- ``ufoaisurf``: UFO:AI's photographed walls, plaster, brick, concrete, carpets, wood floors,
  doors and roof tiles (``tex_mattn``, ``tex_buildings``, ``tex_material``), and
- ``ufoainature``: its grass, soil, desert, rock, bark and snow (``tex_nature``); Debian
  ``ufoai-textures``, each file's licence (GPL-2, GPL-2+, GPL-3+, CC BY 3.0, CC BY-SA 3.0 or
  public domain) read from the package's copyright file.

Looked at and left out (drawn, rendered or sci-fi, not photographs): Red Eclipse's skyboxes and
textures (Terragen renders and procedural tiles), Nexuiz and OpenArena textures (grimy game
art), Colobot's, Extreme Tux Racer's skyboxes (renders), FlightGear's Sky, Runway and Trees
folders (transparent cloud sprites, drawn runway markings), the Sweet Home 3D furniture
libraries (mostly UV atlases of models).

Flat mown meadows seen from the ground were still coloured like water (2026-12-07), and all the
sources above look down on the ground, so these add photographs taken at eye level:

- ``torcsbg``: the horizon panoramas behind TORCS's tracks (valleys, meadows, mountains, skies;
  Debian ``torcs-data``, GPL-2+). Rendered ones (drawn clouds, fractal hills, the snow and night
  panoramas) are left out by track; copies shared between tracks are caught by the dedup.
- ``tuxpaint``: Tux Paint's photographic templates (a meadow with sheep, cliffs, waves, forest
  seen from below, bark, moss, a lighthouse; Debian ``tuxpaint-data``, GPL-2+).

Panoramas wider than 2:1 are cut into equal tiles no wider than 2:1 before resizing, so a photo
keeps 256 px of height instead of shrinking to a 256 px strip.

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
import fnmatch
import io
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from vidcolor import datasources as ds
from vidcolor.datasources import FIELDS, chroma, download_deb, parser, prepare, save_photo, write_csv
from vidcolor.errors import VidcolorError

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "extra_data_manifest.csv"
SKIP_NAME = re.compile(r"(mask|overlay|relief|light(?!house)|norm|spec|structure|noise|perlin|_n$|_ao$|alpha)", re.I)

# (tag, package=version, member pattern, zip inside the package or None, licence). A licence with
# "{}" is looked up per file in the package's machine-readable copyright file (``dep5_licence``).
UFOAI = "ufoai-textures=2.5-2"
UFOAI_PK3 = "usr/share/games/ufoai/base/0textures.pk3"
UFOAI_LICENCE = "{} (UFO:AI textures, per file in its copyright)"
SOURCES = [
    ("fgterrain", "flightgear-data-base=1:2020.3.16+dfsg-1",
     re.compile(r"usr/share/games/flightgear/Textures/Terrain(\.winter)?/[^/]+\.png$"), None,
     "GPL-2+ (FlightGear; satellite imagery per Textures/Credits)"),
    ("oadterrain", "0ad-data=0.0.26-1", re.compile(r"art/textures/terrain/types/.+\.dds$"),
     "usr/share/games/0ad/mods/public/public.zip", "CC BY-SA 3.0 (0 A.D. art, Wildfire Games)"),
    # Sweet Home 3D's own floor, wall and sky textures (blueSky is a drawn gradient).
    ("sh3dtex", "sweethome3d=7.0.2+dfsg-3",
     re.compile(r"com/eteks/sweethome3d/io/resources/textures/(?!blueSky)[^/]+\.jpg$"),
     "usr/share/sweethome3d/sweethome3d.jar", "GPL-2+ (Sweet Home 3D, eTeks)"),
    # UFO:AI walls, floors, carpets, doors, roofs, brick, wood and concrete; drawn or edited ones
    # (painted windows, maps, signs, paintings, minigolf felt) and normal maps (_nm) are left out.
    ("ufoaisurf", UFOAI, re.compile(
        r"textures/(tex_mattn/(?!art|sign|notes|tech|automat|subway|minigolf|railway|wall007|wall02[1-5])"
        r"|tex_buildings/(carpet|concrete|cementwall|ceiling_slate|floor\d|floor_(wood|se)|wall\d|wall_(se|dirt)"
        r"|streetbricks|paving|sidewalk|roof|woodceiling)|tex_material/(wood|conc))[^/]*(?<!_nm)\.(png|jpg)$"),
     UFOAI_PK3, UFOAI_LICENCE),
    # UFO:AI grass, soil, desert, rock, bark, hedge, snow; paths drawn onto grass (_way, dirt_se) and
    # the drawn water and ice-floor are left out.
    ("ufoainature", UFOAI,
     re.compile(r"textures/tex_nature/(?![^/]*(_way|dirt_se|icefloor|water))[^/]*(?<!_nm)\.(png|jpg)$"),
     UFOAI_PK3, UFOAI_LICENCE),
    ("torcsbg", "torcs-data=1.3.7+dfsg-5", re.compile(
        r"usr/share/games/torcs/tracks/(dirt/dirt-[23]|oval/([b-g]-speedway|michigan)|road/(aalborg|alpine-1"
        r"|brondehach|corkscrew|e-track-[1-4]|eroad|forza|g-track-[1-3]|ole-road-1|ruudskogen|spring|street-1"
        r"|wheel-[12]))/background\.png$"), None, "GPL-2+ (TORCS)"),
    ("tuxpaint", "tuxpaint-data=1:0.9.28-sdl2-1", re.compile(r"usr/share/tuxpaint/templates/[^/]+\.jpg$"),
     None, "GPL-2+ (Tux Paint)"),
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


def dep5_licence(deb: Path, path: str) -> str:
    """The licence that the package's DEP-5 copyright file gives ``path`` (the last matching
    ``Files:`` paragraph; a glob also matches without its first folder, e.g. ``base/``)."""
    pkg = deb.name.split("_")[0]
    if pkg not in _COPYRIGHT:
        # streamed like the photos (reading the whole package into memory took hundreds of MB)
        found = [data for _, data in members(deb, re.compile(rf"^usr/share/doc/{re.escape(pkg)}/copyright$"),
                                             None, deb.parent)]
        if not found:
            raise SystemExit(f"{pkg}: no usr/share/doc/{pkg}/copyright in {deb.name}")
        text = found[0].decode()
        paras = []
        for para in re.split(r"\n\s*\n", text):
            m, lic = re.search(r"^Files:(.*(?:\n .*)*)", para, re.M), re.search(r"^License: *(.+)", para, re.M)
            if m and lic:
                paras.append((m.group(1).split(), lic.group(1).strip()))
        _COPYRIGHT[pkg] = paras
    found = [lic for globs, lic in _COPYRIGHT[pkg]
             if any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(path, g.split("/", 1)[-1]) for g in globs)]
    if not found:
        raise SystemExit(f"{pkg}: no licence for {path} in its copyright file")
    return found[-1]


_COPYRIGHT: dict[str, list] = {}


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


def tiles(img: Image.Image) -> list[Image.Image]:
    """``img`` cut across into the fewest equal tiles no wider than 2:1 (itself when it is)."""
    w, h = img.size
    n = -(-w // (2 * h))
    return [img] if n <= 1 else [img.crop((w * i // n, 0, w * (i + 1) // n, h)) for i in range(n)]


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
    held, train, test = ds.held_out_index(a.heldout_cache), ds.train_index(a.data_dir), \
        ds.train_index(a.test_dir)
    print(f"dedup against {len(held.names)} held-out, {len(train.names)} training, {len(test.names)} test images")
    shared_rows = link_shared(a.data_dir, a.out)
    kept, rows, skipped = ds.Index(), [], {}
    for tag, spec, pattern, inner, licence in SOURCES:
        deb = download_deb(spec, a.cache)
        for path, data in members(deb, pattern, inner, a.cache):
            img, why = usable(data, path)
            if img is None:
                skipped[why.split(" (")[0]] = skipped.get(why.split(" (")[0], 0) + 1
                continue
            parts = tiles(img)
            for t, part in enumerate(parts):
                part = prepare(part)
                h = ds.hashes(part)
                hit = held.match(h) or train.match(h) or test.match(h) or kept.match(h)
                if hit:
                    print(f"skip {tag}:{path}: duplicate of {hit}")
                    skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                    continue
                stem = f"{tag}__{Path(path).parent.name}_{Path(path).stem}" + (f"_t{t}" if len(parts) > 1 else "")
                name = stem.replace(".", "_") + ".jpg"
                if (a.out / "train" / name).exists() and name in kept.names:
                    raise SystemExit(f"two sources would both be {name}")
                kept.add(h, name)
                lic = licence.format(dep5_licence(deb, path)) if "{}" in licence else licence
                rows.append(save_photo(part, a.out / "train" / name, source=tag, package=spec, path=path,
                                       licence=lic))
    write_csv(MANIFEST, FIELDS, rows)
    write_csv(a.out / "train_manifest.csv", ["file", "source"],
              ({"file": r["file"], "source": r["source"]} for r in shared_rows + rows))
    by_tag = {t: sum(r["source"] == t for r in rows) for t, *_ in SOURCES}
    print(f"kept {by_tag}; skipped {skipped}; wrote {a.out / 'train_manifest.csv'} and {MANIFEST}")


if __name__ == "__main__":
    try:
        main()
    except VidcolorError as e:  # one line naming the cure, no traceback
        sys.exit(f"build_extra_data: error: {e}")
