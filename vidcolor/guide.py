"""Guided colour: reference keyframes and colour pins that carry through a shot.

A *keyframe* is what the user knows about one frame: an ab map at render size
and a mask of where it holds (everywhere for a painted ``--reference`` image,
small disks for ``--hints`` pins). Before colouring, :func:`plan_guides`
walks the frames' L at render size once, finds the shots, and carries each
keyframe forward and backward through its shot with optical flow on L
(:mod:`vidcolor.flow`), dropping pixels whose flow fails the forward-backward
check. Carrying stops at a cut, at the midpoint to the next keyframe, or after
``reach`` frames. The result for each guided frame is a small
:class:`FrameGuide`: the carried ab and its confidence, at half render size.

While colouring, the engine gets sparse hint points sampled from the confident
part (the network was trained on such hints and fills in the rest along
edges), and the output ab is blended towards the carried ab by its
confidence, so a painted frame comes out exactly as painted.
Everything is deterministic (fixed per-frame seeds), so resumes match.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from . import flow as fl
from .color import rgb_to_lab
from .errors import VidcolorError

PIN_RADIUS = 1.5        # render-size pixels: a pin is a tiny disk, like the training hints
HINT_POINTS = 96        # hint points per guided frame; training used up to 96 patches
MIN_CONF = 0.5          # a carried pixel below this confidence gives no hint point
DECAY = 0.999           # confidence kept per frame carried: long carries drift, so trust them less
FB_KEEP = 0.97          # confidence kept where the flow fails its forward-backward check
DEFAULT_REACH = 240     # frames a keyframe is carried each way at most
# Reach of a pin's correction, as a share of the render short side, and how alike in lightness (L
# units) a pixel must be to take it. Chosen on dev-120 for the effdec net, which honours a pin less far
# than the net 0.15 / 10 were set for (docs/lab-notes/2026-12-08-pin-spread.md).
SPREAD_SIGMA = 0.25
SPREAD_SIGMA_L = 10.0
# Version of how guided frames are coloured, stored in a guided job's manifest so that a job begun
# under another rule does not resume and mix two colourings in one film. 3 (2026-12-08): a pin's ab
# is kept confidence-weighted at half size (_normalised); 2: the reach above, and a net with
# Colorizer.pins_in_net False colours pinned frames automatically; 1: before.
RULE = 3
SPREAD_BINS = 8         # L slices approximating that similarity
SPREAD_EPS = 0.3        # below this much pin weight, the correction fades toward none


@dataclass
class Keyframe:
    index: int
    ab: torch.Tensor    # (2, h, w) at render size
    mask: torch.Tensor  # (1, h, w) in [0, 1]


@dataclass
class FrameGuide:
    ab: torch.Tensor    # (2, h2, w2) carried ab at half render size, float16
    conf: torch.Tensor  # (1, h2, w2) confidence in [0, 1], float16


def parse_reference(spec: str) -> tuple[int, Path]:
    """'120=still.png' -> (120, Path('still.png')), with a clear error otherwise."""
    idx, sep, path = spec.partition("=")
    if not sep or not idx.strip().isdigit() or not path:
        raise VidcolorError(f"--reference wants FRAME_INDEX=IMAGE (e.g. 120=still.png), got {spec!r}")
    p = Path(path)
    if not p.is_file():
        raise VidcolorError(f"reference image not found: {p}")
    return int(idx), p


def load_pins(path: Path, names: list[str] | None = None) -> dict[int, list[tuple[float, float, tuple[int, int, int]]]]:
    """Read a ``--hints`` JSON file: a list of {"frame", "x", "y", "rgb"} in full-size pixels.

    With ``names`` (a frame folder's file names, in frame order) a pin may name its frame by file,
    ``"file": "Aqua.png"``, instead of (or as well as) by index: an index into a folder is easy to get wrong.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VidcolorError(f"hints file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise VidcolorError(f"hints file {path} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise VidcolorError(f"hints file {path} must hold a JSON list of {{frame, x, y, rgb}} objects")
    index = {n: i for i, n in enumerate(names or [])}
    pins: dict[int, list] = {}
    for k, h in enumerate(data):
        try:
            f = _pin_frame(h, index, names is not None)
            x, y, rgb = float(h["x"]), float(h["y"]), tuple(int(c) for c in h["rgb"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise VidcolorError(f"hint #{k} in {path} needs frame, x, y and rgb [r, g, b] (a folder's frame "
                                f"may be named by 'file' instead): {h!r}") from None
        except LookupError as e:
            raise VidcolorError(f"hint #{k} in {path}: {e.args[0]}") from None
        if f < 0 or len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise VidcolorError(f"hint #{k} in {path} has a bad frame or rgb (0..255): {h!r}")
        pins.setdefault(f, []).append((x, y, rgb))
    return pins


def _pin_frame(h: dict, index: dict[str, int], folder: bool) -> int:
    """A pin's frame index, from "frame", "file" or both (which must agree); LookupError says what is wrong."""
    if "file" not in h:
        return int(h["frame"])
    if not folder:
        raise LookupError("\"file\" names a frame of a folder; for a video, give \"frame\" (0-based)")
    name = str(h["file"])
    if name not in index:
        raise LookupError(f"no frame file {name!r} in the input folder")
    if "frame" in h and int(h["frame"]) != index[name]:
        raise LookupError(f"\"file\" {name!r} is frame {index[name]}, but \"frame\" says {int(h['frame'])}")
    return index[name]


def image_keyframe(index: int, rgb: np.ndarray, size: tuple[int, int], render: tuple[int, int]) -> Keyframe:
    """A painted colour image of frame ``index`` (any size) -> its ab at render size, mask everywhere."""
    img = torch.from_numpy(rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 65535.0))
    if img.ndim == 2:
        img = img[..., None].expand(-1, -1, 3)
    img = img[..., :3].permute(2, 0, 1)[None]
    h, w = img.shape[-2:]
    if abs(h / w - size[0] / size[1]) > 0.02:
        raise VidcolorError(f"reference image for frame {index} is {w}x{h}, but the frames are "
                            f"{size[1]}x{size[0]}; export the frame with 'vidcolor export-frame' and paint on it")
    img = F.interpolate(img, size=render, mode="bilinear", antialias=True, align_corners=False)
    ab = rgb_to_lab(img)[0, 1:]
    return Keyframe(index, ab, torch.ones(1, *render))


def pin_keyframe(index: int, pins: list, size: tuple[int, int], render: tuple[int, int], name: str = "") -> Keyframe:
    """Colour pins of one frame (of ``size`` (h, w), file ``name`` if any) -> small disks of ab at render size."""
    h, w = render
    ab = torch.zeros(2, h, w)
    mask = torch.zeros(1, h, w)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for x, y, rgb in pins:
        if not (0 <= x < size[1] and 0 <= y < size[0]):
            what = f"frame {index} ({name})" if name else f"frame {index}"
            raise VidcolorError(f"hint at ({x:g}, {y:g}) on {what} is outside that {size[1]}x{size[0]} frame")
        cx, cy = (x + 0.5) * w / size[1] - 0.5, (y + 0.5) * h / size[0] - 0.5
        disk = ((xx - cx) ** 2 + (yy - cy) ** 2) <= PIN_RADIUS ** 2
        lab = rgb_to_lab(torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1) / 255.0)
        ab[:, disk] = lab[1:, 0, 0, None]
        mask[:, disk] = 1.0
    return Keyframe(index, ab, mask)


def _normalised(weighted_ab: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """ab from confidence-weighted ab, 0 where there is no confidence. Averaging or warping a pin's
    ab together with its pinless neighbours (ab 0) would otherwise pale its colour: a 3 px pin
    halved and upsampled kept about half of it."""
    return torch.where(conf > 1e-6, weighted_ab / conf.clamp_min(1e-6), torch.zeros_like(weighted_ab))


def _upsampled(guide: FrameGuide, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A guide's ab and confidence at ``size``, the ab interpolated with confidence weights."""
    conf = F.interpolate(guide.conf.float()[None], size=size, mode="bilinear", align_corners=False)[0]
    wab = F.interpolate((guide.ab.float() * guide.conf.float())[None], size=size, mode="bilinear",
                        align_corners=False)[0]
    return _normalised(wab, conf), conf


def _half(x: torch.Tensor) -> torch.Tensor:
    return fl.half_size(x[None])[0]


def _std(L: torch.Tensor) -> torch.Tensor:
    return fl.standardize(_half(L)[None])


def plan_guides(Ls: Iterable[tuple[int, torch.Tensor]], keyframes: list[Keyframe], cut_threshold: float,
                reach: int = DEFAULT_REACH) -> dict[int, FrameGuide]:
    """Carry each keyframe through its shot; return the guide of every frame it reaches.

    ``Ls`` yields (index, L at render size (1, h, w)) in order, from frame 0.
    Only frames within ``reach`` of a keyframe are kept in memory.
    """
    if not keyframes:
        return {}
    keys = {k.index: k for k in keyframes}
    last_needed = max(keys) + reach
    frames: dict[int, torch.Tensor] = {}  # standardized half-size L of frames near a keyframe
    feats: dict[int, tuple] = {}
    dist: dict[int, torch.Tensor] = {}
    cut_after: set[int] = set()
    shapes: dict[int, torch.Size] = {}
    n = 0
    for idx, L in Ls:
        if idx > last_needed + 2:
            break
        s = _std(L)
        feats[idx] = fl.cut_features(s)
        if idx - 1 in shapes and shapes[idx - 1] != s.shape:
            cut_after.add(idx - 1)  # photos of different sizes: nothing to carry between them
        elif idx - 1 in feats:
            dist[idx - 1] = fl.frame_distance(feats[idx - 1], feats[idx])
        shapes[idx] = s.shape
        if any(abs(idx - k) <= reach + 1 for k in keys):
            frames[idx] = s
        for old in [k for k in feats if k < idx - 3]:
            feats.pop(old)
        n = idx + 1
    for a in sorted(dist):  # the smoother's own rule, so guides and smoothing agree on cuts
        if fl.is_cut(dist, a, cut_threshold):
            cut_after.add(a)
    late = [k for k in keys if k >= n]
    if late:
        raise VidcolorError(f"a reference or hint names frame {late[0]}, but the last frame is {n - 1}")
    order = sorted(keys)
    out: dict[int, FrameGuide] = {}
    for j, k in enumerate(order):
        kf = keys[k]
        conf = _half(kf.mask)[None]
        ab = _normalised(_half(kf.ab * kf.mask)[None], conf)
        out[k] = FrameGuide(ab[0].half(), conf[0].half())
        lo = (order[j - 1] + k) // 2 + 1 if j > 0 else k - reach
        hi = (order[j + 1] + k - 1) // 2 if j + 1 < len(order) else k + reach
        for step, stop in ((1, hi), (-1, lo)):
            cab, cconf, t = ab, conf, k
            while (t + step <= stop if step > 0 else t + step >= stop) and t + step in frames and t in frames:
                a = min(t, t + step)
                if a in cut_after:
                    break
                nxt = t + step
                flow = fl.lk_flow(frames[nxt], frames[t])  # where each pixel of nxt came from in t
                back = fl.lk_flow(frames[t], frames[nxt])
                ok = fl.fb_valid(flow, back)
                wconf = fl.warp(cconf, flow)
                cab = _normalised(fl.warp(cab * cconf, flow), wconf)
                # a failed forward-backward check lowers trust rather than zeroing it: LK flow at this
                # size fails often on real film, and a hard zero loses a shot's colour within frames
                cconf = wconf * (FB_KEEP + (1 - FB_KEEP) * ok) * DECAY
                out[nxt] = FrameGuide(cab[0].half(), cconf[0].half())
                t = nxt
    return out


def hints_for(guide: FrameGuide, index: int, render: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse hint points (ab (2,h,w), mask (1,h,w)) at render size from a frame's guide.

    Points are drawn among confident pixels with a seed fixed by the frame
    index, so the same frame always gets the same hints.
    """
    h, w = render
    ab, conf = _upsampled(guide, render)
    ok = (conf[0] >= MIN_CONF).flatten().nonzero().flatten()
    hint = torch.zeros(2, h, w)
    mask = torch.zeros(1, h, w)
    if len(ok):
        g = torch.Generator().manual_seed(1000003 * index + 7)
        pick = ok[torch.randperm(len(ok), generator=g)[:HINT_POINTS]]
        ys, xs = pick // w, pick % w
        hint[:, ys, xs] = ab[:, ys, xs]
        mask[:, ys, xs] = 1.0
    return hint, mask


def _gauss_sum(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, h, w) with a peak-1 (not sum-1) kernel: a weighted *sum*."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0)), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r)), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def spread(ab: torch.Tensor, L: torch.Tensor, target: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Spread the correction (target - ab) from where it is known to nearby pixels of similar L.

    The network takes hints as input but, trained for hours on a CPU, honours a sparse pin
    only close to it. This adds the pins' residuals back, weighted by distance
    (Gaussian, SPREAD_SIGMA of the short side) and by L similarity (so a pin on a coat does not
    tint the wall behind it), as a normalised convolution: corr = sum w c r / (sum w c + SPREAD_EPS).
    Far from any pin the correction fades to zero and the network's colour stands. The L
    similarity is a sum over SPREAD_BINS Gaussian L slices, and the sums run at a quarter
    of the size, which keeps it cheap for dense carried references as well as a few pins.
    ab, target (N, 2, h, w); L (N, 1, h, w) in 0..100; conf (N, 1, h, w) in [0, 1].
    """
    n, _, h, w = ab.shape
    q = 4
    hq, wq = max(1, h // q), max(1, w // q)
    centres = torch.linspace(0.0, 100.0, SPREAD_BINS, dtype=ab.dtype, device=ab.device).view(1, -1, 1, 1)
    phi = torch.exp(-(L - centres) ** 2 / (2 * SPREAD_SIGMA_L ** 2))  # (N, K, h, w)
    wc = phi * conf
    r = (target - ab) * conf  # (N, 2, h, w)
    stack = torch.cat([wc, wc * r[:, :1], wc * r[:, 1:]], dim=1)  # (N, 3K, h, w)
    sums = F.adaptive_avg_pool2d(stack, (hq, wq)) * (h * w / (hq * wq))  # area sums at 1/q size
    sums = _gauss_sum(sums, SPREAD_SIGMA * min(h, w) / q)
    sums = F.interpolate(sums, size=(h, w), mode="bilinear", align_corners=False)
    k = SPREAD_BINS
    den = (phi * sums[:, :k]).sum(1, keepdim=True) + SPREAD_EPS
    corr = torch.cat([(phi * sums[:, k:2 * k]).sum(1, keepdim=True),
                      (phi * sums[:, 2 * k:]).sum(1, keepdim=True)], dim=1) / den
    return ab + corr


def blend(ab: torch.Tensor, guide: FrameGuide, L: torch.Tensor) -> torch.Tensor:
    """The predicted ab (2, h, w) with the carried ab's correction spread (:func:`spread`), then
    pulled the rest of the way to the carried ab by its confidence; L (1, h, w) at render size."""
    g_ab, conf = _upsampled(guide, ab.shape[-2:])
    return apply_guide(ab[None], L[None].to(ab), g_ab[None].to(ab), conf[None].to(ab))[0]


def apply_guide(ab: torch.Tensor, L: torch.Tensor, target: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """(N, 2, h, w) ab with the target's correction spread (:func:`spread`), then pulled the rest of
    the way to the target by its confidence, so a confident pixel comes out as the target."""
    ab = spread(ab, L, target, conf)
    return conf * target + (1 - conf) * ab


def guide_spec(references: list[str], hints: str | None) -> dict:
    """What identifies the guides in a job manifest: indices and file hashes."""
    from .weights import sha256_file

    refs = {}
    for spec in references:
        idx, path = parse_reference(spec)
        refs[str(idx)] = sha256_file(path)
    if hints and not Path(hints).is_file():  # load_pins says the same later; the manifest needs it first
        raise VidcolorError(f"hints file not found: {hints}")
    return {"references": refs, "hints": sha256_file(Path(hints)) if hints else None}


def build_keyframes(references: list[str], hints: str | None, size: Callable[[int], tuple[int, int]],
                    render: Callable[[tuple[int, int]], tuple[int, int]], n_frames: int | None = None,
                    names: list[str] | None = None) -> list[Keyframe]:
    """Keyframes from ``--reference`` specs and a ``--hints`` file.

    ``size(i)`` is frame i's (h, w), so each pin is checked against its own frame (the photos of a
    folder may differ in size), and ``render(size)`` the render size for it. ``names`` are a frame
    folder's file names, which pins may use instead of indices."""
    from .frameio import read_frame

    def check(idx: int, what: str) -> None:
        if n_frames and idx >= n_frames:
            raise VidcolorError(f"{what} {idx} is past the last frame ({n_frames - 1})")

    keys: dict[int, Keyframe] = {}
    for spec in references:
        idx, path = parse_reference(spec)
        check(idx, "--reference frame")
        if idx in keys:
            raise VidcolorError(f"two --reference images for frame {idx}")
        hw = size(idx)  # for a frame folder, size() reads the photo
        keys[idx] = image_keyframe(idx, read_frame(path).rgb, hw, render(hw))
    if hints:
        for idx, pins in sorted(load_pins(Path(hints), names).items()):
            check(idx, "a hint names frame")
            hw = size(idx)
            kf = pin_keyframe(idx, pins, hw, render(hw), names[idx] if names else "")
            if idx in keys:  # pins on a referenced frame override the painting there
                old = keys[idx]
                kf = Keyframe(idx, torch.where(kf.mask > 0, kf.ab, old.ab), torch.maximum(kf.mask, old.mask))
            keys[idx] = kf
    return [keys[k] for k in sorted(keys)]


def export_frame(video: Path, index: int, out: Path) -> None:
    """Write frame ``index`` (0-based, presentation order, as vidcolor counts) of ``video`` as an image."""
    from .frameio import write_frame
    from .decode import iter_frames
    from .videoio import probe

    info = probe(video)
    if index < 0:
        raise VidcolorError(f"frame index must be >= 0, got {index}")
    count = 0
    for f in iter_frames(video, high_depth=info.bit_depth > 8):
        if f.index == index:
            write_frame(out, f.image, None)
            return
        count += 1
    raise VidcolorError(f"{video} has no frame {index} (it has {count} frames, numbered from 0)")
