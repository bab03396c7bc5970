"""Real-input files for the test matrix and the fuzzer, made with the ``ffmpeg`` command as users' files are.

Each :class:`Source` is a tiny clip (about a second, 64x48 to 160x120) written by an ffmpeg command line;
:func:`make` builds it (and any damage) in a folder. :func:`expected` reads what the input holds
with PyAV, and :func:`check_output` compares an output with it: frame count, pts, size, and the
audio/subtitle packets (bytes and times), and that every output frame decodes.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

FFMPEG = shutil.which("ffmpeg")
GREY = "format=gray,format={pix}"


@dataclass(frozen=True)
class Source:
    """One matrix entry: how to make the input, and what the output should be."""

    name: str
    ext: str  # the input's extension
    video: tuple[str, ...]  # ffmpeg output options for the video (codec, pixel format...)
    size: str = "96x64"
    rate: str = "24"
    seconds: float = 1.0
    audio: tuple[tuple[str, ...], ...] = (("-c:a", "aac"),)  # one tuple of encoder options per audio track
    extra: tuple[str, ...] = ()  # more ffmpeg output options (container, metadata...)
    vf: str = ""  # extra filter before the grey conversion
    pix: str = "yuv420p"
    subtitles: str | None = None  # subtitle codec (srt, ass, mov_text...)
    out: str = ".mkv"  # the output extension vidcolor is asked for
    damage: str | None = None  # "head", "tail", "middle": bytes cut or zeroed after writing
    exits: tuple[int, ...] = (0,)  # acceptable exit codes
    says: str = ""  # words the one error line must hold, when the run must fail
    cover: bool = False  # a one-picture MJPEG video stream stored before the film's (a cover, a thumbnail)
    options: tuple[str, ...] = ()  # more vidcolor options (an output codec...)
    tags: dict = field(default_factory=dict, hash=False)


SUBS = "1\n00:00:00,000 --> 00:00:00,500\nfirst line\n\n2\n00:00:00,500 --> 00:00:00,900\nsecond line\n"


def command(src: Source, dest: Path) -> list[str]:
    """The ffmpeg command line that writes ``src`` to ``dest``."""
    vf = ",".join(x for x in (src.vf, GREY.format(pix=src.pix)) if x)
    cmd = [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={src.size}:rate={src.rate}:duration={src.seconds}"]
    for k, _ in enumerate(src.audio):
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={440 * (k + 1)}:sample_rate=48000:duration={src.seconds}"]
    if src.subtitles:
        srt = dest.with_suffix(".srt")
        srt.write_text(SUBS)
        cmd += ["-i", str(srt)]
    cmd += ["-map", "0:v"]
    for k, _ in enumerate(src.audio):
        cmd += ["-map", f"{k + 1}:a"]
    if src.subtitles:
        cmd += ["-map", f"{len(src.audio) + 1}:s", "-c:s", src.subtitles]
    cmd += ["-vf", vf, *src.video]
    for k, opts in enumerate(src.audio):
        cmd += [o.replace(":a", f":a:{k}") if o.startswith("-c:a") or o.startswith("-b:a") else o for o in opts]
    return [*cmd, *src.extra, str(dest)]


class MissingEncoder(RuntimeError):
    """This ffmpeg build lacks an encoder the entry needs (Debian's has them all)."""


def make(src: Source, folder: Path) -> Path:
    """Write ``src``'s input file into ``folder`` (damaged as it says) and return its path."""
    dest = folder / f"{src.name}{src.ext}"
    r = subprocess.run(command(src, dest), capture_output=True, text=True)
    if r.returncode:
        kind = MissingEncoder if "Unknown encoder" in r.stderr or "not found" in r.stderr else RuntimeError
        raise kind(f"ffmpeg failed for {src.name}: {r.stderr.strip()[-500:]}")
    if src.tags.get("rotation"):
        rotate(dest)
    if src.tags.get("chapters"):
        add_chapters(dest, src.tags["chapters"])
    if src.cover:
        add_cover(dest)
    if src.damage:
        damage(dest, src.damage)
    return dest


def remux(path: Path, edit: Callable[[av.container.InputContainer, av.container.OutputContainer, dict], None]) -> None:
    """Copy ``path``'s streams, tags and packets into a new file of the same kind, with ``edit(src, out, streams)``
    applied before the first packet (``streams`` maps input index to output stream), and put it in place."""
    tmp = path.with_name(f"tmp-{path.name}")
    with av.open(str(path)) as src, av.open(str(tmp), "w") as out:
        out.metadata.update(src.metadata)
        copies = {}
        for s in src.streams:
            copies[s.index] = out.add_stream_from_template(s)
            copies[s.index].metadata.update(s.metadata)
            copies[s.index].disposition = s.disposition
        edit(src, out, copies)
        for pk in src.demux():
            if pk.size:  # not the demuxer's empty flush packets (Matroska leaves dts unset on B-frames)
                pk.stream = copies[pk.stream.index]
                out.mux(pk)
    tmp.replace(path)


def rotate(path: Path, degrees: int = 90) -> None:
    """Give the video a display rotation, as phones do (ffmpeg 5 cannot set one on output)."""
    remux(path, lambda src, out, streams: streams[src.streams.video[0].index].set_display_rotation(degrees))


def add_chapters(path: Path, chapters: list[tuple[float, str]]) -> None:
    """Give the file chapters at (start seconds, title), each ending where the next starts (ffmpeg's
    command line can only take them from a second, metadata input)."""
    def edit(src: av.container.InputContainer, out: av.container.OutputContainer, streams: dict) -> None:
        ends = [t for t, _ in chapters[1:]] + [float(src.duration or 0) / av.time_base]
        out.set_chapters([{"id": k + 1, "start": int(t * 1000), "end": int(e * 1000), "time_base": Fraction(1, 1000),
                           "metadata": {"title": name}} for k, ((t, name), e) in enumerate(zip(chapters, ends))])
    remux(path, edit)


def add_cover(path: Path) -> None:
    """Store a one-picture MJPEG video stream in front of the film's, as some taggers do."""
    tmp = path.with_name(f"tmp-{path.name}")
    r = subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(path), "-f", "lavfi", "-i", "color=c=gray:s=64x48:d=0.04",
                        "-map", "1:v", "-map", "0", "-c", "copy", "-c:v:0", "mjpeg", str(tmp)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ffmpeg could not add a cover to {path}: {r.stderr.strip()[-300:]}")
    tmp.replace(path)


def damage(path: Path, how: str) -> None:
    """Cut the head or tail off ``path``, or zero a stretch in its middle, as copies and disks do."""
    data = bytearray(path.read_bytes())
    n = len(data)
    if how == "tail":
        data = data[: n * 7 // 10]
    elif how == "head":
        data = data[n // 5:]
    elif how == "middle":
        data[n // 2: n // 2 + 2048] = bytes(2048)
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))


def _payload(b: bytes) -> bytes:
    """A packet's bytes without an ADTS header: AAC from MPEG-TS carries one, which mp4 and Matroska
    keep in the stream's extradata instead (FFmpeg's muxers move it there); the audio itself is the same."""
    if len(b) > 9 and b[0] == 0xFF and b[1] & 0xF6 == 0xF0:
        return b[7 if b[1] & 1 else 9:]
    return b


def _side(c: av.container.InputContainer) -> list[list[tuple[bytes, Fraction]]]:
    """Per audio/subtitle stream, its packets' bytes and pts in seconds (exact fractions)."""
    keep = [s for s in c.streams if s.type in ("audio", "subtitle")]
    out: dict[int, list] = {s.index: [] for s in keep}
    if keep:
        for p in c.demux(keep):
            # mp4's muxer ends a text track with an empty cue of its own (two zero bytes): not a packet of the input
            if p.size and p.pts is not None and bytes(p) != b"\x00\x00":
                out[p.stream.index].append((_payload(bytes(p)), p.pts * p.time_base))
    return [out[s.index] for s in keep]


def film_index(path: Path) -> int:
    """Which of the file's video streams is the film (counted among video streams): the one with
    the most packets, so a one-picture cover stored first is not it."""
    with av.open(str(path)) as c:
        counts = [0] * len(c.streams.video)
        pos = {s.index: k for k, s in enumerate(c.streams.video)}
        for p in c.demux(c.streams.video):
            if p.size:
                counts[pos[p.stream.index]] += 1
    return max(range(len(counts)), key=lambda k: (counts[k], -k))


def read(path: Path) -> dict:
    """What a file holds: video frame times (decoded, in seconds), size, bit depth, rotation, packets that
    fail to decode, the audio/subtitle packets, and the coarsest time base (a tolerance for times)."""
    times, errors = [], 0
    with av.open(str(path)) as c:
        v = c.streams.video[film_index(path)]
        size = (v.codec_context.width, v.codec_context.height)
        sar = v.sample_aspect_ratio or v.codec_context.sample_aspect_ratio  # the container's, else the codec's
        fmt = v.codec_context.format
        depth = max(comp.bits for comp in fmt.components) if fmt else 8
        tick = max([v.time_base] + [s.time_base for s in c.streams if s.type in ("audio", "subtitle")])
        rotation = 0
        for p in c.demux(v):
            try:
                for f in p.decode():
                    times.append(f.pts * f.time_base)
                    rotation = rotation or int(f.rotation)
            except av.error.FFmpegError:
                errors += 1
    with av.open(str(path)) as c:
        side = _side(c)
        kept = [s for s in c.streams if s.type in ("audio", "subtitle")]
        described = {"title": c.metadata.get("title"),
                     "timecode": {k.lower(): v for k, v in c.streams.video[0].metadata.items()}.get("timecode"),
                     "languages": [s.metadata.get("language") for s in kept],
                     "default": [bool(s.disposition & av.stream.Disposition.default) for s in kept],
                     "chapters": [(round(float(ch["start"] * ch["time_base"]), 3), ch["metadata"].get("title"))
                                  for ch in c.chapters()]}
    return {"times": times, "size": size, "depth": depth, "rotation": rotation, "errors": errors, "side": side,
            "tick": tick, "sar": sar, **described}


def check_output(inp: dict, out: dict) -> list[str]:
    """What differs between an undamaged input and its output (an empty list when all is kept).

    Times may differ by up to the coarser file's time base: a container with a coarser clock than
    the input's (Matroska's 1 ms) rounds them."""
    tick = max(inp["tick"], out["tick"])
    bad = []
    if out["errors"]:
        bad.append(f"{out['errors']} output packets do not decode")
    if len(out["times"]) != len(inp["times"]):
        bad.append(f"{len(out['times'])} frames out, {len(inp['times'])} in")
    elif any(abs(a - b) > tick for a, b in zip(sorted(inp["times"]), sorted(out["times"]))):
        bad.append("frame times differ")
    for key in ("size", "depth", "rotation"):
        if out[key] != inp[key]:
            bad.append(f"{key} {out[key]} out, {inp[key]} in")
    if len(out["side"]) != len(inp["side"]):
        bad.append(f"{len(out['side'])} audio/subtitle streams out, {len(inp['side'])} in")
    for k, (a, b) in enumerate(zip(inp["side"], out["side"])):
        if [x[0] for x in a] != [x[0] for x in b]:
            # PCM has no packets of its own: the mov demuxer reads it back in chunks of its choosing,
            # so the same samples must come out, starting at the same time
            if b"".join(x[0] for x in a) == b"".join(x[0] for x in b) and a and abs(a[0][1] - b[0][1]) <= tick:
                continue
            bad.append(f"audio/subtitle stream {k}: packet bytes differ ({len(a)} in, {len(b)} out)")
        elif any(abs(x[1] - y[1]) > tick for x, y in zip(a, b)):
            bad.append(f"audio/subtitle stream {k}: packet times differ")
    return bad


def check_damaged_output(inp: Path, out: dict) -> list[str]:
    """For damaged input that vidcolor coloured: the output decodes fully, and every audio/subtitle packet
    in it is one of the input's (copied, not re-encoded or invented)."""
    bad = [f"{out['errors']} output packets do not decode"] if out["errors"] else []
    if not out["times"]:
        bad.append("no frames in the output")
    src: set[bytes] = set()
    with av.open(str(inp)) as c:
        try:
            for stream in _side(c):
                src |= {x[0] for x in stream}
        except av.error.FFmpegError:
            pass  # read up to the damage, as vidcolor does
    for k, stream in enumerate(out["side"]):
        if any(x[0] not in src for x in stream):
            bad.append(f"audio/subtitle stream {k} has packets that are not the input's")
    return bad

X264 = ("-c:v", "libx264", "-preset", "veryfast")
MATRIX: list[Source] = [
    # Matroska's usual 1/1000 time base, 23.976 fps, AC-3: the crash (needs > 50 frames to reach it)
    Source("mkv_ms_ac3", ".mkv", ("-c:v", "libx264"), size="64x48", rate="24000/1001", seconds=3,
           audio=(("-c:a", "ac3"),)),
    Source("mkv_ms_ac3_to_mp4", ".mkv", ("-c:v", "libx264"), size="64x48", rate="24000/1001", seconds=3,
           audio=(("-c:a", "ac3"),), out=".mp4"),
    Source("ts_bframes_offset", ".ts", (*X264, "-bf", "3"), extra=("-output_ts_offset", "10"),
           audio=(("-c:a", "mp2"),)),
    Source("ts_aac_to_mp4", ".ts", (*X264, "-bf", "2"), out=".mp4"),
    Source("mov_pcm", ".mov", X264, audio=(("-c:a", "pcm_s16le"),), out=".mov"),
    Source("webm_vp9_opus", ".webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"),
           audio=(("-c:a", "libopus"),)),
    Source("avi_mpeg4_mp3", ".avi", ("-c:v", "mpeg4", "-q:v", "5"), audio=(("-c:a", "libmp3lame"),)),
    Source("mjpeg_mov", ".mov", ("-c:v", "mjpeg", "-q:v", "5"), pix="yuvj420p", audio=(("-c:a", "pcm_s16le"),),
           out=".mov"),
    Source("h264_10bit", ".mp4", (*X264, "-pix_fmt", "yuv420p10le"), pix="yuv420p10le", out=".mp4",
           tags={"depth": 10}),
    Source("hevc_10bit", ".mkv", ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"),
           pix="yuv420p10le", tags={"depth": 10}),
    Source("mpeg2_interlaced", ".mpg", ("-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1", "-q:v", "4"),
           vf="tinterlace=interleave_top", rate="50", audio=(("-c:a", "mp2"),)),
    # raw DV from tape transfers: FFmpeg 7's demuxer gives 60000 fps as its average rate, which made mp4 fail
    Source("dv_pal_to_mp4", ".dv", ("-target", "pal-dv"), size="720x576", rate="25", audio=(("-c:a", "pcm_s16le"),),
           out=".mp4"),
    # anamorphic pixels (PAL DV's 16:15): in H.264 the bitstream also says so; ProRes has only the container
    Source("anamorphic_mkv", ".mkv", X264, vf="setsar=16/15", tags={"sar": Fraction(16, 15)}),
    Source("anamorphic_prores", ".mov", ("-c:v", "prores_ks"), pix="yuv422p10le", vf="setsar=16/15", out=".mov",
           options=("--codec", "prores_ks"), audio=(("-c:a", "pcm_s24le"),), tags={"sar": Fraction(16, 15), "depth": 10}),
    Source("vfr", ".mp4", X264, vf="select='not(eq(mod(n\\,3)\\,2))'", extra=("-fps_mode", "vfr"), out=".mp4"),
    Source("rotated", ".mp4", X264, out=".mp4", tags={"rotation": 90}),
    Source("no_audio", ".mp4", X264, audio=(), out=".mp4"),
    # outputs that cannot hold a stream as it is: one line that says so and names a container that can
    Source("pcm_to_mp4", ".mov", X264, audio=(("-c:a", "pcm_s16le"),), out=".mp4"),
    Source("srt_to_mp4", ".mkv", X264, subtitles="srt", out=".mp4", exits=(1,),
           says=".mp4 files cannot hold the input's subtitle stream #2 (srt)"),
    # a scan's or camera's timecode: the mov muxer writes its tmcd track from the video's tag
    Source("timecode_mov", ".mov", X264, extra=("-timecode", "01:02:03:04"), out=".mov",
           tags={"timecode": "01:02:03:04"}),
    # the film is the second video stream: a cover picture comes first; colour the film, and say the cover is left out
    Source("cover_first_mkv", ".mkv", X264, cover=True),
    Source("mov_text_to_mkv", ".mp4", X264, subtitles="mov_text", exits=(1,),
           says=".mkv files cannot hold the input's subtitle stream #2 (mov_text)"),
    Source("h264_to_webm", ".mp4", X264, audio=(("-c:a", "libopus"),), out=".webm", exits=(1,),
           says=".webm files cannot hold libx264 video"),
    Source("two_audio", ".mkv", X264, audio=(("-c:a", "aac"), ("-c:a", "ac3"))),
    # what an archive's files say about themselves: title, track languages, which track plays first, chapters
    Source("described_mkv", ".mkv", X264, audio=(("-c:a", "aac"), ("-c:a", "ac3")), subtitles="srt",
           extra=("-metadata", "title=Reel 7", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
                  "-metadata:s:s:0", "language=ger", "-disposition:a:0", "0", "-disposition:a:1", "default"),
           tags={"title": "Reel 7", "languages": ["eng", "fra", "ger"], "default": [False, True, False],
                 "chapters": [(0.0, "Opening"), (0.5, "Second")]}),
    Source("described_to_mp4", ".mkv", X264, audio=(("-c:a", "aac"), ("-c:a", "aac")), out=".mp4",
           extra=("-metadata", "title=Reel 7", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
                  "-disposition:a:0", "0", "-disposition:a:1", "default"),
           tags={"title": "Reel 7", "languages": ["eng", "fra"], "default": [False, True],
                 "chapters": [(0.0, "Opening"), (0.5, "Second")]}),
    Source("subtitles_mkv", ".mkv", X264, subtitles="srt"),
    Source("subtitles_mp4", ".mp4", X264, subtitles="mov_text", out=".mp4"),
    Source("odd_size", ".mkv", X264, size="63x47", pix="yuv444p"),
    Source("tiny", ".mkv", X264, size="8x8", pix="yuv444p"),
    Source("cut_tail_mp4", ".mp4", X264, extra=("-movflags", "+faststart"), damage="tail", out=".mp4",
           exits=(0, 4)),
    Source("cut_tail_mkv", ".mkv", ("-c:v", "libx264"), size="64x48", rate="24000/1001", seconds=3,
           audio=(("-c:a", "ac3"),), damage="tail", exits=(0, 4)),
    Source("cut_head_ts", ".ts", (*X264, "-g", "6"), damage="head", exits=(0, 4)),
    Source("cut_head_mp4", ".mp4", X264, damage="head", out=".mp4", exits=(2,)),
    Source("corrupt_middle_ts", ".ts", X264, damage="middle", exits=(0, 4)),
    Source("corrupt_middle_mkv", ".mkv", X264, damage="middle", exits=(0, 4)),
]
