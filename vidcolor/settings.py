"""Every user setting and its default, in one place.

The CLI (:mod:`vidcolor.cli`), the library (:func:`vidcolor.colorize_video`,
:func:`vidcolor.colorize_frames`) and ``vidcolor batch`` (local workers and
Ray) all read these. The module imports nothing heavy (no torch, no PyAV), so
the CLI can show its help and reject a bad option before loading the model.

- :class:`Settings`: everything that changes the colours (recorded in a job's
  manifest, so a resume with other settings is refused).
- :class:`EncodeOptions`: how the colour video is encoded.
- :class:`RunOptions`: one video run: the two above plus segments,
  deinterlacing and what to do with an existing output or job. A batch colours
  every file with one ``RunOptions``.

Training settings are not here: :class:`vidcolor.train.TrainConfig` belongs to
``scripts/train.py``, not to a colouring run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import VidcolorError

DEFAULT_BATCH = 8
DEFAULT_RENDER = 256
DEFAULT_SEGMENT = 240
DEFAULT_CHUNK = 2400  # frames per Ray chunk: ten default segments, 100 s of film at 24 fps
# Chosen on the dev split (docs/quality.md, "Readout temperature"): PSNR +1.3 dB over grey, 0.87 of the colour.
DEFAULT_TEMPERATURE = 0.38
# For frames given colour hints (a reference or pins): the hints settle the likely colours,
# so a warmer readout averages away the rest of the guesses. On the 278 dev photos with 10
# pins: T=0.38 gives 26.77 dB, 0.55 27.03, 0.7 27.18 (colour 0.885), 0.85 27.27 but colour
# 0.862, below the automatic output's 0.865 (docs/quality.md, "Guided colour").
DEFAULT_GUIDED_TEMPERATURE = 0.7
DEFAULT_WINDOW = 3
DEFAULT_CUT_THRESHOLD = 0.5
# Shot-consistent colour on by default (issue 15): on the dev clips and on two sets of clips made
# fresh it lowered the ab warp error of window 3 on every clip (pooled 0.45x -> 0.40x of per-frame
# output on the dev clips) and kept PSNR within 0.1 dB of per-frame output
# (docs/lab-notes/2026-12-04-keyframes-default.md).
DEFAULT_KEYFRAMES = "auto"
# The global branch's scene vector steadied over the last second of a shot (vidcolor.context);
# opt-in: it costs some clips 0.06-0.07 dB (docs/lab-notes/2026-12-04-steady-scene-context.md).
DEFAULT_SCENE_CONTEXT = "off"

DEVICES = ("auto", "cpu", "cuda")
KEYFRAME_MODES = ("off", "auto")
CONTEXT_MODES = ("off", "steady")


@dataclass
class Settings:
    """Everything that changes the colours; recorded in checkpoints so resumes match."""

    weights: str | None = None
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH
    render_size: int = DEFAULT_RENDER
    temperature: float = DEFAULT_TEMPERATURE
    guided_temperature: float = DEFAULT_GUIDED_TEMPERATURE  # for frames a reference or pin reaches
    temporal_window: int = DEFAULT_WINDOW
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    references: tuple[str, ...] = ()  # "FRAME_INDEX=IMAGE" colour keyframes
    hints: str | None = None  # JSON file of {frame, x, y, rgb} colour pins
    keyframes: str = DEFAULT_KEYFRAMES  # "auto": carry each shot's keyframe colour with flow (vidcolor.keyframes)
    keyframe_every: int = 0  # with keyframes "auto": also a keyframe every N frames (0: at cuts and segment starts)
    scene_context: str = DEFAULT_SCENE_CONTEXT  # "steady": filter the global scene vector over frames

    def validate(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1 or self.batch_size > 1024:
            raise VidcolorError(f"--batch-size must be a whole number from 1 to 1024, got {self.batch_size!r}")
        for t in (self.temperature, self.guided_temperature):
            if not 0.01 <= t <= 5.0:
                raise VidcolorError(f"saturation temperature must be between 0.01 and 5, got {t}")
        if not 0.0 <= self.cut_threshold <= 1.0:
            raise VidcolorError(f"--cut-threshold must be between 0 and 1, got {self.cut_threshold}")
        if self.temporal_window < 0 or self.temporal_window > 64:
            raise VidcolorError(f"--temporal-window must be from 0 to 64, got {self.temporal_window}")
        if self.keyframes not in KEYFRAME_MODES:
            raise VidcolorError(f"--keyframes must be one of {', '.join(KEYFRAME_MODES)}, got {self.keyframes!r}")
        if self.scene_context not in CONTEXT_MODES:
            raise VidcolorError(f"--scene-context must be one of {', '.join(CONTEXT_MODES)}, "
                                f"got {self.scene_context!r}")
        if not isinstance(self.keyframe_every, int) or self.keyframe_every < 0:
            raise VidcolorError(f"--keyframe-every must be a whole number >= 0, got {self.keyframe_every!r}")


@dataclass
class EncodeOptions:
    """The video encoder's settings (``vidcolor video`` and the videos of a batch)."""

    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p, or yuv420p10le for >8-bit input when the codec allows
    threads: int = 0  # 0: the codec's own choice; recorded in job manifests so resumes match

    def as_dict(self) -> dict:
        return {"codec": self.codec, "crf": self.crf, "preset": self.preset, "pix_fmt": self.pix_fmt,
                "threads": self.threads}


@dataclass
class RunOptions:
    """How one video is run (and every file of a batch): colour, encoding, checkpoints, existing outputs."""

    settings: Settings = field(default_factory=Settings)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    segment_frames: int = DEFAULT_SEGMENT
    deinterlace: bool = False
    overwrite: bool = False
    restart: bool = False
