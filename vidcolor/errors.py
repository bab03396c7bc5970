"""User-facing errors: one clear line, no traceback, a non-zero exit.

Exit codes of the ``vidcolor`` command: 0 done; 1 cannot do what was asked
(options, output location, weights, device, a full disk: fix and re-run, a
video job resumes); 2 unusable input or command line; 3 an unfinished job was
started with other settings; 4 damaged input whose colouring would not be
faithful to what was readable (see ``vidcolor.decode.DecodeReport``); 130
interrupted (re-run to resume).
"""
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


class DamagedInput(VidcolorError):
    """The input is damaged so that the output could not be a faithful colouring of what was readable."""

    exit_code = 4
