"""A bounded background thread for any iterator: decoding and prediction overlap with the rest."""
from __future__ import annotations

import queue
import threading
from typing import Iterator


_END = object()


class Prefetcher:
    """Run an iterator in a thread behind a bounded queue (bounded memory, overlap with compute)."""

    def __init__(self, it: Iterator, maxsize: int = 16):
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True)
        self._thread.start()

    def _run(self, it: Iterator) -> None:
        try:
            for x in it:
                while not self._stop.is_set():
                    try:
                        self._q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(_END)
        except BaseException as e:  # handed to the consumer thread, which re-raises it
            self._q.put(e)

    def __iter__(self) -> Iterator:
        while True:
            x = self._q.get()
            if x is _END:
                return
            if isinstance(x, BaseException):
                raise x
            yield x

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)

