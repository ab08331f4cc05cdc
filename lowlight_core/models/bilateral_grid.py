"""The bilateral-grid model: decides at low resolution, applies at full resolution (HDRNet's design, Gharbi et
al. 2017, trained here on real SICE pairs).

A small network reads the photo's THUMBNAIL x THUMBNAIL thumbnail (lowlight_core.models.zero_dce_pp's
`photo_thumbnail`: block means straight from the image in its own dtype, no full-size float copy) and predicts a
grid (B, 12, D, GRID, GRID) of 3 x 4 affine colour transforms: a local path (convolutions at the grid's
resolution) and a global path (pooled features -> an MLP, the whole photo's view, which also reads the exposure
target E) fused into the grid. ops.bilateral_apply slices the grid at each full-resolution pixel's position and
guidance (a learned linear map of its R, G, B, `guide`) and applies the affine transform there, in the image's
own dtype: the cost at full resolution is one fused pass, the network's a constant.

E sets the output's mean brightness: the global path reads it, and (normalize_exposure) the grid is scaled so
that the thumbnail's output has mean E, so the slider holds whatever the network learned. Trained with E = the
target's mean brightness (targets re-exposed to random E by a gamma on the value, which keeps hue:
training.tasks.grid).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..controls import EXPOSURE_NOMINAL
from .. import ops, reference
from ._common import check_rgb, exposure_values, value_plane
from .base import Model
from .zero_dce_pp import photo_thumbnail, resize_antialiased

THUMBNAIL = 256  # the network's input (px, square: the grid covers the photo whatever its aspect)
# photo_thumbnail's block means at this many times THUMBNAIL (not zero_dce_pp's 8x): on held-out dark frames
# upscaled to 12 MP the result is within 1 level of the trained one-step thumbnail's on <= 1.4 % of the values
# (8x: <= 0.5 %), and the block means shrink from 12 to 3 M floats
THUMBNAIL_OVERSAMPLE = 4
GRID = 16  # the grid's spatial cells per side: THUMBNAIL / 2**4 (four stride-2 convolutions)
DOWNSAMPLINGS = 4
# The guide at start: 2 x Rec. 601 luma, so the grid's depth spans luma 0-0.5 where dark photos lie (learned)
GUIDE_INIT = (0.598, 1.174, 0.228, 0.0)
# normalize_exposure: the grid is scaled so that the thumbnail's output has mean E (twice: the second pass
# corrects for what the clamp at 1 took), by a factor within these bounds (a black frame is not amplified
# without limit; the network's own brightness is only corrected)
EXPOSURE_PASSES = 2
EXPOSURE_POOL = 4  # measured on the thumbnail's 4 x 4 block means (64 px): the mean needs no more
GAIN_BOUNDS = (0.25, 4.0)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class BilateralGrid(Model):
    """forward(x, E): (B, 3, H, W) float in [0, 1] -> enhanced (B, 3, H, W), differentiable (the reference
    apply: the training path); enhance / enhance_photo: inference (ops.bilateral_apply, native when built)."""

    controls = frozenset({"exposure"})
    exposure_mode = "input"  # normalize_exposure: it hits E itself
    receptive_radius = 0  # runs whole: one decision from the thumbnail
    photo_enhance = True

    def __init__(self, depth: int = 8, width: int = 16, global_path: bool = True, normalize_exposure: bool = True):
        super().__init__()
        for name, v in (("depth", depth), ("width", width)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.config = {"depth": int(depth), "width": int(width), "global_path": bool(global_path),
                       "normalize_exposure": bool(normalize_exposure)}
        w = int(width)
        # input: the thumbnail and its square root (lifts the dark range the network must read); without the
        # global path E enters as a constant plane
        cin = 6 if global_path else 7
        chans = [cin, w, 2 * w, 4 * w, 4 * w]
        self.splat = nn.Sequential(*[m for i in range(DOWNSAMPLINGS)
                                     for m in (conv(chans[i], chans[i + 1], 2), nn.ReLU())])
        c = chans[-1]
        self.local = nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c))
        if global_path:
            self.global_convs = nn.Sequential(conv(c, c, 2), nn.ReLU(), conv(c, c, 2), nn.ReLU())
            self.global_mlp = nn.Sequential(nn.Linear(c + 1, c), nn.ReLU(), nn.Linear(c, c))
        self.to_grid = nn.Conv2d(c, reference.GRID_COEFFS * int(depth), 1)
        if not self.to_grid.weight.is_meta:  # near 0: the grid starts at the identity transform
            nn.init.normal_(self.to_grid.weight, 0.0, 1e-3)
            nn.init.zeros_(self.to_grid.bias)
        self.guide = nn.Parameter(torch.tensor(GUIDE_INIT))
        # the grid's transform when the network outputs 0 (made here: a tensor made at import would be a meta one
        # when the registry first imports this module under torch.device("meta"))
        self.register_buffer("identity", torch.eye(3, 4).flatten(), persistent=False)

    def grid(self, thumb: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """(B, 3, THUMBNAIL, THUMBNAIL) float thumbnail -> grid (B, 12, D, GRID, GRID)."""
        return self.grid_for(thumb, exposure_values(thumb, exposure))

    def grid_for(self, thumb: torch.Tensor, e: torch.Tensor, apply=reference.bilateral_apply) -> torch.Tensor:
        """grid() for e the (B,) exposure targets, unchecked (a traced graph cannot raise); apply: what
        normalize_exposure measures the thumbnail's output with (onnx_export's is made of standard operators)."""
        x = torch.cat([thumb, thumb.clamp_min(0).sqrt()], 1)
        if not self.config["global_path"]:
            x = torch.cat([x, value_plane(thumb, e)], 1)
        f = self.splat(x)
        fused = self.local(f)
        if self.config["global_path"]:
            g = self.global_convs(f).mean(dim=(2, 3))
            fused = fused + self.global_mlp(torch.cat([g, e.view(-1, 1)], 1))[:, :, None, None]
        out = self.to_grid(torch.relu(fused))
        b, _, gh, gw = out.shape
        grid = out.view(b, reference.GRID_COEFFS, self.config["depth"], gh, gw) + self.identity.view(1, -1, 1, 1, 1)
        if self.config["normalize_exposure"]:
            small = F.avg_pool2d(thumb, EXPOSURE_POOL)
            for _ in range(EXPOSURE_PASSES):
                mean = apply(small, grid, self.guide).mean(dim=(1, 2, 3))
                gain = (e / mean.clamp_min(1e-6)).clamp(*GAIN_BOUNDS)
                grid = grid * gain.view(-1, 1, 1, 1, 1)
        return grid

    def thumbnail(self, x: torch.Tensor) -> torch.Tensor:
        return resize_antialiased(x, (THUMBNAIL, THUMBNAIL))

    def forward(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, clamp: bool = True) -> torch.Tensor:
        """clamp=False: the transform's output before the clamp to [0, 1] (the training loss reads it). Runs
        ops.bilateral_transform: the native forward and backward (training) where the kernels are built."""
        check_rgb(x, "BilateralGrid")
        raw = ops.bilateral_transform(x.clamp(0, 1), self.grid(self.thumbnail(x), exposure), self.guide)
        return raw.clamp(0, 1) if clamp else raw

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int | None = None) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> the same; iterations is ignored (controls: exposure only)."""
        check_rgb(x, "BilateralGrid")
        return ops.bilateral_apply(x, self._checked(self.grid(self.thumbnail(x), exposure)), self.guide)

    @torch.no_grad()
    def enhance_photo(self, image: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """The image (B, C, H, W) in its own dtype and layout (see ops.bilateral_apply) -> the enhanced image,
        same dtype and layout: the grid from photo_thumbnail, applied in one pass, no full-size float copy."""
        thumb = photo_thumbnail(image, (THUMBNAIL, THUMBNAIL), THUMBNAIL_OVERSAMPLE)
        return ops.bilateral_apply(image, self._checked(self.grid(thumb, exposure)), self.guide)

    def _checked(self, grid: torch.Tensor) -> torch.Tensor:
        if not (torch.isfinite(grid).all() and torch.isfinite(self.guide).all()):
            raise ValueError("bilateral_grid produced NaN or Inf grid coefficients: its weights are not finite")
        return grid
