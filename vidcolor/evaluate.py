"""``vidcolor eval PRED GT``: how close a colourisation is to the truth, and how steady it is over time.

PRED and GT are two image folders (matched by file name) or two videos
(matched by frame order). Per image or frame, on 8-bit RGB:

- PSNR and SSIM (:mod:`vidcolor.metrics`);
- colourfulness (Hasler & Suesstrunk 2003 as published), reported as the ratio
  mean M(PRED) / mean M(GT) over all images: a per-image ratio would explode
  on nearly grey ground truth;
- AuC of the ab error (Zhang et al. 2016): the fraction of pixels whose ab L2
  error is within a threshold, integrated over thresholds 0..150, in [0, 1];
- all of the above for the a=b=0 ("grey") baseline built from GT's own L.

For videos, also:

- warp error (Lai et al. 2018): flow between consecutive GT frames computed on
  their L channel with scikit-image (TV-L1 or iterative Lucas-Kanade), pixels
  that fail the forward-backward consistency test of Ruder et al. 2016 or
  leave the frame are masked out; the previous output frame is warped onto the
  current one and the difference is averaged over the remaining pixels, RGB
  in [0, 1]. Reported as the mean absolute difference (``warp_error``) and as
  Lai's released form, the per-pixel squared L2 norm (``warp_error_sq``),
  averaged over frame pairs. Lai et al. also mask motion boundaries; that test
  is not applied here.
- CDC (Liu et al. 2021, TCVC): Jensen-Shannon divergence (natural log) between
  the 256-bin per-channel RGB histograms of frames t and t+d, averaged over t,
  then over the dilations d = 1, 2, 4 with equal weight, then over the three
  channels, as in the authors' released evaluation code (``compute_hist.py``,
  ``calculate_folders_multiple``); other dilations can be chosen, and the value
  per dilation is reported too. Lower is steadier.

Temporal metrics are also given for the grey baseline and for GT itself (the
floor set by flow errors and real colour changes).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import click
import numpy as np
import torch
import torch.nn.functional as F

from .color import lab_to_rgb, rgb_to_lab
from .data import load_rgb
from .errors import InputError, VidcolorError, raise_if_interrupted
from .frameio import to_uint8
from .metrics import AUC_THRESHOLDS, ab_auc, colorfulness, false_colour, psnr, ssim
from .temporal_metrics import CDC_DILATIONS, FLOW_METHODS, CDCAccumulator, flow_pair, warp_errors

DEFAULT_FLOW_SIZE = 256


# ----------------------------------------------------------------------------- image helpers


def short_side_shape(h: int, w: int, short: int) -> tuple[int, int]:
    """(h, w) scaled so that the short side is exactly ``short`` pixels, aspect kept."""
    s = short / min(h, w)
    return (short, max(1, int(round(w * s)))) if h <= w else (max(1, int(round(h * s))), short)


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to ``shape`` with antialiased bilinear filtering; uint8 out."""
    if rgb.shape[:2] == tuple(shape):
        return rgb
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return (t[0].permute(1, 2, 0).clamp_(0, 255) + 0.5).to(torch.uint8).numpy()


def photo_at(path: Path, short_side: int) -> np.ndarray:
    """A photo as uint8 RGB, resized so its short side is ``short_side`` (how every photo is judged)."""
    img = load_rgb(path)
    return resize_rgb(img, short_side_shape(img.shape[0], img.shape[1], short_side))


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 Lab (the same conversion the model is trained on)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
    return rgb_to_lab(t).permute(1, 2, 0).numpy()


def grey_baseline(gt: np.ndarray) -> np.ndarray:
    """The a=b=0 baseline of an (H, W, 3) uint8 image: its own L with no colour, as uint8 RGB."""
    t = torch.from_numpy(np.ascontiguousarray(gt)).permute(2, 0, 1).float() / 255.0
    lab = rgb_to_lab(t)
    lab[1:] = 0.0
    return (lab_to_rgb(lab).permute(1, 2, 0) * 255.0 + 0.5).to(torch.uint8).numpy()


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-image metrics of PRED and of the grey baseline against GT (all uint8 RGB, same shape).

    Returns ``{"pred": {...}, "grey": {...}, "gt": {"colorfulness": M}}`` with
    psnr, ssim, auc, colorfulness (absolute, not yet a ratio) and false_colour (the share of
    pixels given vivid colour where the truth is nearly grey).
    """
    if pred.shape != gt.shape:
        raise InputError(f"image sizes differ: PRED {pred.shape[1]}x{pred.shape[0]}, GT {gt.shape[1]}x{gt.shape[0]}")
    grey = grey_baseline(gt)
    gt_ab = rgb_to_lab_np(gt)[..., 1:]
    out: dict[str, dict[str, float]] = {}
    for name, img in (("pred", pred), ("grey", grey)):
        ab = rgb_to_lab_np(img)[..., 1:]
        out[name] = {"psnr": psnr(img, gt), "ssim": ssim(img, gt), "auc": ab_auc(ab, gt_ab),
                     "colorfulness": colorfulness(img), "false_colour": false_colour(ab, gt_ab)}
    out["gt"] = {"colorfulness": colorfulness(gt)}
    return out


# ----------------------------------------------------------------------------- inputs


def _is_video(p: Path) -> bool:
    """Any file that is not a still image is tried as a video (PyAV gives a clear error if it is not)."""
    return p.is_file() and p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _pairs_from_dirs(pred: Path, gt: Path) -> tuple[list[str], Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """Names and a lazy stream of (name, pred, gt) uint8 images, matched by file name."""
    from .frameio import list_frames, natural_key, read_frame

    pf = {p.name: p for p in list_frames(pred)}
    gf = {p.name: p for p in list_frames(gt)}
    only_p, only_g = sorted(set(pf) - set(gf)), sorted(set(gf) - set(pf))
    if only_p or only_g:
        def some(names: list[str]) -> str:
            return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

        parts = []
        if only_p:
            parts.append(f"{len(only_p)} only in PRED ({some(only_p)})")
        if only_g:
            parts.append(f"{len(only_g)} only in GT ({some(only_g)})")
        raise InputError(f"PRED and GT folders do not hold the same file names: {'; '.join(parts)}")
    names = sorted(pf, key=natural_key)

    def gen() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for n in names:
            yield n, to_uint8(read_frame(pf[n]).rgb), to_uint8(read_frame(gf[n]).rgb)

    return names, gen()


def _pairs_from_videos(pred: Path, gt: Path) -> tuple[int, Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """Estimated frame count and a lazy stream of (frame index, pred, gt) matched by decode order."""
    from .decode import iter_frames
    from .videoio import probe

    # probe()'s counts are estimates (duration x average rate where the container has no count),
    # so they only size the progress bar; gen() finds a real difference in length as it decodes.
    probe(pred)  # a clear error for an unreadable PRED before any work
    ig = probe(gt)

    def gen() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        itp, itg = iter_frames(pred), iter_frames(gt)
        n = 0
        end = object()
        while True:
            a, b = next(itp, end), next(itg, end)
            if a is end and b is end:
                return
            if a is end or b is end:
                longer, shorter = ("GT", "PRED") if a is end else ("PRED", "GT")
                raise InputError(f"{shorter} ends after {n} frames but {longer} has more; "
                                 "videos are matched frame by frame")
            yield str(n), a.image, b.image  # type: ignore[union-attr]
            n += 1

    return ig.frames, gen()


# ----------------------------------------------------------------------------- evaluation


@dataclass
class _Acc:
    """Running sums of per-item metrics."""

    sums: dict[str, dict[str, float]] = field(default_factory=dict)
    n: int = 0

    def add(self, m: dict[str, dict[str, float]]) -> None:
        for who, d in m.items():
            s = self.sums.setdefault(who, {})
            for k, v in d.items():
                s[k] = s.get(k, 0.0) + v
        self.n += 1

    def means(self) -> dict[str, dict[str, float]]:
        return {who: {k: v / self.n for k, v in d.items()} for who, d in self.sums.items()}


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return float("nan") if a == 0 else float("inf")


def evaluate(pred: str | Path, gt: str | Path, short_side: int | None = None, flow: str = "tvl1",
             flow_size: int | None = DEFAULT_FLOW_SIZE, cdc_dilations: tuple[int, ...] = CDC_DILATIONS,
             per_item: bool = True, progress: bool = False) -> dict[str, Any]:
    """Compare PRED with GT (two image folders or two videos); returns the report as a dict.

    ``short_side`` resizes both to GT's shape scaled to that short side
    (default: each image at its own size, and PRED must match GT's size).
    For videos, flow and warp error are computed with frames resized to short
    side ``flow_size`` (never upscaled; None or 0 = evaluation size), and
    CDC averages the frame distances ``cdc_dilations``.
    """
    from tqdm import tqdm

    pred, gt = Path(pred), Path(gt)
    for p, what in ((pred, "PRED"), (gt, "GT")):
        if not p.exists():
            raise InputError(f"{what} not found: {p}")
    if pred.is_dir() and gt.is_dir():
        kind = "images"
        names, stream = _pairs_from_dirs(pred, gt)
        total: int | None = len(names)
    elif _is_video(pred) and _is_video(gt):
        kind = "video"
        total, stream = _pairs_from_videos(pred, gt)
        total = total or None
    else:
        raise InputError("PRED and GT must both be image folders or both be video files "
                         f"(got {'folder' if pred.is_dir() else 'file'} {pred} and "
                         f"{'folder' if gt.is_dir() else 'file'} {gt})")
    if flow not in FLOW_METHODS:
        raise VidcolorError(f"unknown flow method {flow!r}; choose one of {', '.join(FLOW_METHODS)}")

    acc = _Acc()
    items: list[dict[str, Any]] = []
    sizes: set[tuple[int, int]] = set()
    temporal = kind == "video"
    if not cdc_dilations or min(cdc_dilations) < 1:
        raise VidcolorError("CDC dilations must be positive frame distances, e.g. 1,2,4")
    cdc = {w: CDCAccumulator(tuple(cdc_dilations)) for w in ("pred", "grey", "gt")}
    warp: dict[str, list[tuple[float, float]]] = {w: [] for w in ("pred", "grey", "gt")}
    valid_frac: list[float] = []
    prev: dict[str, np.ndarray] | None = None
    flow_shape: tuple[int, int] | None = None
    bar = tqdm(total=total, desc="eval", unit="frame" if temporal else "image", disable=not progress, leave=False)
    for name, p_img, g_img in stream:
        raise_if_interrupted()  # as in the colouring loops: a Ctrl-C dropped inside a callback still stops
        p_img, g_img = to_uint8(p_img), to_uint8(g_img)
        if short_side:
            shape = short_side_shape(g_img.shape[0], g_img.shape[1], short_side)
            p_img, g_img = resize_rgb(p_img, shape), resize_rgb(g_img, shape)
        elif p_img.shape != g_img.shape:
            what = f"frame {name}" if temporal else name
            raise InputError(f"size of {what} differs: PRED {p_img.shape[1]}x{p_img.shape[0]}, "
                             f"GT {g_img.shape[1]}x{g_img.shape[0]} (use --short-side to compare at one size)")
        sizes.add(g_img.shape[:2])
        m = image_metrics(p_img, g_img)
        acc.add(m)
        if per_item:
            items.append({"name": name, **{f"{who}_{k}": v for who, d in m.items() for k, v in d.items()}})
        if temporal:
            frames = {"pred": p_img, "gt": g_img, "grey": grey_baseline(g_img)}
            for w, img in frames.items():
                cdc[w].push(img)
            if flow_shape is None:
                h, w_ = g_img.shape[:2]
                flow_shape = ((h, w_) if not flow_size or flow_size >= min(h, w_)
                              else short_side_shape(h, w_, flow_size))
            small = {w: resize_rgb(img, flow_shape) for w, img in frames.items()}
            small_L = rgb_to_lab_np(small["gt"])[..., 0] / 100.0
            if prev is not None:
                fl, mask = flow_pair(prev["L"], small_L, flow)
                valid_frac.append(float(mask.mean()))
                for w in warp:
                    warp[w].append(warp_errors(prev[w], small[w], fl, mask))
            prev = {**small, "L": small_L}
        bar.update(1)
    bar.close()
    if acc.n == 0:
        raise InputError(f"no frames decoded from {pred} / {gt}")

    means = acc.means()
    gt_cf = means["gt"]["colorfulness"]
    for who in ("pred", "grey"):
        means[who]["colorfulness_ratio"] = _ratio(means[who]["colorfulness"], gt_cf)
    unit = "frames" if temporal else "images"
    if short_side:
        resolution = f"resized to short side {short_side} px (GT's aspect ratio)"
    elif len(sizes) == 1:
        h, w = next(iter(sizes))
        resolution = f"all {w}x{h}, own size"
    else:
        resolution = "each image at its own size"
    report: dict[str, Any] = {
        "kind": kind, "pred": str(pred), "gt": str(gt), "count": acc.n,
        "resolution": resolution,
        "averaging": (f"per-{unit[:-1]} mean over {acc.n} {unit}, {resolution}; colourfulness ratio = "
                      f"mean M(x) / mean M(GT) over the {unit}; AuC thresholds "
                      f"{AUC_THRESHOLDS[0]:g}-{AUC_THRESHOLDS[-1]:g} step {AUC_THRESHOLDS[1] - AUC_THRESHOLDS[0]:g}"),
        "pred_metrics": means["pred"], "grey_metrics": means["grey"], "gt_metrics": means["gt"],
    }
    if temporal:
        fh, fw = flow_shape if flow_shape else (0, 0)
        t: dict[str, Any] = {
            "pairs": len(valid_frac), "flow": flow, "flow_resolution": f"{fw}x{fh}",
            "cdc_dilations": list(cdc_dilations),
            "valid_fraction": float(np.mean(valid_frac)) if valid_frac else float("nan"),
            "averaging": (f"warp error: mean over {len(valid_frac)} consecutive-frame pairs of the mean over "
                          f"non-occluded pixels at {fw}x{fh}, RGB in [0, 1]; CDC: JS divergence of 256-bin RGB "
                          f"histograms at {resolution}, dilations {', '.join(map(str, cdc_dilations))} "
                          "averaged with equal weight, then over channels"),
        }
        for w in ("pred", "grey", "gt"):
            e = np.array(warp[w], dtype=np.float64).reshape(-1, 2)
            keep = ~np.isnan(e[:, 0])
            t[w] = {"warp_error": float(e[keep, 0].mean()) if keep.any() else float("nan"),
                    "warp_error_sq": float(e[keep, 1].mean()) if keep.any() else float("nan"),
                    "cdc": cdc[w].value(),
                    "cdc_by_dilation": {str(d): v for d, v in cdc[w].by_dilation().items()}}
        report["temporal"] = t
    if per_item:
        report["items"] = items
    return report


# ----------------------------------------------------------------------------- output


def _fmt(v: float, digits: int) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


def format_report(r: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    p, g, t = r["pred_metrics"], r["grey_metrics"], r["gt_metrics"]
    lines = [f"vidcolor eval: {r['count']} {'frames' if r['kind'] == 'video' else 'images'}  "
             f"PRED={r['pred']}  GT={r['gt']}",
             f"averaging: {r['averaging']}",
             "",
             f"{'metric':<32}{'PRED':>12}{'grey a=b=0':>12}{'GT':>12}",
             f"{'PSNR (dB, 8-bit RGB)':<32}{_fmt(p['psnr'], 2):>12}{_fmt(g['psnr'], 2):>12}{'':>12}",
             f"{'SSIM (8-bit RGB)':<32}{_fmt(p['ssim'], 4):>12}{_fmt(g['ssim'], 4):>12}{'':>12}",
             f"{'colourfulness ratio to GT':<32}{_fmt(p['colorfulness_ratio'], 3):>12}"
             f"{_fmt(g['colorfulness_ratio'], 3):>12}{'1.000':>12}",
             f"{'colourfulness M (H&S 2003)':<32}{_fmt(p['colorfulness'], 2):>12}{_fmt(g['colorfulness'], 2):>12}"
             f"{_fmt(t['colorfulness'], 2):>12}",
             f"{'AuC of ab error (0-150)':<32}{_fmt(p['auc'], 4):>12}{_fmt(g['auc'], 4):>12}{'':>12}",
             f"{'false colour (% of pixels)':<32}{_fmt(100 * p['false_colour'], 2):>12}"
             f"{_fmt(100 * g['false_colour'], 2):>12}{'':>12}"]
    if "temporal" in r:
        tm = r["temporal"]
        lines += ["",
                  f"temporal: {tm['averaging']}; flow {tm['flow']} on GT's L, forward-backward occlusion mask "
                  f"(valid pixels {_fmt(100 * tm['valid_fraction'], 1)}%)",
                  f"{'warp error, mean |diff|':<32}" + "".join(f"{_fmt(tm[w]['warp_error'], 5):>12}"
                                                            for w in ("pred", "grey", "gt")),
                  f"{'warp error, mean ||diff||^2':<32}" + "".join(f"{_fmt(tm[w]['warp_error_sq'], 5):>12}"
                                                                for w in ("pred", "grey", "gt")),
                  f"{'CDC (JS, d=' + ','.join(map(str, tm['cdc_dilations'])) + ')':<32}" + "".join(f"{_fmt(tm[w]['cdc'], 5):>12}" for w in ("pred", "grey", "gt"))]
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "inf", "-inf" and "nan"."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write the report as strict JSON (see :func:`_jsonable`)."""
    try:
        path.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise VidcolorError(f"cannot write {path}: {e.strerror or e}") from None


@click.command("eval")
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("gt", type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the full report (with per-image values) to this JSON file.")
@click.option("--short-side", type=click.IntRange(8, 16384), default=None,
              help="Resize PRED and GT so the short side is this many pixels (default: own size).")
@click.option("--flow", type=click.Choice(FLOW_METHODS), default="tvl1", show_default=True,
              help="Videos: scikit-image optical flow for the warp error.")
@click.option("--flow-size", type=click.IntRange(0, 16384), default=DEFAULT_FLOW_SIZE, show_default=True,
              help="Videos: short side at which flow and warp error are computed (0 = evaluation size).")
@click.option("--cdc-dilations", default="1,2,4", show_default=True,
              help="Videos: frame distances whose CDC values are averaged (the TCVC authors' code uses 1,2,4).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(pred: Path, gt: Path, json_path: Path | None, short_side: int | None, flow: str, flow_size: int,
             cdc_dilations: str, quiet: bool) -> None:
    """Compare colourised PRED with ground truth GT: two image folders (matched by name) or two videos."""
    try:
        try:
            dil = tuple(int(x) for x in cdc_dilations.split(","))
        except ValueError:
            raise VidcolorError(f"--cdc-dilations must be comma-separated integers, got {cdc_dilations!r}") from None
        r = evaluate(pred, gt, short_side=short_side, flow=flow, flow_size=flow_size, cdc_dilations=dil,
                     progress=not quiet)
        if json_path is not None:
            write_json(r, json_path)
    except KeyboardInterrupt:  # VidcolorError is reported by the CLI group, like every subcommand's
        click.echo("vidcolor: interrupted", err=True)
        sys.exit(130)
    click.echo(format_report(r))
    if json_path is not None and not quiet:
        click.echo(f"vidcolor: wrote {json_path}", err=True)
