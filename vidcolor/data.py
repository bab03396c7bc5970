"""Training data: the photo manifest, a fixed dev split, source-weighted sampling,
augmented batches and simulated colour hints.

The photos are decoded once into memory (about 1.5 GB for the shared set) so a
training step costs only crops and resizes, which matters on two CPU cores.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .color import rgb_to_lab
from .errors import VidcolorError
from .film import degrade_l, spectral_l

DEV_MODULUS = 20  # 1 in 20 photos (5%) is held out for evaluation


def is_dev(name: str) -> bool:
    """Deterministic split by file name hash: the same on every machine and run."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return h % DEV_MODULUS == 0


@dataclass
class Item:
    file: str
    source: str


def read_manifest(data_dir: Path) -> list[Item]:
    """Rows of ``train_manifest.csv``, or every image in ``train/`` tagged by its name prefix."""
    man = data_dir / "train_manifest.csv"
    if man.exists():
        with open(man, newline="") as fh:
            return [Item(r["file"], r["source"]) for r in csv.DictReader(fh)]
    files = sorted(p.name for p in (data_dir / "train").iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [Item(f, f.split("__")[0]) for f in files]


def split(items: list[Item]) -> tuple[list[Item], list[Item]]:
    train = [it for it in items if not is_dev(it.file)]
    dev = [it for it in items if is_dev(it.file)]
    return train, dev


def eval_items(data_dir: Path, split_name: str = "dev", limit: int | None = None) -> list[Item]:
    """The photos an evaluation takes: the dev split (or, with ``"all"``, every photo, as for the test
    split of ``scripts/build_test_split.py``) in a fixed order that mixes sources, cut to ``limit``.

    The order is the SHA-1 of the file name, so "the first 120 dev photos" is the same set everywhere.
    """
    if not (data_dir / "train").is_dir():
        raise VidcolorError(f"no train/ folder in {data_dir} (use --data-dir)")
    items = read_manifest(data_dir)
    chosen = sha1_order(items if split_name == "all" else split(items)[1])
    return chosen[:limit] if limit else chosen


def sha1_order(items: list[Item]) -> list[Item]:
    """Items sorted by the SHA-1 of the file name: a fixed order that mixes sources."""
    return sorted(items, key=lambda it: hashlib.sha1(it.file.encode()).hexdigest())


DEFAULT_DAMP = {"lfw": 0.5, "clothing": 0.5}


def source_weights(items: list[Item], damp: dict[str, float] | None = None) -> np.ndarray:
    """Sampling probabilities: each source gets a share proportional to sqrt(its size).

    Uniform sampling would give LFW faces 54% of all steps and clothing 14%;
    sqrt shares bring faces to about a quarter so scenes, streets and people in
    context are not drowned out. ``damp`` scales chosen sources' shares further.
    """
    damp = DEFAULT_DAMP if damp is None else damp
    counts: dict[str, int] = {}
    for it in items:
        counts[it.source] = counts.get(it.source, 0) + 1
    w = np.array([np.sqrt(counts[it.source]) / counts[it.source] * damp.get(it.source, 1.0) for it in items])
    return w / w.sum()


def load_images(data_dir: Path, items: list[Item], progress: bool = True) -> list[np.ndarray]:
    """Decode every photo to an (H, W, 3) uint8 array."""
    from tqdm import tqdm

    return [load_rgb(data_dir / "train" / it.file)
            for it in tqdm(items, desc="loading photos", disable=not progress, leave=False)]


def load_rgb(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 (grey replicated, alpha dropped)."""
    from skimage import io

    try:
        im = io.imread(path)
    except (OSError, ValueError) as e:
        raise VidcolorError(f"cannot read {path}: {e}") from None
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3])


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator,
                scale: tuple[float, float] = (0.55, 1.0)) -> torch.Tensor:
    """A random scaled, flipped size x size crop as a (3, size, size) float tensor in [0, 1]."""
    h, w = img.shape[:2]
    s = rng.uniform(*scale)
    src = int(round(min(size / s, h, w)))
    y = rng.integers(0, h - src + 1)
    x = rng.integers(0, w - src + 1)
    t = torch.from_numpy(img[y:y + src, x:x + src]).permute(2, 0, 1).float().div_(255.0)
    if src != size:
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if rng.random() < 0.5:
        t = t.flip(-1)
    return t.clamp_(0, 1)


def simulate_hints(ab: torch.Tensor, rng: np.random.Generator, p_none: float = 0.5,
                   mean_points: float = 12.0, max_points: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse ab hints drawn from ground truth, SIGGRAPH17-style.

    ab: (N, 2, H, W). Each image gets no hints with probability ``p_none``,
    otherwise a geometric number of small patches (1-4 px) whose value is the
    patch's mean ab. Returns hint ab (N, 2, H, W) and mask (N, 1, H, W).
    """
    n, _, h, w = ab.shape
    hint = torch.zeros_like(ab)
    mask = torch.zeros(n, 1, h, w, dtype=ab.dtype)
    for i in range(n):
        if rng.random() < p_none:
            continue
        add_patches(ab, hint, mask, i, min(int(rng.geometric(1.0 / mean_points)), max_points), rng)
    return hint, mask


def add_patches(ab: torch.Tensor, hint: torch.Tensor, mask: torch.Tensor, i: int, k: int,
                rng: np.random.Generator) -> None:
    """Put ``k`` random 1-4 px patches of image ``i``'s ground-truth ab (each the patch's mean)
    into ``hint`` and ``mask``, in place. The one patch model of training and evaluation."""
    _, _, h, w = ab.shape
    for _ in range(k):
        p = int(rng.integers(1, 5))
        y = int(rng.integers(0, h - p + 1))
        x = int(rng.integers(0, w - p + 1))
        hint[i, :, y:y + p, x:x + p] = ab[i, :, y:y + p, x:x + p].mean(dim=(1, 2), keepdim=True)
        mask[i, :, y:y + p, x:x + p] = 1.0


def make_batch(images: list[np.ndarray], probs: np.ndarray, batch: int, size: int,
               rng: np.random.Generator, hints: bool = True,
               p_none: float = 0.5, film: float = 0.0, stock: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a training batch: returns (Lab ground truth (N,3,S,S), network input (N,4,S,S)).

    ``p_none`` is the share of images given no hints (see :func:`simulate_hints`); ``film`` the
    share whose input L gets film-like damage (:func:`vidcolor.film.degrade_l`; the truth keeps
    the photo's L); ``stock`` the share whose input grey is what a film stock records, half of
    them orthochromatic and half panchromatic (:func:`vidcolor.film.spectral_l`). With ``film``
    and ``stock`` 0 the batch is the one earlier versions drew for this ``rng``.
    """
    idx = rng.choice(len(images), size=batch, p=probs)
    rgb = torch.stack([random_crop(images[i], size, rng) for i in idx])
    lab = rgb_to_lab(rgb)
    if hints:
        hint, mask = simulate_hints(lab[:, 1:], rng, p_none=p_none)
    else:
        hint, mask = torch.zeros_like(lab[:, 1:]), torch.zeros_like(lab[:, :1])
    L = lab[:, :1]
    if stock > 0:  # drawn after the crops and hints, so those stay the ones a run without it draws
        L = spectral_l(rgb, np.random.default_rng(rng.integers(2 ** 63)), p_pan=stock / 2, p_ortho=stock / 2)
    if film > 0:  # drawn last, so the crops and hints are those of a run without it
        L = degrade_l(L, np.random.default_rng(rng.integers(2 ** 63)), film)
    return lab, make_input(L, hint, mask)


def make_input(L: torch.Tensor, hint_ab: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Network input from L (N,1,H,W) in [0,100] and optional hints: (N,4,H,W)."""
    from .color import AB_SCALE, normalize_l

    n, _, h, w = L.shape
    if hint_ab is None or mask is None:
        hint_ab = L.new_zeros(n, 2, h, w)
        mask = L.new_zeros(n, 1, h, w)
    return torch.cat([normalize_l(L), hint_ab * mask / AB_SCALE, mask], dim=1)
