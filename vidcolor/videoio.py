"""Video I/O with PyAV: probing, a decoding thread, segment encoding and the
final mux that copies audio and subtitles packet for packet.

Frames are streamed and never written to disk as images. Colour segments are
complete, independently decodable mp4 files (mp4 keeps the input's time_base,
so pts survive exactly); :func:`join_segments` copies their packets, and the
input's audio and subtitle packets, into the output.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .errors import InputError, VidcolorError

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
              ".avi": "avi", ".nut": "nut"}
COPY_TYPES = ("audio", "subtitle")


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
    rotation: int
    interlaced: bool
    copy_streams: list[str] = field(default_factory=list)  # "audio:aac", ...


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a directory, not a video file: {path} (use 'vidcolor frames' for image folders)")
    if path.stat().st_size == 0:
        raise InputError(f"input is an empty file: {path}")


def open_container(path: Path) -> av.container.InputContainer:
    """av.open with a one-line error for anything that is not a readable media file."""
    _check_path(path)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise InputError(f"cannot read {path} as a video: {e.strerror or type(e).__name__}") from None


def _bit_depth(stream: av.video.stream.VideoStream) -> int:
    fmt = stream.codec_context.format
    if fmt is None:
        return 8
    return max((c.bits for c in fmt.components), default=8)


def probe(path: Path) -> VideoInfo:
    """Open, check and describe the first video stream of ``path``."""
    with open_container(path) as c:
        if not c.streams.video:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "none"
            raise InputError(f"no video stream in {path} (streams found: {kinds})")
        v = c.streams.video[0]
        cc = v.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"video stream of {path} has no frame size; the file may be truncated")
        frames = v.frames or 0
        if not frames and v.duration and v.average_rate:
            frames = int(round(float(v.duration * v.time_base * v.average_rate)))
        elif not frames and c.duration and v.average_rate:
            frames = int(round(c.duration / 1_000_000 * float(v.average_rate)))
        rot = 0
        try:
            side = v.side_data.get("DISPLAYMATRIX") if hasattr(v, "side_data") else None
            rot = int(round(side)) if side is not None else 0
        except (TypeError, ValueError, AttributeError):
            rot = 0
        copy = [f"{s.type}:{s.codec_context.name if s.codec_context else '?'}" for s in c.streams
                if s.type in COPY_TYPES]
        return VideoInfo(path=path, width=cc.width, height=cc.height, time_base=v.time_base,
                         rate=v.average_rate or v.guessed_rate, frames=frames, pix_fmt=cc.format.name if cc.format else "?",
                         bit_depth=_bit_depth(v), sample_aspect_ratio=cc.sample_aspect_ratio or None,
                         rotation=rot, interlaced=False, copy_streams=copy)


@dataclass
class DecodedFrame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 or uint16
    pts: int | None


_END = object()


def iter_frames(path: Path, high_depth: bool = False) -> Iterator[DecodedFrame]:
    """Decode every frame of the first video stream in presentation order."""
    fmt = "rgb48le" if high_depth else "rgb24"
    with open_container(path) as c:
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        index = 0
        for packet in c.demux(v):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet: the decoder resynchronises at the next one
            for frame in frames:
                yield DecodedFrame(index, frame.to_ndarray(format=fmt), frame.pts)
                index += 1


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
    """Encode coloured frames into one independently decodable mp4 file."""

    def __init__(self, path: Path, info: VideoInfo, opts: EncodeOptions):
        self.path = path
        self.out = av.open(str(path), "w", format="mp4")
        s = self.out.add_stream(opts.codec, rate=info.rate or Fraction(25))
        s.width, s.height = info.width, info.height
        s.pix_fmt = choose_pix_fmt(opts, info.bit_depth, info.width, info.height)
        s.time_base = info.time_base
        s.codec_context.time_base = info.time_base
        if info.sample_aspect_ratio:
            s.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
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

    def write(self, image: np.ndarray, pts: int | None) -> None:
        fmt = "rgb24" if image.dtype == np.uint8 else "rgb48le"
        frame = _zero_padding(av.VideoFrame.from_ndarray(image, format=fmt).reformat(format=self.stream.pix_fmt))
        frame.pts = pts
        frame.time_base = self.stream.time_base
        for p in self.stream.encode(frame):
            self.out.mux(p)
        self.frames += 1

    def close(self) -> None:
        for p in self.stream.encode(None):
            self.out.mux(p)
        self.out.close()

    def abort(self) -> None:
        try:
            self.out.close()
        except av.error.FFmpegError:
            pass


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


def join_segments(segments: list[Path], source: Path, dest: Path, fmt: str | None) -> None:
    """Mux the segments' video packets and the source's audio/subtitle packets into ``dest``.

    Audio and subtitle packets are copied untouched (same bytes, pts and
    time_base). Packets are fed in time order so the muxer's interleaving queue
    stays small however long the film is.
    """
    out = av.open(str(dest), "w", format=fmt, options={"avoid_negative_ts": "disabled"})
    try:
        first = av.open(str(segments[0]))
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
        first.close()
        side = src.demux([src.streams[i] for i in copies]) if copies else iter(())
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
                        pending = _mux_copy(out, pending, copies, side)
                    if last_dts is not None and pkt.dts is not None and pkt.dts <= last_dts:
                        pkt.dts = last_dts + 1  # segment seams: keep dts strictly increasing
                    last_dts = pkt.dts
                    pkt.stream = vs
                    out.mux(pkt)
        while pending is not None:
            pending = _mux_copy(out, pending, copies, side)
        src.close()
        out.close()
    except BaseException:
        try:
            out.close()
        except av.error.FFmpegError:
            pass
        raise


def _ptime(pkt: av.Packet) -> float:
    t = pkt.dts if pkt.dts is not None else pkt.pts
    return float(t * pkt.time_base) if t is not None else -1.0


def _mux_copy(out: av.container.OutputContainer, pkt: av.Packet, copies: dict, side: Iterator) -> av.Packet | None:
    if pkt.dts is not None or pkt.size:  # skip the demuxer's empty flush packets
        pkt.stream = copies[pkt.stream.index]
        out.mux(pkt)
    return next(side, None)


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
