"""EnlightenGAN (Jiang et al. 2021; seed 004): attention-guided U-Net generator, global/local discriminators.

Generator: the input is RGB mapped to [-1, 1] plus the self-regularized attention map A = 1 - gray(x)
(dark pixels get large weights). A U-Net with `depth` 2x max-pool levels (widths width * 2**l; each
level two conv3x3 + BatchNorm + LeakyReLU(0.2)); the up path upsamples bilinearly, convolves, and
concatenates the skip features multiplied by A (max-pooled to the level's size); the bottleneck
features are multiplied by A too. The output residual (1x1 conv to 3 channels) is multiplied by A and
added to the input: y = x + A * r (in [-1, 1]), returned in [0, 1] as (y + 1) / 2 (enhance clamps).
The official model uses widths 32..512 (width=32); the default width 16 keeps it trainable on a CPU.

output="value_gain" (config key; weights without it are "rgb", the paper's residual above): the 1x1 conv gives
one map r, multiplied by A, and only the value V = max(r, g, b) changes: V' = sigmoid(logit(V) + A * r), and R, G,
B are all scaled by V' / V. Chromaticity (r, g, b) / (r + g + b), hue and saturation stay the input's at every
pixel, and no channel reaches 1 (V' < 1): the generator can brighten, shape the tone curve locally and add
contrast, but it cannot paint a colour. Near black V' / V is about exp(A * r) (the gain), near 1 it rolls off to
1. Why: the RGB residual x + A * r can add any colour wherever the input is dark; trained against well-exposed
SICE frames it painted flat green/olive blobs and cyan skies into real night photos (colour shift 0.24,
docs/real-eval.md).
The shift A * r is guided-filtered with log V as the guide before it is applied (smooth_shift), so the gain has
edges only where the input has them: the coarsest U-Net level draws regions of lower gain whose borders follow
no edge of the input (a dark wavy band or ring in a uniform night sky).

Any H, W: the input is padded at the bottom/right to a multiple of 2**depth (reflection, or edge
replication where the image is smaller than the pad) and the output cropped back.
receptive_radius = 0: the U-Net's field spans hundreds of pixels and its pooling grid is tied to the
image origin, so tiles would not reproduce the whole-image result; the model runs on the whole image.

Discriminators (PatchGAN, no normalization, LeakyReLU(0.2), 4x4 convs): the global one sees the whole
image (5 stride-2 layers), the local one 32x32 patches cut by `random_patches` (3 stride-2 layers).
Both take images in [0, 1] and return a map of real/fake logits.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from .base import Model
from ._common import check_output, check_rgb, luminance


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2),
    )


def _pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    H, W = x.shape[2:]
    ph, pw = -H % m, -W % m
    if ph == 0 and pw == 0:
        return x
    # reflection needs pad < size; a tiny image (smaller than the pad) repeats its edge instead
    mode = "reflect" if ph < H and pw < W else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


OUTPUTS = ("rgb", "value_gain")
_EPS = 1e-4
# The gain (logit shift) is guided-filtered with log V as the guide (see smooth_shift): the window radius in px
# (the generator's false gain edges are a few px sharp lines on a ramp of about 40 px) and eps in (log V)^2: input
# edges of more than about 10 % contrast keep their own gain, smoother ramps (a sky gradient, noise) do not.
SHIFT_RADIUS = 16
SHIFT_EPS = 0.01
SHIFT_SCALE = 4  # the filter's coefficients are fitted at 1/4 resolution (smooth_shift)


def value_gain(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W) in [0, 1] with its value V = max(r, g, b) moved to sigmoid(logit(V) + shift) (shift:
    (B, 1, H, W)); every channel is scaled by the same factor, so chromaticity and saturation are kept."""
    v = x.amax(1, keepdim=True).clamp(_EPS, 1 - _EPS)
    return x * (torch.sigmoid(torch.logit(v) + shift) / v)


def _box(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window, clipped to the image (separable, padding not counted)."""
    k = 2 * radius + 1
    t = F.avg_pool2d(t, (k, 1), 1, (radius, 0), count_include_pad=False)
    return F.avg_pool2d(t, (1, k), 1, (0, radius), count_include_pad=False)


def smooth_shift(shift: torch.Tensor, x: torch.Tensor, radius: int = SHIFT_RADIUS, eps: float = SHIFT_EPS,
                 scale: int = SHIFT_SCALE) -> torch.Tensor:
    """The generator's shift (B, 1, H, W) made a locally linear function of log V of x (B, 3, H, W) (He et al.'s
    guided filter): where the input is flat the shift is averaged over the window, at the input's edges it keeps
    its own step. Why: the U-Net's coarsest level (1/16 scale) decides regions of lower gain (around a bright
    horizon, say) whose borders, sharpened by the up path, follow no edge of the input: a dark wavy band or ring
    across a uniform night sky. Those borders are gain edges where log V is flat, which this removes.
    The linear coefficients are fitted on `scale`x area-averaged maps and upsampled (He and Sun's fast guided
    filter): 1 / scale^2 of the cost, and the shift is smooth at that scale where it matters."""
    H, W = shift.shape[2:]
    g = x.amax(1, keepdim=True).clamp_min(_EPS).log()
    ph, pw = -H % scale, -W % scale
    gp, pp = (F.pad(t, (0, pw, 0, ph), mode="replicate") for t in (g, shift))
    gs, ps, r = F.avg_pool2d(gp, scale), F.avg_pool2d(pp, scale), max(1, radius // scale)
    mg, mp = _box(gs, r), _box(ps, r)
    var = (_box(gs * gs, r) - mg * mg).clamp_min(0)
    a = (_box(gs * ps, r) - mg * mp) / (var + eps)
    a, b = (F.interpolate(_box(t, r), scale_factor=scale, mode="bilinear", align_corners=False)[:, :, :H, :W]
            for t in (a, mp - a * mg))
    return a * g + b


class EnlightenGANGenerator(Model):
    """forward: (B, 3, H, W) in [0, 1] -> (B, 3, H, W) (≈ [0, 1], not clamped; enhance clamps)."""

    receptive_radius = 0  # see the module docstring: runs on the whole image
    bytes_per_pixel = 330  # its peak at width 16, depth 4: 309 B per pixel over 3-12 MP photos, + margin

    def __init__(self, width: int = 16, depth: int = 4, output: str = "rgb"):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
        self.config = {"width": int(width), "depth": int(depth), "output": check_output(output, OUTPUTS)}
        ch = [width * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(4, ch[0])] + [_double_conv(ch[i - 1], ch[i]) for i in range(1, depth + 1)])
        self.up_conv = nn.ModuleList([nn.Conv2d(ch[i], ch[i - 1], 3, padding=1) for i in range(depth, 0, -1)])
        self.up = nn.ModuleList([_double_conv(2 * ch[i - 1], ch[i - 1]) for i in range(depth, 0, -1)])
        self.out = nn.Conv2d(ch[0], 3 if output == "rgb" else 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rgb(x, "EnlightenGANGenerator")
        H, W = x.shape[2:]
        x = _pad_to_multiple(x, 2 ** self.config["depth"])
        attention = 1 - luminance(x)
        atts = [attention]
        h = self.down[0](torch.cat([x * 2 - 1, attention], 1))
        feats = [h]
        for block in self.down[1:]:
            atts.append(F.max_pool2d(atts[-1], 2))
            h = block(F.max_pool2d(h, 2))
            feats.append(h)
        h = feats.pop() * atts.pop()
        # Each full-size temporary is dropped as soon as it is used (the skip features popped, the up
        # convolution's output only inside the concatenation): 462 -> 309 bytes per pixel, 12 MP 5.9 -> 4.0 GB.
        for conv, block in zip(self.up_conv, self.up):
            h = torch.cat([conv(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)),
                           feats.pop() * atts.pop()], 1)
            h = block(h)
        r = self.out(h) * attention
        del h
        if self.config["output"] == "value_gain":
            return value_gain(x, smooth_shift(r, x))[:, :, :H, :W]
        return ((x * 2 - 1 + r + 1) / 2)[:, :, :H, :W]

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Inference only (no autograd); exposure and iterations are ignored."""
        return self(x).clamp(0, 1)


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) in [0, 1] -> (B, 1, h, w) logits: `layers` stride-2 4x4 convs, then two stride-1 ones."""

    def __init__(self, in_channels: int = 3, width: int = 32, layers: int = 5):
        super().__init__()
        self.config = {"in_channels": int(in_channels), "width": int(width), "layers": int(layers)}
        mods, cin = [], in_channels
        for i in range(layers):
            cout = width * 2 ** min(i, 3)
            mods += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        cout = width * 2 ** min(layers, 3)
        mods += [nn.Conv2d(cin, cout, 4, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cout, 1, 4, padding=1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def global_discriminator(width: int = 32) -> PatchDiscriminator:
    return PatchDiscriminator(3, width, layers=5)


def local_discriminator(width: int = 32) -> PatchDiscriminator:
    return PatchDiscriminator(3, width, layers=3)


def random_patches(images: torch.Tensor, count: int = 5, size: int = 32,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` random size x size crops per image: (B, C, H, W) -> (B * count, C, size, size)."""
    B, C, H, W = images.shape
    if size > H or size > W:
        raise ValueError(f"patch size {size} exceeds the image size {H}x{W}")
    top = torch.randint(0, H - size + 1, (B, count), generator=generator).tolist()
    left = torch.randint(0, W - size + 1, (B, count), generator=generator).tolist()
    return torch.stack([images[b, :, t:t + size, l:l + size]
                        for b in range(B) for t, l in zip(top[b], left[b])])
