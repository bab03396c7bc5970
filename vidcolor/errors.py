"""User-facing errors: one clear line, no traceback, a non-zero exit.

Exit codes of the ``vidcolor`` command: 0 done; 1 cannot do what was asked
(options, output location, weights, device, a full disk: fix and re-run, a
video job resumes); 2 unusable input or command line; 3 an unfinished job was
started with other settings; 4 damaged input whose colouring would not be
faithful to what was readable (see ``vidcolor.decode.DecodeReport``); 130
interrupted (re-run to resume).
"""
from __future__ import annotations

import errno
import sys


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


# A KeyboardInterrupt raised while Python runs a weakref callback or __del__ is printed and dropped
# ("Exception ignored in ..."), so a Ctrl-C landing there would let the job run on to the end. The
# handler below also records the signal, and the frame loops re-raise it (see raise_if_interrupted).
_interrupted = False


def on_stop_signal(signum: int, frame: object) -> None:
    """Signal handler for Ctrl-C and SIGTERM: remember the request, then stop like Ctrl-C."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def quiet_unraisable(unraisable: object) -> None:
    """sys.unraisablehook: a stop request that Python had to drop is not reported with a traceback
    (the flag above carries it to the frame loop); anything else is reported as usual."""
    if _interrupted and issubclass(getattr(unraisable, "exc_type", type(None)), KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def reset_interrupted() -> None:
    """Forget an earlier stop request (a new command starts)."""
    global _interrupted
    _interrupted = False


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a stop signal arrived but its exception was swallowed."""
    if _interrupted:
        raise KeyboardInterrupt


def write_failed(e: OSError, resume: str = "run the same command to resume") -> str:
    """The line for a failed write of a job's files, saying what failed: a full disk gets the free-space
    advice, and a file or folder that vanished (the job folder removed by hand or by another run, a drive
    unmounted) a line of its own, since freeing space would not help there."""
    at = f" at {e.filename}" if getattr(e, "filename", None) else ""
    why = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"write failed{at}: {why}; free space and {resume}"
    if e.errno == errno.ENOENT:
        return (f"write failed{at}: {why}: the job's file or folder has gone (removed while this run was "
                f"writing, or its drive was unmounted); check the output's folder and {resume}")
    return f"write failed{at}: {why}; {resume}"
