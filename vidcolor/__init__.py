"""vidcolor: bring colour to black-and-white film.

Library API (the CLI is a thin layer over it)::

    import vidcolor
    vidcolor.colorize_video("in.mp4", "out.mp4")
    vidcolor.colorize_frames("scans/", "coloured/")
"""
from .errors import VidcolorError
from .pipeline import Result, Settings, colorize_frames, colorize_video
from .weights import load_model

__all__ = ["colorize_video", "colorize_frames", "load_model", "Settings", "Result", "VidcolorError"]
__version__ = "0.1.0"
