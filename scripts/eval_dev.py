#!/usr/bin/env python
"""Evaluate a weights file on the held-out dev split of the training photos.

    python scripts/eval_dev.py --weights weights/vidcolor.pt --json dev.json --sheet sheet.png

The dev split is ``vidcolor.data.split`` of ``train_manifest.csv`` (1 photo in
20, by file-name hash; never trained on). Photos are taken in a fixed order
(sorted by the SHA-1 of the file name, which mixes the sources) so ``--limit N``
always picks the same N. Each photo is resized so its short side is 256 px
(LFW faces are 200 px, so they are upscaled), and coloured by the model at
that size from its own L (``vidcolor.train.predict_rgb``). Metrics are those
of ``vidcolor eval``: PSNR and SSIM on 8-bit RGB, colourfulness ratio
(mean M(ours) / mean M(truth)), AuC of the ab error, for ours and for the
a=b=0 baseline; per-image means overall, per source, and over sources.

``--hints K`` gives the model K ground-truth colour points per photo (1-4 px
patches holding the patch's mean ab, as in ``vidcolor.data.simulate_hints``)
at a fixed seed per photo.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vidcolor import data as D
from vidcolor.color import rgb_to_lab
from vidcolor.errors import VidcolorError
from vidcolor.evaluate import grey_baseline, image_metrics, photo_at, resize_rgb, write_json
from vidcolor.settings import DEFAULT_GUIDED_TEMPERATURE, DEFAULT_TEMPERATURE
from vidcolor.train import predict_rgb, readout_rgb
from vidcolor.weights import default_weights_path, load_checkpoint, load_model, model_from_state, sha256_file

REPO = Path(__file__).resolve().parent.parent
HINT_SEED = 2024
METRICS = ("psnr", "ssim", "colorfulness_ratio", "auc", "false_colour")


def colour_photo(model, img: np.ndarray, temperature: float, hint: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, damage: np.random.Generator | None = None,
                 stock: bool = False) -> np.ndarray:
    """The model's colouring of uint8 RGB ``img`` from its own L, as uint8 RGB (with ``damage``,
    from that L given film-like damage: :func:`vidcolor.train.predict_rgb`)."""
    rgb = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    out = predict_rgb(model, rgb, temperature, hint, mask, damage, stock)
    return (out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def point_hints(ab: torch.Tensor, k: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly ``k`` hint patches (1-4 px, the patch's mean ab) for (1, 2, H, W) ground-truth ab.

    Same patch model as :func:`vidcolor.data.simulate_hints`, but with a fixed
    count so that every photo gets the same help.
    """
    hint = torch.zeros_like(ab)
    mask = torch.zeros(1, 1, *ab.shape[-2:], dtype=ab.dtype)
    D.add_patches(ab, hint, mask, 0, k, rng)
    return hint, mask


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per-image means of a group of rows; colourfulness ratio as a ratio of means."""
    out: dict[str, dict[str, float]] = {}
    gt_cf = float(np.mean([r["gt_colorfulness"] for r in rows]))
    keys = [k[len("pred_"):] for k in rows[0] if k.startswith("pred_")]  # what image_metrics measured
    for who in ("pred", "grey"):
        m = {k: float(np.mean([r[f"{who}_{k}"] for r in rows])) for k in keys}
        m["colorfulness_ratio"] = m["colorfulness"] / gt_cf if gt_cf > 0 else float("nan")
        out[who] = m
    return out


def make_sheet(rows: list[tuple], path: Path, height: int = 160) -> None:
    """Contact sheet: one photo per row ``(name, image, image, ...)``, e.g. grey | ours | truth,
    all at ``height`` px."""
    from skimage import io

    gap = 4
    lines = []
    for _, *images in rows:
        h, w = images[-1].shape[:2]
        shape = (height, max(1, round(w * height / h)))
        sep = np.full((height, gap, 3), 255, np.uint8)
        tiles = [t for x in images for t in (resize_rgb(x, shape), sep)][:-1]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(x.shape[1] for x in lines)
    canvas = np.full((len(lines) * (height + gap) - gap, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        canvas[i * (height + gap):i * (height + gap) + height, :line.shape[1]] = line
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(path, canvas, check_contrast=False)


def pick_sheet(items: list[D.Item], n: int) -> set[str]:
    """About ``n`` photos taken round-robin over the sources, so faces do not fill the sheet."""
    by_src: dict[str, list[str]] = {}
    for it in items:
        by_src.setdefault(it.source, []).append(it.file)
    picked: list[str] = []
    while len(picked) < n and any(by_src.values()):
        for src in sorted(by_src):
            if by_src[src] and len(picked) < n:
                picked.append(by_src[src].pop(0))
    return set(picked)


def parse_readouts(text: str) -> list[tuple[float, float]]:
    """'0:0.38,0.2:0.5' -> [(alpha 0, T 0.38), (alpha 0.2, T 0.5)]."""
    out = []
    for part in filter(None, text.split(",")):
        try:
            alpha, t = (float(v) for v in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad --readouts entry {part!r}: expected ALPHA:T") from None
        out.append((alpha, t))
    return out


def sweep_readouts(a: argparse.Namespace) -> str:
    """Run the network once per photo and read its output out each way of ``--readouts``: readout
    bias ``alpha * log w`` (w: the rebalancing weights in the training checkpoint ``--rebalance-from``)
    and temperature T. Returns one line per readout (overall per-image means)."""
    from tqdm import tqdm

    torch.set_num_threads(a.threads)
    model = load_model(Path(a.weights) if a.weights else default_weights_path())
    if model.readout_temperature:  # the sweep's T and alpha apply to unscaled logits
        raise VidcolorError(f"--readouts needs weights exported without a temperature (this file has T "
                            f"{model.readout_temperature} folded into its logits): export_weights(ckpt, dest)")
    logw = torch.load(a.rebalance_from, map_location="cpu", weights_only=True)["rebalance"].float().log()
    rows: dict[tuple[float, float], list[dict]] = {r: [] for r in a.readouts}
    for it in tqdm(D.eval_items(Path(a.data_dir), a.split, a.limit), disable=a.quiet, leave=False):
        img = photo_at(Path(a.data_dir) / "train" / it.file, a.short_side)
        rgb = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
        lab = rgb_to_lab(rgb)
        with torch.no_grad():
            out = model(D.make_input(lab[:, :1]))
            for alpha, t in a.readouts:
                model.readout_bias.copy_(alpha * logw)
                pred = readout_rgb(model, out, lab, t)[0].permute(1, 2, 0).numpy()
                m = image_metrics((pred * 255.0 + 0.5).astype(np.uint8), img)
                rows[(alpha, t)].append({f"{who}_{k}": v for who, d in m.items() for k, v in d.items()})
    lines = [f"{'alpha':>6}{'T':>6}  {'PSNR':>7}{'grey':>7}  {'colour':>7}  {'false%':>7}"]
    for (alpha, t), rs in rows.items():
        m = summarise(rs)
        lines.append(f"{alpha:>6.2f}{t:>6.2f}  {m['pred']['psnr']:>7.2f}{m['grey']['psnr']:>7.2f}  "
                     f"{m['pred']['colorfulness_ratio']:>7.3f}  {100 * m['pred']['false_colour']:>7.2f}")
    return "\n".join(lines)


def run(a: argparse.Namespace) -> dict:
    """Evaluate and return the report (also printed)."""
    from tqdm import tqdm

    torch.set_num_threads(a.threads)
    weights = Path(a.weights) if a.weights else default_weights_path()
    state = load_checkpoint(weights)
    model = model_from_state(state, weights)
    # A file exported with a temperature T0 has its logits scaled by 0.38 / T0 (export_weights), so the
    # product's 0.38 reads it at T0. --temperature names the readout a user gets: scale it the same way.
    folded = model.readout_temperature
    scale = DEFAULT_TEMPERATURE / folded if folded else 1.0
    # Without --temperature, the product's readout: hinted frames as the engine reads them (Colorizer.guided_scale).
    # A net that is not fed pins (Colorizer.pins_in_net) reads them out automatically, as the engine does.
    guided = a.hints and model.pins_in_net
    t_apply = (a.temperature * scale if a.temperature_given else
               DEFAULT_GUIDED_TEMPERATURE * model.guided_scale if guided else DEFAULT_TEMPERATURE)
    effective = t_apply / scale
    items = D.eval_items(Path(a.data_dir), a.split, a.limit)
    sheet_names = pick_sheet(items, a.sheet_count) if a.sheet else set()
    sheet_rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    rows: list[dict] = []
    t0 = time.time()
    for i, it in enumerate(tqdm(items, desc="dev", disable=a.quiet, leave=False)):
        img = photo_at(Path(a.data_dir) / "train" / it.file, a.short_side)
        key = int(hashlib.sha1(it.file.encode()).hexdigest()[:8], 16)  # a photo's own seed, run to run
        hint = mask = None
        if a.hints:
            rgb = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
            hint, mask = point_hints(rgb_to_lab(rgb)[:, 1:], a.hints, np.random.default_rng([HINT_SEED, key]))
        damage = np.random.default_rng([a.film, key]) if a.film is not None else None
        ours = colour_photo(model, img, t_apply, hint, mask, damage, a.stock)
        m = image_metrics(ours, img)
        rows.append({"file": it.file, "source": it.source,
                     **{f"{who}_{k}": v for who, d in m.items() for k, v in d.items()}})
        if it.file in sheet_names:
            sheet_rows.append((it.file, grey_baseline(img), ours, img))
    seconds = time.time() - t0
    if not rows:
        raise VidcolorError("no dev photos to evaluate")
    sources = sorted({r["source"] for r in rows})
    per_source = {s: {"n": sum(r["source"] == s for r in rows), **summarise([r for r in rows if r["source"] == s])}
                  for s in sources}
    balanced = {who: {k: float(np.mean([per_source[s][who][k] for s in sources])) for k in METRICS}
                for who in ("pred", "grey")}
    report = {
        "weights": str(weights), "sha256": sha256_file(weights), "arch": model.config["arch"],
        "step": state.get("step"), "temperature": round(effective, 4), "hints": a.hints, "film": a.film, "stock": a.stock,
        "short_side": a.short_side,
        "n": len(rows), "seconds": round(seconds, 1),
        "averaging": (f"per-image mean over {len(rows)} dev photos, each resized to short side {a.short_side} px; "
                      "colourfulness ratio = mean M(x) / mean M(truth); 'over sources' = unweighted mean of the "
                      "per-source means"),
        "overall": summarise(rows), "over_sources": balanced, "per_source": per_source, "items": rows,
    }
    if a.sheet:
        order = {f: i for i, f in enumerate(x.file for x in items)}
        make_sheet(sorted(sheet_rows, key=lambda r: order[r[0]]), Path(a.sheet))
    return report


def format_report(r: dict) -> str:
    """Overall, over-sources and per-source means as a table."""
    head = (f"{'':<20}{'n':>5}  {'PSNR':>7}{'grey':>7}  {'SSIM':>7}{'grey':>7}  {'colour':>7}{'grey':>7}"
            f"  {'AuC':>7}{'grey':>7}  {'false%':>7}")

    def line(name: str, n: int | str, m: dict) -> str:
        p, g = m["pred"], m["grey"]
        return (f"{name:<20}{n:>5}  {p['psnr']:>7.2f}{g['psnr']:>7.2f}  {p['ssim']:>7.4f}{g['ssim']:>7.4f}  "
                f"{p['colorfulness_ratio']:>7.3f}{g['colorfulness_ratio']:>7.3f}  {p['auc']:>7.4f}{g['auc']:>7.4f}"
                f"  {100 * p['false_colour']:>7.2f}")

    out = [f"dev eval: {r['weights']} (arch {r['arch']}, step {r['step']}), T={r['temperature']}, "
           f"hints={r['hints']}, film={r.get('film')}, stock={r.get('stock')}, {r['seconds']} s",
           f"averaging: {r['averaging']}", "", head, line("overall", r["n"], r["overall"]),
           line("over sources", len(r["per_source"]), r["over_sources"]), ""]
    out += [line(s, v["n"], v) for s, v in r["per_source"].items()]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="weights file (default: the shipped weights/vidcolor.pt)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--temperature", type=float, default=None,
                   help="annealed-mean readout temperature (classifier archs; lower = more vivid), as a user "
                        "gets it: on a file exported with a temperature folded in, the same readout; default: "
                        f"the product's, {DEFAULT_TEMPERATURE} automatic or {DEFAULT_GUIDED_TEMPERATURE} with --hints on a "
                        "net fed the pins (on such a file, its own temperature)")
    p.add_argument("--split", choices=("dev", "all"), default="dev",
                   help="dev: the 1-in-20 dev split of --data-dir; all: every photo in it (the test split)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N dev photos (fixed order)")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--hints", type=int, default=0, help="K ground-truth colour points per photo (fixed seed)")
    p.add_argument("--film", type=int, default=None, metavar="SEED",
                   help="give each photo's L film-like damage (vignette, uneven exposure, tone, softness, "
                        "grain: vidcolor.film) before the model sees it, drawn from SEED and the file name; "
                        "the colour is judged on the clean L")
    p.add_argument("--stock", action="store_true",
                   help="with --film: the damaged grey is that of a panchromatic or orthochromatic film stock "
                        "(vidcolor.film.spectral_l), not the photo's luminance; colour is judged on a,b only")
    p.add_argument("--readouts", type=parse_readouts, default=None, metavar="ALPHA:T,...",
                   help="instead of one report, a line per readout: readout bias ALPHA x log(rebalancing "
                        "weights of --rebalance-from) and temperature T (the net runs once per photo)")
    p.add_argument("--rebalance-from", default=None, help="training checkpoint whose rebalancing weights "
                   "--readouts takes back")
    p.add_argument("--json", default=None, help="write the full report (with per-photo values) here")
    p.add_argument("--sheet", default=None, help="write a contact sheet PNG (rows: grey | ours | truth)")
    p.add_argument("--sheet-count", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    a.temperature_given = a.temperature is not None
    if a.temperature is None:  # as `vidcolor` reads out a frame with and without hints
        a.temperature = DEFAULT_GUIDED_TEMPERATURE if a.hints else DEFAULT_TEMPERATURE
    try:
        if a.temperature <= 0 or a.short_side < 16 or a.hints < 0 or (a.limit is not None and a.limit < 1):
            raise VidcolorError("need --temperature > 0, --short-side >= 16, --hints >= 0 and --limit >= 1")
        if a.stock and a.film is None:
            raise VidcolorError("--stock needs --film SEED")
        if a.readouts:
            if not a.rebalance_from:
                raise VidcolorError("--readouts needs --rebalance-from TRAINING_CHECKPOINT")
            print(sweep_readouts(a))
            return
        r = run(a)
        if a.json:
            write_json(r, Path(a.json))
    except VidcolorError as e:
        print(f"eval_dev: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(format_report(r))


if __name__ == "__main__":
    main()
