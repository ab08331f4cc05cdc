"""Zero-DCE++: the fast curve estimator (Li et al. 2021, the official extension of Zero-DCE).

DCE-Net's topology with depthwise-separable convolutions (depthwise 3x3 + pointwise 1x1) and one
3-channel alpha map shared by every curve step: 10,561 parameters unconditioned (+42 with the E plane).
Alpha is estimated on the image resized (bilinear, antialiased) so that its long side is at most
`estimate_size`; ops.le_curve resizes alpha to the full image inside the kernel. Nothing is cropped
(the official test code crops H and W to multiples of 12; we keep the exact size).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..controls import EXPOSURE_NOMINAL
from .. import ops, reference
from ._common import check_rgb, exposure_plane, fit_long_side, init_normal_
from .zero_dce import CurveEstimator, check_curve_space, symmetric_forward

WIDTH = 32
# The photo path's thumbnail: block means at this many times the estimate size (read straight from the
# integer image), then the trained antialiased bilinear resize of that. At 8x the two-step kernel is within
# a fraction of a level of the one-step resize on photos (benchmarks/RESULTS.md, "photo path").
THUMBNAIL_OVERSAMPLE = 8


def resize_antialiased(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F.interpolate(bilinear, align_corners=False, antialias=True) of x to size. An output one pixel wide is
    resized transposed: torch's antialiased kernel gives every row the first row's value then (seen with torch
    2.13 on the CPU, e.g. 17 x 1 -> 8 x 1), while 1 x 17 -> 1 x 8 is right."""
    if size[1] == 1 and size[0] > 1:
        return resize_antialiased(x.transpose(2, 3), (size[1], size[0])).transpose(2, 3)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def photo_thumbnail(image: torch.Tensor, size: tuple[int, int],
                    oversample: int = THUMBNAIL_OVERSAMPLE) -> torch.Tensor:
    """float32 (B, 3, h, w) in [0, 1] of an image in its own dtype and layout (ops.photo_curve's input), close
    to F.interpolate(bilinear, antialias=True) of its float RGB copy, without making that copy: block means at
    `oversample` times the size, then the antialiased resize; gray is replicated to RGB, alpha dropped, like
    enhance's float path."""
    (h, w), (H, W) = size, image.shape[2:]
    mid = (min(H, oversample * h), min(W, oversample * w))
    color = reference.photo_color_channels(image.shape[1])
    x = ops.area_reduce(image, *mid)[:, :color]
    scale = reference.PHOTO_SCALE.get(image.dtype)
    if not scale:
        x = x.clamp(0, 1)
    if mid != (h, w):
        x = resize_antialiased(x, (h, w))
    if scale:  # linear, so divided on the thumbnail rather than on the (oversample^2 times larger) block means
        x = x / scale
    return x.expand(-1, 3, -1, -1) if color == 1 else x


class SeparableConv(nn.Module):
    """Depthwise 3x3 (one filter per input channel) then pointwise 1x1, both with bias."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ZeroDCEPP(CurveEstimator):
    """forward/estimate_alpha: (B, 3, H, W) -> alpha (B, 3, h, w), max(h, w) <= estimate_size."""

    # alpha is computed at a reduced size and resized inside le_curve: the model takes any H, W
    # itself in bounded memory, so it is never tiled; the photo path estimates it from the integer image.
    receptive_radius = 0
    photo_estimate = True

    # 8 px: what the shipped weights were trained at (training/recipes.py says why: the net then sees the
    # whole scene and alpha follows its brightness)
    def __init__(self, e_conditioned: bool = True, estimate_size: int | None = 8, curve_on: str = "rgb"):
        super().__init__()
        if estimate_size is not None and (isinstance(estimate_size, bool) or int(estimate_size) != estimate_size
                                          or estimate_size < 1):
            raise ValueError(f"estimate_size must be a positive int or None, got {estimate_size!r}")
        self.config = {"e_conditioned": bool(e_conditioned),
                       "estimate_size": None if estimate_size is None else int(estimate_size),
                       "curve_on": check_curve_space(curve_on)}
        cin = 4 if e_conditioned else 3
        self.convs = nn.ModuleList([
            SeparableConv(cin, WIDTH), SeparableConv(WIDTH, WIDTH), SeparableConv(WIDTH, WIDTH),
            SeparableConv(WIDTH, WIDTH), SeparableConv(2 * WIDTH, WIDTH), SeparableConv(2 * WIDTH, WIDTH),
            SeparableConv(2 * WIDTH, 3),
        ])
        init_normal_(self)

    def forward(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        check_rgb(x, "ZeroDCEPP")
        h, w = fit_long_side(x.shape[2], x.shape[3], self.config["estimate_size"])
        if (h, w) != tuple(x.shape[2:]):
            x = resize_antialiased(x, (h, w))
        inp = torch.cat([x, exposure_plane(x, exposure)], 1) if self.config["e_conditioned"] else x
        return symmetric_forward(self.convs, inp)

    def estimate_alpha(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """(B, 3, h, w): one map shared by all curve steps, at the estimation resolution."""
        return self(x, exposure)

    def estimate_alpha_photo(self, image: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """estimate_alpha for an image in its own dtype and layout (B, C, H, W) (see ops.photo_curve), from
        photo_thumbnail: no full-size float copy of the image is made."""
        size = fit_long_side(image.shape[2], image.shape[3], self.config["estimate_size"])
        return self(photo_thumbnail(image, size), exposure)
