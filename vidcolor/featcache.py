"""Cached encoder features: train the ``effdec`` decoder at hundreds of photos a second.

The encoder is frozen while the decoder learns, so its features of a training photo never
change. Computing them once (one pass of Lite0 per photo and variant) and training the decoder
on the stored features makes a training step cost only the decoder. Each *variant* is one pass
over the training photos with its own random square crop, mirror (odd variants), zoom (variants
from 2 on: a closer view, see ``ZOOM``) and film grey:
a spectral response drawn per photo (:func:`vidcolor.film.spectral_l`) and, on half of them,
film damage (:func:`vidcolor.film.degrade_l`). The truth is the photo's own ab at stride 4.

Photos are cached in a fixed shuffled order (:func:`cache_order`), so that a cache still being
built holds a fair sample of every source, and training can start on what is done.

Layout of ``DIR/v{variant}/``: ``f0..f3.npy`` (float16, the four encoder taps), ``ab.npy``
(int8, ab at stride 4), ``L.npy`` (uint8, the grey the encoder saw, for a net's L branch; ``L.json``
counts its rows, as older caches gain it later), ``done.json`` (how many photos are written, and a
key of the photo list they were written for). Building is resumable: it writes in chunks and ``done.json`` is replaced only
after a chunk is flushed. A cache built for another photo list is refused, never read: its rows
would be other photos' features.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .color import rgb_to_lab
from .effnet import TAP_CHANNELS, EffDecNet
from .film import degrade_l, spectral_l
from .job import write_json_atomic

CHUNK = 256
L_STEPS = 2.55  # cached greys are uint8: L (0-100) times this


# Variants from 2 on crop a zoomed-in part: the photo is scaled so its short side is size x U(1, ZOOM).
# The first two see every photo whole; users' frames are often closer views (a meadow that fills the
# picture, a wall), whose texture then looks coarser than any whole photo showed the net.
ZOOM = 2.0


def _square(img: np.ndarray, size: int, rng: np.random.Generator, flip: bool, zoom: bool = False) -> torch.Tensor:
    """A random size x size crop of the photo scaled so its short side is ``size`` (with ``zoom``,
    ``size`` times a random factor up to ``ZOOM``): (3, S, S) in [0, 1]."""
    t = torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)[None]
    h, w = img.shape[:2]
    s = size / min(h, w) * (float(rng.uniform(1.0, ZOOM)) if zoom else 1.0)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    y, x = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
    t = t[:, y:y + size, x:x + size]
    return (t.flip(-1) if flip else t).clamp_(0, 1)


def grey_crop(img: np.ndarray, size: int, seed: int, variant: int, row: int,
              stock_greys: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Row ``row`` of variant ``variant``: its crop (1, 3, S, S) RGB and the film grey (1, 1, S, S)
    L the encoder saw. Seeded per row, so a rebuilt chunk, or a grey added later, is the same."""
    rng = np.random.default_rng([seed, variant, row])
    t = _square(img, size, rng, flip=variant % 2 == 1, zoom=variant >= 2)[None]
    grey = spectral_l(t, rng) if stock_greys else spectral_l(t, rng, p_pan=0, p_ortho=0)
    return t, degrade_l(grey, rng, p=0.5)


def quantise_l(L: torch.Tensor) -> np.ndarray:
    """(N, 1, S, S) L in [0, 100] -> (N, S, S) uint8 steps of 100/255, as 8-bit video carries it."""
    return (L[:, 0] * L_STEPS).round().clamp(0, 255).numpy().astype(np.uint8)


def unquantise_l(q: np.ndarray) -> torch.Tensor:
    """:func:`quantise_l`'s inverse: (N, S, S) uint8 -> (N, 1, S, S) float L in [0, 100]."""
    return torch.from_numpy(q)[:, None].float() / L_STEPS


def open_l(root: Path, variant: int, n: int, size: int, mode: str = "r") -> np.ndarray:
    """The memory-mapped greys (N, S, S) uint8 of one variant (:func:`unquantise_l` reads them)."""
    return np.lib.format.open_memmap(root / f"v{variant}" / "L.npy", mode=mode, dtype=np.uint8,
                                     shape=(n, size, size) if mode == "w+" else None)


def cache_order(n: int, seed: int = 77) -> np.ndarray:
    """Row ``r`` of the cache holds photo ``cache_order(n)[r]`` of the training list."""
    return np.random.default_rng(seed).permutation(n)


def open_variant(root: Path, variant: int, n: int, size: int, mode: str = "r") -> dict[str, np.ndarray]:
    """The memory-mapped arrays of one variant (``mode`` "r", or "r+"/"w+" while building)."""
    d = root / f"v{variant}"
    s4 = size // 4
    shapes = {f"f{i}": (n, c, s4 >> i, s4 >> i) for i, c in enumerate(TAP_CHANNELS)}
    shapes["ab"] = (n, 2, s4, s4)
    return {k: np.lib.format.open_memmap(d / f"{k}.npy", mode=mode, dtype=np.int8 if k == "ab" else np.float16,
                                         shape=shape if mode == "w+" else None)
            for k, shape in shapes.items()}


def items_key(files: list[str]) -> str:
    """A short key of the photo list a cache is built for (file names, in list order)."""
    return hashlib.sha1("\n".join(files).encode()).hexdigest()[:16]


def greys_name(stock_greys: bool) -> str:
    """The name a cache records for its kind of grey: "stock" (film stocks' responses) or "luminance"."""
    return "stock" if stock_greys else "luminance"


def done_count(root: Path, variant: int, n: int | None = None, key: str | None = None,
               greys: str | None = None) -> int:
    """How many rows of variant ``variant`` are written; with ``n``/``key``/``greys``, first check that
    the cache was built for a list of ``n`` photos with that key, with those greys (caches from before
    keys: ``n`` only; from before greys were recorded: "stock")."""
    p = root / f"v{variant}" / "done.json"
    if not p.exists():
        return 0
    meta = json.loads(p.read_text())
    if (n is not None and meta.get("n", n) != n) or (key is not None and meta.get("items", key) != key):
        raise RuntimeError(f"the feature cache {p.parent} was built for another photo list "
                           f"({meta.get('n')} photos, not {n}); delete that folder to rebuild it")
    if greys is not None and meta.get("greys", "stock") != greys:
        raise RuntimeError(f"the feature cache {p.parent} holds other greys than {greys!r} ones; use another --out")
    return meta["done"]


@torch.no_grad()
def build_variant(net: EffDecNet, images: list[np.ndarray], root: Path, variant: int, size: int = 192,
                  seed: int = 77, batch: int = 16, progress: bool = True, key: str | None = None,
                  stock_greys: bool = True) -> None:
    """Write (or finish writing) variant ``variant`` of the feature cache for ``images`` (whose
    list has the :func:`items_key` ``key``, if given). ``stock_greys`` False: every grey is the
    photo's own luminance, never a film stock's (film damage stays)."""
    from tqdm import tqdm

    d = root / f"v{variant}"
    d.mkdir(parents=True, exist_ok=True)
    n = len(images)
    greys = greys_name(stock_greys)
    start = done_count(root, variant, n, key, greys)
    arrs = open_variant(root, variant, n, size, mode="r+" if start else "w+")
    if start and l_done(root, variant) < start:
        build_l(images, root, variant, size, seed, stock_greys, progress)  # a cache from before L was kept
    l_arr = open_l(root, variant, n, size, mode="r+" if start else "w+")
    order = cache_order(n, seed)
    net.eval()
    bar = tqdm(total=n, initial=start, desc=f"features v{variant}", disable=not progress, unit="photo")
    for c0 in range(start, n, CHUNK):
        for b0 in range(c0, min(c0 + CHUNK, n), batch):
            idx = range(b0, min(b0 + batch, n))
            pairs = [grey_crop(images[order[i]], size, seed, variant, i, stock_greys) for i in idx]
            rgb_t, L_t = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
            feats = net.features(D.make_input(L_t))
            ab = F.avg_pool2d(rgb_to_lab(rgb_t)[:, 1:], 4)
            sl = slice(idx.start, idx.stop)
            for k, f in enumerate(feats):
                arrs[f"f{k}"][sl] = f.numpy().astype(np.float16)
            arrs["ab"][sl] = ab.round().clamp(-128, 127).numpy().astype(np.int8)
            l_arr[sl] = quantise_l(L_t)
            bar.update(len(idx))
        for a in arrs.values():
            a.flush()
        l_arr.flush()
        write_json_atomic(d / "done.json", {"done": min(c0 + CHUNK, n), "n": n, "size": size, "seed": seed,
                                      "greys": greys, **({"items": key} if key else {})})
        write_json_atomic(d / "L.json", {"done": min(c0 + CHUNK, n)})
    bar.close()


def l_done(root: Path, variant: int) -> int:
    """Rows of variant ``variant`` whose grey L is cached (``L.npy``; caches from before it: 0)."""
    p = root / f"v{variant}" / "L.json"
    return json.loads(p.read_text())["done"] if p.exists() else 0


@torch.no_grad()
def build_l(images: list[np.ndarray], root: Path, variant: int, size: int = 192, seed: int = 77,
            stock_greys: bool = True, progress: bool = True) -> None:
    """Add the greys to a cache built before ``L.npy`` was kept: the same crops and greys
    (:func:`grey_crop` replays each row's seed), without running the encoder again."""
    from tqdm import tqdm

    n, done = len(images), done_count(root, variant)
    start = l_done(root, variant)
    l_arr = open_l(root, variant, n, size, mode="r+" if start else "w+")
    order = cache_order(n, seed)
    d = root / f"v{variant}"
    for c0 in tqdm(range(start, done, CHUNK), desc=f"greys v{variant}", disable=not progress):
        idx = range(c0, min(c0 + CHUNK, done))
        l_arr[idx.start:idx.stop] = quantise_l(torch.cat([grey_crop(images[order[i]], size, seed, variant, i,
                                                                     stock_greys)[1] for i in idx]))
        l_arr.flush()
        write_json_atomic(d / "L.json", {"done": idx.stop})
