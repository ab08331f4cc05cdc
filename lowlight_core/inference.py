"""The one inference entry point: `enhance(image, ...)` for numpy arrays, PIL images and torch tensors.

Whatever comes in goes back out as the same kind, shape and dtype:
- numpy H x W or H x W x C, C in 1-4 (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA); uint8, uint16, or float16/32/64
  with values in [0, 1]. Integers are scaled by 255 / 65535 and rounded back to nearest (ties to even).
- PIL images of mode L, LA, RGB, RGBA, I;16 or F (other modes: convert first); `info` (ICC, EXIF) is kept.
- torch float tensors C x H x W or B x C x H x W (C in 1-4), returned on their own device and dtype.
Alpha is copied through untouched (bit for bit). Gray is enhanced as gray: the gray plane is replicated to
RGB, enhanced, and the mean of the three result channels is the result. Float values within 1e-3 outside
[0, 1] are clamped silently (rounding noise); NaN/Inf or anything further out raises ValueError.

What runs is decided by the model's declared contract (lowlight_core.models.base) and carried out by the one
inference plan (lowlight_core.plan), which the napari plugin uses too. Models with `receptive_radius > 0`
(full-resolution networks) run in tiles of `tile` x `tile` pixels (default: the network's `inference_tile`, 512
unless declared: 256 for Zero-DCE; a strip thinner than that gets tiles of the same area, as long as the strip
is thin) plus a halo of `receptive_radius` pixels, so memory stays bounded and the result equals the untiled one
up to float rounding; models with `receptive_radius == 0` run whole (Zero-DCE++ estimates its curves on a
downscaled copy; classical models are pointwise or global).
Curve models take the photo path: the curve runs in one pass from and to the image's own dtype and layout
(the model's photo_curve: ops.photo_curve, or ops.photo_value_curve for models that curve the value; no
full-size float copy); Zero-DCE++ also estimates from block means of the integer image
(ZeroDCEPP.estimate_alpha_photo) and runs on the whole batch at once under torch.no_grad. Everything else runs
under torch.inference_mode, one image of a batch at a time; registered networks run on the CPU as a copy made
for inference (models.base.inference_model: BatchNorm folded into its convolution, channels_last weights and inputs), which
gives the model's output within float rounding, measured 1.2-1.6x faster (benchmarks/RESULTS.md, issue 15).
"""
from __future__ import annotations

import math
import numbers

import torch

from .controls import (DEFAULT_MODEL, DENOISE_DEFAULT, EXPOSURE_AUTO, EXPOSURE_DEFAULT, EXPOSURE_RANGE,
                       ITERATIONS_DEFAULT,
                       MAX_ITERATIONS)
from .frames import to_frames
from .noise import check_denoise
from .plan import Engine


# ---------------------------------------------------------------- arguments

def check_controls(iterations, exposure=EXPOSURE_DEFAULT, tile=None, denoise=DENOISE_DEFAULT) -> None:
    """ValueError/TypeError for iterations outside [1, MAX_ITERATIONS], exposure neither in EXPOSURE_RANGE nor
    'auto', tile < 0, denoise neither in DENOISE_RANGE nor 'auto' / 'learned'."""
    check_denoise(denoise)
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
        raise TypeError(f"iterations must be an integer, got {iterations!r}")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be in [1, {MAX_ITERATIONS}], got {iterations}")
    if not (isinstance(exposure, str) and exposure == EXPOSURE_AUTO):
        if isinstance(exposure, bool) or not isinstance(exposure, numbers.Real):
            raise TypeError(f"exposure must be a number or {EXPOSURE_AUTO!r}, got {exposure!r}")
        lo, hi = EXPOSURE_RANGE
        if not (math.isfinite(exposure) and lo <= exposure <= hi):
            raise ValueError(f"exposure must be in [{lo}, {hi}], got {exposure}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 0):
        raise ValueError(f"tile must be None (automatic), 0 (never tile) or a positive size in pixels, got {tile!r}")


def resolve_device(device="auto", like: torch.Tensor | None = None) -> torch.device:
    """'auto' -> the CUDA tensor's device, else CUDA when available, else CPU. An unavailable device raises."""
    if device is None or device == "auto":
        if like is not None and like.device.type == "cuda":
            return like.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (use 'auto', 'cpu', 'cuda' or 'cuda:N')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise RuntimeError(f"device {device!r} was requested but CUDA is not available (torch "
                               f"{torch.__version__}, {built}); use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA "
                               "device(s) exist")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError(f"device {device!r} was requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (use 'auto', 'cpu', 'cuda' or 'cuda:N')")
    return dev


# ---------------------------------------------------------------- running

def enhance(image, model=DEFAULT_MODEL, iterations: int = ITERATIONS_DEFAULT, exposure=EXPOSURE_DEFAULT,
            device="auto",
            tile: int | None = None, weights=None, denoise=DENOISE_DEFAULT):
    """Enhance a low-light image; returns the same kind, shape and dtype (see the module docstring).

    model: a registered name (see `lowlight models` / list_models()) or a model module with .enhance
    (lowlight_core.models.base says what such a module must declare).
    iterations: curve steps, 1-MAX_ITERATIONS (curve models; others ignore it).
    exposure: 'auto' (default: the brightness a well-exposed frame of the scene would have, predicted from the
    whole photo) or a target E in EXPOSURE_RANGE: the result's mean brightness, for every model
    (lowlight_core.exposure: decided once on the whole image, so tiles agree).
    device: 'auto', 'cpu', 'cuda', 'cuda:N'.
    tile: core tile size in pixels for full-resolution networks (None: the network's inference_tile, else 512;
    0: never tile).
    weights: a weights file to use instead of the shipped one.
    denoise: 'auto' (default): the noise-aware guided filter (lowlight_core.noise; luminance and chroma
    separately, stronger where the gain is higher) at a strength picked from the input's estimated noise and
    the enhancement's gain; a number in [0, 1]: at that strength; 0: off (the output is exactly what it is
    without this control); 'learned': the learned denoiser (lowlight_core.denoise_net: per pixel, how
    strongly to smooth the luminance and the chroma, from the image and its noise map; opt-in, see
    docs/denoise-learned.md).
    """
    check_controls(iterations, exposure, tile, denoise)
    frames = to_frames(image)
    plan = Engine(model, resolve_device(device, frames.pixels), weights).plan(frames, exposure, tile)
    plan.run(iterations)
    with torch.no_grad():
        plan.denoise(denoise)
    return plan.result()
