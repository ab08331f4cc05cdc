"""Noise of a dark photo and the `denoise` control of `enhance`.

1. `estimate_noise(x)`: a Poisson-Gaussian noise model of the input, variance(I) = a * I + b per channel at
   intensity I. The variance of each 8 x 8 block around its least-squares plane (white noise: sigma^2; it
   also counts the blotchy noise JPEG leaves, which a per-pixel high-pass misses) is taken; blocks are binned
   by their mean intensity (equal-count bins), in each bin the flattest third (least structure of the
   2 x 2-averaged image, where noise is weaker) gives the median residual variance, and a line is fitted to
   the bins by least squares with the worst bins (beyond 3 MADs) dropped once. Large images are sampled in
   64 x 64 tiles (at most ~2 MP are read).
2. `denoise_weights(strength, ...)`: the (luma, chroma) arguments of `ops.guided_denoise` for a strength in
   [0, 1]: strength 1 sets the luminance's eps to DENOISE_EPS_SCALE times the window's amplified luminance
   noise variance (eps grows as strength^2), and the chroma share replaced by its luminance-guided estimate
   is the strength itself, so that a small strength changes the colours a little, not at once.
3. `auto_strength(model, x, y)` (denoise="auto"): the amplified noise std, gain * sigma(mean intensity) with
   gain = mean(y) / mean(x), over DENOISE_AUTO_NOISE, clipped to [0, 1]: a clean or barely brightened photo gets ~0.
   The whole-image decisions read an image's `Summary` (its mean and the tiles the noise fit samples), which
   Frames makes from the photo in its own dtype without a float copy of the whole image.
4. `guided(x, y, model, luma, chroma)`: the filter itself; Frames.denoise runs it (or, for "learned", the
   learned denoiser of lowlight_core.denoise_net, which blends such filters pixel by pixel) in strips.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F

from .controls import (DENOISE_AUTO, DENOISE_AUTO_NOISE, DENOISE_LEARNED, DENOISE_CHROMA_RADIUS, DENOISE_EPS_SCALE,
                       DENOISE_LUMA_RADIUS, DENOISE_RANGE)

BLOCK = 8
TILE = 64
MAX_SAMPLE_PIXELS = 2_000_000
BINS = 12
FLAT_SHARE = 1 / 3


@dataclass(frozen=True)
class NoiseModel:
    """Per-channel noise variance a * I + b at intensity I in [0, 1] (units of full scale squared)."""
    a: float
    b: float

    def variance(self, intensity: float) -> float:
        return max(self.a * intensity + self.b, 0.0)

    def std(self, intensity: float) -> float:
        return math.sqrt(self.variance(intensity))


def check_denoise(denoise) -> None:
    """ValueError/TypeError unless denoise is a number in DENOISE_RANGE, DENOISE_AUTO or DENOISE_LEARNED."""
    words = f"{DENOISE_AUTO!r} or {DENOISE_LEARNED!r}"
    if isinstance(denoise, str):
        if denoise not in (DENOISE_AUTO, DENOISE_LEARNED):
            raise ValueError(f"denoise must be a number in [{DENOISE_RANGE[0]:g}, {DENOISE_RANGE[1]:g}], "
                             f"{words}, got {denoise!r}")
        return
    if isinstance(denoise, bool) or not isinstance(denoise, numbers.Real):
        raise TypeError(f"denoise must be a number, {words}, got {denoise!r}")
    lo, hi = DENOISE_RANGE
    if not (math.isfinite(denoise) and lo <= denoise <= hi):
        raise ValueError(f"denoise must be in [{lo:g}, {hi:g}], {words}, got {denoise}")


def sample_tiles(x: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) of an image (1, C, H, W) in any dtype: the whole image, or for a large one a grid of TILE x
    TILE tiles with ~MAX_SAMPLE_PIXELS (a view of x as long as the tiles are not gathered)."""
    _, C, H, W = x.shape
    if H * W <= MAX_SAMPLE_PIXELS or H < TILE or W < TILE:
        return x
    nh, nw = H // TILE, W // TILE
    step = max(1, math.ceil(math.sqrt(nh * nw * TILE * TILE / MAX_SAMPLE_PIXELS)))
    t = x[0, :, :nh * TILE, :nw * TILE].reshape(C, nh, TILE, nw, TILE)[:, ::step, :, ::step]
    return t.permute(1, 3, 0, 2, 4).reshape(-1, C, TILE, TILE)


@dataclass(frozen=True)
class Summary:
    """What the whole-image denoise decisions read from an image (float in [0, 1]): its mean intensity, its
    channel count and `sample_tiles` of it (float, what estimate_noise fits), sampled when first read (only the
    noise fits read them: not at all when the caller gives the noise model and the output is not measured)."""
    mean: float
    channels: int
    sample: Callable[[], torch.Tensor]

    @cached_property
    def tiles(self) -> torch.Tensor:
        return self.sample()

    @classmethod
    def of(cls, x: torch.Tensor) -> "Summary":
        """Of a float image (1, C, H, W) in [0, 1]."""
        return cls(float(x.mean()), x.shape[1], lambda: sample_tiles(x))


def estimate_noise(x: torch.Tensor) -> NoiseModel:
    """Poisson-Gaussian fit of the noise of x ((1, C, H, W) or (C, H, W) float in [0, 1], the unenhanced
    photo). Returns NoiseModel(0, 0) for an image too small to measure (under 16 x 16 pixels)."""
    return fit_noise(sample_tiles(x[None] if x.dim() == 3 else x))


def fit_noise(tiles: torch.Tensor) -> NoiseModel:
    """estimate_noise from the image's sample_tiles (float in [0, 1])."""
    x = tiles.detach().to(torch.float32).cpu()
    N, C, H, W = x.shape
    if H < 2 * BLOCK + 2 or W < 2 * BLOCK + 2:
        return NoiseModel(0.0, 0.0)
    t = x.reshape(N * C, 1, H, W)[:, :, :H // BLOCK * BLOCK, :W // BLOCK * BLOCK]
    var = _plane_residual_variance(t)                               # per block: noise variance if flat
    mean = F.avg_pool2d(t, BLOCK).flatten()
    half = F.avg_pool2d(t, 2)                                       # noise halved, structure kept
    grad = (half[:, :, 1:, :-1] - half[:, :, :-1, :-1]).abs() + (half[:, :, :-1, 1:] - half[:, :, :-1, :-1]).abs()
    structure = F.avg_pool2d(F.pad(grad, (0, 1, 0, 1), mode="replicate"), BLOCK // 2).flatten()
    n = min(var.numel(), mean.numel(), structure.numel())
    var, mean, structure = var[:n], mean[:n], structure[:n]
    keep = (mean > 0.002) & (mean < 0.98)                            # clipped blocks carry no noise
    var, mean, structure = var[keep], mean[keep], structure[keep]
    if var.numel() < BINS * 6:
        return NoiseModel(0.0, 0.0)
    order = mean.argsort()
    points = []
    for idx in order.tensor_split(BINS):
        s = structure[idx]
        flat = idx[s <= s.quantile(FLAT_SHARE)]
        points.append((float(mean[flat].median()), float(var[flat].median())))
    i = torch.tensor([p[0] for p in points], dtype=torch.float64)
    v = torch.tensor([p[1] for p in points], dtype=torch.float64)
    a, b = _fit_line(i, v)
    res = v - (a * i + b)
    mad = (res - res.median()).abs().median()
    ok = (res - res.median()).abs() <= 3 * 1.4826 * mad + 1e-12
    if int(ok.sum()) >= 3 and not bool(ok.all()):
        a, b = _fit_line(i[ok], v[ok])
    if a < 0:  # no signal-dependent part measurable: a constant (Gaussian) noise level
        a, b = 0.0, float(v.median())
    return NoiseModel(float(a), float(b))


def _plane_residual_variance(t: torch.Tensor) -> torch.Tensor:
    """Per BLOCK x BLOCK block of t (N, 1, H, W), H and W multiples of BLOCK: the variance of the block around
    its least-squares plane (unbiased: 3 fitted parameters). Noise of any grain finer than the block counts,
    JPEG's blotchy residue of sensor noise included, which a per-pixel high-pass misses."""
    n = BLOCK * BLOCK
    u = torch.arange(BLOCK, dtype=t.dtype) - (BLOCK - 1) / 2
    su2 = float((u * u).sum()) * BLOCK                               # sum of u^2 over the block
    H, W = t.shape[-2:]
    uw = u.repeat(W // BLOCK).view(1, 1, 1, W)
    uh = u.repeat(H // BLOCK).view(1, 1, H, 1)
    s1, s2 = F.avg_pool2d(t, BLOCK) * n, F.avg_pool2d(t * t, BLOCK) * n
    sw, sh = F.avg_pool2d(t * uw, BLOCK) * n, F.avg_pool2d(t * uh, BLOCK) * n
    rss = s2 - s1 * s1 / n - sw * sw / su2 - sh * sh / su2
    return (rss.clamp_min(0) / (n - 3)).flatten()


def _fit_line(i: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
    if float(i.max() - i.min()) < 1e-6:
        return 0.0, float(v.mean())
    A = torch.stack([i, torch.ones_like(i)], 1)
    sol = torch.linalg.lstsq(A, v[:, None]).solution[:, 0]
    return float(sol[0]), float(sol[1])


def denoise_weights(strength: float, channels: int) -> tuple[float, float]:
    """(luma, chroma) of ops.guided_denoise for strength in [0, 1] on a 1- or 3-channel image: the luma eps
    weight is per channel's noise variance, and the luminance of 3 independent channels has 1/3 of it."""
    s = float(strength)
    if channels == 1:
        return DENOISE_EPS_SCALE * s * s, 0.0
    return DENOISE_EPS_SCALE * s * s / 3.0, s


def auto_strength(model: NoiseModel, x: Summary, y: Summary) -> float:
    """Strength for denoise='auto': the noise std after enhancement at the photo's mean intensity (gain =
    mean(y) / mean(x)) over DENOISE_AUTO_NOISE, clipped to [0, 1]."""
    mx, my = x.mean, y.mean
    gain = my / max(mx, 1.0 / 255)
    return min(max(gain * model.std(mx) / DENOISE_AUTO_NOISE, 0.0), 1.0)


def calibrate(model: NoiseModel, x: Summary, y: Summary) -> NoiseModel:
    """The input's noise model scaled down so that gain * sigma at the mean brightness is no more than the noise
    measured on the output y itself (estimate_noise(y) at mean(y)): for image-to-image networks, whose output
    noise is not the input's times the brightening (they remove some of it), gain = mean(y) / mean(x)
    overstates it."""
    mx, my = x.mean, y.mean
    predicted = my / max(mx, 1.0 / 255) * model.std(mx)
    if predicted <= 0:
        return model
    k = min(1.0, (fit_noise(y.tiles).std(my) / predicted) ** 2)
    return NoiseModel(model.a * k, model.b * k)


def noise_of(x: Summary, y: Summary, model: NoiseModel | None = None,
             measure_output: bool = False) -> NoiseModel:
    """The noise model denoising y (enhanced from x) works with: `model` or the input's estimate, calibrated on
    y when measure_output (`calibrate`)."""
    if model is None:
        model = fit_noise(x.tiles)
    return calibrate(model, x, y) if measure_output else model


def filter_weights(x: Summary, y: Summary, strength, model: NoiseModel | None = None,
                   measure_output: bool = False) -> tuple[NoiseModel, float, float]:
    """What the guided filter decides from the whole image: (the noise model, luma, chroma weights of
    guided_denoise) for y (enhanced, C = 1 or 3 channels) given its input x; strength a number or DENOISE_AUTO
    (auto_strength)."""
    model = noise_of(x, y, model, measure_output)
    s = auto_strength(model, x, y) if strength == DENOISE_AUTO else float(strength)
    return (model, *denoise_weights(s, x.channels))


def guided(x: torch.Tensor, y: torch.Tensor, model: NoiseModel, luma: float, chroma: float) -> torch.Tensor:
    """ops.guided_denoise of y given x with these weights (a part of the image gives that part of the result
    when it carries FILTER_RADIUS rows of context on each side)."""
    from . import ops

    return ops.guided_denoise(y, x.to(y.dtype), model.a, model.b, luma, chroma, DENOISE_LUMA_RADIUS,
                              DENOISE_CHROMA_RADIUS)


# how far the filter reads: the luminance's coefficients and their box mean (2 x the luma radius), then the
# chroma estimate's coefficients and their box mean on the filtered luminance (2 x the chroma radius)
FILTER_RADIUS = 2 * DENOISE_LUMA_RADIUS + 2 * DENOISE_CHROMA_RADIUS
