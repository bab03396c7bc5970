"""Decoding: frames in display order, one per time slot, with a report of any damage met.

Frames are streamed and never written to disk as images. Damaged input is
decoded as far as it goes; :class:`DecodeReport` says what was met on the way
and states the rule for when the result still counts as a faithful colouring
of what was readable.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from . import yuv as yuvmod
from .videoio import COLOUR_SPREAD, ONE_PER_PACKET, describe_error, film_rate, main_video, open_container

REORDER = 4  # decoded frames held back so a decoder's slightly out-of-order output is put right


@dataclass
class DecodedFrame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 or uint16 RGB, or with a YuvSpec the (H, W) Y plane as decoded
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
    may travel in separate packets, only as many as the decoder rejected
    (packets there that give no picture before the first one, as in a file
    that starts mid-stream, get no slot; a warning counts them).
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
    corrupt_packets: int = 0  # video packets the demuxer flagged corrupt (MPEG-TS continuity errors...)
    frame_time: float | None = None  # seconds per frame, from the stream's rate
    lead_lost: int = 0  # MPEG-TS/PS: packets before the first picture that gave none (the file starts mid-stream)
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

    def _reaches_end(self) -> bool:
        """The last packet is within a frame and a half of the header's duration: fewer packets than announced
        frames are then frames the file never held (AVI's "drop frame" chunks), not a lost tail."""
        return bool(self.duration and self.last_time is not None and self.frame_time and
                    self.last_time + 1.5 * self.frame_time >= self.duration)

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
        if self.lead_lost:
            w.append(f"the first {self.lead_lost} video packets gave no picture (the file starts mid-stream: its "
                     f"head is missing?); the output starts at the first frame that decodes")
        if self.corrupt_packets:
            w.append(f"{self.corrupt_packets} video packets were marked damaged when read (the file is damaged "
                     f"there, and frames may be missing); what they decoded to was coloured")
        if self.read_error:
            at = f" past {self.last_time:.2f} s" if self.last_time is not None else ""
            w.append(f"the input could not be read{at} ({self.read_error}); the {n} frames before that were "
                     f"coloured")
        elif self.expected > self.packets > 0 and not self._reaches_end():
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
    rate = film_rate(v)
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
            # no rejected packet to account for: a packet without a picture of its own, or, before the first
            # picture, one that needs pictures from before the file's start
            self.rep.lead_lost += self.good is None and not self.waiting
            return []
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
            rep.read_error = describe_error(e)
            packet = None
        if packet is not None and packet.size and not packet.is_discard:
            rep.packets += 1
            rep.corrupt_packets += bool(packet.is_corrupt)
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
                deinterlace: bool = False, yuv: yuvmod.YuvSpec | None = None) -> Iterator[DecodedFrame]:
    """Decode every frame slot of the first video stream, in presentation order.

    Damage is handled as :class:`DecodeReport` describes; pass ``report`` to
    see what was met. A picture whose size differs from the first one's (as
    :func:`probe` reports it) is scaled to it.
    With ``deinterlace`` every picture's fields are blended (:func:`blend_fields`).
    With ``yuv`` each image is the picture's own Y plane (:mod:`vidcolor.yuv`), not RGB.
    """
    fmt = "rgb48le" if high_depth else "rgb24"
    rep = report if report is not None else DecodeReport()
    rep.deinterlaced = deinterlace
    with open_container(path) as c:
        v = main_video(c)
        # Slice threads only: frame-threaded decoders drop pictures after damage without raising, which
        # would hide damage and lose frames that decode fine one thread at a time.
        v.thread_type = "SLICE"
        rep.expected = v.frames or 0
        tb = v.time_base or Fraction(1, 90000)
        end = v.duration * tb if v.duration else (c.duration / 1_000_000 if c.duration else None)
        rep.duration = float(end) if end else None
        size: tuple[int, int] | None = None  # the first decoded picture's, as probe() reports it

        def picture(f: av.VideoFrame) -> np.ndarray:
            resized = size is not None and (f.width, f.height) != size
            rep.resized += resized
            if yuv is not None:
                img = yuvmod.luma_plane(f, yuv, size)
                rep.colour += yuvmod.has_colour(f, yuv)
            else:
                img = f.to_ndarray(format=fmt, **({"width": size[0], "height": size[1]} if resized else {}))
                rep.colour += has_colour(img)
            rep.interlaced += bool(f.interlaced_frame)
            return blend_fields(img) if deinterlace else img

        slots = _Slots(rep, _frame_step(v), picture, bool(ONE_PER_PACKET & set(c.format.name.split(","))))
        slots.time_base = v.time_base
        rep.frame_time = float(slots.step * tb)
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
