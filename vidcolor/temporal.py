"""Temporal ab smoothing between neighbouring frames (streaming, bounded window).

Interface: ``push(item)`` returns the items whose output is final, in order;
``flush()`` returns the rest at the end of the clip. With window 0 every item
passes through untouched (pure per-frame output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Item:
    """One frame travelling from the engine to the encoder."""

    index: int
    L: torch.Tensor   # (1, h, w) at render size
    ab: torch.Tensor  # (2, h, w) at render size; replaced by the smoothed ab
    payload: Any = None  # the original frame, pts, ...


class Smoother:
    """Pass-through placeholder until the motion-safe smoother lands (window must be 0)."""

    def __init__(self, window: int = 0, cut_threshold: float = 0.5):
        if window < 0:
            raise ValueError(f"--temporal-window must be >= 0, got {window}")
        self.window = window
        self.cut_threshold = cut_threshold

    @property
    def warmup(self) -> int:
        """Frames before a resume point whose predictions the smoother needs."""
        return self.window

    def push(self, item: Item) -> list[Item]:
        return [item]

    def flush(self) -> list[Item]:
        return []
