"""Exposure: how bright a result should be (`exposure="auto"`) and how every model is made to hit a target E.

Both are decided once per image, on its probe (the thumbnail of long side PROBE_SIZE, read from the image in its
own dtype), before any window runs, so a tiled run stays equal to an untiled one.

- `auto_targets(probe)`: the mean brightness a well-exposed frame of the scene has, predicted from the dark
  photo: logit(E) = AUTO_COEFFS . (1, log(q99 / m), log(q75 / m)), m the probe's mean and q its quantiles (the
  share of the brightness held by highlights such as lamps: scenes with them have darker references). Fitted
  on the real SICE training pairs by `python -m training.exposure_fit`; on held-out scenes it is as good as
  the references allow (their brightness barely depends on anything a dark frame shows): see docs/exposure.md.
- `calibrate(brightness, target)`: models that take E (the curve models) get the input E' whose probe result
  has mean `target` (their E input alone misses by up to 0.15 from photo to photo).
- `tone(y, alpha)`: models that take no E (the paired and GAN networks) get a tone stage on the value after
  the network: TONE_STEPS steps of the LE-curve v <- v + alpha v (1 - v) with one alpha, v = max(r, g, b),
  R, G, B scaled by v' / v, so hue and saturation stay, 0 and 1 stay fixed (nothing is clipped) and the slope
  in the shadows is bounded; `fit_tone` finds alpha. Curve models whose E input cannot reach the target (a
  very dark photo) get the same stage for the rest, as extra steps of their own curve (`extend_maps`: one
  pass over the photo still).
"""
from __future__ import annotations

import numpy as np
import torch

from .controls import EXPOSURE_RANGE

PROBE_SIZE = 256         # long side of the probe: its result's brightness is within 0.01 of the full image's
# The probe's block means are taken at this many times its size (photo_thumbnail), not at the models' 8x: it
# feeds brightness statistics, which move by < 0.001 (auto target, 12 MP photos) while the block means of a
# 12 MP photo shrink 16x (from 3 MP of floats; the probe was ~60 % of a 12 MP enhance).
PROBE_OVERSAMPLE = 2
AUTO_COEFFS = (0.0341, -0.1603, -0.2159)  # python -m training.exposure_fit (SICE training scenes)
AUTO_QUANTILES = (0.99, 0.75)
TONE_STEPS = 6               # the tone stage: this many LE-curve steps of one alpha on the value ...
TONE_RANGE = (-1.0, 1.0)     # ... alpha in this range (the curve's own): slope 2^6 in the shadows at most
TONE_BISECTIONS = 20         # bisection steps of alpha (cheap: no model runs)
CALIBRATE_RUNS = 8           # probe runs of a model to calibrate its E input, at most
CALIBRATE_TOLERANCE = 0.003  # ... stopping when the probe's brightness is this close to the target


def probe(pixels: torch.Tensor) -> torch.Tensor:
    """The probe of a batch (B, C, H, W) in its own dtype and layout (see lowlight_core.frames): float32 RGB
    (B, 3, h, w), long side PROBE_SIZE (the image itself when smaller), no full-size float copy made."""
    from .models._common import fit_long_side
    from .models.zero_dce_pp import photo_thumbnail

    size = fit_long_side(pixels.shape[2], pixels.shape[3], PROBE_SIZE)
    return photo_thumbnail(pixels, size, PROBE_OVERSAMPLE)


def features(probe: torch.Tensor) -> torch.Tensor:
    """(B, 2): log(q / m) of each image's probe (B, 3, h, w) for q in AUTO_QUANTILES (m: the mean)."""
    i = probe.mean(1).flatten(1).double().cpu()
    m = i.mean(1, keepdim=True).clamp_min(1e-4)
    # numpy's linear quantiles are torch.quantile's to the bit, by partial sorting (5x faster on a probe)
    q = torch.from_numpy(np.quantile(i.numpy(), AUTO_QUANTILES, axis=1).T)
    return torch.log((q + 1e-3) / m)


def auto_targets(probe: torch.Tensor) -> list[float]:
    """The auto exposure target of each image of the probe (B, 3, h, w), within EXPOSURE_RANGE."""
    f = features(probe)
    c = torch.tensor(AUTO_COEFFS, dtype=f.dtype)
    e = torch.sigmoid(c[0] + f @ c[1:])
    lo, hi = EXPOSURE_RANGE
    return [min(max(float(v), lo), hi) for v in e]


def brightness(y: torch.Tensor) -> float:
    """The brightness a target E means: the mean of every colour value, in [0, 1]."""
    return float(y.double().mean())


def tone(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """The tone stage (see the module docstring) on y (B, 3, H, W) float in [0, 1]; alpha 0 returns y."""
    if alpha == 0:
        return y
    v = y.amax(1, keepdim=True)
    t = v
    for _ in range(TONE_STEPS):
        t = t + alpha * t * (1 - t)
    return (y * (t / v.clamp_min(1e-6))).clamp(0, 1)


def extend_maps(maps: torch.Tensor, iterations: int, alphas: list[float]) -> tuple[torch.Tensor, int]:
    """Curve maps (B, 3k, h, w) for `iterations` steps followed by the tone stage (TONE_STEPS steps of each
    image's constant alpha), as one curve: (maps (B, 3 (iterations + TONE_STEPS), h, w), the step count)."""
    b, c, h, w = maps.shape
    k = c // 3
    steps = maps.unflatten(1, (k, 3))[:, [min(i, k - 1) for i in range(iterations)]]
    tone_maps = torch.tensor(alphas, dtype=maps.dtype, device=maps.device).view(b, 1, 1, 1, 1)
    steps = torch.cat([steps, tone_maps.expand(b, TONE_STEPS, 3, h, w)], 1)
    return steps.flatten(1, 2).contiguous(), iterations + TONE_STEPS


def _bisect(f, target: float, lo: float, hi: float, steps: int) -> float:
    """x in [lo, hi] with f(x) = target for f rising in x (the nearer bound where target is out of reach)."""
    if f(lo) >= target:
        return lo
    if f(hi) <= target:
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


def fit_tone(y: torch.Tensor, target: float) -> float:
    """The tone stage's alpha with brightness(tone(y, alpha)) = target (y: one image's probe result)."""
    y = y.double()
    return _bisect(lambda a: brightness(tone(y, a)), target, *TONE_RANGE, steps=TONE_BISECTIONS)


def calibrate(result_brightness, target: float) -> float:
    """The E input in EXPOSURE_RANGE whose result has brightness `target`: result_brightness(E) -> float, taken
    to rise with E (the nearer end of the range when the target is out of reach). Each call runs the model on
    the probe, so regula falsi (Illinois): about 4 runs to within CALIBRATE_TOLERANCE, CALIBRATE_RUNS at most."""
    a, b = EXPOSURE_RANGE
    fa, fb = result_brightness(a) - target, result_brightness(b) - target
    if fa >= 0:
        return a
    if fb <= 0:
        return b
    side = 0
    for _ in range(CALIBRATE_RUNS - 2):
        c = b - fb * (b - a) / (fb - fa)
        fc = result_brightness(c) - target
        if abs(fc) < CALIBRATE_TOLERANCE:
            return c
        if fc < 0:
            a, fa = c, fc
            if side == -1:
                fb /= 2
            side = -1
        else:
            b, fb = c, fc
            if side == 1:
                fa /= 2
            side = 1
    return c
