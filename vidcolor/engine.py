"""The batched colorization engine: frames in, ab at render size out, and the
composition of the input's own L with that ab: full-resolution RGB, or for
the YUV plane path (:mod:`vidcolor.yuv`) just the U,V planes.

CPU and CUDA share every line but three choices made in :class:`Engine`'s
constructor: fp16 autocast, pinned host buffers with non-blocking copies, and
channels_last. The only host/device sync per batch is the copy back in
:meth:`Engine.compose_l` or :meth:`Engine.compose_uv`.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .color import grey_to_l, lab_to_rgb, rgb_to_l
from .context import SceneContext
from .data import make_input
from .settings import DEFAULT_GUIDED_TEMPERATURE, DEFAULT_TEMPERATURE, Settings
from .errors import VidcolorError
from .model import Colorizer, fuse_conv_bn
from .weights import default_weights_path, load_model
from .yuv import YuvSpec, chroma, luma_to_l

DEVICES = ("auto", "cpu", "cuda")


def select_device(name: str = "auto") -> torch.device:
    """The one place the device is chosen. ``cuda`` without CUDA is an error, not a fallback."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise VidcolorError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VidcolorError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


def render_shape(h: int, w: int, render_size: int) -> tuple[int, int]:
    """Size at which colour is predicted: short side = render_size, sides multiples of 8."""
    s = render_size / min(h, w)
    return max(8, int(round(h * s / 8)) * 8), max(8, int(round(w * s / 8)) * 8)




@dataclass
class Prediction:
    """What the engine predicts for a batch, kept on the device for smoothing."""

    L: torch.Tensor   # (N, 1, h, w) L at render size, 0..100
    ab: torch.Tensor  # (N, 2, h, w) predicted ab at render size
    L_full: torch.Tensor | None = None  # (N, 1, H, W) the input's own L, kept for composition
    grey: list[np.ndarray | None] | None = None  # RGB frames: each one's plane if it is grey (grey_plane)


class Engine:
    """Batched inference of ab from L at a modest render size."""

    def __init__(self, model: Colorizer, device: str | torch.device = "auto", render_size: int = 256,
                 temperature: float = DEFAULT_TEMPERATURE, guided_temperature: float = DEFAULT_GUIDED_TEMPERATURE):
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.cuda = self.device.type == "cuda"
        if render_size < 16 or render_size > 4096:
            raise VidcolorError(f"--render-size must be between 16 and 4096, got {render_size}")
        self.render_size = render_size
        self.temperature = temperature
        self.guided_temperature = guided_temperature  # the readout of frames that are given hints
        # A fused copy: BatchNorm folded into the convolutions saves a pass over every layer's activations
        # (effdec runs 1.6x as fast on CPU, bench_model.py); the caller's model is left as it was.
        self.model = fuse_conv_bn(copy.deepcopy(model).eval()).to(self.device)
        if not self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _upload(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Stack (H, W, 3) uint8/uint16 frames into a (N, 3, H, W) float tensor on the device."""
        arr = np.stack(frames)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)  # torch has no uint16 arithmetic on every version
        t = torch.from_numpy(arr)
        if self.cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        x = t.permute(0, 3, 1, 2)
        x = x.float() / (255.0 if frames[0].dtype == np.uint8 else 65535.0)
        return x

    def _rgb_l(self, frames: list[np.ndarray], planes: list[np.ndarray | None]) -> torch.Tensor:
        """:meth:`full_l` of RGB ``frames``, given their :func:`grey_plane`: all grey goes through :meth:`grey_l`."""
        if all(p is not None for p in planes):
            return self.grey_l(planes)
        return rgb_to_l(self._upload(frames))

    def grey_l(self, planes: list[np.ndarray]) -> torch.Tensor:
        """Full-resolution L (N, 1, H, W) of grey frames, each given as one (H, W) uint8/uint16 plane
        (:func:`grey_plane`): a third of the RGB path's work and memory."""
        return grey_to_l(self._upload([p[..., None] for p in planes]).permute(0, 2, 3, 1))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def full_l(self, frames: list[np.ndarray], yuv: YuvSpec | None = None) -> torch.Tensor:
        """Full-resolution L (N, 1, H, W) on the device: of (H, W, 3) RGB frames, or with ``yuv``
        of (H, W) Y planes through its lookup table (no RGB conversion). RGB frames that are all
        grey (three equal channels) go through :meth:`grey_l`, as composition then does."""
        if yuv is None:
            return self._rgb_l(frames, [grey_plane(f) for f in frames])
        L = luma_to_l(frames, yuv)
        return L.pin_memory().to(self.device, non_blocking=True) if self.cuda else L

    def _render(self, L_full: torch.Tensor) -> torch.Tensor:
        h, w = render_shape(L_full.shape[-2], L_full.shape[-1], self.render_size)
        return F.interpolate(L_full, size=(h, w), mode="bilinear", antialias=True, align_corners=False)

    @torch.inference_mode()
    def render_l(self, frames: list[np.ndarray], yuv: YuvSpec | None = None) -> torch.Tensor:
        """L (N, 1, h, w) at render size, as the network sees it (for guide planning)."""
        return self._render(self.full_l(frames, yuv))

    def readout_temperature(self, hint_mask: torch.Tensor | None) -> float | torch.Tensor:
        """The automatic temperature, or per frame (N, 1, 1, 1) the guided one where a frame has hints."""
        if hint_mask is None:
            return self.temperature
        t = torch.where(_hinted(hint_mask), self.guided_temperature * self.model.guided_scale,
                        self.temperature)
        return t.view(-1, 1, 1, 1)

    @torch.inference_mode()
    def predict(self, frames: list[np.ndarray], hint_ab: torch.Tensor | None = None,
                hint_mask: torch.Tensor | None = None, yuv: YuvSpec | None = None,
                context: SceneContext | None = None, indices: Sequence[int] | None = None) -> Prediction:
        """Predict ab for same-sized frames (RGB, or Y planes with ``yuv``: see :meth:`full_l`).
        Hints, if given, are at render size. With ``context`` the frames are ``indices`` of one
        stream, and the global branch's vector is filtered over them (:mod:`vidcolor.context`)."""
        grey = [grey_plane(f) for f in frames] if yuv is None else None  # found once, kept for composition
        L_full = self._rgb_l(frames, grey) if grey is not None else self.full_l(frames, yuv)
        L = self._render(L_full)
        h, w = L.shape[-2:]
        if not self.model.pins_in_net:  # the net colours such frames automatically; guide.blend applies the pins
            hint_ab = hint_mask = None
        if hint_ab is not None:
            hint_ab, hint_mask = hint_ab.to(self.device), hint_mask.to(self.device)
        x = make_input(L, hint_ab, hint_mask)
        if not self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        bound = None
        if context is not None:
            hinted = [False] * len(frames) if hint_mask is None else _hinted(hint_mask).tolist()
            bound = context.bind(list(indices), tuple(L.shape[-2:]), hinted)
        with self._autocast(), (self.model.scene_context(bound) if bound is not None else contextlib.nullcontext()):
            out = self.model(x)
        if bound is not None:
            bound.commit()
        ab = self.model.decode_ab(out, self.readout_temperature(hint_mask))
        ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
        return Prediction(L=L, ab=ab.float().contiguous(), L_full=L_full, grey=grey)

    @torch.inference_mode()
    def compose_l(self, L: torch.Tensor, ab: torch.Tensor, dtype: np.dtype) -> list[np.ndarray]:
        """Full-resolution colour: L (N, 1, H, W) plus ab upsampled from render size, as arrays of ``dtype``
        (uint8 or uint16), shape (H, W, 3). L is the one :meth:`predict` already computed
        (``Prediction.L_full``), which saves converting every frame to L a second time."""
        L = L.to(self.device)
        ab_full = F.interpolate(ab.to(self.device), size=L.shape[-2:], mode="bilinear", align_corners=False)
        out = lab_to_rgb(torch.cat([L, ab_full], dim=1))
        if dtype == np.uint8:
            q = (out * 255.0 + 0.5).to(torch.uint8)
        else:
            q = (out * 65535.0 + 0.5).to(torch.int32)
        q = q.permute(0, 2, 3, 1).cpu().numpy()  # the one sync per batch
        if dtype == np.uint16:
            q = q.astype(np.uint16)
        return list(q)

    @torch.inference_mode()
    def compose_uv(self, L: torch.Tensor, ab: torch.Tensor, yuv: YuvSpec) -> list[tuple[np.ndarray, np.ndarray]]:
        """The plane path's composition: (U, V) planes at the chroma resolution of ``yuv.out_fmt``
        for full-resolution L (N, 1, H, W) and ab at render size; the Y plane stays the input's."""
        shape = yuv.chroma_shape(L.shape[-2], L.shape[-1])
        q = chroma(L.to(self.device), ab.to(self.device), yuv, shape).cpu().numpy()  # the one sync per batch
        q = q.astype(yuv.dtype)
        return [(x[0], x[1]) for x in q]


def grey_plane(img: np.ndarray) -> np.ndarray | None:
    """One channel of an (H, W, 3) frame whose three channels are equal (grey scans read as RGB), else None."""
    if img.ndim != 3 or img.shape[-1] != 3:
        return None
    if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])):
        return None
    return np.ascontiguousarray(img[..., 0])  # a copy: a view would keep the whole RGB frame alive


def _hinted(hint_mask: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which frames of a batch were given any hint."""
    return hint_mask.flatten(1).amax(dim=1) > 0


def is_out_of_memory(e: BaseException) -> bool:
    """True when the device (or the host) ran out of memory, whichever exception torch chose for it."""
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class OomGuard:
    """An :class:`Engine` whose batches halve when the device runs out of memory.

    The failed batch is split and retried, and later batches keep the size that
    worked, so every frame is still coloured: none is skipped or passed through
    grey. A single frame that does not fit is a :class:`VidcolorError`.
    ``warnings`` tells what happened. Everything else is the wrapped engine's.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.limit: int | None = None
        self.warnings: list[str] = []

    def __getattr__(self, name: str):  # noqa: ANN204 - everything but the two batched calls
        return getattr(self.engine, name)

    def _chunks(self, n: int, call):  # noqa: ANN001, ANN202
        parts, i = [], 0
        while i < n:
            size = min(n - i, self.limit or n)
            try:
                parts.append(call(i, i + size))
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
                if not is_out_of_memory(e):
                    raise
                if self.engine.cuda:
                    torch.cuda.empty_cache()
                dev = self.engine.device.type
                if size == 1:
                    raise VidcolorError(f"out of memory on {dev} even for a single frame; use a smaller "
                                        f"--render-size{' or --device cpu' if dev == 'cuda' else ''}") from None
                self.limit = size // 2
                self.warnings.append(f"out of memory on {dev} with a batch of {size} frames; "
                                     f"retried with batches of {self.limit}")
                continue
            i += size
        return parts

    @torch.inference_mode()
    def predict(self, frames: list[np.ndarray], hint_ab: torch.Tensor | None = None,
                hint_mask: torch.Tensor | None = None, yuv: YuvSpec | None = None,
                context: SceneContext | None = None, indices: Sequence[int] | None = None) -> Prediction:
        """:meth:`Engine.predict`, in smaller batches if need be (the scene context is committed
        only for the parts that succeed, so a retried part sees the same history)."""
        parts = self._chunks(len(frames), lambda i, j: self.engine.predict(
            frames[i:j], None if hint_ab is None else hint_ab[i:j], None if hint_mask is None else hint_mask[i:j],
            yuv, context, None if indices is None else indices[i:j]))
        if len(parts) == 1:
            return parts[0]
        return Prediction(L=torch.cat([p.L for p in parts]), ab=torch.cat([p.ab for p in parts]),
                          L_full=torch.cat([p.L_full for p in parts]),
                          grey=None if parts[0].grey is None else [g for p in parts for g in p.grey])

    def compose_l(self, L: torch.Tensor, ab: torch.Tensor, dtype: np.dtype) -> list[np.ndarray]:
        """:meth:`Engine.compose_l`, in smaller batches if need be."""
        return [x for p in self._chunks(len(L), lambda i, j: self.engine.compose_l(L[i:j], ab[i:j], dtype))
                for x in p]

    def compose_uv(self, L: torch.Tensor, ab: torch.Tensor, yuv: YuvSpec) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`Engine.compose_uv`, in smaller batches if need be."""
        return [x for p in self._chunks(len(L), lambda i, j: self.engine.compose_uv(L[i:j], ab[i:j], yuv))
                for x in p]


def engine_for(settings: Settings) -> tuple[OomGuard, Path]:
    """The engine a run with ``settings`` colours with (weights, device, render size, readout
    temperatures), after checking the settings; and the weights file it loaded."""
    settings.validate()
    wpath = Path(settings.weights) if settings.weights else default_weights_path()
    return OomGuard(Engine(load_model(wpath), settings.device, settings.render_size, settings.temperature,
                           settings.guided_temperature)), wpath
