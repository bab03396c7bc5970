"""Encoding: coloured frames into complete, independently decodable mp4 segments.

mp4 keeps the input's time_base, so pts survive exactly; :func:`vidcolor.mux.join_segments`
later copies the segments' packets into the output. Encoder input is made a function of the
picture alone (zeroed row padding, x264 held to AVX2), so a resumed job equals an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import io
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from .errors import DamagedInput, VidcolorError
from .settings import EncodeOptions  # noqa: F401  (re-exported: vidcolor.encode.EncodeOptions)
from .videoio import COPY_TYPES, DISK_ERRNOS, VideoInfo, describe_error, mp4_options, open_container
from .yuv import Planes, YuvSpec, plan, tag_stream, to_frame


_END = object()  # the writer thread's end-of-frames sentinel


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


def plane_spec(info: VideoInfo, opts: EncodeOptions) -> YuvSpec | None:
    """The plane path for ``info``'s video encoded with ``opts`` (:func:`vidcolor.yuv.plan`), or None (RGB)."""
    return plan(info.pix_fmt, choose_pix_fmt(opts, info.bit_depth, info.width, info.height), info.colour)


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

    With ``yuv`` (the plane path) frames come as :class:`vidcolor.yuv.Planes`
    in ``yuv.out_fmt`` and go to the encoder as they are, with no conversion,
    and the stream carries the input's colour matrix, range, primaries and transfer.
    """

    def __init__(self, path: Path, info: VideoInfo, opts: EncodeOptions, queue_size: int = 8,
                 yuv: YuvSpec | None = None, source: str = "the input", container: str | None = None):
        self.path = path
        self.source = source  # named in errors
        fmt = container or segment_format(info, opts)  # a job passes what check_output_format found once
        self.out = av.open(str(path), "w", format=fmt, options=mp4_options(fmt, info.time_base))
        s = self.out.add_stream(opts.codec, rate=info.rate or Fraction(25))
        s.width, s.height = info.width, info.height
        s.pix_fmt = choose_pix_fmt(opts, info.bit_depth, info.width, info.height)
        s.time_base = info.time_base
        s.codec_context.time_base = info.time_base
        self.yuv = yuv
        if yuv is not None:
            if yuv.out_fmt != s.pix_fmt:
                raise ValueError(f"plane path for {yuv.out_fmt}, but the encoder takes {s.pix_fmt}")
            tag_stream(s.codec_context, yuv)
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
        # set when _run has returned. close() and abort() wait on this, not on Thread.join(): in Python
        # 3.11 a Ctrl-C that interrupts join() marks the thread stopped while it still runs (the
        # bpo-45274 handler in threading), so abort() took it for finished and the process exited
        # with the thread still composing a frame in torch: "terminate called", exit -6.
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidcolor-encoder", daemon=True)
        self._thread.start()

    def _encode(self, image: np.ndarray | Planes | Callable[[], np.ndarray | Planes] | None, pts: int | None) -> None:
        if image is None:  # flush
            self._mux(self.stream.encode(None))
            return
        if callable(image):  # composed here, in this thread (stream.stream_colour's ``defer``)
            image = image()
        if self.yuv is not None:
            frame = to_frame(image, self.yuv)
        else:
            fmt = "rgb24" if image.dtype == np.uint8 else "rgb48le"
            frame = av.VideoFrame.from_ndarray(image, format=fmt).reformat(format=self.stream.pix_fmt)
        frame = _zero_padding(frame)
        frame.pts = pts
        # The encoder's time base, which stays the input's: the mp4 muxer raises a coarse *stream*
        # time_base (Matroska's 1/1000 becomes 1/16000) when it writes the header, and frames stamped
        # in that one would reach x264 with pts 16 times too small (pts < dts, EINVAL).
        frame.time_base = self.stream.codec_context.time_base
        self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[av.Packet]) -> None:
        for p in packets:
            try:
                self.out.mux(p)
            except av.error.PatchWelcomeError:
                # mp4 refuses a packet whose pts runs more than 2^31 ticks ahead of its dts: a frame
                # timestamp hours away from its neighbours', which only damage makes
                raise DamagedInput(f"a frame timestamp of {self.source} jumps hours away from its neighbours' "
                                   "(damaged?), so the output cannot keep the frames at their times; no output "
                                   "written (remux the input with fresh timestamps first)") from None

    def _run(self) -> None:
        try:
            while True:
                job = self._q.get()
                if job is _END:
                    return
                if self._error is None:  # after an error, drain without encoding so writers never block
                    try:
                        self._encode(*job)
                    except BaseException as e:  # handed to the caller's thread by write()/close()
                        self._error = e
        finally:
            self._done.set()

    def _raise(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def write(self, image: np.ndarray | Planes | Callable[[], np.ndarray | Planes], pts: int | None) -> None:
        """Queue a frame, or a function that makes it (called in the encoder's thread)."""
        self._raise()
        self._q.put((image, pts))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; raises what went wrong in the encoder thread."""
        self._q.put((None, None))
        self._q.put(_END)
        self._done.wait()
        self._raise()
        self.out.close()

    def abort(self) -> None:
        """Stop without flushing (the caller leaves the file as a temp name).

        Returns once the encoder thread has ended, also when a Ctrl-C interrupted :meth:`close`."""
        self._error = self._error or InterruptedError("aborted")  # the thread skips what is queued
        while not self._done.is_set():
            try:  # the thread drains the queue, so this finds room; a close() may have queued _END already
                self._q.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self._done.wait()
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


def check_output_format(dest: Path, fmt: str | None, info: VideoInfo, opts: EncodeOptions) -> str:
    """Fail now, not after hours of colouring, if OUTPUT's container cannot hold the video codec
    or the input's audio and subtitle streams: write a header to memory with the same streams.
    Returns the container of the job's segment files (:func:`segment_format`), which must hold the
    video too.

    The error names a container that does hold them. Streams that no container takes are damaged
    input (exit 4), not a poor choice of container."""
    container = segment_format(info, opts)
    try:
        _try_header(fmt, info, opts)
    except _HeaderError as e:
        if e.what == f"{opts.codec} video" and fmt == "webm":  # the one container that refuses H.264
            raise VidcolorError(f"{dest.suffix} files cannot hold {e.what} ({e.why}); use --codec libvpx-vp9 "
                                f"for .webm, or an .mkv or .mp4 output") from None
        # Matroska first, as it holds almost anything; but not MP4's own subtitles (mov_text), which .mp4 and .mov do
        other = next((ext for f, ext in _FALLBACKS if f != fmt and _header_ok(f, info, opts)), None)
        if other is None and e.what != f"{opts.codec} video":
            raise DamagedInput(f"{e.what} cannot be copied into any container ({e.why}); it is probably "
                               f"damaged, so the output would lose it") from None
        hint = f"; choose a {other} output instead" if other else ""
        raise VidcolorError(f"{dest.suffix or 'the output'} files cannot hold {e.what} ({e.why}){hint}") from None
    return container


_FALLBACKS = (("matroska", ".mkv"), ("mp4", ".mp4"), ("mov", ".mov"))


def segment_format(info: VideoInfo, opts: EncodeOptions) -> str:
    """The container of a job's segment files: mp4, or mov for the codecs that only QuickTime holds
    (ProRes, DNxHD...). Both keep every frame's time exact (:func:`vidcolor.videoio.mp4_options`)."""
    why = ""
    for fmt in ("mp4", "mov"):
        try:
            _try_header(fmt, info, opts, copies=False)
            return fmt
        except _HeaderError as e:
            why = e.why  # the encoder's own complaint (DNxHD's sizes, say) if it got that far, else mov's
    raise VidcolorError(f"--codec {opts.codec} cannot write this video into mp4 or mov, which vidcolor's "
                        f"resumable segments need ({why}); choose libx264, libx265, ffv1 or prores_ks")


class _HeaderError(Exception):
    """A header could not be written: why (FFmpeg's words) and what (the stream it failed on)."""

    def __init__(self, why: str, what: str):
        super().__init__(why, what)
        self.why, self.what = why, what


def _header_ok(fmt: str | None, info: VideoInfo, opts: EncodeOptions, copies: bool = True) -> bool:
    try:
        _try_header(fmt, info, opts, copies)
    except _HeaderError:
        return False
    return True


def _try_header(fmt: str | None, info: VideoInfo, opts: EncodeOptions, copies: bool = True) -> None:
    """Write a header with the output's streams (the video alone, without ``copies``) to memory; a
    failure is a _HeaderError naming the stream."""
    out = av.open(io.BytesIO(), "w", format=fmt)
    what = f"{opts.codec} video"
    try:
        s = out.add_stream(opts.codec, rate=info.rate or Fraction(25))
        s.width, s.height = info.width, info.height
        s.pix_fmt = choose_pix_fmt(opts, info.bit_depth, info.width, info.height)
        s.time_base = info.time_base
        copied = 0
        # the segment check (no copies) needs nothing of the input but what ``info`` holds
        with open_container(info.path) if copies else contextlib.nullcontext() as src:
            for st in src.streams if src is not None else ():
                if st.type in COPY_TYPES:
                    if st.codec_context is None:
                        raise DamagedInput(f"the input's {st.type} stream #{st.index} has no known codec (damaged?), "
                                           f"so it cannot be copied and the output would lose it")
                    what = f"the input's {st.type} stream #{st.index} ({st.codec_context.name})"
                    out.add_stream_from_template(st)
                    copied += 1
            if copied:  # the header, written with every stream, failed: not the video alone
                what = "the input's audio/subtitle streams"
            out.start_encoding()
    except (ValueError, av.error.FFmpegError) as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            raise
        raise _HeaderError(describe_error(e), what) from None
    finally:
        try:
            out.close()
        except (ValueError, av.error.FFmpegError):
            pass

