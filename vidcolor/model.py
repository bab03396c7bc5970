"""Colorization networks: L (+ optional ab hints) -> ab.

Every network takes a 4-channel input: normalised L, hint a, hint b (both /110)
and a hint mask (1 where a hint is given). With an all-zero mask a network is a
plain automatic colorizer; with hints it spreads the given colours.

Two kinds of output:
- ``classify``: logits over quantized ab bins (Zhang et al. 2016). Read out with
  the annealed mean (:func:`decode_ab`), whose temperature is the saturation
  control: lower is more vivid.
- ``regress``: ab/110 directly (tanh), the baselines from the literature.

A network is fully described by its config dict, which is stored in every
checkpoint so that ``build_model(config)`` rebuilds it without other input.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .color import AB_SCALE, in_gamut_bins
from .effnet import EffDecNet
from .settings import DEFAULT_GUIDED_TEMPERATURE, DEFAULT_TEMPERATURE

ARCHS = ("vidcolor", "effdec", "conv", "fusion", "vgg", "resnet", "tiny")
DEFAULT_ARCH = "vidcolor"
IN_CH = 4


def cbr(cin: int, cout: int, stride: int = 1, dil: int = 1, k: int = 3) -> nn.Sequential:
    pad = dil * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dil, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, c: int, dil: int = 1):
        super().__init__()
        self.body = nn.Sequential(cbr(c, c, dil=dil),
                                  nn.Conv2d(c, c, 3, 1, dil, dilation=dil, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class GlobalFusion(nn.Module):
    """Image-level context (Iizuka 2016): pool, MLP, broadcast, fuse by 1x1 conv.

    Knowing 'this is a beach' or 'this is indoors' is what keeps skies blue and
    walls plausible; local filters alone cannot see it.
    """

    def __init__(self, c: int):
        super().__init__()
        # Set for the duration of a video batch (Colorizer.scene_context): filters the pooled features
        # over neighbouring frames so that a shot's context stays steady (vidcolor.context).
        self.g_filter: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.down = nn.Sequential(cbr(c, c, stride=2), cbr(c, c, stride=2))
        self.mlp = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, c), nn.ReLU(inplace=True))
        self.fuse = cbr(2 * c, c, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.down(x).mean(dim=(2, 3))
        if self.g_filter is not None:
            pooled = self.g_filter(pooled)
        g = self.mlp(pooled)
        return self.fuse(torch.cat([x, g[:, :, None, None].expand_as(x)], dim=1))


class VidColorNet(nn.Module):
    """Default: 1/4-resolution classifier with dilated context and global fusion.

    Stride-4 stem, the heavy lifting at 1/8 with growing dilation, a global
    branch, then one skip back to 1/4 where the bin logits are predicted. About
    1.3 GMAC at 256x256, so it stays real-time-ish on two CPU cores.
    """

    kind = "classify"

    def __init__(self, width: int = 32, n_bins: int = 244, blocks: int = 4):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 3 * width
        self.stem = nn.Sequential(cbr(IN_CH, c1, stride=2), cbr(c1, c2, stride=2), cbr(c2, c2))
        dils = [1, 2, 4, 1, 2, 4, 1, 2][:blocks]
        self.mid = nn.Sequential(cbr(c2, c3, stride=2), *[ResBlock(c3, d) for d in dils])
        self.glob = GlobalFusion(c3)
        self.reduce = cbr(c3 + c2, c2, k=1)
        self.up = nn.Sequential(cbr(c2, c2), cbr(c2, c2))
        self.head = nn.Conv2d(c2, n_bins, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        m = self.glob(self.mid(s))
        m = F.interpolate(m, size=s.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.up(self.reduce(torch.cat([m, s], dim=1))))


class ConvNet(nn.Module):
    """Wallner-style plain conv encoder to 1/8, then upsampling (regression)."""

    kind = "regress"

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.enc = nn.Sequential(cbr(IN_CH, w, 2), cbr(w, w), cbr(w, 2 * w, 2), cbr(2 * w, 2 * w),
                                 cbr(2 * w, 4 * w, 2), cbr(4 * w, 4 * w), cbr(4 * w, 4 * w))
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), cbr(4 * w, 2 * w),
                                 nn.Upsample(scale_factor=2, mode="nearest"), cbr(2 * w, w),
                                 nn.Conv2d(w, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class FusionNet(nn.Module):
    """Encoder, global-feature fusion layer, decoder (Iizuka / Deep Koalarization)."""

    kind = "regress"

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.enc = nn.Sequential(cbr(IN_CH, w, 2), cbr(w, 2 * w, 2), cbr(2 * w, 4 * w, 2), cbr(4 * w, 4 * w))
        self.glob = GlobalFusion(4 * w)
        self.dec = nn.Sequential(cbr(4 * w, 2 * w), nn.Upsample(scale_factor=2, mode="nearest"),
                                 cbr(2 * w, w), nn.Conv2d(w, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.glob(self.enc(x)))


class VGGNet(nn.Module):
    """VGG-16-style encoder (conv pairs + stride, to 1/8) with a tanh decoder on ab/128."""

    kind = "regress"
    ab_scale = 128.0

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        cin = IN_CH
        for i, c in enumerate([w, 2 * w, 4 * w, 8 * w]):
            n = 2 if i < 2 else 3
            for j in range(n):
                layers.append(cbr(cin, c, stride=2 if (j == 0 and 0 < i) else 1))
                cin = c
        self.enc = nn.Sequential(*layers)
        self.dec = nn.Sequential(cbr(8 * w, 4 * w), nn.Upsample(scale_factor=2, mode="nearest"),
                                 cbr(4 * w, 2 * w), nn.Conv2d(2 * w, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(cbr(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNetColor(nn.Module):
    """First three ResNet-18 stages (stem to 1/4, stages to 1/16) and an upsampling decoder."""

    kind = "regress"

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(IN_CH, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.l1 = nn.Sequential(BasicBlock(w, w, 1), BasicBlock(w, w, 1))
        self.l2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w, 1))
        self.l3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w, 1))
        self.dec = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), cbr(4 * w, 2 * w),
                                 nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), cbr(2 * w, w),
                                 nn.Conv2d(w, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.l3(self.l2(self.l1(self.stem(x)))))


class TinyNet(nn.Module):
    """A small BatchNorm CNN of the kind used on 32x32 inputs; full resolution, no striding."""

    kind = "regress"

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(cbr(IN_CH, w), cbr(w, w, dil=2), cbr(w, w, dil=4), cbr(w, w),
                                 nn.Conv2d(w, 2, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class IdentityNet(nn.Module):
    """No network at all (ab = 0): lets benchmarks time everything but the model."""

    kind = "regress"

    def __init__(self, width: int = 0):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 2, (x.shape[2] + 3) // 4, (x.shape[3] + 3) // 4)


_CLASSES = {"identity": IdentityNet, "vidcolor": VidColorNet, "effdec": EffDecNet, "conv": ConvNet, "fusion": FusionNet, "vgg": VGGNet,
            "resnet": ResNetColor, "tiny": TinyNet}


def default_config(arch: str = DEFAULT_ARCH) -> dict[str, Any]:
    """The config of an architecture at its default size."""
    if arch not in _CLASSES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    cfg: dict[str, Any] = {"arch": arch}
    if arch == "identity":
        return cfg
    if arch == "vidcolor":
        cfg.update(width=32, blocks=4, bin_step=10.0)
    elif arch == "effdec":
        cfg.update(width=64, bin_step=10.0)
    elif arch == "vgg":
        cfg.update(width=16)
    else:
        cfg.update(width=32)
    return cfg


class Colorizer(nn.Module):
    """A network plus what is needed to turn its output into ab units."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        arch = config["arch"]
        if arch not in _CLASSES:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        kwargs = {k: v for k, v in config.items() if k in ("width", "blocks", "lbranch")}
        if _CLASSES[arch].kind == "classify":
            bins = in_gamut_bins(config.get("bin_step", 10.0))
            kwargs["n_bins"] = len(bins)
            self.register_buffer("bins", bins, persistent=False)
            # Subtracted from the logits before the readout: alpha * log(w), w the class-rebalancing
            # loss weights the model was trained with. Rebalancing inflates rare, vivid bins (it is
            # what paints grey walls orange); taking part of it back at readout removes most of those
            # blotches. Zero (no change) unless the weights file carries one (weights.load_model).
            self.register_buffer("readout_bias", torch.zeros(len(bins)), persistent=False)
        self.net = _CLASSES[arch](**kwargs)
        self.kind = self.net.kind
        # The temperature folded into the last layer when the file was exported (train.export_weights),
        # or None: reading out at DEFAULT_TEMPERATURE then gives that temperature (weights.load_model).
        self.readout_temperature: float | None = None
        # Whether the product feeds pins and references to the net as hints. effdec honours a pin only
        # near it, which leaves the pin's correction (guide.spread) little to carry: on dev-120 it colours
        # better from its automatic output with the whole correction spread (+0.2 to +1.5 dB with 1 to 10
        # pins, docs/lab-notes/2026-12-08-pin-spread.md). A config may say otherwise ("pins_in_net").
        self.pins_in_net: bool = bool(config.get("pins_in_net", arch != "effdec"))

    @property
    def guided_scale(self) -> float:
        """What the product's guided temperature (DEFAULT_GUIDED_TEMPERATURE / saturation) is multiplied by
        before this model reads out a hinted frame. DEFAULT_GUIDED_TEMPERATURE names a file's own guided
        readout; a file with its temperature folded in was tuned at that one temperature, so hinted frames
        read at it too (the old net's guided 0.7 would be T 1.66 on the effdec file shipped 2026-12-07,
        past its best: dev-120 with 10 pins gave 25.73 dB and colour 0.667, against 25.86 and 0.765)."""
        return DEFAULT_TEMPERATURE / DEFAULT_GUIDED_TEMPERATURE if self.readout_temperature else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @contextlib.contextmanager
    def scene_context(self, g_filter: Callable[[torch.Tensor], torch.Tensor] | None) -> Iterator[bool]:
        """Within the block, the global branch's pooled features (N, C) go through ``g_filter``
        (:class:`vidcolor.context.SceneContext`); yields False for a network without that branch."""
        mods = [m for m in self.net.modules() if hasattr(m, "g_filter")]  # GlobalFusion, effnet.SceneVector
        for m in mods:
            m.g_filter = g_filter
        try:
            yield bool(mods)
        finally:
            for m in mods:
                m.g_filter = None

    def decode_ab(self, out: torch.Tensor, temperature: float | torch.Tensor = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """Network output -> ab in Lab units, shape (N, 2, h, w).

        For classifiers this is the annealed mean: softmax(log p / T) weighted
        mean of bin centres. T=1 is the (dull) mean, T->0 the (noisy) mode.
        ``temperature`` may be a tensor of shape (N, 1, 1, 1): one per image.
        """
        if self.kind == "regress":
            return out.float() * getattr(self.net, "ab_scale", AB_SCALE)
        # Bins last: contiguous for channels_last output (the CPU layout), so softmax and the
        # weighted mean run as one row-wise softmax and one matmul (about 2x faster than einsum).
        t = torch.as_tensor(temperature, dtype=torch.float32, device=out.device).clamp_min(1e-3)
        logits = (out.float().permute(0, 2, 3, 1) - self.readout_bias) * t.reciprocal()
        p = torch.softmax(logits, dim=-1)
        return (p @ self.bins.to(p)).permute(0, 3, 1, 2)


def build_model(config: dict[str, Any]) -> Colorizer:
    """Rebuild a model from the config dict stored in a checkpoint."""
    return Colorizer(config)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the convolution before it, in place, for inference only: the same
    output to float rounding, without a pass over each layer's activations. Pairs are consecutive
    children of an ``nn.Sequential`` and the (conv, norm) attributes a module names in ``FUSE_PAIRS``
    (EfficientNet-Lite's blocks). The model must be in eval mode; its state dict changes shape, so
    never train or save a fused model (the engine fuses a copy)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for m in list(model.modules()):
        pairs = list(getattr(m, "FUSE_PAIRS", ()))
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            pairs += list(zip(names, names[1:]))
        for conv, norm in pairs:
            c, n = getattr(m, conv, None), getattr(m, norm, None)
            if isinstance(c, nn.Conv2d) and isinstance(n, nn.BatchNorm2d):
                setattr(m, conv, fuse_conv_bn_eval(c, n))
                setattr(m, norm, nn.Identity())
    return model


def count_macs(model: nn.Module, size: int = 256) -> int:
    """Multiply-accumulates of one forward pass at size x size (convs and linears)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):  # noqa: ANN001
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m: nn.Linear, inp, out):  # noqa: ANN001
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, IN_CH, size, size))
    model.train(was)
    for h in hooks:
        h.remove()
    return total
