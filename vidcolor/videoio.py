"""Video input with PyAV: opening and probing a file, and the output container's rules.

The rest of the video path has one module per step: :mod:`vidcolor.decode`
(the decoding loop and its damage report), :mod:`vidcolor.encode` (segment
encoding) and :mod:`vidcolor.mux` (the final mux that copies audio and
subtitles packet for packet).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError, VidcolorError

# AVI and NUT are not offered: the mp4-style H.264 segments need bitstream
# rewriting for AVI, and NUT refuses their timestamps, so both failed only at
# the final mux, after all the work.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
COPY_TYPES = ("audio", "subtitle")
# errno values that mean the disk, not the data, is the problem: never treated as damaged input.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
COLOUR_SPREAD = 6.0  # mean max-min over RGB, in 8-bit levels, above which a frame counts as in colour
# Demuxers whose every video packet is one whole picture (unlike MPEG-TS/PS, where fields may come apart).
ONE_PER_PACKET = {"mov", "mp4", "matroska", "webm", "avi", "nut", "flv", "ogg"}
MAX_PIXELS = 8192 * 8192  # larger is a damaged header, not a film: refuse instead of exhausting memory


@dataclass
class VideoInfo:
    """What the pipeline needs to know about an input video."""

    path: Path
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    frames: int  # best estimate; 0 if unknown
    pix_fmt: str
    bit_depth: int
    sample_aspect_ratio: Fraction | None
    rotation: int  # counter-clockwise degrees of the display matrix, 0 without one
    interlaced: bool  # the first decoded frame is flagged interlaced
    copy_streams: list[str] = field(default_factory=list)  # "audio:aac", ...
    display_matrix: tuple[int, ...] | None = None  # 9 ints as in FFmpeg's AV_PKT_DATA_DISPLAYMATRIX
    colour: tuple[int, int, int, int] = (2, 0, 2, 2)  # first frame's colorspace, range, primaries, trc
    video_index: int = 0  # the film's stream (main_video)
    other_video: list[str] = field(default_factory=list)  # video streams besides the film: "#0 mjpeg", ...


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path} (use 'vidcolor frames' for image folders)")
    if not path.is_file():
        raise InputError(f"input is not a regular file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is an empty file: {path}")


def describe_error(e: BaseException) -> str:
    """An FFmpeg error as a few words (no file name, no errno)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__


def open_container(path: Path) -> av.container.InputContainer:
    """av.open with a one-line error for anything that is not a readable media file."""
    _check_path(path)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        hint = " (not a video file, or damaged or cut short)" if isinstance(e, av.error.InvalidDataError) else ""
        raise InputError(f"cannot read {path} as a video: {describe_error(e)}{hint}") from None
    except (OSError, UnicodeError, ValueError) as e:  # e.g. a file that vanished or a name PyAV cannot pass on
        raise InputError(f"cannot open {path}: {describe_error(e)}") from None


def _bit_depth(fmt: av.VideoFormat | None) -> int:
    if fmt is None:
        return 8
    return max((c.bits for c in fmt.components), default=8)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    # Look it up by name: iterating side_data yields the entries up to PyAV 18.1.0 and their types from 18.1.1.
    sd = frame.side_data.get("DISPLAYMATRIX")
    if sd is None or len(bytes(sd)) != 36:
        return None
    m = tuple(int(x) for x in np.frombuffer(bytes(sd), dtype=np.int32))
    return None if m == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30) else m  # identity: nothing to keep


def _first_frame(c: av.container.InputContainer, v: av.video.stream.VideoStream,
                 max_packets: int = 1000) -> av.VideoFrame | None:
    """The first frame that decodes within the first ``max_packets`` packets, or None.

    A film whose first 1000 frames are all undecodable is refused as unreadable.
    """
    try:
        for i, packet in enumerate(c.demux(v)):
            if i >= max_packets:
                return None
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # a damaged packet; the next may do
            if frames:
                return frames[0]
    except av.error.FFmpegError:
        return None
    return None


def _seconds(s: av.stream.Stream) -> float:
    """A stream's length from its header, or from the DURATION tag FFmpeg's Matroska muxer writes; 0 if unknown."""
    if s.duration and s.time_base:
        return float(s.duration * s.time_base)
    tag = {k.lower(): v for k, v in s.metadata.items()}.get("duration", "")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return 0.0


def film_rate(v: av.video.stream.VideoStream) -> Fraction | None:
    """The film's frame rate: the stream's average, unless no film runs at that (over 1000 fps: FFmpeg 7's
    DV demuxer reports its 1/60000 clock as the average), then FFmpeg's guess from the frame timing."""
    avg, guess = v.average_rate, v.guessed_rate
    if avg and avg <= 1000:
        return avg
    return guess or avg or None


def main_video(c: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The film's video stream, so that a cover picture or a thumbnail track stored first is not taken
    for it: not an attached picture, then the longest, the one with the most frames, FFmpeg's own choice
    (av_find_best_stream), the largest; the first of equals."""
    if not c.streams.video:
        return None
    best = c.streams.best("video")

    def score(s: av.video.stream.VideoStream) -> tuple:
        cc = s.codec_context
        attached = bool(s.disposition & av.stream.Disposition.attached_pic)
        return (not attached, _seconds(s), s.frames or 0, s is best, (cc.width * cc.height) if cc else 0, -s.index)
    return max(c.streams.video, key=score)


def probe(path: Path) -> VideoInfo:
    """Open, check and describe the film's video stream of ``path`` (:func:`main_video`)."""
    with open_container(path) as c:
        v = main_video(c)
        if v is None:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "none"
            raise InputError(f"no video stream in {path} (streams found: {kinds})")
        others = [f"#{s.index} {s.codec_context.name if s.codec_context else '?'}" for s in c.streams.video
                  if s.index != v.index]
        cc = v.codec_context
        if cc is None:
            raise InputError(f"no decoder for the video stream of {path}")
        tb = v.time_base or Fraction(1, 90000)
        frames = v.frames or 0
        rate = film_rate(v)
        if not frames and v.duration and rate:
            frames = int(round(float(v.duration * tb * rate)))
        elif not frames and c.duration and rate:
            frames = int(round(c.duration / 1_000_000 * float(rate)))
        copy = [f"{s.type}:{s.codec_context.name if s.codec_context else '?'}" for s in c.streams
                if s.type in COPY_TYPES]
        # the container's, as FFmpeg prefers it; ProRes and other intra codecs keep it nowhere else
        sar = v.sample_aspect_ratio or cc.sample_aspect_ratio or None
        width, height, fmt = cc.width, cc.height, cc.format
        v.thread_type = "SLICE"  # decode as iter_frames() does, so both see the same first picture
        first = _first_frame(c, v)
        if first is None:  # nothing to colour; and the header's size and format cannot be trusted either
            raise InputError(f"no frame of {path} could be decoded (damaged, or not a video)")
        width, height, fmt = first.width, first.height, first.format  # the picture, not the header, says
        if not width or not height:
            raise InputError(f"video stream of {path} has no frame size; the file may be damaged or cut short")
        if width * height > MAX_PIXELS:
            raise InputError(f"video stream of {path} claims a frame size of {width}x{height}; "
                             f"the file is probably damaged")
        pix_fmt = fmt.name if fmt is not None else "?"
        depth = _bit_depth(fmt)
        matrix = _display_matrix(first) if first is not None else None
        return VideoInfo(path=path, width=width, height=height, time_base=tb, rate=rate,
                         frames=max(frames, 0), pix_fmt=pix_fmt, bit_depth=depth, sample_aspect_ratio=sar,
                         rotation=int(first.rotation) if matrix else 0,
                         interlaced=bool(first is not None and first.interlaced_frame), copy_streams=copy,
                         display_matrix=matrix, colour=(int(first.colorspace), int(first.color_range),
                                                        int(first.color_primaries), int(first.color_trc)),
                         video_index=v.index, other_video=others)


def output_format(path: Path) -> str | None:
    """The container for OUTPUT's extension, or a clear error."""
    ext = path.suffix.lower()
    if ext not in CONTAINERS:
        raise VidcolorError(f"unsupported output extension {ext or '(none)'!r}; choose one of "
                            f"{', '.join(sorted(CONTAINERS))}")
    return CONTAINERS[ext]


def mp4_options(fmt: str | None, time_base: Fraction) -> dict[str, str]:
    """Muxer options that keep every frame's time exact in an mp4/mov file with video in ``time_base``.

    A non-zero start time is written as an edit list, which counts in the movie's clock (1/1000 s by
    default): every frame of an MPEG-TS starting at 1.48333 s would move to 1.483 s. With the movie
    clock at the video's own rate the edit is exact."""
    return {"movie_timescale": str(time_base.denominator)} if fmt in ("mp4", "mov") else {}


def fsync_dir(path: Path) -> None:
    """Make a rename durable (power loss) where the OS allows it."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
