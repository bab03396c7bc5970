"""Training the ``effdec`` decoder on cached encoder features (nanoGPT-style, resumable).

    python scripts/train_effdec.py --out runs/effdec --minutes 120 --threads 1

Phase 1 of the effdec recipe: the pretrained encoder is frozen, its features of every training
photo are cached once per variant (:mod:`vidcolor.featcache`), and only the decoder learns. The
checkpoint has the layout of :mod:`vidcolor.train`'s (config, model, ema, optimizer, step, wall
time, history, rebalancing prior), so ``export_weights`` and ``--resume-from`` work on it, and
the model and EMA state dicts hold the encoder too: an exported file holds every weight.
"""
from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data as D
from .color import AB_SCALE, normalize_l
from .effnet import TAPS, EffDecNet, load_pretrained_encoder, pool_hints
from .featcache import (build_l, build_variant, cache_order, done_count, greys_name, items_key, l_done, open_l,
                        open_variant, unquantise_l)
from .model import build_model, default_config
from .train import WallClock, compute_loss, ema_update, get_lr, periodic, rebalance_from_counts, save_atomic


@dataclass
class DecoderConfig:
    data_dir: str = "../shared/data"
    out: str = "runs/effdec"
    # A folder made by scripts/build_extra_data.py (ground cover, walls, floors): its photos that are
    # not in data_dir form a second pool, cached under OUT/cache/extra. "" = none.
    extra_dir: str = ""
    size: int = 192  # side of the cached square crops
    variants: int = 1  # cache passes: even ones plain, odd ones mirrored, from 2 on zoomed in; own film greys
    stock_greys: bool = True  # False: the cache's greys are the photos' own luminance, never a film stock's
    batch: int = 32
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup: int = 300
    max_steps: int = 12_000  # the cosine horizon
    weight_decay: float = 1e-4
    ema: float = 0.998
    rebalance: float = 0.5  # lambda of Zhang et al.: 0 = full rebalancing, 1 = none
    regress: float = 1.0  # Huber on the softmax mean (see TrainConfig.regress)
    hint_p_none: float = 0.5
    # Phase 2: train the encoder's blocks from this one on (11 = its last two stages, 2.2 M weights, read
    # from the cached stride-16 features, so a step stays cheap) at encoder_lr times the decoder's rate.
    # 0 = the encoder stays frozen. Its BatchNorm keeps ImageNet's statistics either way.
    unfreeze_from: int = 0
    encoder_lr: float = 0.1
    damp: dict[str, float] = field(default_factory=lambda: dict(D.DEFAULT_DAMP))
    seed: int = 1234
    eval_every: int = 1000
    ckpt_every_s: float = 300.0
    threads: int = 1
    pretrained: bool = True  # False only in tests, which run without the efficientnet package
    # Channels of a small branch that reads the full-size grey L (EffDecNet's lbranch; 0 = none). Resuming
    # a checkpoint without one adds it, joining through a zero-initialised conv, so the trained decoder
    # carries on unchanged.
    lbranch: int = 0


def simulate_hints4(ab4: torch.Tensor, rng: np.random.Generator, p_none: float) -> torch.Tensor:
    """Sparse pins at stride 4, as :func:`vidcolor.effnet.pool_hints` sees 1-4 px pins: (N, 3, h, w)
    holding (a*m, b*m, m) with ab / 110 and m the share of the cell a pin covers."""
    n, _, h, w = ab4.shape
    raw = torch.zeros(n, 3, h, w)
    for i in range(n):
        if rng.random() < p_none:
            continue
        k = min(int(rng.geometric(1.0 / 12.0)), 96)
        ys, xs = rng.integers(0, h, k), rng.integers(0, w, k)
        m = torch.from_numpy(rng.choice([1 / 16, 4 / 16, 9 / 16, 1.0], k)).float()
        raw[i, 2, ys, xs] = m
        raw[i, :2, ys, xs] = ab4[i, :, ys, xs] / AB_SCALE * m
    return raw


@dataclass
class Pool:
    """One set of training photos and the feature cache that holds them."""
    data_dir: Path
    items: list[D.Item]
    cache: Path
    greys: str = "stock"  # the kind of grey the run trains on: "stock" or "luminance"

    def done(self, variant: int) -> int:
        """Rows of ``variant`` cached so far; raises if the cache holds another photo list or
        other greys than the run's."""
        return done_count(self.cache, variant, len(self.items), self.key, self.greys)

    @cached_property
    def key(self) -> str:
        """The photo list's key (computed once: every checkpoint asks for it per variant)."""
        return items_key([it.file for it in self.items])


def pools(cfg: DecoderConfig) -> list[Pool]:
    """The shared training photos, then (with ``extra_dir``) the extra photos not among them.

    Both are split by :func:`vidcolor.data.split`, so a shared photo's dev or train side never
    changes, and extra photos on the dev side are not trained on either."""
    data_dir = Path(cfg.data_dir)
    items = D.read_manifest(data_dir)
    greys = greys_name(cfg.stock_greys)
    out = [Pool(data_dir, D.split(items)[0], Path(cfg.out) / "cache", greys)]
    if cfg.extra_dir:
        extra_dir = Path(cfg.extra_dir)
        known = {it.file for it in items}
        extra = [it for it in D.split(D.read_manifest(extra_dir))[0] if it.file not in known]
        out.append(Pool(extra_dir, extra, Path(cfg.out) / "cache" / "extra", greys))
    return out


def build_cache(cfg: DecoderConfig, progress: bool = True, net: EffDecNet | None = None) -> None:
    """Build (or finish) every variant of every pool's feature cache; smaller pools first. With an L
    branch, variants cached before their greys were kept gain them first (no encoder pass needed)."""
    for pool in sorted(pools(cfg), key=lambda p: len(p.items)):
        todo = [v for v in range(cfg.variants) if pool.done(v) < len(pool.items)]
        greyless = [v for v in range(cfg.variants) if cfg.lbranch and l_done(pool.cache, v) < pool.done(v)]
        if not todo and not greyless:
            continue
        images = D.load_images(pool.data_dir, pool.items, progress)
        for v in greyless:
            build_l(images, pool.cache, v, cfg.size, stock_greys=cfg.stock_greys, progress=progress)
        if todo and net is None:
            net = build_model(default_config("effdec")).net
            if cfg.pretrained:
                load_pretrained_encoder(net)
        for v in todo:
            build_variant(net, images, pool.cache, v, cfg.size, progress=progress, key=pool.key,
                          stock_greys=cfg.stock_greys)


def sample_space(pool_list: list[Pool], done: list[list[int]], damp: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Every cached (pool, variant, row) as an (M, 3) array, and its sampling probability.

    ``done[p][v]`` rows of pool ``p``'s variant ``v`` are cached. A photo's share is its source's
    (:func:`vidcolor.data.source_weights` over the cached photos), split evenly between the
    variants of it cached so far."""
    keys, photos, photo_idx, share = [], [], [], []
    for p, pool in enumerate(pool_list):
        rows = max(done[p], default=0)
        order = cache_order(len(pool.items))
        n_var = np.zeros(rows, dtype=np.int64)
        for d in done[p]:
            n_var[:d] += 1
        base = len(photos)
        photos += [pool.items[i] for i in order[:rows]]
        for v, d in enumerate(done[p]):
            keys.append(np.stack([np.full(d, p), np.full(d, v), np.arange(d)], 1))
            photo_idx.append(base + np.arange(d))
            share.append(1.0 / n_var[:d])
    w = D.source_weights(photos, damp)[np.concatenate(photo_idx)] * np.concatenate(share)
    return np.concatenate(keys), w / w.sum()


def train_decoder(cfg: DecoderConfig, minutes: float | None = None, steps: int | None = None,
                  progress: bool = True, build: bool = True) -> Path:
    """Build the feature cache if needed, then train (or resume) the decoder.

    With ``build`` False, train on the photos cached so far (the cache is in a shuffled order, so
    they are a fair sample) while another process builds the rest: at each checkpoint the
    sample grows to what is then cached."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    data_dir = Path(cfg.data_dir)
    dev_items = D.split(D.read_manifest(data_dir))[1]
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    if state is not None:
        # The run's recipe comes from the checkpoint; where to find data and how long to go, from the caller.
        keep = ("out", "data_dir", "extra_dir", "threads", "max_steps", "variants", "stock_greys", "unfreeze_from",
                "encoder_lr")
        saved = {k: v for k, v in state["train_config"].items() if k in DecoderConfig.__dataclass_fields__}
        lbranch = state["config"].get("lbranch", 0) or cfg.lbranch  # a command may add the branch, not drop it
        cfg = DecoderConfig(**{**saved, **{k: getattr(cfg, k) for k in keep}, "lbranch": lbranch})
        print(f"resuming {ckpt_path} at step {state['step']}")
    torch.manual_seed(cfg.seed)
    config = dict(state["config"] if state else default_config("effdec"))
    if cfg.lbranch:
        config["lbranch"] = cfg.lbranch
    model = build_model(config)
    # Adding the L branch to a checkpoint without one: its weights start fresh, the optimizer too.
    grow = state is not None and config != state["config"]
    if state is None and cfg.pretrained:
        load_pretrained_encoder(model.net)
    pool_list = pools(cfg)
    if build:
        build_cache(cfg, progress, model.net)
    dev_images = D.load_images(data_dir, dev_items[:48], progress=False)

    def cached() -> list[list[int]]:  # with an L branch, only rows whose greys are cached too
        return [[min(pool.done(v), len(pool.items), l_done(pool.cache, v) if cfg.lbranch else len(pool.items))
                 for v in range(cfg.variants)] for pool in pool_list]

    def open_arrays(done: list[list[int]]) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        out = {(p, v): open_variant(pool.cache, v, len(pool.items), cfg.size)
               for p, pool in enumerate(pool_list) for v in range(cfg.variants) if done[p][v]}
        if cfg.lbranch:
            for (p, v), a in out.items():
                a["L"] = open_l(pool_list[p].cache, v, len(pool_list[p].items), cfg.size)
        return out

    if state is None:
        done = cached()
    elif "done" in state:  # never more than is cached now: a rebuilt pool joins as it grows again
        done = [[min(d, c) for d, c in zip(dp, cp)] for dp, cp in zip(state["done"], cached())]
    else:  # a checkpoint from before pools: its first `rows` photos of variant 0
        done = [[state.get("rows", len(pool_list[0].items))] + [0] * (cfg.variants - 1)] + \
            [[0] * cfg.variants for _ in pool_list[1:]]
    # a checkpoint from before a pool or variant was added: those join at its first checkpoint
    done = [((list(done[p]) if p < len(done) else []) + [0] * cfg.variants)[:cfg.variants]
            for p in range(len(pool_list))]
    if sum(map(sum, done)) < min(len(pool_list[0].items), 64):
        raise RuntimeError(f"only {done} photos are cached under {pool_list[0].cache}; build the cache first")
    arrs = open_arrays(done)
    keys, probs = sample_space(pool_list, done, cfg.damp)
    dec_params = [p for name, p in model.net.named_parameters() if not name.startswith("encoder.")]
    top = model.net.encoder._blocks[cfg.unfreeze_from:] if cfg.unfreeze_from else torch.nn.ModuleList()
    if cfg.unfreeze_from and cfg.unfreeze_from <= TAPS[2]:
        raise ValueError(f"unfreeze_from {cfg.unfreeze_from}: the cache holds features from block {TAPS[2]} on; "
                         f"choose {TAPS[2] + 1}..{TAPS[3]}")
    for p in model.net.encoder.parameters():
        p.requires_grad_(False)
    for p in top.parameters():
        p.requires_grad_(True)
    optim = torch.optim.AdamW(dec_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    saved_groups = len(state["optimizer"]["param_groups"]) if state else 0
    if state:
        missing, unexpected = model.load_state_dict(state["model"], strict=not grow)
        if unexpected or any(not k.startswith(("net.lfeat.", "net.lfuse.")) for k in missing):
            raise ValueError(f"{ckpt_path} does not match the effdec net: {(missing + unexpected)[:3]}")
        if saved_groups == 1 and not grow:  # a phase-1 checkpoint: the encoder's group joins after it is loaded
            optim.load_state_dict(state["optimizer"])
    if len(top):
        optim.add_param_group({"params": list(top.parameters()), "lr_scale": cfg.encoder_lr})
    if saved_groups == 2 and not grow:  # a phase-2 checkpoint: both groups must be there to load it
        if len(optim.param_groups) != 2:
            raise ValueError("this checkpoint trained encoder blocks too: resume it with the same --unfreeze-from")
        optim.load_state_dict(state["optimizer"])
    params = [p for g in optim.param_groups for p in g["params"]]
    ema = build_model(model.config)
    if state:
        ema.load_state_dict({**model.state_dict(), **state["ema"]})  # a new branch starts as the model's
        rebal = state["rebalance"]
    else:
        ema.load_state_dict(model.state_dict())
        ab = torch.from_numpy(np.array(arrs[0, 0]["ab"][:done[0][0]:7, :, ::2, ::2])).float()  # 1 in 7 suffices
        flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)
        counts = torch.bincount(torch.cdist(flat, model.bins).argmin(1), minlength=len(model.bins))
        rebal = rebalance_from_counts(counts.double(), model.bins, cfg.rebalance)
    step = state["step"] if state else 0
    clock = WallClock(state["wall_seconds"] if state else 0.0)
    history = state["history"] if state else []
    ema.eval()

    def checkpoint() -> None:
        nonlocal done, arrs, keys, probs
        now = cached()
        if now != done:  # the cache grew, or a pool or variant was added: sample from all of it from here on
            done, arrs = now, open_arrays(now)
            keys, probs = sample_space(pool_list, done, cfg.damp)
            print(f"sampling from {len(keys)} cached photo variants {done}", flush=True)
        # saved after the update, so a resumed run samples as this one goes on to
        save_atomic({"config": model.config, "model": model.state_dict(), "ema": ema.state_dict(),
                     "optimizer": optim.state_dict(), "step": step, "wall_seconds": clock.wall, "history": history,
                     "train_config": asdict(cfg), "rebalance": rebal, "done": done}, ckpt_path)

    stop: dict[str, Any] = {"signal": None}

    def on_signal(signum: int, frame: Any) -> None:  # finish the step, checkpoint, then leave
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = clock.mark
    stop_step = step + steps if steps is not None else None
    model.train()
    while stop["signal"] is None:
        if (minutes is not None and time.time() - t_start >= minutes * 60) or (stop_step and step >= stop_step):
            break
        rng = np.random.default_rng([cfg.seed, step])  # per-step seed: resuming replays the same batches
        pick = keys[np.sort(rng.choice(len(keys), size=cfg.batch, p=probs))]
        feats = [torch.from_numpy(np.stack([arrs[p, v][f"f{k}"][r] for p, v, r in pick])).float() for k in range(4)]
        ab4 = torch.from_numpy(np.stack([arrs[p, v]["ab"][r] for p, v, r in pick])).float()
        raw = simulate_hints4(ab4, rng, cfg.hint_p_none)
        lr = get_lr(step, cfg)  # type: ignore[arg-type]  # same fields as TrainConfig's schedule
        for g in optim.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        if len(top):  # the stride-32 features again, from the cached stride-16 ones, through the trained blocks
            x = feats[2]
            for blk in top:
                x = blk(x)
            feats[3] = x
        l_norm = None
        if cfg.lbranch:
            l_norm = normalize_l(unquantise_l(np.stack([arrs[p, v]["L"][r] for p, v, r in pick])))
        out_logits = model.net.decode(feats, pool_hints(raw, 1), pool_hints(raw, 2), l_norm)
        lab = torch.cat([ab4.new_zeros(cfg.batch, 1, *ab4.shape[-2:]), ab4], 1)
        # The loss on one pixel in four (a random one of the four sub-grids each step): the soft
        # targets and the 244-way softmax were two thirds of a step's time, and neighbouring
        # pixels at stride 4 carry nearly the same target.
        oy, ox = (int(v) for v in rng.integers(0, 2, 2))
        loss = compute_loss(model, out_logits[:, :, oy::2, ox::2], lab[:, :, oy::2, ox::2], rebal, cfg.regress)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        ema_update(ema, model, min(cfg.ema, (1 + step) / (10 + step)))
        step += 1
        if step % 50 == 0 and progress:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e}", flush=True)
        periodic(step, loss.item(), cfg, clock, ema, dev_images, history, checkpoint)
    clock.lap()
    checkpoint()
    for s, h in old.items():
        signal.signal(s, h)
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved, re-run to resume")
    return ckpt_path
