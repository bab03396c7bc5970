"""Measure the temporal smoother (issue 4): warp error, PSNR, post-cut change, cost.

    .venv/bin/python scripts/eval_temporal.py CLIP_OR_DIR... --weights W --work DIR \
        [--windows 0 3] [--keyframe-windows 3] [--max-frames 96] [--strips DIR]

Each clip is coloured with the library (``colorize_video``) once per window,
from its own L (the engine reads only L, so the colour clip *is* its grey
version here, without a re-encode), into near-lossless files (x264 crf 0,
4:4:4) so the encoder adds no flicker of its own. The clip itself is the
ground truth. Figures:

- warp error (Lai et al. 2018): TV-L1 flow on the grey ground truth at short
  side 256 (skimage, cached in --work), occlusions removed by a
  forward-backward check; mean |warped previous output - output| in RGB
  [0, 1] over the kept pixels, all frame pairs of all clips. The ground
  truth's own warp error is the floor no colouring can go below.
- PSNR against the ground truth, full resolution, mean over frames.
- post-cut: at each true cut (clips.json from motion_clips.py), the mean ab
  distance between smoothed and per-frame output over the two frames after it.
- drift (issue 15): the colour's slow "breathing" across a shot. For frames 1 s and 4 s apart
  in one shot, the mean ab distance between the two outputs over the pixels that are static in
  the ground truth (L and ab each within 2 units over a 5x5 neighbourhood), minus the truth's own
  distance there (compression noise). Pairs that span a cut are skipped: the cuts of clips.json, or
  for a clip without one the cuts the pipeline's rule finds on the truth itself (until session 15
  a clip without clips.json had none, so the long Kivy clip compared frames across its cut).
  ``drift_Ns_static_share`` is the share of pixels a pair has to compare, on average; read a
  figure resting on a tiny share (a moving camera) as noise.
  Needs clips longer than 4 s: raise --max-frames; ``--no-warp``
  then skips the warp error, whose TV-L1 flows take many minutes on a long clip.
- cost: 1 - (window-0 time / window-w time), summed over clips: the end-to-end share that
  smoothing adds. (Time inside Smoother.push/flush is also kept, as ``smoother_busy_share``, but
  prediction runs in its own thread meanwhile, so that is not a share of end-to-end time.)
  ``scripts/bench.py`` measures the same cost on a quiet machine with repeats.

The 0-window run is the reference; every other window is compared with it.
``--keyframe-windows W...`` adds runs with ``--keyframes auto`` after window W
(issue 15), named ``wWk`` in the figures; ``--context-windows W...`` the same with
``--scene-context steady`` as well, named ``wWks``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from vidcolor import flow as fl, pipeline
from vidcolor.color import rgb_to_lab
from vidcolor.temporal_metrics import flow_pair, sample_at_flow
from vidcolor.metrics import psnr
from vidcolor.pipeline import Settings, colorize_video
from vidcolor.settings import DEFAULT_WINDOW
from vidcolor.temporal import Smoother
from vidcolor.testclips import write_rgb_video
from vidcolor.encode import EncodeOptions

EVAL_SHORT = 256
nan = float("nan")
LOSSLESS = EncodeOptions(codec="libx264", crf=0, preset="ultrafast", pix_fmt="yuv444p")


class TimedSmoother(Smoother):
    """The real smoother, timing its own calls and keeping what it decided."""

    seconds = 0.0
    found_cuts: list[int] = []
    scores: list[tuple[int, float]] = []

    def push(self, item):  # noqa: ANN001, ANN201
        t = time.perf_counter()
        out = super().push(item)
        TimedSmoother.seconds += time.perf_counter() - t
        return out

    def flush(self):  # noqa: ANN201
        t = time.perf_counter()
        out = super().flush()
        TimedSmoother.seconds += time.perf_counter() - t
        TimedSmoother.found_cuts = list(self.cuts)
        return out

    def _decide_cut(self, a: int) -> None:
        super()._decide_cut(a)
        d = self._dist[a]
        ctx = [self._dist[k] for k in (a - 1, a + 1) if k in self._dist]
        TimedSmoother.scores.append((a + 1, float(d - max(ctx)) if ctx else float(d)))


def decode(path: Path, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if limit and len(out) >= limit:
                break
        return out


def write_lossless(path: Path, frames: list[np.ndarray]) -> None:
    write_rgb_video(path, frames, 24, pix_fmt="yuv444p", options={"crf": "0", "preset": "ultrafast"})


def to_eval(frames: list[np.ndarray]) -> torch.Tensor:
    """(N, 3, h, w) float RGB in [0, 1], short side EVAL_SHORT."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    s = EVAL_SHORT / min(h, w)
    return F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def warp_np(x: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
    """x (C, h, w) sampled at pos + flow, flow (2, h, w) as skimage gives it: (row, col)."""
    return sample_at_flow(x, torch.from_numpy(flow).float())[0]


def gt_flows(name: str, gt: torch.Tensor, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """Flow t -> t-1 on the grey ground truth, and the mask of pixels it follows reliably (cached).
    The same TV-L1 flow and forward-backward check as `vidcolor eval` (:func:`vidcolor.temporal_metrics.flow_pair`)."""
    cache = work / "flows" / f"{name}_{gt.shape[0]}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["flow"].astype(np.float32), z["mask"]
    grey = (0.299 * gt[:, 0] + 0.587 * gt[:, 1] + 0.114 * gt[:, 2]).numpy()
    flows, masks = [], []
    for t in range(1, len(grey)):
        fw, mask = flow_pair(grey[t - 1], grey[t])  # grey[t-1](x + fw) ~ grey[t](x)
        flows.append(fw.astype(np.float16))
        masks.append(mask)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, flow=np.stack(flows), mask=np.stack(masks))
    return np.stack(flows).astype(np.float32), np.stack(masks)


def warp_error(out: torch.Tensor, flows: np.ndarray, masks: np.ndarray, cuts: list[int]) -> tuple[float, float, int]:
    """Over the frame pairs not spanning a cut: the sums of the masked mean |warped previous -
    current| in RGB [0, 1] and of the same in Lab ab units (the chroma part alone, which is
    all smoothing can change), and the pair count."""
    total, total_ab, n = 0.0, 0.0, 0
    ab = rgb_to_lab(out)[:, 1:]
    for t in range(1, out.shape[0]):
        if t in cuts:
            continue
        m = torch.from_numpy(masks[t - 1])
        if m.any():
            total += float((warp_np(out[t - 1], flows[t - 1]) - out[t]).abs().mean(0)[m].mean())
            total_ab += float((warp_np(ab[t - 1], flows[t - 1]) - ab[t]).abs().mean(0)[m].mean())
        n += 1
    return total, total_ab, n


DRIFT_SECONDS = (1, 4)
STATIC = 2.0  # Lab units: a truth pixel this steady over its 5x5 neighbourhood counts as static


def truth_cuts(lab_g: torch.Tensor, threshold: float = 0.5) -> list[int]:
    """Hard cuts in the ground truth itself (frame index of each new shot's first frame), by the
    pipeline's own rule on the truth's L (:func:`vidcolor.flow.is_cut`), for clips that come without
    a clips.json: they only decide which frame pairs :func:`drift` may compare (a pair that spans a
    cut compares two shots, and their dark pixels pass the static test by chance)."""
    feats = [fl.cut_features(fl.standardize(fl.half_size(lab_g[t:t + 1, :1]))) for t in range(len(lab_g))]
    dist = {a: fl.frame_distance(feats[a], feats[a + 1]) for a in range(len(lab_g) - 1)}
    return [a + 1 for a in dist if fl.is_cut(dist, a, threshold)]


def drift(out: torch.Tensor, lab_g: torch.Tensor, fps: float, cuts: list[int]) -> dict[str, float]:
    """Mean ab distance of ``out`` between frames 1 s and 4 s apart on the truth's static pixels,
    minus the truth's own; {} where the clip is too short. ``out`` (N, 3, h, w) RGB and the truth's
    Lab ``lab_g`` (computed once per clip), both at eval size."""
    lab_o = rgb_to_lab(out)
    res = {}
    for sec in DRIFT_SECONDS:
        d = round(sec * fps)
        pairs = [t for t in range(len(lab_g) - d) if not any(t < c <= t + d for c in cuts)]
        if not pairs:
            continue
        num = den = 0.0
        px = []
        for t in pairs:
            change = (lab_g[t] - lab_g[t + d]).abs().amax(0, keepdim=True)
            static = F.max_pool2d(change[None], 5, 1, 2)[0, 0] < STATIC
            px.append(int(static.sum()))
            if static.any():
                dist_o = (lab_o[t, 1:] - lab_o[t + d, 1:]).norm(dim=0)[static].mean()
                dist_g = (lab_g[t, 1:] - lab_g[t + d, 1:]).norm(dim=0)[static].mean()
                num += float(dist_o - dist_g)
                den += 1
        if den:
            res[f"drift_{sec}s"] = num / den
            # how many still pixels a pair has, on average: under a moving camera a handful, and then
            # the figure above is not a measurement of the shot's colour
            res[f"drift_{sec}s_static_share"] = float(np.mean(px)) / static.numel()
    return res


def clip_fps(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.streams.video[0].average_rate or 24)


def ab_of(frames: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    return rgb_to_lab(x)[:, 1:]


def make_strip(path: Path, gt: list[np.ndarray], runs: dict[str, list[np.ndarray]], window: str) -> None:
    """Rows: ground truth, per-frame, smoothed, |smoothed - per-frame| ab x8; six frames across."""
    from PIL import Image

    n = len(gt)
    idx = [round(i * (n - 1) / 5) for i in range(6)]
    diff = (ab_of([runs[window][i] for i in idx]) - ab_of([runs["w0"][i] for i in idx])).norm(dim=1)
    heat = (diff * 8).clamp(0, 255).to(torch.uint8).numpy()
    rows = [[gt[i] for i in idx], [runs["w0"][i] for i in idx], [runs[window][i] for i in idx],
            [np.repeat(h[..., None], 3, axis=2) for h in heat]]
    img = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    Image.fromarray(img).save(path)


def clip_list(args: list[Path]) -> list[Path]:
    out = []
    for a in args:
        out += sorted(a.glob("*.mp4")) if a.is_dir() else [a]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder for coloured clips and cached flows")
    ap.add_argument("--windows", type=int, nargs="+", default=[0, DEFAULT_WINDOW])
    ap.add_argument("--keyframe-windows", type=int, nargs="*", default=[],
                    help="also run --keyframes auto after each of these windows")
    ap.add_argument("--context-windows", type=int, nargs="*", default=[],
                    help="runs with keyframes and --scene-context steady after these windows (named wWks)")
    ap.add_argument("--keyframe-every", type=int, default=0)
    ap.add_argument("--cut-threshold", type=float, default=0.5)
    ap.add_argument("--max-frames", type=int, default=96, help="trim longer clips (evaluation time)")
    ap.add_argument("--segment-frames", type=int, default=240,
                    help="checkpoint segment length (issue 35: until then the carrier restarted at each)")
    ap.add_argument("--strips", type=Path, help="folder for frame-strip PNGs of the --strip-clips")
    ap.add_argument("--strip-clips", nargs="+", default=["object.mp4", "splice.mp4", "davis_dance-twirl.mp4"])
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--no-warp", action="store_true", help="skip the warp error (and its slow TV-L1 flows)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    windows = sorted(set([0] + a.windows))
    # (name, window, keyframes, scene context): the per-frame run first, the reference of every other
    configs = ([(f"w{w}", w, "off", "off") for w in windows] + [(f"w{w}k", w, "auto", "off") for w in a.keyframe_windows]
               + [(f"w{w}ks", w, "auto", "steady") for w in a.context_windows])
    a.work.mkdir(parents=True, exist_ok=True)
    pipeline.Smoother = TimedSmoother  # colorize_video builds its smoother from this name
    report: dict = {"clips": {}}
    for clip in clip_list(a.clips):
        meta_file = clip.parent / "clips.json"
        meta = json.loads(meta_file.read_text()).get(clip.name, {}) if meta_file.exists() else {}
        true_cuts = meta.get("cuts", [])
        gt = decode(clip)
        src = clip
        if len(gt) > a.max_frames:  # a trimmed copy, which is then the ground truth
            gt = gt[:a.max_frames]
            src = a.work / f"{clip.stem}_first{a.max_frames}.mp4"
            if not src.exists():
                write_lossless(src, gt)
            gt = decode(src)
        gt_eval = to_eval(gt)
        if a.no_warp:  # drift, PSNR and cost only: TV-L1 on a long clip takes many minutes
            flows = masks = None
            we_gt = we_gt_ab = nan
            npairs = len(gt) - 1 - sum(1 for c in true_cuts if 0 < c < len(gt))
        else:
            flows, masks = gt_flows(clip.stem, gt_eval, a.work)
            we_gt, we_gt_ab, npairs = warp_error(gt_eval, flows, masks, true_cuts)
        fps, gt_lab = clip_fps(clip), rgb_to_lab(gt_eval)
        # drift compares frames seconds apart, so it needs every cut: the listed ones, or the truth's own
        drift_cuts = true_cuts if meta_file.exists() else truth_cuts(gt_lab)
        row = {"frames": len(gt), "true_cuts": true_cuts, "drift_cuts": drift_cuts, "pairs": npairs,
               "we_gt": we_gt / max(npairs, 1), "we_ab_gt": we_gt_ab / max(npairs, 1)}
        runs: dict[str, list[np.ndarray]] = {}
        for name, w, kf, ctx in configs:
            out = a.work / f"{clip.stem}_{name}.mp4"
            TimedSmoother.seconds, TimedSmoother.found_cuts, TimedSmoother.scores = 0.0, [], []
            res = colorize_video(src, out, Settings(weights=a.weights, device="cpu", temporal_window=w,
                                                    cut_threshold=a.cut_threshold, keyframes=kf,
                                                    keyframe_every=a.keyframe_every, scene_context=ctx),
                                 encode=LOSSLESS, overwrite=True, progress=False, log=lambda s: None,
                                 segment_frames=a.segment_frames)
            frames = decode(out)
            runs[name] = frames
            out_eval = to_eval(frames)
            we, we_ab, _ = (nan, nan, 0) if a.no_warp else warp_error(out_eval, flows, masks, true_cuts)
            r = {"we": we / max(npairs, 1), "we_ab": we_ab / max(npairs, 1), **drift(out_eval, gt_lab, fps, drift_cuts),
                 "psnr": float(np.mean([psnr(o, g) for o, g in zip(frames, gt)])),
                 "seconds": res.seconds, "fps": len(frames) / max(res.seconds, 1e-9),
                 "smoother_seconds": TimedSmoother.seconds,
                 "found_cuts": TimedSmoother.found_cuts,
                 "top_scores": sorted(TimedSmoother.scores, key=lambda s: -s[1])[:3]}
            if name != "w0" and true_cuts:
                after = [c + k for c in true_cuts for k in (0, 1) if c + k < len(frames)]
                d = (ab_of([frames[i] for i in after]) - ab_of([runs["w0"][i] for i in after])).norm(dim=1)
                r["postcut_ab"] = float(d.mean())
            row[name] = r  # before the print, which compares with row["w0"]
            warp = "" if a.no_warp else (f"we {r['we']:.5f} (gt {row['we_gt']:.5f}) ab {r['we_ab']:.3f} "
                                         f"(gt {row['we_ab_gt']:.3f}) x{r['we_ab'] / row['w0']['we_ab']:.2f} of w0 ")
            print(f"{clip.name} {name}: {warp}psnr {r['psnr']:.3f} "
                  f"fps {r['fps']:.1f} "
                  f"time {res.seconds:.1f}s smoother {TimedSmoother.seconds:.1f}s cuts {r['found_cuts']} "
                  f"post-cut {r.get('postcut_ab', float('nan')):.2f} "
                  + "".join(f"{k} {r[k]:.3f} " for k in r if k.startswith("drift_"))
                  + f"top {r['top_scores']}", flush=True)
        if a.strips and clip.name in a.strip_clips:
            a.strips.mkdir(parents=True, exist_ok=True)
            make_strip(a.strips / f"strip_{clip.stem}.png", gt, runs, configs[-1][0])
            print(f"strip: {a.strips / f'strip_{clip.stem}.png'}")
        report["clips"][clip.name] = row
    summary = {}
    rows = list(report["clips"].values())
    pairs = sum(r["pairs"] for r in rows)

    def pooled(key: str, w: str | None = None) -> float:  # mean over all frame pairs of all clips
        return sum((r[w] if w is not None else r)[key] * r["pairs"] for r in rows) / pairs

    for w, *_ in configs[1:]:
        post = [r[w]["postcut_ab"] for r in rows if "postcut_ab" in r[w]]
        summary[w] = {
            "warp_error": pooled("we", w), "warp_error_w0": pooled("we", "w0"), "warp_error_gt": pooled("we_gt"),
            "warp_error_ratio": pooled("we", w) / pooled("we", "w0"),
            "warp_error_ratio_if_perfect": pooled("we_gt") / pooled("we", "w0"),
            "ab_warp_error": pooled("we_ab", w), "ab_warp_error_w0": pooled("we_ab", "w0"),
            "ab_warp_error_ratio": pooled("we_ab", w) / pooled("we_ab", "w0"),
            "psnr_delta_mean": float(np.mean([r[w]["psnr"] - r["w0"]["psnr"] for r in rows])),
            "psnr_delta_worst": float(min(r[w]["psnr"] - r["w0"]["psnr"] for r in rows)),
            "postcut_ab_mean": float(np.mean(post)) if post else None,
            "cost_share": 1.0 - sum(r["w0"]["seconds"] for r in rows) / sum(r[w]["seconds"] for r in rows),
            "smoother_busy_share": sum(r[w]["smoother_seconds"] for r in rows)
            / sum(r[w]["seconds"] for r in rows),
            "false_cuts": sum(len(set(r[w]["found_cuts"]) - set(r["true_cuts"])) for r in rows),
            "missed_cuts": sum(len(set(r["true_cuts"]) - set(r[w]["found_cuts"])) for r in rows),
        }
        for sec in DRIFT_SECONDS:
            vals = [r[w][f"drift_{sec}s"] for r in rows if f"drift_{sec}s" in r[w]]
            summary[w][f"drift_{sec}s_mean"] = float(np.mean(vals)) if vals else None
            base = [r["w0"][f"drift_{sec}s"] for r in rows if f"drift_{sec}s" in r["w0"]]
            summary[w][f"drift_{sec}s_mean_w0"] = float(np.mean(base)) if base else None
        worst = max(r[w]["we_ab"] / r["w0"]["we_ab"] for r in rows)
        summary[w]["ab_warp_error_ratio_worst_clip"] = worst
        print(f"== {w}: " + json.dumps(summary[w]))
    report["summary"] = summary
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
