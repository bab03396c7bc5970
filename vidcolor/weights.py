"""Finding, checking and loading weights files.

A weights file is a ``torch.save`` dict with at least ``config`` (the model's
constructor arguments) and ``model`` (its state dict). It is loaded with
``weights_only=True`` so a file from elsewhere cannot run code.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .errors import VidcolorError
from .model import Colorizer, build_model

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS_NAME = "vidcolor.pt"


def default_weights_path() -> Path:
    """``$VIDCOLOR_WEIGHTS`` if set, else the shipped ``weights/vidcolor.pt``."""
    env = os.environ.get("VIDCOLOR_WEIGHTS")
    return Path(env) if env else WEIGHTS_DIR / DEFAULT_WEIGHTS_NAME


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: Path | str | None) -> dict:
    """Read a weights file, with a clear error for missing or unreadable ones."""
    p = Path(path) if path is not None else default_weights_path()
    if not p.exists():
        raise VidcolorError(f"weights file not found: {p}")
    if not p.is_file():
        raise VidcolorError(f"weights path is not a file: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files; all mean the same to a user
        raise VidcolorError(f"not a readable vidcolor weights file: {p} ({type(e).__name__})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise VidcolorError(f"not a vidcolor weights file (no config/model inside): {p}")
    return state


def load_model(path: Path | str | None = None) -> Colorizer:
    """Rebuild the network from the config stored in the file and load its weights (eval mode, CPU)."""
    return model_from_state(load_checkpoint(path), path)


def model_from_state(state: dict, path: Path | str | None = None) -> Colorizer:
    """:func:`load_model` for a file already read by :func:`load_checkpoint` (``path`` names it in errors),
    for callers that also want the file's other entries (its step, its readout)."""
    try:
        model = build_model(state["config"])
        model.load_state_dict(state["model"])
        if "readout_bias" in state:  # see Colorizer.readout_bias
            model.readout_bias.copy_(state["readout_bias"])
        model.readout_temperature = state.get("readout_temperature")
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise VidcolorError(f"weights file does not match its model config: {path} ({e})".splitlines()[0]) from None
    return model.eval()
