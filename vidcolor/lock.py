"""One process per job: an OS lock on a file in the job's folder.

Two runs on one output used to colour side by side in the same job folder,
spending the compute twice, until the first finished, removed the folder and
the second failed on a missing file. Now every job takes ``flock`` on a lock
file in its folder (``.vidcolor.lock``) before it touches anything there. The
kernel drops the lock when its process ends in any way (exit, Ctrl-C,
``kill -9``, a crash), so a lock file left by a killed run never blocks a
resume: only a living process holds the lock.

Ray chunks of one reel run at the same time: each holds the reel's lock
*shared* and its own chunk's lock (``.vidcolor-chunk_FIRST_STOP.lock``)
exclusive, so chunks of one reel coexist, while a retried chunk whose first
try still runs, or a whole-reel run beside running chunks, is refused.

The holder writes its PID, host, start time and command into its lock file;
a refused run names them in one line (exit 1). Over NFS, Linux emulates
``flock`` with POSIX locks, which NFSv4 servers honour across nodes.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import socket
import sys
import itertools
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import VidcolorError

LOCK_NAME = ".vidcolor.lock"  # a job's own lock, in its folder
BATCH_LOCK = ".vidcolor-batch.lock"  # in a batch's --out: one batch per output folder
LOCK_GLOB = ".vidcolor*.lock"  # every lock file a folder may hold (the job's and its chunks')


# the locks each thread holds, for released_on_return; weak, so that a job dropped anywhere frees its lock
_taken = threading.local()  # .locks: a WeakSet of JobLock
_serial = itertools.count()  # the order locks were taken in
F = TypeVar("F", bound=Callable[..., Any])


class JobBusy(VidcolorError):
    """Another living process holds the job's lock."""

    exit_code = 1


def chunk_lock_name(manifest_name: str) -> str:
    """The lock of one chunk, named after its manifest (``chunk_000000_000010.json``)."""
    return f".vidcolor-{Path(manifest_name).stem}.lock"


class JobLock:
    """An ``flock`` on ``path`` (made if missing), held until :meth:`release` or the process's end."""

    def __init__(self, path: Path, output: Path, shared: bool = False):
        self.path, self.output, self.shared = path, output, shared
        self.fd: int | None = None
        self.serial = -1

    def acquire(self) -> "JobLock":
        """Take the lock without waiting; :class:`JobBusy` names the holder if another process has it."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise VidcolorError(f"cannot lock {self.path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise VidcolorError(f"cannot lock {self.path}: {e.strerror or e}") from None
                raise JobBusy(busy_message(self.output, holders(self.path.parent))) from None
            # a job that just finished removes its folder, lock file included: a lock on the removed
            # file would guard nothing, so take it again on the file now at that path
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if same:
                break
            os.close(fd)
        self.fd, self.serial = fd, next(_serial)
        _held().add(self)
        if not self.shared:  # a shared lock has many holders: each names itself in its own exclusive lock
            _write_holder(fd)
        return self

    def release(self) -> None:
        """Drop the lock (closing the file drops it; the file itself may stay)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        _held().discard(self)

    def __del__(self) -> None:  # a job object dropped on an error path still frees its lock
        self.release()

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def released_on_return(fn: F) -> F:
    """Release every lock that a call of ``fn`` took, however it ends. An exception's traceback keeps
    the job object (and so its lock) alive for as long as the caller holds on to the exception, and a
    library caller or a batch worker that catches it and runs the job again must not meet its own lock."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        mark = next(_serial)
        try:
            return fn(*args, **kwargs)
        finally:
            for lock in [lk for lk in _held() if lk.serial > mark]:
                lock.release()
    return call  # type: ignore[return-value]


def _held() -> weakref.WeakSet:
    if not hasattr(_taken, "locks"):
        _taken.locks = weakref.WeakSet()
    return _taken.locks


def ensure_free(lock: Path, output: Path) -> None:
    """Refuse at once if a living process holds the lock file ``lock``: called before a run's slow start
    (loading torch and the weights, probing), though the job takes its lock for good only later."""
    if lock.exists():
        JobLock(lock, output).acquire().release()


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
            # the command line only where this is the vidcolor command (a Ray or test worker's is not)
            "command": " ".join(["vidcolor", *sys.argv[1:]])
            if sys.argv and Path(sys.argv[0]).name in ("vidcolor", "cli.py") else ""}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def holders(folder: Path) -> list[dict[str, Any]]:
    """Who holds the locks in ``folder`` now: the records of the lock files that a shared lock cannot
    be taken on (an exclusive holder is alive). Records of dead holders are skipped."""
    found = []
    for p in sorted(folder.glob(LOCK_GLOB)):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                continue  # nobody holds it exclusively: a leftover, or only shared holders
            except OSError:
                pass
            try:
                info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:  # written at this very moment
                info = {}
            found.append(info if isinstance(info, dict) else {})
        finally:
            os.close(fd)
    return found


def busy_message(output: Path, found: list[dict[str, Any]]) -> str:
    """The one line a refused run prints: who holds ``output``'s job, and what to do."""
    if not found or "pid" not in found[0]:
        return (f"another vidcolor process is colouring {output} right now; wait for it to finish, or stop it "
                f"and run this command again to resume")
    h = found[0]
    here = h.get("host") == socket.gethostname()
    where = f" on {h.get('host', 'an unknown host')}" + (" (this machine)" if here else "")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"])) if "since" in h else "?"
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    what = f", '{h['command']}'" if h.get("command") else ""
    return (f"another vidcolor process is colouring {output}: PID {h['pid']}{where}, since {since}{what}{more}; "
            f"wait for it to finish, or stop it (kill {h['pid']}{'' if here else ' on that host'}) and run this "
            f"command again to resume")
