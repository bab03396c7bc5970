"""Training loop (nanoGPT-style: flat, resumable, one checkpoint dict).

    python scripts/train.py --out runs/vidcolor --minutes 120 --threads 2

Re-running the same command resumes from ``OUT/ckpt.pt``. The checkpoint holds
the model config, model and EMA weights, optimizer, step, the class-rebalancing
prior and the wall time spent so far, so sessions add up on one model.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .color import AB_SCALE, rgb_to_lab
from .settings import DEFAULT_TEMPERATURE
from .guide import apply_guide
from .metrics import colorfulness, psnr
from .model import Colorizer, build_model, default_config


@dataclass
class TrainConfig:
    data_dir: str = "../shared/data"
    out: str = "runs/vidcolor"
    arch: str = "vidcolor"
    batch: int = 16
    crop: int = 144
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup: int = 500
    max_steps: int = 60_000  # the cosine horizon; runs are cut by --minutes/--steps
    weight_decay: float = 1e-4
    ema: float = 0.999
    rebalance: float = 0.5  # lambda of Zhang et al.: 0 = full rebalancing, 1 = none
    # Weight of a Huber term on the softmax mean (T=1) against the true ab. Rebalancing shifts the
    # classifier's mean toward rare, saturated colours, which costs PSNR; this term pulls the mean
    # back while the cross-entropy keeps the modes that the annealed (T<1) readout picks.
    regress: float = 0.0
    hints: bool = True
    # Share of training images that get no hints. 0.5 trains both modes equally; session 3 tried
    # 0.35 and its automatic colour on clips got worse (docs/lab-notes/2026-12-03-training-runs.md).
    hint_p_none: float = 0.5
    # Extra scaling of chosen sources' sampling shares on top of sqrt-by-size (data.source_weights).
    # Faces and clothing are 68% of the photos; users' film is mostly scenes, foliage and sky.
    damp: dict[str, float] = field(default_factory=lambda: dict(D.DEFAULT_DAMP))
    # Share of training images whose input L gets film-like damage (vignette, uneven exposure,
    # tone, softness, grain: vidcolor.film). Users colour old film; the photos are clean.
    film: float = 0.5
    # Share of training inputs whose grey is what an orthochromatic or panchromatic stock records
    # (vidcolor.film.spectral_l) instead of the photo's luminance: old film renders red dark and blue light.
    stock: float = 0.0
    # A new run may start from another training checkpoint's EMA weights, at step 0 with a fresh
    # optimizer: e.g. effdec trained end to end from the decoder that scripts/train_effdec.py trained
    # on the frozen encoder's cached features. "" = from scratch.
    init_from: str = ""
    # Learning-rate share of a pretrained encoder's weights (effdec's ImageNet encoder): a low share
    # adapts it to greys without losing what it learned from colour photos.
    encoder_lr: float = 0.1
    seed: int = 1234
    eval_every: int = 1000
    ckpt_every_s: float = 300.0
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * t)) * (cfg.lr - cfg.min_lr)


def estimate_rebalance(images: list[np.ndarray], bins: torch.Tensor, lam: float, rng: np.random.Generator,
                       n: int = 600, sigma: float = 5.0) -> torch.Tensor:
    """Per-bin loss weights w = ((1-lam) p_smooth + lam/K)^-1, normalised so E_p[w] = 1."""
    counts = torch.zeros(len(bins), dtype=torch.float64)
    for i in rng.choice(len(images), size=min(n, len(images)), replace=False):
        img = torch.from_numpy(images[i][::4, ::4].copy()).permute(2, 0, 1).float() / 255.0
        ab = rgb_to_lab(img)[1:].reshape(2, -1).T
        counts += torch.bincount(torch.cdist(ab, bins).argmin(1), minlength=len(bins)).double()
    return rebalance_from_counts(counts, bins, lam, sigma)


def rebalance_from_counts(counts: torch.Tensor, bins: torch.Tensor, lam: float, sigma: float = 5.0) -> torch.Tensor:
    """:func:`estimate_rebalance`'s weights from per-bin pixel counts."""
    p = counts.double() / counts.sum()
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    p = (torch.exp(-d2 / (2 * sigma ** 2)) @ p)
    p = p / p.sum()
    w = 1.0 / ((1 - lam) * p + lam / len(bins))
    return (w / (p * w).sum()).float()


def soft_encode(ab: torch.Tensor, bins: torch.Tensor, k: int = 5, sigma: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (N,2,h,w) -> soft targets (N,K,h,w) over the k nearest bins, and the nearest bin index (N,h,w)."""
    n, _, h, w = ab.shape
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    d = torch.cdist(flat, bins)
    dk, ik = d.topk(k, dim=1, largest=False)
    wk = torch.softmax(-dk ** 2 / (2 * sigma ** 2), dim=1)
    tgt = torch.zeros(flat.shape[0], len(bins), device=flat.device).scatter_(1, ik, wk)
    return tgt.view(n, h, w, -1).permute(0, 3, 1, 2), ik[:, 0].view(n, h, w)


def compute_loss(model: Colorizer, out: torch.Tensor, lab: torch.Tensor, rebal: torch.Tensor | None,
                 regress: float = 0.0) -> torch.Tensor:
    """Rebalanced soft-encoded cross-entropy (classifiers), plus ``regress`` x Huber on the mean ab."""
    if model.kind == "regress":
        scale = getattr(model.net, "ab_scale", AB_SCALE)
        tgt = F.interpolate(lab[:, 1:], size=out.shape[-2:], mode="area") / scale
        return F.mse_loss(out.float(), tgt)
    tgt_ab = F.interpolate(lab[:, 1:], size=out.shape[-2:], mode="area")
    tgt, nearest = soft_encode(tgt_ab, model.bins)
    logp = torch.log_softmax(out.float(), dim=1)
    ce = -(tgt * logp).sum(dim=1)
    weight = rebal[nearest] if rebal is not None else 1.0
    loss = (ce * weight).mean()
    if regress > 0:
        mean_ab = torch.einsum("nkhw,kc->nchw", logp.exp(), model.bins.to(logp))
        # in units of one bin (10 ab): Huber is then quadratic below one bin and linear beyond
        loss = loss + regress * F.smooth_l1_loss(mean_ab / 10.0, tgt_ab / 10.0)
    return loss


@torch.no_grad()
def predict_rgb(model: Colorizer, rgb: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                hint_ab: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                damage: np.random.Generator | None = None, stock: bool = False) -> torch.Tensor:
    """Colorize (N,3,H,W) RGB in [0,1] from its own L at full size (eval helper).

    Hints get the same treatment as a guided frame in the product: their correction is
    spread and hinted pixels take the hint's colour (:func:`vidcolor.guide.apply_guide`).
    With ``damage`` the network sees L given film-like damage (:func:`vidcolor.film.degrade_l`)
    and its colour is put on the clean L, so the result measures only how the damage
    changes the colour chosen. With ``stock`` too, the damaged grey is first recorded as a
    panchromatic or orthochromatic film stock would (:func:`vidcolor.film.spectral_l`), not as
    the photo's luminance; colour is still put on the photo's L, so it is judged on a,b only.
    """
    from .film import degrade_l, spectral_l

    lab = rgb_to_lab(rgb)
    L_in = lab[:, :1]
    if damage is not None:
        L_in = degrade_l(spectral_l(rgb, damage, p_pan=0.5, p_ortho=0.5) if stock else L_in, damage, p=1.0)
    fed = (hint_ab, mask) if model.pins_in_net else (None, None)  # as the engine does (Colorizer.pins_in_net)
    return readout_rgb(model, model(D.make_input(L_in, *fed)), lab, temperature, hint_ab, mask)


@torch.no_grad()
def readout_rgb(model: Colorizer, out: torch.Tensor, lab: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                hint_ab: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The network's output ``out`` read out at ``temperature`` and put on ``lab``'s own L as RGB
    (:func:`predict_rgb`'s second half; a readout sweep calls it once per readout on one output)."""
    from .color import lab_to_rgb

    ab = F.interpolate(model.decode_ab(out, temperature), size=lab.shape[-2:], mode="bilinear", align_corners=False)
    if mask is not None:
        ab = apply_guide(ab, lab[:, :1], hint_ab, mask)
    return lab_to_rgb(torch.cat([lab[:, :1], ab], dim=1))


@torch.no_grad()
def quick_eval(model: Colorizer, images: list[np.ndarray], temperature: float = DEFAULT_TEMPERATURE) -> dict[str, float]:
    """Mean PSNR, grey-baseline PSNR and colourfulness ratio on a few dev photos."""
    model.eval()
    device = next(model.parameters()).device
    ps, base, cf, cf_gt = [], [], [], []
    for img in images:
        rgb = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
        out = predict_rgb(model, rgb.to(device), temperature)[0].permute(1, 2, 0).cpu().numpy()
        out = (out * 255 + 0.5).astype(np.uint8)
        grey = predict_rgb_grey(rgb)
        ps.append(psnr(out, img))
        base.append(psnr(grey, img))
        cf.append(colorfulness(out))
        cf_gt.append(colorfulness(img))
    model.train()
    return {"psnr": float(np.mean(ps)), "psnr_grey": float(np.mean(base)),
            "colorfulness_ratio": float(np.mean(cf) / max(np.mean(cf_gt), 1e-9))}


def predict_rgb_grey(rgb: torch.Tensor) -> np.ndarray:
    """The a=b=0 baseline of (1,3,H,W) RGB as uint8 (H,W,3)."""
    from .color import lab_to_rgb

    lab = rgb_to_lab(rgb)
    lab[:, 1:] = 0
    return (lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


class WallClock:
    """Training wall time that adds up over sessions (``wall``), counted up to the last :meth:`lap`."""

    def __init__(self, wall: float = 0.0):
        self.wall = wall
        self.mark = time.time()

    def lap(self) -> None:
        now = time.time()
        self.wall += now - self.mark
        self.mark = now


def periodic(step: int, loss: float, cfg: Any, clock: WallClock, ema: Colorizer, dev_images: list[np.ndarray],
             history: list[dict], checkpoint: Callable[[], None]) -> None:
    """Every ``cfg.eval_every`` steps a quick dev eval, a history line and a checkpoint; between
    those, a checkpoint every ``cfg.ckpt_every_s`` seconds."""
    if step % cfg.eval_every == 0:
        clock.lap()
        m = quick_eval(ema, dev_images)
        history.append({"step": step, "wall_seconds": round(clock.wall), "loss": round(loss, 4), **m})
        print(json.dumps(history[-1]), flush=True)
        checkpoint()
    elif time.time() - clock.mark >= cfg.ckpt_every_s:
        clock.lap()
        checkpoint()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, over every float tensor of the state; others copied."""
    for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
        if pe.dtype.is_floating_point:
            pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        else:
            pe.copy_(pm)


def param_groups(model: Colorizer, encoder_lr: float) -> list[dict]:
    """The optimizer's parameter groups: a pretrained encoder (``model.net.encoder``), if the net
    has one, in its own group at ``encoder_lr`` times the rate (``lr_scale``); all else in one group."""
    enc = getattr(model.net, "encoder", None)
    if not isinstance(enc, torch.nn.Module):
        return [{"params": list(model.parameters())}]
    ids = {id(q) for q in enc.parameters()}
    return [{"params": [q for q in model.parameters() if id(q) not in ids]},
            {"params": list(enc.parameters()), "lr_scale": encoder_lr}]


_WORKER_DATA: tuple = ()


def _init_worker(images: list[np.ndarray], probs: np.ndarray, cfg: "TrainConfig") -> None:
    global _WORKER_DATA
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle (checkpoint)
    torch.set_num_threads(1)
    _WORKER_DATA = (images, probs, cfg)


def batch_for_step(images: list[np.ndarray], probs: np.ndarray, cfg: "TrainConfig",
                   step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s batch: its own seed, so a resumed run, or one made by workers, draws the same."""
    rng = np.random.default_rng([cfg.seed, step])
    return D.make_batch(images, probs, cfg.batch, cfg.crop, rng, hints=cfg.hints, p_none=cfg.hint_p_none,
                        film=cfg.film, stock=cfg.stock)


def _worker_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    return batch_for_step(*_WORKER_DATA, step)


def batches(images: list[np.ndarray], probs: np.ndarray, cfg: "TrainConfig", start: int, workers: int = 0):
    """Batches for steps ``start``, ``start + 1``, ...; with ``workers`` > 0 made ahead in forked
    processes (a GPU steps faster than one core draws crops, Lab and film damage)."""
    if workers <= 0:
        step = start
        while True:
            yield batch_for_step(images, probs, cfg, step)
            step += 1
    import multiprocessing as mp
    from collections import deque

    pool = mp.get_context("fork").Pool(workers, _init_worker, (images, probs, cfg))
    ahead = deque(pool.apply_async(_worker_batch, (s,)) for s in range(start, start + 2 * workers))
    step = start + 2 * workers
    try:
        while True:
            yield ahead.popleft().get()
            ahead.append(pool.apply_async(_worker_batch, (step,)))
            step += 1
    finally:  # let the batches made ahead finish: terminating a pool with tasks in flight can fail
        for r in ahead:
            r.wait()
        pool.close()
        pool.join()


def save_atomic(obj: dict, path: Path | str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, minutes: float | None = None, steps: int | None = None, progress: bool = True,
          overrides: dict[str, Any] | None = None, device: str = "cpu", workers: int = 0) -> Path:
    """Train (or resume) until ``minutes`` of wall time or ``steps`` more steps have passed.

    A resumed run keeps its saved config; ``overrides`` names the fields the user changed on
    purpose (for example a loss weight), which are then recorded in the checkpoint's history.
    On ``device`` "cuda" the network runs in bfloat16 autocast (the loss in float32); ``workers``
    processes make the batches ahead. Neither changes which batches are drawn.
    """
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    data_dir = Path(cfg.data_dir)
    items = D.read_manifest(data_dir)
    train_items, dev_items = D.split(items)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    changed: dict[str, Any] = {}
    if state is not None:
        saved = state["train_config"]
        known = {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__}
        known.setdefault("film", 0.0)  # runs saved before film damage existed trained without it
        changed = {k: v for k, v in (overrides or {}).items() if known.get(k, getattr(TrainConfig, k, None)) != v}
        cfg = TrainConfig(**{**known, **changed, "out": cfg.out, "data_dir": cfg.data_dir, "threads": cfg.threads})
        print(f"resuming {ckpt_path} at step {state['step']}" + (f" with {changed}" if changed else ""))
    torch.manual_seed(cfg.seed)
    init = None
    if state is None and cfg.init_from:
        init = torch.load(cfg.init_from, map_location="cpu", weights_only=True)
        if "ema" not in init:  # an exported file may hold a temperature folded into its last layer
            raise ValueError(f"init_from needs a training checkpoint (with EMA weights): {cfg.init_from}")
        cfg = replace(cfg, arch=init["config"]["arch"])
    model = build_model(state["config"] if state else init["config"] if init else default_config(cfg.arch))
    if init:
        model.load_state_dict(init["ema"])
    ema = build_model(model.config)
    model.to(device)
    ema.to(device)
    optim = torch.optim.AdamW(param_groups(model, cfg.encoder_lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = D.load_images(data_dir, train_items, progress)
    dev_images = D.load_images(data_dir, dev_items[:48], progress=False)
    unknown = set(cfg.damp) - {it.source for it in train_items}
    if unknown and cfg.damp != D.DEFAULT_DAMP:  # a typo would otherwise change nothing, silently (the
        # default names our data's sources and does nothing on a user's own folder)
        raise ValueError(f"damp names unknown sources {sorted(unknown)}; "
                         f"valid: {sorted({it.source for it in train_items})}")
    probs = D.source_weights(train_items, cfg.damp)
    rebal = state.get("rebalance") if state else None
    if state:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optim.load_state_dict(state["optimizer"])
    else:
        ema.load_state_dict(model.state_dict())
    if model.kind == "classify" and (state is None or "rebalance" in changed):  # a new lambda needs its own prior
        rebal = estimate_rebalance(images, model.bins.cpu(), cfg.rebalance, np.random.default_rng(cfg.seed))
    rebal_on = rebal.to(device) if rebal is not None else None
    step = state["step"] if state else 0
    clock = WallClock(state["wall_seconds"] if state else 0.0)
    history = state["history"] if state else []
    if state and changed:
        history.append({"step": step, "wall_seconds": round(clock.wall), "changed": changed})
    ema.eval()

    def checkpoint() -> None:
        obj = {"config": model.config, "model": model.state_dict(), "ema": ema.state_dict(),
               "optimizer": optim.state_dict(), "step": step, "wall_seconds": clock.wall, "history": history,
               "train_config": asdict(cfg), "rebalance": rebal}
        save_atomic(obj, ckpt_path)

    t_start = clock.mark
    stop_step = step + steps if steps is not None else None
    bar = tqdm(desc=f"train {cfg.arch}", initial=step, disable=not progress, unit="step")
    model.train()
    stop = {"signal": None}

    def on_signal(signum: int, frame: Any) -> None:  # finish the step, checkpoint, then leave
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    feed = batches(images, probs, cfg, step, workers)
    while stop["signal"] is None:
        elapsed = time.time() - t_start
        if (minutes is not None and elapsed >= minutes * 60) or (stop_step is not None and step >= stop_step):
            break
        lab, x = (t.to(device, non_blocking=True) for t in next(feed))
        lr = get_lr(step, cfg)
        for g in optim.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            out = model(x)
        loss = compute_loss(model, out, lab, rebal_on, cfg.regress)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        ema_update(ema, model, min(cfg.ema, (1 + step) / (10 + step)))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
        periodic(step, loss.item(), cfg, clock, ema, dev_images, history, checkpoint)
    feed.close()
    clock.lap()
    checkpoint()
    bar.close()
    for s, h in old.items():
        signal.signal(s, h)
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved, re-run to resume")
    return ckpt_path


def slim_checkpoint(ckpt_path: Path | str, dest: Path | str, half: bool = False) -> None:
    """Write a training checkpoint without its optimizer and raw weights: the config, EMA weights
    (``half``: as float16, half the size), rebalancing prior, step, wall time, recipe and history.
    ``--init-from`` starts a new run from it and :func:`export_weights` exports it, so a run on a
    lent GPU can come back in one small file (that machine returns files of at most 16 MiB)."""
    st = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    ema = {k: v.half() if half and v.is_floating_point() else v for k, v in st["ema"].items()}
    keep = ("config", "rebalance", "step", "wall_seconds", "train_config", "history")
    save_atomic({**{k: st[k] for k in keep if k in st}, "ema": ema}, dest)


def export_weights(ckpt_path: Path, dest: Path, prior_alpha: float = 0.0, temperature: float | None = None) -> None:
    """Write the slim inference file: config + EMA weights + training facts.

    ``prior_alpha`` > 0 stores ``prior_alpha * log(w)`` of the rebalancing weights ``w`` as the
    model's readout bias (:class:`vidcolor.model.Colorizer`): the share of class rebalancing
    that the readout takes back. Choose it on the dev split: export with a few values and run
    ``scripts/eval_dev.py --weights`` on each (docs/lab-notes/2026-12-02-readout-bias.md)."""
    st = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    obj = {"config": st["config"], "model": st["ema"], "step": st["step"],
           "wall_seconds": st["wall_seconds"], "train_config": st["train_config"], "history": st["history"]}
    if prior_alpha > 0:
        if st.get("rebalance") is None:
            raise ValueError(f"{ckpt_path} holds no rebalancing weights to take back")
        obj["readout_bias"] = prior_alpha * st["rebalance"].float().log()
        obj["prior_alpha"] = prior_alpha
    if temperature is not None:
        # The product reads every model out at DEFAULT_TEMPERATURE / saturation. A model whose best
        # readout (chosen on dev) is another T gets its logits scaled by DEFAULT_TEMPERATURE / T,
        # folded into the last layer and the readout bias, so that --saturation 1 means that T.
        s = DEFAULT_TEMPERATURE / temperature
        obj["model"] = dict(obj["model"])
        for k in ("net.head.weight", "net.head.bias"):
            obj["model"][k] = obj["model"][k] * s
        if "readout_bias" in obj:
            obj["readout_bias"] = obj["readout_bias"] * s
        obj["readout_temperature"] = temperature
    save_atomic(obj, dest)
