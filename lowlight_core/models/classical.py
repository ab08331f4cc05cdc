"""Classical baselines with the model interface: exposure-matched gamma and CLAHE on luminance.

Both depend on statistics of the whole image (its mean, its tile grid), so receptive_radius = 0:
they run on the whole image. Memory stays a few image planes: the gamma is fitted on a subsample and
CLAHE's histogram and look-up steps run in row chunks.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from .base import Model
from ._common import check_rgb, exposure_values, luminance

_SAMPLE_PIXELS = 1 << 16   # the gamma is fitted on a strided subsample of at most ~this many pixels
_CHUNK_PIXELS = 1 << 20    # CLAHE processes rows in chunks of about this many pixels
_EPS = 1e-6


class Gamma(Model):
    """y = x ** g per channel, g chosen per image (bisection) so that mean luminance of y equals E."""

    controls = frozenset({"exposure"})
    exposure_mode = "input"  # fits its gamma to E itself
    receptive_radius = 0
    G_RANGE = (1 / 64, 64)

    def __init__(self):
        super().__init__()
        self.config = {}

    def fit_gamma(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        """(B,) gammas; g < 1 brightens. An all-black image gets the smallest g (and stays black)."""
        check_rgb(x, "Gamma")
        e = exposure_values(x, exposure).double()
        H, W = x.shape[2:]
        step = max(1, math.ceil(math.sqrt(H * W / _SAMPLE_PIXELS)))
        sample = x[:, :, ::step, ::step].clamp(0, 1).double()
        lo = torch.full_like(e, math.log(self.G_RANGE[0]))
        hi = torch.full_like(e, math.log(self.G_RANGE[1]))
        for _ in range(40):  # mean(lum(x ** g)) decreases with g: bisect on log g
            mid = (lo + hi) / 2
            mean = luminance(sample.pow(mid.exp().view(-1, 1, 1, 1))).mean((1, 2, 3))
            too_bright = mean > e
            lo = torch.where(too_bright, mid, lo)
            hi = torch.where(too_bright, hi, mid)
        return ((lo + hi) / 2).exp().to(x.dtype)

    def forward(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
        g = self.fit_gamma(x, exposure)
        return x.clamp(0, 1).pow(g.view(-1, 1, 1, 1))

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        """Honours exposure; iterations is ignored."""
        return self(x, exposure)


def _row_chunks(H: int, W: int):
    rows = max(1, _CHUNK_PIXELS // W)
    for r in range(0, H, rows):
        yield r, min(H, r + rows)


def clahe_luminance(lum: torch.Tensor, clip_limit: float = 0.01, tiles: int = 8, bins: int = 256) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalization of one (H, W) plane in [0, 1].

    As skimage.exposure.equalize_adapthist: the plane is first stretched to [0, 1] (min/max), each of
    tiles x tiles tiles gets a histogram clipped at max(1, clip_limit * tile pixels) with the excess
    handed evenly to the bins under the limit, its cumulative histogram is the tile's mapping, each
    pixel blends the mappings of the four nearest tile centres bilinearly, and the result is stretched
    to [0, 1] again. A flat plane is returned as is.
    """
    H, W = lum.shape
    lo, hi = lum.min(), lum.max()
    if float(hi - lo) < _EPS:
        return lum.clone()
    th, tw = max(1, H // tiles), max(1, W // tiles)  # tile size as skimage's default kernel_size
    ny, nx = math.ceil(H / th), math.ceil(W / tw)     # the last row/column of tiles may be partial
    dev = lum.device
    cols = torch.arange(W, device=dev)

    def bin_of(r0, r1):  # histogram bin of each pixel of rows r0:r1 of the stretched plane
        return ((lum[r0:r1] - lo) / (hi - lo) * bins).long().clamp_(0, bins - 1)

    hist = torch.zeros(ny * nx * bins, dtype=torch.float64, device=dev)
    for r0, r1 in _row_chunks(H, W):
        tile = (torch.arange(r0, r1, device=dev) // th).view(-1, 1) * nx + (cols // tw).view(1, -1)
        hist += torch.bincount((tile * bins + bin_of(r0, r1)).flatten(), minlength=hist.numel()).double()
    hist = hist.view(ny * nx, bins)
    count = hist.sum(1, keepdim=True)
    limit = (clip_limit * count).floor().clamp(min=1)
    for _ in range(8):  # clip, then hand the excess evenly to the bins still under the limit
        hist = torch.minimum(hist, limit)
        under = hist < limit
        excess = count - hist.sum(1, keepdim=True)
        hist = hist + under * (excess / under.sum(1, keepdim=True).clamp(min=1))
    mapping = (hist.cumsum(1) / count).to(lum.dtype).flatten()

    def centre_blend(n, size, coords):  # tile i's mapping is exact at pixel i * size + size - size // 2
        f = ((coords + size // 2).to(lum.dtype) / size - 1).clamp(0, n - 1)
        i0 = f.floor().long()
        return i0, (i0 + 1).clamp(max=n - 1), f - i0

    x0, x1, wx = centre_blend(nx, tw, cols)
    out = torch.empty_like(lum)
    for r0, r1 in _row_chunks(H, W):
        y0, y1, wy = centre_blend(ny, th, torch.arange(r0, r1, device=dev))
        y0, y1, wy = y0.view(-1, 1), y1.view(-1, 1), wy.view(-1, 1)
        q = bin_of(r0, r1)

        def look(ty, tx):
            return mapping[(ty * nx + tx) * bins + q]

        out[r0:r1] = ((1 - wy) * ((1 - wx) * look(y0, x0) + wx * look(y0, x1))
                      + wy * ((1 - wx) * look(y1, x0) + wx * look(y1, x1)))
    return (out - out.min()) / (out.max() - out.min()).clamp(min=_EPS)


class CLAHE(Model):
    """CLAHE on the luminance; RGB is scaled by the luminance ratio, capped so no channel exceeds 1,
    which keeps each pixel's hue and saturation. Ignores exposure and iterations."""

    receptive_radius = 0

    def __init__(self, clip_limit: float = 0.01, tiles: int = 8, bins: int = 256):
        super().__init__()
        if not 0 < clip_limit <= 1 or tiles < 1 or bins < 2:
            raise ValueError(f"need 0 < clip_limit <= 1, tiles >= 1, bins >= 2; got {clip_limit}, {tiles}, {bins}")
        self.config = {"clip_limit": float(clip_limit), "tiles": int(tiles), "bins": int(bins)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_rgb(x, "CLAHE")
        x = x.clamp(0, 1)
        lum = luminance(x)
        eq = torch.stack([clahe_luminance(l[0], **self.config) for l in lum]).unsqueeze(1) if len(x) else lum
        ratio = torch.minimum(eq / lum.clamp(min=_EPS), 1 / x.amax(1, keepdim=True).clamp(min=_EPS))
        # a black pixel has no hue to keep: it becomes gray at the equalized level
        return torch.where(lum > _EPS, x * ratio, eq.expand_as(x)).clamp(0, 1)

    @torch.no_grad()
    def enhance(self, x: torch.Tensor, exposure=EXPOSURE_NOMINAL, iterations: int = ITERATIONS_DEFAULT) -> torch.Tensor:
        return self(x)
