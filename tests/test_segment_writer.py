"""The encoder thread of SegmentWriter ends before a Ctrl-C leaves the writer."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from vidcolor import videoio
from vidcolor.encode import EncodeOptions, SegmentWriter

from .conftest import make_clip


def test_abort_after_ctrl_c_in_close_waits_for_the_encoder_thread(tmp_path):
    # Python 3.11's Thread.join(), interrupted by Ctrl-C, marks a thread that is still running as
    # stopped. abort() must not trust that: the process would exit with the thread inside torch.
    src = tmp_path / "in.mp4"
    make_clip(src, n=2, w=64, h=48)
    info = videoio.probe(src)
    writer = SegmentWriter(tmp_path / "seg.mp4.tmp", info, EncodeOptions())
    log: list[str] = []

    def slow_frame() -> np.ndarray:  # a deferred composition, run in the encoder's thread
        log.append("start")
        time.sleep(0.4)
        log.append("end")
        return np.zeros((48, 64, 3), np.uint8)

    for i in range(3):
        writer.write(slow_frame, i)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            writer.close()  # waits for the three frames; the Ctrl-C lands while the first is composed
        writer.abort()
        after_abort = list(log)
        time.sleep(0.6)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert after_abort == ["start", "end"], after_abort  # the frame in hand was finished, the rest skipped
    assert log == after_abort  # and nothing ran after abort() returned
