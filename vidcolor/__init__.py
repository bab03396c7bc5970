"""vidcolor: bring colour to black-and-white film.

Library API (the CLI is a thin layer over it)::

    import vidcolor
    vidcolor.colorize_video("in.mp4", "out.mp4")
    vidcolor.colorize_frames("scans/", "coloured/")

Names are loaded on first use, so ``import vidcolor`` (and the CLI's error
paths) do not pay for importing torch until something needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["colorize_video", "colorize_frames", "load_model", "Settings", "EncodeOptions", "RunOptions", "Result",
           "VidcolorError"]
__version__ = "0.1.0"

_WHERE = {"colorize_video": "pipeline", "colorize_frames": "pipeline", "Settings": "settings",
          "EncodeOptions": "settings", "RunOptions": "settings",
          "Result": "pipeline", "load_model": "weights", "VidcolorError": "errors"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'vidcolor' has no attribute {name!r}")
