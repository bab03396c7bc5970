"""Video I/O with PyAV: probing, a decoding thread, segment encoding and the
final mux that copies audio and subtitles packet for packet.

Frames are streamed and never written to disk as images. Colour segments are
complete, independently decodable mp4 files (mp4 keeps the input's time_base,
so pts survive exactly); :func:`join_segments` copies their packets, and the
input's audio and subtitle packets, into the output.

Damaged input is decoded as far as it goes; :class:`DecodeReport` says what
was met on the way and states the rule for when the result still counts as a
faithful colouring of what was readable.
"""
from __future__ import annotations

import errno
import heapq
import io
import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import numpy as np

from .errors import DamagedInput, InputError, VidcolorError

# AVI and NUT are not offered: the mp4-style H.264 segments need bitstream
# rewriting for AVI, and NUT refuses their timestamps, so both failed only at
# the final mux, after all the work.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
COPY_TYPES = ("audio", "subtitle")
# errno values that mean the disk, not the data, is the problem: never treated as damaged input.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
REORDER = 4  # decoded frames held back so a decoder's slightly out-of-order output is put right
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


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path} (use 'vidcolor frames' for image folders)")
    if not path.is_file():
        raise InputError(f"input is not a regular file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input is an empty file: {path}")


def _reason(e: BaseException) -> str:
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
        raise InputError(f"cannot read {path} as a video: {_reason(e)}{hint}") from None
    except (OSError, UnicodeError, ValueError) as e:  # e.g. a file that vanished or a name PyAV cannot pass on
        raise InputError(f"cannot open {path}: {_reason(e)}") from None


def _bit_depth(fmt: av.VideoFormat | None) -> int:
    if fmt is None:
        return 8
    return max((c.bits for c in fmt.components), default=8)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    for sd in frame.side_data:
        if sd.type.name == "DISPLAYMATRIX" and len(bytes(sd)) == 36:
            m = tuple(int(x) for x in np.frombuffer(bytes(sd), dtype=np.int32))
            return None if m == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30) else m  # identity: nothing to keep
    return None


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


def probe(path: Path) -> VideoInfo:
    """Open, check and describe the first video stream of ``path``."""
    with open_container(path) as c:
        if not c.streams.video:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "none"
            raise InputError(f"no video stream in {path} (streams found: {kinds})")
        v = c.streams.video[0]
        cc = v.codec_context
        if cc is None:
            raise InputError(f"no decoder for the video stream of {path}")
        tb = v.time_base or Fraction(1, 90000)
        frames = v.frames or 0
        if not frames and v.duration and v.average_rate:
            frames = int(round(float(v.duration * tb * v.average_rate)))
        elif not frames and c.duration and v.average_rate:
            frames = int(round(c.duration / 1_000_000 * float(v.average_rate)))
        copy = [f"{s.type}:{s.codec_context.name if s.codec_context else '?'}" for s in c.streams
                if s.type in COPY_TYPES]
        sar = cc.sample_aspect_ratio or None
        rate = v.average_rate or v.guessed_rate
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
                         display_matrix=matrix)


@dataclass
class DecodedFrame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 or uint16
    pts: int | None
    damaged: bool = False  # a slot whose picture would not decode: a repeat of the nearest earlier good one


@dataclass
class DecodeReport:
    """What decoding met, filled in by :func:`iter_frames` as it goes.

    Slots: every video packet read from the input is one frame slot at that
    packet's pts. A slot that gets no picture (its packet would not decode)
    gets a repeat of the last good picture (the first good one for slots
    before it), so frame count and timing stay those of what was read. In
    containers that store one picture per packet (mp4, mov, mkv, webm, ...)
    every such gap is filled; in MPEG-TS/PS, where the two fields of a frame
    may travel in separate packets, only as many as the decoder rejected.
    Frames the decoder flags as corrupt are coloured as decoded.

    The exit-code rule: a run succeeds (exit 0, with a warning per kind of
    damage) when the output is a faithful colouring of what was readable:
    every picture the decoder produced is in it at its own time, every
    rejected packet's slot is filled as above, and every audio/subtitle packet
    that was read is copied (a copied packet whose timestamp ran backwards is
    moved just after its predecessor, as ffmpeg does). It fails with exit 4
    (:class:`~vidcolor.errors.DamagedInput`) and writes no output when that
    cannot be kept: frames whose timestamps repeat or run backwards
    (:attr:`dropped`), copied packets the muxer refuses, or timestamps so
    damaged that the written file would not show every frame at its time
    (:func:`verify_output`, run before the rename). It fails with exit 2 when
    no picture decodes at all.
    """

    packets: int = 0  # video packets read (slots)
    expected: int = 0  # frames the container's header announces, 0 if it does not say
    decoded: int = 0  # pictures the decoder produced that are in the output
    errors: int = 0  # packets the decoder rejected
    filled: int = 0  # slots filled with a repeat because their packet was rejected
    unfilled: int = 0  # such slots with no good picture anywhere to repeat
    concealed: int = 0  # pictures the decoder flagged corrupt
    dropped: int = 0  # decoded pictures whose timestamps repeat or run backwards: not in the output
    retimed: int = 0  # pictures without any timestamp, placed one frame after the previous
    resized: int = 0  # pictures whose size differs from the stream's, scaled to it
    read_error: str | None = None  # why reading stopped before the end of the file
    last_time: float | None = None  # seconds, of the last packet read
    duration: float | None = None  # seconds of video the container's header announces
    first_time: float | None = None  # seconds, of the earliest frame slot handed on
    final_time: float | None = None  # seconds, of the latest
    interlaced: int = 0  # pictures flagged interlaced
    colour: int = 0  # pictures that already have colour
    deinterlaced: bool = False

    @property
    def frames(self) -> int:
        """Frames handed on: decoded pictures plus filled slots."""
        return self.decoded + self.filled

    @property
    def faithful(self) -> bool:
        """See the class docstring: no decoded picture had to be left out."""
        return self.dropped == 0

    def warnings(self) -> list[str]:
        """One line per kind of damage or oddity met, for the user."""
        w = []
        n = self.frames
        if self.filled:
            w.append(f"{self.filled} of {n} frames could not be decoded (damaged input); each repeats the colour "
                     f"of the frame before it, so frame count and timing are kept")
        if self.concealed:
            w.append(f"{self.concealed} of {n} frames were decoded with errors and coloured as decoded "
                     f"(they may show damage)")
        if self.read_error:
            at = f" past {self.last_time:.2f} s" if self.last_time is not None else ""
            w.append(f"the input could not be read{at} ({self.read_error}); the {n} frames before that were "
                     f"coloured")
        elif self.expected > self.packets > 0:
            w.append(f"the input ends early: its header announces {self.expected} frames, {self.packets} are "
                     f"present; those were coloured")
        elif not self.expected and self.duration and self.last_time is not None and \
                self.last_time < self.duration - max(1.0, 0.05 * self.duration):
            w.append(f"the input ends early: its header announces {self.duration:.1f} s, frames end at "
                     f"{self.last_time:.1f} s; those were coloured")
        if self.retimed:
            w.append(f"{self.retimed} frames had no timestamp and were placed one frame after the previous")
        if self.resized:
            w.append(f"{self.resized} frames had a different size from the stream and were scaled to it")
        if self.colour:
            w.append(f"{self.colour} of {self.decoded} frames are already in colour; they were colourised from "
                     f"their luminance and their own colour was not used")
        if self.interlaced and not self.deinterlaced:
            w.append(f"the input is interlaced ({self.interlaced} of {self.decoded} frames); re-run with "
                     f"--deinterlace to blend the fields first (frame count and timing are kept)")
        elif self.deinterlaced:
            w.append(f"deinterlaced every frame by blending its fields ({self.interlaced} of {self.decoded} "
                     f"were flagged interlaced)")
        return w

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def blend_fields(img: np.ndarray) -> np.ndarray:
    """Deinterlace: each line becomes (above + 2 * itself + below) / 4, mixing the two fields.

    Simple and deterministic; it softens vertical detail a little but leaves no
    combing, and keeps the frame count and timing (one frame in, one out).
    """
    wide = img.astype(np.uint32)
    up = np.concatenate([wide[:1], wide[:-1]])
    down = np.concatenate([wide[1:], wide[-1:]])
    return ((up + 2 * wide + down + 2) >> 2).astype(img.dtype)


def has_colour(img: np.ndarray) -> bool:
    """True when the picture's channels differ enough that it is not a grey picture."""
    sub = img[::4, ::4].astype(np.int32)
    spread = float((sub.max(axis=-1) - sub.min(axis=-1)).mean())
    return spread > COLOUR_SPREAD * (257 if img.dtype == np.uint16 else 1)


def _frame_step(v: av.video.stream.VideoStream) -> int:
    """Ticks of the stream's time_base per frame, for pictures that come without a timestamp."""
    rate = v.average_rate or v.guessed_rate
    if rate and v.time_base:
        return max(1, int(round(1 / (rate * v.time_base))))
    return 1


class _Slots:
    """Turns the decoder's pictures and the packets' pts into numbered frame slots (see DecodeReport)."""

    def __init__(self, rep: DecodeReport, step: int, picture: Callable[[av.VideoFrame], np.ndarray],
                 one_per_packet: bool = False):
        self.rep, self.step, self.picture = rep, step, picture
        self.one_per_packet = one_per_packet  # the container stores one picture per packet, so a gap is damage
        self.index = 0
        self.last: int | None = None  # pts of the last slot handed on (or waiting)
        self.good: np.ndarray | None = None  # last good picture
        self.waiting: list[int] = []  # pts of leading slots that wait for the first good picture
        self.late: set[int] = set()  # slots already counted as dropped
        self.time_base: Fraction | None = None

    def _emit(self, pts: int, img: np.ndarray, damaged: bool) -> DecodedFrame:
        f = DecodedFrame(self.index, img, pts, damaged)
        self.index += 1
        self.last = pts
        self._times(pts)
        return f

    def _times(self, pts: int) -> None:
        t = float(pts * self.time_base) if self.time_base else None
        if t is not None:
            self.rep.first_time = t if self.rep.first_time is None else min(self.rep.first_time, t)
            self.rep.final_time = t if self.rep.final_time is None else max(self.rep.final_time, t)

    def _gap(self, pts: int) -> list[DecodedFrame]:
        """A packet's slot that no picture came out for."""
        if not self.one_per_packet and self.rep.errors <= self.rep.filled:
            return []  # no rejected packet to account for: a packet without a picture of its own
        if self.last is not None and pts <= self.last:
            if pts not in self.late:  # its time has passed: the slot cannot be kept in order
                self.late.add(pts)
                self.rep.dropped += 1
            return []
        self.rep.filled += 1
        if self.good is None:
            self.waiting.append(pts)
            self.last = pts
            return []
        return [self._emit(pts, self.good, True)]

    def place(self, f: av.VideoFrame, sent: list[int]) -> list[DecodedFrame]:
        """Hand on the slots up to and including picture ``f``."""
        pts = f.pts if f.pts is not None else f.dts
        retimed = False
        if pts is None:
            if sent and (self.last is None or sent[0] > self.last):
                pts = sent[0]
            else:
                pts, retimed = (self.last + self.step if self.last is not None else 0), True
        if self.last is not None and pts <= self.last:
            if pts in self.late:
                self.late.discard(pts)  # its slot was counted already
            else:
                self.rep.dropped += 1
            while sent and sent[0] <= self.last:
                heapq.heappop(sent)
            return []
        out: list[DecodedFrame] = []
        while sent and sent[0] < pts:
            out += self._gap(heapq.heappop(sent))
        if sent and sent[0] == pts:
            heapq.heappop(sent)
        img = self.picture(f)
        self.rep.decoded += 1
        self.rep.retimed += retimed
        self.rep.concealed += bool(f.is_corrupt)
        for p in self.waiting:
            out.append(DecodedFrame(self.index, img, p, True))
            self.index += 1
            self._times(p)
        self.waiting = []
        out.append(self._emit(pts, img, False))
        self.good = img
        return out

    def finish(self, sent: list[int]) -> list[DecodedFrame]:
        """The slots after the last picture."""
        out: list[DecodedFrame] = []
        while sent:
            out += self._gap(heapq.heappop(sent))
        if self.waiting:  # nothing decoded at all: nothing to repeat
            self.rep.unfilled += len(self.waiting)
            self.rep.filled -= len(self.waiting)
            self.waiting = []
        return out


def _decoded(c: av.container.InputContainer, v: av.video.stream.VideoStream, rep: DecodeReport,
             sent: list[int]) -> Iterator[av.VideoFrame]:
    """Pictures in decoder order; every packet's pts goes on ``sent``; read and decode errors are counted."""
    demux = c.demux(v)
    while True:
        try:
            packet: av.Packet | None = next(demux)
        except StopIteration:
            return
        except av.error.FFmpegError as e:  # the container breaks off: keep what was read
            rep.read_error = _reason(e)
            packet = None
        if packet is not None and packet.size and not packet.is_discard:
            rep.packets += 1
            if packet.pts is not None:
                heapq.heappush(sent, packet.pts)
                rep.last_time = float(packet.pts * packet.time_base) if packet.time_base else None
        try:
            frames = packet.decode() if packet is not None else v.codec_context.decode(None)
        except av.error.FFmpegError:
            frames = []
            if packet is not None and packet.size:
                rep.errors += 1
        yield from frames
        if packet is None:
            return


def iter_frames(path: Path, high_depth: bool = False, report: DecodeReport | None = None,
                deinterlace: bool = False) -> Iterator[DecodedFrame]:
    """Decode every frame slot of the first video stream, in presentation order.

    Damage is handled as :class:`DecodeReport` describes; pass ``report`` to
    see what was met. A picture whose size differs from the first one's (as
    :func:`probe` reports it) is scaled to it.
    With ``deinterlace`` every picture's fields are blended (:func:`blend_fields`).
    """
    fmt = "rgb48le" if high_depth else "rgb24"
    rep = report if report is not None else DecodeReport()
    rep.deinterlaced = deinterlace
    with open_container(path) as c:
        v = c.streams.video[0]
        # Slice threads only: frame-threaded decoders drop pictures after damage without raising, which
        # would hide damage and lose frames that decode fine one thread at a time.
        v.thread_type = "SLICE"
        rep.expected = v.frames or 0
        tb = v.time_base or Fraction(1, 90000)
        end = v.duration * tb if v.duration else (c.duration / 1_000_000 if c.duration else None)
        rep.duration = float(end) if end else None
        size: tuple[int, int] | None = None  # the first decoded picture's, as probe() reports it

        def picture(f: av.VideoFrame) -> np.ndarray:
            if size is not None and (f.width, f.height) != size:
                rep.resized += 1
                img = f.to_ndarray(format=fmt, width=size[0], height=size[1])
            else:
                img = f.to_ndarray(format=fmt)
            rep.interlaced += bool(f.interlaced_frame)
            rep.colour += has_colour(img)
            return blend_fields(img) if deinterlace else img

        slots = _Slots(rep, _frame_step(v), picture, bool(ONE_PER_PACKET & set(c.format.name.split(","))))
        slots.time_base = v.time_base
        sent: list[int] = []
        held: list[tuple[int, int, av.VideoFrame]] = []
        seq, key = 0, -(1 << 62)
        for f in _decoded(c, v, rep, sent):
            size = size or (f.width, f.height)
            k = f.pts if f.pts is not None else f.dts
            key = k if k is not None else key
            heapq.heappush(held, (key, seq, f))
            seq += 1
            if len(held) > REORDER:
                yield from slots.place(heapq.heappop(held)[2], sent)
        while held:
            yield from slots.place(heapq.heappop(held)[2], sent)
        yield from slots.finish(sent)


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


@dataclass
class EncodeOptions:
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p, or yuv420p10le for >8-bit input when the codec allows
    threads: int = 0  # 0: the codec's own choice; recorded in job manifests so resumes match

    def as_dict(self) -> dict:
        return {"codec": self.codec, "crf": self.crf, "preset": self.preset, "pix_fmt": self.pix_fmt,
                "threads": self.threads}


def check_codec(opts: EncodeOptions) -> None:
    try:
        codec = av.codec.Codec(opts.codec, "w")
    except (av.error.FFmpegError, ValueError, KeyError):
        raise VidcolorError(f"unknown video encoder {opts.codec!r}; try libx264, libx265, mpeg4 or ffv1") from None
    if codec.type != "video":
        raise VidcolorError(f"{opts.codec!r} is not a video encoder")
    if opts.pix_fmt is not None:
        names = {f.name for f in (codec.video_formats or [])}
        if names and opts.pix_fmt not in names:
            raise VidcolorError(f"--pix-fmt {opts.pix_fmt} is not supported by {opts.codec}; "
                                f"choose one of {', '.join(sorted(names))}")


def choose_pix_fmt(opts: EncodeOptions, bit_depth: int, width: int = 2, height: int = 2) -> str:
    """The user's --pix-fmt, else 4:2:0 at the input's depth; 4:4:4 for odd sizes,
    which 4:2:0 cannot hold without cropping or padding the picture."""
    if opts.pix_fmt:
        if opts.pix_fmt.startswith(("yuv420", "nv12")) and (width % 2 or height % 2):
            raise VidcolorError(f"--pix-fmt {opts.pix_fmt} needs an even frame size, the input is "
                                f"{width}x{height}; use yuv444p or leave --pix-fmt out")
        return opts.pix_fmt
    codec = av.codec.Codec(opts.codec, "w")
    names = [f.name for f in (codec.video_formats or [])]
    odd = bool(width % 2 or height % 2)
    prefs = (["yuv444p10le", "yuv444p"] if odd else ["yuv420p10le", "yuv420p"]) if bit_depth > 8 else \
        (["yuv444p"] if odd else ["yuv420p"])
    for p in prefs:
        if p in names or not names:
            return p
    return names[0]


# x264 CPU flags MMX..AVX2, BMI1/2, FMA3, LZCNT (no XOP/FMA4/AVX512) | CACHELINE_64 | SSE2_IS_FAST.
X264_AVX2_CPU_MASK = 0xF3FF | (1 << 18) | (1 << 20)


def _has_avx512() -> bool:
    """True on x86 Linux CPUs with AVX-512.

    There libx264's AVX-512 code gave different bits for the same frames from
    run to run while PyTorch worked in the same process (measured: 4 distinct
    outputs in 6 runs; 1 in 6 with AVX-512 masked off, identical to asm=0).
    Resumed jobs must equal uninterrupted ones, so x264 is told to stop at AVX2,
    which every AVX-512 CPU has, at no measurable speed cost.
    """
    global _AVX512
    if _AVX512 is None:
        try:
            with open("/proc/cpuinfo") as fh:
                _AVX512 = any(line.startswith("flags") and " avx512f" in line for line in fh)
        except OSError:
            _AVX512 = False
    return _AVX512


_AVX512: bool | None = None


class SegmentWriter:
    """Encode coloured frames into one independently decodable mp4 file.

    Conversion to the codec's pixel format, x264 and muxing run in a thread of
    their own behind a small bounded queue: PyAV releases the GIL while it
    encodes, so this overlaps with the next batch's inference instead of
    stalling it. Frames are encoded in the order written, so the bytes are the
    same as a synchronous writer's. An error in the thread is raised by the
    next :meth:`write` or by :meth:`close`.
    """

    def __init__(self, path: Path, info: VideoInfo, opts: EncodeOptions, queue_size: int = 8):
        self.path = path
        self.out = av.open(str(path), "w", format="mp4")
        s = self.out.add_stream(opts.codec, rate=info.rate or Fraction(25))
        s.width, s.height = info.width, info.height
        s.pix_fmt = choose_pix_fmt(opts, info.bit_depth, info.width, info.height)
        s.time_base = info.time_base
        s.codec_context.time_base = info.time_base
        if info.sample_aspect_ratio:
            s.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        if info.display_matrix:  # rotation/mirroring: kept as metadata, the pixels stay as stored
            s.set_display_matrix(info.display_matrix)
        o = {}
        if opts.crf is not None and opts.codec in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1"):
            o["crf"] = str(opts.crf)
        if opts.preset and opts.codec in ("libx264", "libx265", "libsvtav1"):
            o["preset"] = opts.preset
        if opts.threads:
            s.codec_context.thread_count = opts.threads
        if opts.codec == "libx264" and _has_avx512():
            o["x264-params"] = f"asm={X264_AVX2_CPU_MASK}"
        s.codec_context.options = o
        self.stream = s
        self.frames = 0
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vidcolor-encoder", daemon=True)
        self._thread.start()

    def _encode(self, image: np.ndarray | None, pts: int | None) -> None:
        if image is None:  # flush
            for p in self.stream.encode(None):
                self.out.mux(p)
            return
        fmt = "rgb24" if image.dtype == np.uint8 else "rgb48le"
        frame = _zero_padding(av.VideoFrame.from_ndarray(image, format=fmt).reformat(format=self.stream.pix_fmt))
        frame.pts = pts
        frame.time_base = self.stream.time_base
        for p in self.stream.encode(frame):
            self.out.mux(p)

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is _END:
                return
            if self._error is None:  # after an error, drain without encoding so writers never block
                try:
                    self._encode(*job)
                except BaseException as e:  # handed to the caller's thread by write()/close()
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def write(self, image: np.ndarray, pts: int | None) -> None:
        self._raise()
        self._q.put((image, pts))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; raises what went wrong in the encoder thread."""
        self._q.put((None, None))
        self._q.put(_END)
        self._thread.join()
        self._raise()
        self.out.close()

    def abort(self) -> None:
        """Stop without flushing (the caller leaves the file as a temp name)."""
        self._error = self._error or InterruptedError("aborted")  # the thread skips what is queued
        if self._thread.is_alive():
            self._q.put(_END)
            self._thread.join()
        try:
            self.out.close()
        except av.error.FFmpegError:
            pass


def write_rgb_video(path: Path | str, frames: Iterable[np.ndarray], rate: int | Fraction,
                    pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> None:
    """Encode RGB uint8 frames (H, W, 3), all one size, with libx264 into a new file.

    For making test and evaluation clips (the same frames give the same bytes on every run);
    coloured output goes through :class:`SegmentWriter`.
    """
    with av.open(str(path), "w") as c:
        s = None
        for f in frames:
            if s is None:
                s = c.add_stream("libx264", rate=rate)
                s.width, s.height, s.pix_fmt = f.shape[1], f.shape[0], pix_fmt
                o = dict(options or {})
                if _has_avx512():  # the same run-to-run determinism fix as SegmentWriter's
                    o.setdefault("x264-params", f"asm={X264_AVX2_CPU_MASK}")
                s.codec_context.options = o
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        if s is None:
            raise ValueError(f"no frames to write to {path}")
        for p in s.encode(None):
            c.mux(p)


def _zero_padding(frame: av.VideoFrame) -> av.VideoFrame:
    """Zero the bytes past each row's end in every plane.

    x264's SIMD row copies read whole 16/32-byte blocks, i.e. into this
    padding, which PyAV leaves uninitialised. Encoder input must be a function
    of the picture alone for resumed jobs to equal uninterrupted ones.
    """
    comps = frame.format.components
    for k, plane in enumerate(frame.planes):
        bpp = sum((c.bits + 7) // 8 for c in comps if c.plane == k) or 1
        used = plane.width * bpp
        if plane.line_size > used:
            np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:, used:] = 0
    return frame


def check_output_format(dest: Path, fmt: str | None, info: VideoInfo, opts: EncodeOptions) -> None:
    """Fail now, not after hours of colouring, if OUTPUT's container cannot hold the video codec
    or the input's audio and subtitle streams: write a header to memory with the same streams."""
    out = av.open(io.BytesIO(), "w", format=fmt)
    what = f"{opts.codec} video"
    try:
        s = out.add_stream(opts.codec, rate=info.rate or Fraction(25))
        s.width, s.height = info.width, info.height
        s.pix_fmt = choose_pix_fmt(opts, info.bit_depth, info.width, info.height)
        s.time_base = info.time_base
        with open_container(info.path) as src:
            for st in src.streams:
                if st.type in COPY_TYPES:
                    if st.codec_context is None:
                        raise DamagedInput(f"the input's {st.type} stream #{st.index} has no known codec (damaged?), "
                                           f"so it cannot be copied and the output would lose it")
                    what = f"the input's {st.type} stream #{st.index} ({st.codec_context.name})"
                    out.add_stream_from_template(st)
            what = "these streams"
            out.start_encoding()
    except (ValueError, av.error.FFmpegError) as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            raise
        hint = "; .mkv holds almost anything" if fmt != "matroska" else ""
        raise VidcolorError(f"{dest.suffix or 'the output'} files cannot hold {what} ({_reason(e)}){hint}") from None
    finally:
        try:
            out.close()
        except (ValueError, av.error.FFmpegError):
            pass


@dataclass
class JoinReport:
    """How the input's audio and subtitle packets fared in :func:`join_segments`."""

    copied: int = 0
    nudged: int = 0  # timestamps that ran backwards, moved just after the previous packet (as ffmpeg does)
    lost: int = 0  # packets the muxer refused: the output would not be faithful
    read_error: str | None = None  # reading the input's other streams stopped early (damage)

    def warnings(self) -> list[str]:
        w = []
        if self.nudged:
            w.append(f"{self.nudged} audio/subtitle packets had timestamps running backwards; each was moved just "
                     f"after the one before")
        if self.read_error:
            w.append(f"the input's audio/subtitles could not be read to the end ({self.read_error}); "
                     f"{self.copied} packets were copied")
        return w


def _side_packets(src: av.container.InputContainer, streams: list, rep: JoinReport) -> Iterator[av.Packet]:
    """The input's audio/subtitle packets, stopping quietly (but noted) where the file is damaged."""
    it = src.demux(streams)
    while True:
        try:
            pkt = next(it)
        except StopIteration:
            return
        except av.error.FFmpegError as e:  # reading, not writing: damage, never a full disk
            rep.read_error = _reason(e)
            return
        if pkt.dts is None and pkt.pts is None and not pkt.size:
            continue  # the demuxer's empty flush packets
        yield pkt


def join_segments(segments: list[Path], source: Path, dest: Path, fmt: str | None) -> JoinReport:
    """Mux the segments' video packets and the source's audio/subtitle packets into ``dest``.

    Audio and subtitle packets are copied untouched (same bytes, pts and
    time_base; see :class:`JoinReport` for damaged timestamps). Packets are fed
    in time order so the muxer's interleaving queue stays small however long
    the film is.
    """
    rep = JoinReport()
    out = av.open(str(dest), "w", format=fmt, options={"avoid_negative_ts": "disabled"})
    try:
        with av.open(str(segments[0])) as first:
            vt = first.streams.video[0]
            vs = out.add_stream_from_template(vt)
            vs.time_base = vt.time_base
        src = open_container(source)
        copies = {}
        for s in src.streams:
            if s.type in COPY_TYPES:
                try:
                    copies[s.index] = out.add_stream_from_template(s)
                except (ValueError, av.error.FFmpegError) as e:
                    raise VidcolorError(f"cannot copy {s.type} stream #{s.index} ({s.codec_context.name}) "
                                        f"into {dest.suffix} output: {e}; try .mkv") from None
        side = _side_packets(src, [src.streams[i] for i in copies], rep) if copies else iter(())
        last: dict[int, int] = {}
        pending = next(side, None)
        last_dts = None
        for seg in segments:
            with av.open(str(seg)) as sc:
                for pkt in sc.demux(sc.streams.video[0]):
                    if pkt.dts is None and pkt.size == 0:
                        continue
                    t = pkt.dts if pkt.dts is not None else pkt.pts
                    tsec = float(t * pkt.time_base) if t is not None else None
                    while pending is not None and tsec is not None and _ptime(pending) <= tsec:
                        _mux_copy(out, pending, copies, last, rep)
                        pending = next(side, None)
                    if last_dts is not None and pkt.dts is not None and pkt.dts <= last_dts:
                        pkt.dts = last_dts + 1  # segment seams: keep dts strictly increasing
                    last_dts = pkt.dts
                    pkt.stream = vs
                    out.mux(pkt)
        while pending is not None:
            _mux_copy(out, pending, copies, last, rep)
            pending = next(side, None)
        src.close()
        out.close()
    except (ValueError, av.error.FFmpegError) as e:
        try:
            out.close()
        except (ValueError, av.error.FFmpegError):
            pass
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            raise
        # Our own video packets are sane; the muxer's interleaving queue reports trouble with the copied
        # packets later, on whichever packet comes next.
        raise DamagedInput(f"the input's audio/subtitle timing is too damaged to write into {dest.suffix} "
                           f"({_reason(e)}); no output written") from None
    except BaseException:
        try:
            out.close()
        except (ValueError, av.error.FFmpegError):
            pass
        raise
    return rep


def _ptime(pkt: av.Packet) -> float:
    t = pkt.dts if pkt.dts is not None else pkt.pts
    return float(t * pkt.time_base) if t is not None else -1.0


def _mux_copy(out: av.container.OutputContainer, pkt: av.Packet, copies: dict, last: dict[int, int],
              rep: JoinReport) -> None:
    """Copy one audio/subtitle packet, keeping its dts increasing within its stream."""
    idx = pkt.stream.index
    if pkt.dts is None:
        pkt.dts = pkt.pts
    prev = last.get(idx)
    if pkt.dts is not None and prev is not None and pkt.dts <= prev:
        pkt.dts = prev + 1
        if pkt.pts is not None and pkt.pts < pkt.dts:
            pkt.pts = pkt.dts
        rep.nudged += 1
    pkt.stream = copies[idx]
    try:
        out.mux(pkt)
    except (ValueError, av.error.FFmpegError) as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            raise  # the disk, not the packet
        rep.lost += 1
        return
    rep.copied += 1
    if pkt.dts is not None:
        last[idx] = pkt.dts


def verify_output(path: Path, frames: int, report: DecodeReport, tol: float = 0.002) -> str | None:
    """None if ``path`` holds ``frames`` video frames spanning the report's first..final times, else what
    differs. Wildly damaged timestamps can make a muxer shift or hide frames (edit lists); this catches it."""
    times = []
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.size and not p.is_discard and p.pts is not None:
                times.append(float(p.pts * p.time_base))
    if len(times) != frames:
        return f"the output would show {len(times)} of {frames} frames"
    if report.first_time is not None and report.final_time is not None and \
            (abs(min(times) - report.first_time) > tol or abs(max(times) - report.final_time) > tol):
        return (f"the output would span {min(times):.3f}..{max(times):.3f} s instead of "
                f"{report.first_time:.3f}..{report.final_time:.3f} s")
    return None


def output_format(path: Path) -> str | None:
    """The container for OUTPUT's extension, or a clear error."""
    ext = path.suffix.lower()
    if ext not in CONTAINERS:
        raise VidcolorError(f"unsupported output extension {ext or '(none)'!r}; choose one of "
                            f"{', '.join(sorted(CONTAINERS))}")
    return CONTAINERS[ext]


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
