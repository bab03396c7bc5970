"""The final mux: colour segments' packets plus the input's audio and subtitle packets, copied
untouched with their pts and time_base, and a check that the result shows every frame.

The input's descriptive metadata goes along: the file's tags (title, date...), each stream's
tags (language, title) and disposition (default, forced...), and the chapters. Tags that describe
how the input was written (encoder, brands, durations) are left for the new file's muxer to write."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av

from .decode import DecodeReport
from .errors import DamagedInput, VidcolorError
from .videoio import COPY_TYPES, DISK_ERRNOS, describe_error, film_rate, main_video, mp4_options, open_container


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
            rep.read_error = describe_error(e)
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
    with av.open(str(segments[0])) as first:
        tb = first.streams.video[0].time_base
    out = av.open(str(dest), "w", format=fmt, options={"avoid_negative_ts": "disabled", **mp4_options(fmt, tb)})
    try:
        with av.open(str(segments[0])) as first:
            vt = first.streams.video[0]
            vs = out.add_stream_from_template(vt)
            vs.time_base = vt.time_base
            if vt.sample_aspect_ratio:  # the template leaves it out; only the container carries it for ProRes
                vs.sample_aspect_ratio = vt.sample_aspect_ratio
        src = open_container(source)
        film = main_video(src)
        rate = film_rate(film) if film is not None else None
        if rate:
            # Matroska writes its DefaultDuration from this; left unset it says 1000 fps (or the
            # segment's clock rate), which players and probes then report as the film's rate.
            vs.codec_context.framerate = rate
        copies = {}
        for s in src.streams:
            if s.type in COPY_TYPES:
                try:
                    copies[s.index] = out.add_stream_from_template(s)
                except (ValueError, av.error.FFmpegError) as e:
                    raise VidcolorError(f"cannot copy {s.type} stream #{s.index} ({s.codec_context.name}) "
                                        f"into {dest.suffix} output: {e}; try .mkv") from None
        _copy_descriptions(src, out, {**copies, **({film.index: vs} if film is not None else {})})
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
                           f"({describe_error(e)}); no output written") from None
    except BaseException:
        try:
            out.close()
        except (ValueError, av.error.FFmpegError):
            pass
        raise
    return rep


# written by a muxer or encoder about its own work; a copy would be stale (the mp4 brands, an mkv
# stream's DURATION, the input's encoder) and the output's muxer writes its own
_WRITER_TAGS = frozenset({"encoder", "duration", "major_brand", "minor_version", "compatible_brands"})


def _tags(metadata: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k.lower() not in _WRITER_TAGS}


def _copy_descriptions(src: av.container.InputContainer, out: av.container.OutputContainer,
                       streams: dict[int, av.stream.Stream]) -> None:
    """Carry the input's file tags, the tags and dispositions of its ``streams`` (input index -> output
    stream: the copied ones, and the film to its coloured replacement), and its chapters, into ``out``.

    Must run before the first packet is muxed (the header holds them). A format that cannot store
    one of them (chapters in MPEG-TS, say) leaves it out, as ffmpeg does."""
    out.metadata.update(_tags(src.metadata))
    for i, dst in streams.items():
        dst.metadata.update(_tags(src.streams[i].metadata))
        dst.disposition = src.streams[i].disposition
    chapters = src.chapters()
    if chapters:
        out.set_chapters(chapters)


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
    dts = pkt.dts  # in the input's time_base: mux() rescales the packet to the output stream's in place
    try:
        out.mux(pkt)
    except (ValueError, av.error.FFmpegError) as e:
        if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
            raise  # the disk, not the packet
        rep.lost += 1
        return
    rep.copied += 1
    if dts is not None:
        last[idx] = dts


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

