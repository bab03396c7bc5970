"""Frames by index without decoding the whole film, for ``vidcolor preview``.

Frames are numbered as :func:`vidcolor.decode.iter_frames` numbers them: every
video packet is one frame slot, in the order of its pts. :class:`VideoFrames`
reads the packets' pts once (demuxing only: no picture is decoded, so this
costs a read of the file, not a decode of the film), then reaches frame i by
seeking to the keyframe before its pts and decoding forward to it. Each
picture is converted exactly as ``iter_frames`` converts it (the plane path's
Y plane or RGB, scaled to the first picture's size, fields blended with
``deinterlace``), so a preview's frame is the film's frame.

Containers whose packets are not one picture each (MPEG-TS/PS, where a
frame's two fields may travel apart) or that give packets without pts are read
from the start with ``iter_frames`` itself, which numbers them right.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from . import frameio, yuv as yuvmod
from .decode import blend_fields, iter_frames
from .errors import InputError
from .videoio import ONE_PER_PACKET, VideoInfo, main_video, open_container

SEEK_GAP = 48  # frames: a wanted frame closer than this after the last one decoded is reached by decoding on


class VideoFrames:
    """Random access to the frames of a video, as ``iter_frames`` numbers and converts them."""

    def __init__(self, path: Path, info: VideoInfo, yuv: yuvmod.YuvSpec | None = None, deinterlace: bool = False):
        self.path, self.info, self.yuv, self.deinterlace = path, info, yuv, deinterlace
        self.decoded = 0  # pictures decoded so far (the tests check that a preview decodes few)
        self.pts = _packet_pts(path)  # sorted pts of every frame slot, or None: read from the start
        self.time_base = info.time_base
        self.times = self.pts  # pts for the timecodes
        if self.pts is None:
            self.times = [f.pts for f in iter_frames(path, info.bit_depth > 8, deinterlace=False, yuv=yuv)]
            self.count = len(self.times)
            self.decoded += self.count
            if None in self.times:
                self.times = None
        else:
            self.count = len(self.pts)
        if self.count == 0:
            raise InputError(f"no frame of {path} could be decoded")

    def seconds(self, i: int) -> float | None:
        """Frame i's time from the first frame's, in seconds (None where the container gives no pts)."""
        if self.times is None:
            return None
        return float((self.times[i] - self.times[0]) * self.time_base)

    def label(self, i: int) -> str:
        """Frame i's timecode, HH:MM:SS.mmm from the film's first frame."""
        s = self.seconds(i)
        if s is None:
            return ""
        ms = int(round(s * 1000))
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    def size(self, i: int) -> tuple[int, int]:
        return self.info.height, self.info.width

    def read(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, picture) for each of ``indices`` (sorted, unique), seeking between far-apart ones."""
        if self.pts is None:
            wanted = set(indices)
            for f in iter_frames(self.path, self.info.bit_depth > 8, deinterlace=self.deinterlace, yuv=self.yuv):
                self.decoded += 1
                if f.index in wanted:
                    yield f.index, f.image
                    if f.index == indices[-1]:
                        return
            return
        with open_container(self.path) as c:
            v = main_video(c)
            v.thread_type = "SLICE"  # as iter_frames decodes
            frames: Iterator[av.VideoFrame] | None = None
            last = None
            for i in indices:
                target = self.pts[i]
                if frames is None or last is None or i < last or i - last > SEEK_GAP:
                    frames = self._from(c, v, target)
                for f in frames:
                    p = _pts(f)
                    last = bisect.bisect_left(self.pts, p) if p is not None else last
                    if p is not None and p >= target:
                        # a slot whose own picture did not decode gets the next good one (the film would
                        # repeat the previous good one: damaged input shows near enough in a preview)
                        yield i, self._picture(f)
                        break
                else:
                    raise InputError(f"frame {i} of {self.path} could not be decoded")

    def _from(self, c: av.container.InputContainer, v: av.video.stream.VideoStream,
              target: int) -> Iterator[av.VideoFrame]:
        """Pictures from the keyframe before pts ``target`` on. A seek that lands after the target (a
        keyframe found by decode time, with B-frames) is tried again from further back."""
        step = max(1, (self.pts[-1] - self.pts[0]) // max(1, self.count - 1))
        back = 0
        while True:
            at = max(target - back, self.pts[0])
            c.seek(at, stream=v, backward=True, any_frame=False)
            frames = _decoded(c, v)
            first = next(frames, None)
            if first is None and at == self.pts[0]:
                return
            if first is not None and (_pts(first) is None or _pts(first) <= target or at == self.pts[0]):
                self.decoded += 1
                yield first
                for f in frames:
                    self.decoded += 1
                    yield f
                return
            back = max(2 * back, 16 * step)

    def _picture(self, f: av.VideoFrame) -> np.ndarray:
        """The picture as iter_frames hands it on."""
        size = (self.info.width, self.info.height)
        if self.yuv is not None:
            img = yuvmod.luma_plane(f, self.yuv, size)
        else:
            resized = (f.width, f.height) != size
            fmt = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
            img = f.to_ndarray(format=fmt, **({"width": size[0], "height": size[1]} if resized else {}))
        return blend_fields(img) if self.deinterlace else img


class FolderFrames:
    """The frames of a folder, in the order ``vidcolor frames`` colours them."""

    yuv = None

    def __init__(self, folder: Path):
        self.files = frameio.list_frames(folder)
        self.count = len(self.files)
        self.names = [f.name for f in self.files]
        self.decoded = 0

    def label(self, i: int) -> str:
        return self.files[i].name

    def size(self, i: int) -> tuple[int, int]:
        return tuple(frameio.read_frame(self.files[i]).rgb.shape[:2])

    def read(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            self.decoded += 1
            yield i, frameio.read_frame(self.files[i]).rgb


def _pts(f: av.VideoFrame) -> int | None:
    return f.pts if f.pts is not None else f.dts


def _decoded(c: av.container.InputContainer, v: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
    """Pictures from the current position on; packets that will not decode are skipped."""
    for packet in c.demux(v):
        try:
            yield from packet.decode()
        except av.error.FFmpegError:
            continue


def _packet_pts(path: Path) -> list[int] | None:
    """The sorted pts of the video packets (the frame slots), or None where a packet is not one picture
    or has no pts, so that slots cannot be told from packets."""
    with open_container(path) as c:
        if not ONE_PER_PACKET & set(c.format.name.split(",")):
            return None
        v = main_video(c)
        pts = []
        try:
            for p in c.demux(v):
                if p.size and not p.is_discard:
                    if p.pts is None:
                        return None
                    pts.append(p.pts)
        except av.error.FFmpegError:  # damaged past here: iter_frames also stops reading at this point
            pass
    return sorted(pts)
