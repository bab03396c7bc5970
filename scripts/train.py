#!/usr/bin/env python
"""Train or resume a colorization model (the loop is :func:`vidcolor.train.train`; there is no
``vidcolor train`` command: training is a developer's job, not a user's).

    python scripts/train.py --arch vidcolor --out runs/vidcolor --minutes 120 --threads 2

The recipe of the shipped weights and its commands are in weights/README.md.
"""
import argparse
import shutil
from pathlib import Path

from vidcolor.train import TrainConfig, export_weights, train


def parse_damp(text: str) -> dict[str, float]:
    """'lfw=0.2,clothing=0.25' -> {'lfw': 0.2, 'clothing': 0.25}."""
    out = {}
    for part in filter(None, text.split(",")):
        src, sep, val = part.partition("=")
        try:
            out[src.strip()] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad --damp entry {part!r}: expected SOURCE=NUMBER") from None
        if not sep or out[src.strip()] < 0:
            raise argparse.ArgumentTypeError(f"bad --damp entry {part!r}: expected SOURCE=NUMBER >= 0")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default="runs/vidcolor")
    p.add_argument("--arch", default="vidcolor")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=None,
                   help="training crop side in px (default 144; on resume, changes the saved value, e.g. to "
                        "fine-tune at a size nearer the 256 px render size)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-steps", type=int, default=None,
                   help="cosine schedule horizon (default 60000; on resume, moves the saved horizon, e.g. to "
                        "anneal the learning rate before shipping, or later to extend it again)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--no-hints", action="store_true", help="train an automatic-only model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--minutes", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--steps", type=int, default=None, help="stop after this many more steps")
    p.add_argument("--export", type=Path, default=None, help="write slim inference weights here at the end")
    p.add_argument("--resume-from", type=Path, default=None,
                   help="a training checkpoint (e.g. weights/vidcolor-train.pt) to continue when OUT has none")
    p.add_argument("--regress", type=float, default=None,
                   help="weight of the Huber term on the mean ab (default 0; on resume, changes the saved value)")
    p.add_argument("--hint-p-none", type=float, default=None,
                   help="share of training images given no hints (default 0.5; on resume, changes the saved value)")
    p.add_argument("--rebalance", type=float, default=None,
                   help="class-rebalancing lambda: 0 = full, 1 = none (default 0.5; on resume, changes the saved "
                        "value and recomputes the prior)")
    p.add_argument("--film", type=float, default=None,
                   help="share of images whose input gets film-like damage (default 0.5; a run saved "
                        "before this option trained with 0; on resume, changes the saved value)")
    p.add_argument("--damp", type=parse_damp, default=None, metavar="SRC=X,...",
                   help="scale these sources' sampling shares (default lfw=0.5,clothing=0.5; "
                        "on resume, changes the saved value), e.g. lfw=0.2,clothing=0.25")
    p.add_argument("--stock", type=float, default=None,
                   help="share of inputs whose grey is an orthochromatic or panchromatic film stock's "
                        "(default 0; on resume, changes the saved value)")
    p.add_argument("--init-from", default="",
                   help="a new run starts from this training checkpoint's EMA weights (its own arch), with a "
                        "fresh optimizer: e.g. weights/effdec-train.pt, to train effdec end to end")
    p.add_argument("--encoder-lr", type=float, default=0.1,
                   help="a new run's learning-rate share for a pretrained encoder (effdec)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (bfloat16 autocast)")
    p.add_argument("--workers", type=int, default=0, help="processes that make batches ahead (for a GPU)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    # settings given on the command line; the rest keep TrainConfig's defaults (or, on resume, the saved values)
    overrides = {k: getattr(a, k) for k in ("regress", "max_steps", "hint_p_none", "rebalance", "damp", "crop", "film",
                                            "stock") if getattr(a, k) is not None}
    cfg = TrainConfig(data_dir=a.data_dir, out=a.out, arch=a.arch, batch=a.batch, lr=a.lr,
                      eval_every=a.eval_every, hints=not a.no_hints, threads=a.threads, init_from=a.init_from,
                      encoder_lr=a.encoder_lr, **overrides)
    ckpt_path = Path(a.out) / "ckpt.pt"
    if a.resume_from and not ckpt_path.exists():
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.resume_from, ckpt_path)  # train() then resumes from it as from its own
    ckpt = train(cfg, minutes=a.minutes, steps=a.steps, progress=not a.quiet, overrides=overrides, device=a.device,
                 workers=a.workers)
    if a.export:
        export_weights(ckpt, a.export)
        print(f"wrote {a.export}")


if __name__ == "__main__":
    main()
