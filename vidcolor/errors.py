"""User-facing errors: one clear line, no traceback, a non-zero exit."""
from __future__ import annotations


class VidcolorError(Exception):
    """A problem the user can fix (bad input, bad option, missing file...).

    The CLI prints ``vidcolor: error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 1


class InputError(VidcolorError):
    """The input cannot be read or is not what the command needs."""

    exit_code = 2


class JobMismatch(VidcolorError):
    """A checkpoint exists for a different input, option set or weights file."""

    exit_code = 3


class Interrupted(VidcolorError):
    """Stopped by Ctrl-C or SIGTERM after saving what was done."""

    exit_code = 130
