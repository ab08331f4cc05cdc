"""The one inference entry point: `enhance(image, ...)` for numpy arrays, PIL images and torch tensors.

Whatever comes in goes back out as the same kind, shape and dtype:
- numpy H x W or H x W x C, C in 1-4 (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA); uint8, uint16, or float16/32/64
  with values in [0, 1]. Integers are scaled by 255 / 65535 and rounded back to nearest (ties to even).
- PIL images of mode L, LA, RGB, RGBA, I;16 or F (other modes: convert first); `info` (ICC, EXIF) is kept.
- torch float tensors C x H x W or B x C x H x W (C in 1-4), returned on their own device and dtype.
Alpha is copied through untouched (bit for bit). Gray is enhanced as gray: the gray plane is replicated to
RGB, enhanced, and the mean of the three result channels is the result. Float values within 1e-3 outside
[0, 1] are clamped silently (rounding noise); NaN/Inf or anything further out raises ValueError.

Models (lowlight_core.models) with `receptive_radius > 0` (full-resolution networks) run in tiles of
`tile` x `tile` pixels (default 512, or the network's `inference_tile`: 256 for Zero-DCE) plus a halo of
`receptive_radius` pixels, so memory stays bounded and the result equals the untiled one up to float
rounding; models with `receptive_radius == 0` run whole
(Zero-DCE++ estimates its curves on a downscaled copy; classical models are pointwise or global).
Curve models take the photo path: the curve runs in one pass from and to the image's own dtype and layout
(the model's photo_curve: ops.photo_curve, or ops.photo_value_curve for models that curve the value; no
full-size float copy); Zero-DCE++ also estimates from block means of the integer image
(ZeroDCEPP.estimate_alpha_photo) and runs on the whole batch at once under torch.no_grad. Everything else runs
under torch.inference_mode, one image of a batch at a time; registered networks run on the CPU as a copy made
for inference (inference_model: BatchNorm folded into its convolution, channels_last weights and inputs), which
gives the model's output within float rounding, measured 1.2-1.6x faster (benchmarks/RESULTS.md, issue 15).
"""
from __future__ import annotations

import copy
import math
import numbers
import sys
import threading
import warnings
import weakref

import numpy as np
import torch

from .controls import DENOISE_DEFAULT, EXPOSURE_DEFAULT, EXPOSURE_RANGE, ITERATIONS_DEFAULT, MAX_ITERATIONS
from .noise import check_denoise
DEFAULT_TILE = 512
FLOAT_TOLERANCE = 1e-3
PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "F")
_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}
_NUMPY_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


# ---------------------------------------------------------------- arguments

def check_controls(iterations, exposure, tile=None, denoise=DENOISE_DEFAULT) -> None:
    """ValueError/TypeError for iterations outside [1, MAX_ITERATIONS], exposure outside EXPOSURE_RANGE, tile < 0,
    denoise neither in DENOISE_RANGE nor 'auto'."""
    check_denoise(denoise)
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
        raise TypeError(f"iterations must be an integer, got {iterations!r}")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be in [1, {MAX_ITERATIONS}], got {iterations}")
    if isinstance(exposure, bool) or not isinstance(exposure, numbers.Real):
        raise TypeError(f"exposure must be a number, got {exposure!r}")
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


_INFERENCE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INFERENCE_LOCK = threading.Lock()


def _fold_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """In place: every Conv2d directly followed by a BatchNorm2d in an nn.Sequential becomes one convolution
    with the norm's affine map (running statistics) folded into its weights, the norm an nn.Identity (indices
    kept). Only valid in eval mode."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        _fold_batchnorm(child)
    if isinstance(module, torch.nn.Sequential):
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if (type(conv) is torch.nn.Conv2d and type(bn) is torch.nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None):
                module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), torch.nn.Identity()
    return module


def inference_model(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of a registered network made for CPU inference, or `net` itself (not on the CPU, no
    convolutions): BatchNorm folded into the convolution before it (eval mode: a per-channel affine map) and
    every weight in channels_last, which lets oneDNN run the convolutions without reordering; feed it
    channels_last inputs. Same results within float rounding (tests/test_enhance.py); cached per model
    object, which stays untouched (the registry hands the same object to everyone)."""
    params = list(net.parameters())
    if not params or params[0].device.type != "cpu" or net.training \
            or not any(isinstance(m, torch.nn.Conv2d) for m in net.modules()):
        return net
    with _INFERENCE_LOCK:
        fast = _INFERENCE_MODELS.get(net)
        if fast is None:
            fast = _fold_batchnorm(copy.deepcopy(net)).to(memory_format=torch.channels_last).eval()
            fast.requires_grad_(False)
            fast.channels_last_inputs = True  # enhance() hands it channels_last tensors
            _INFERENCE_MODELS[net] = fast
        return fast


def default_tile(net) -> int:
    """The core tile size enhance() uses for a network when the caller gives none: the network's own
    `inference_tile` (what measured fastest for it) or DEFAULT_TILE."""
    return int(getattr(net, "inference_tile", DEFAULT_TILE))


def _get_model(model, device: torch.device, weights):
    if isinstance(model, str):
        from .models.registry import load_model

        return load_model(model, device=str(device), weights=weights)
    if isinstance(model, torch.nn.Module) and hasattr(model, "enhance"):
        return model.to(device).eval()
    raise TypeError(f"model must be a model name or a model module with .enhance, got {type(model).__name__}")


# ---------------------------------------------------------------- images of every kind <-> (B, C, H, W)

class _Frames:
    """The caller's image as a (B, C, H, W) tensor in its own dtype (a view, no copy), the output buffer in
    the same layout, and how to hand an output tensor back as the caller's kind (`result()`: the buffer)."""

    def __init__(self, pixels: torch.Tensor, out: torch.Tensor, result):
        self.pixels, self.out, self._result = pixels, out, result
        channels = pixels.shape[1]
        self.color = 1 if channels <= 2 else 3  # the rest is alpha
        self.scale = _SCALE.get(pixels.dtype)

    def result(self, out: torch.Tensor | None = None):
        """The caller's kind of image holding `out` (default: the output buffer), a (B, C, H, W) tensor."""
        return self._result(self.out if out is None else out)

    def load(self, b: int, rows: slice, cols: slice, device) -> torch.Tensor:
        """float32 (1, 3, h, w) in [0, 1] on device: the colour channels of one window."""
        x = self.pixels[b:b + 1, :self.color, rows, cols].to(torch.float32)
        x = x / self.scale if self.scale else x.clamp(0, 1)  # out of place: never touch the caller's data
        x = x.to(device)
        return x.repeat(1, 3, 1, 1) if self.color == 1 else x

    def store(self, y: torch.Tensor, b: int, rows: slice, cols: slice) -> None:
        """Writes a float (1, 3, h, w) result into the window, in the caller's dtype."""
        if self.color == 1:
            y = y.mean(dim=1, keepdim=True)
        if self.scale:
            y = y.mul(self.scale).round_().clamp_(0, self.scale)
        self.out[b:b + 1, :self.color, rows, cols].copy_(y)

    def _float(self, t: torch.Tensor) -> torch.Tensor:
        """float32 (1, c, H, W) in [0, 1], contiguous (what guided_denoise reads without another copy)."""
        f = torch.empty(t.shape, dtype=torch.float32, device=t.device).copy_(t)
        return f.div_(self.scale) if self.scale else f.clamp_(0, 1)

    def noise_model(self):
        """The noise model of the first image's input pixels (lowlight_core.noise.estimate_noise)."""
        from .noise import estimate_noise

        return estimate_noise(self._float(self.pixels[:1, :self.color]))

    def denoise(self, out: torch.Tensor, strength, measure_output: bool = False, model=None) -> None:
        """Denoises the colour channels of out (B, C, H, W, the pixels' dtype and layout) in place, image by
        image, given the input pixels (lowlight_core.noise.denoise: guided filter scaled by the local gain;
        measure_output: the noise model calibrated on the output, for models without curve maps; model: the
        input's noise model when already known (one image), else estimated)."""
        from .noise import denoise

        for b in range(out.shape[0]):
            x, y = self._float(self.pixels[b:b + 1, :self.color]), self._float(out[b:b + 1, :self.color])
            z = denoise(x, y, strength, model=model, measure_output=measure_output)
            if z is y:
                continue
            if self.scale:
                z = z.mul_(self.scale).round_().clamp_(0, self.scale)
            out[b:b + 1, :self.color].copy_(z)

    def copy_alpha(self) -> None:
        if self.pixels.shape[1] > self.color:
            self.out[:, self.color:].copy_(self.pixels[:, self.color:])


def _check_shape(shape, channels: int, layout: str) -> None:
    if any(s == 0 for s in shape):
        raise ValueError(f"empty image of shape {tuple(shape)}")
    if not 1 <= channels <= 4:
        raise ValueError(f"expected {layout} with 1-4 channels (gray, gray+alpha, RGB, RGBA), got "
                         f"{channels} channels in shape {tuple(shape)}")


def _check_values(t: torch.Tensor) -> None:
    if not t.is_floating_point():
        return
    if not torch.isfinite(t).all():
        raise ValueError("image contains NaN or Inf values")
    lo, hi = torch.aminmax(t)
    lo, hi = float(lo), float(hi)
    if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
        raise ValueError(f"float image values must be in [0, 1] (found min {lo:.6g}, max {hi:.6g}); scale it "
                         f"first (values within {FLOAT_TOLERANCE:g} of the range are clamped)")


def _numpy_frames(a: np.ndarray, wrap=lambda out: out) -> _Frames:
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C array, got shape {a.shape}")
    if a.dtype not in _NUMPY_DTYPES:
        raise TypeError(f"unsupported dtype {a.dtype} (expected uint8, uint16 or float in [0, 1])")
    _check_shape(a.shape, 1 if a.ndim == 2 else a.shape[2], "an H x W x C array")
    if any(s < 0 for s in a.strides):  # torch cannot view negative strides (e.g. np.fliplr)
        a = np.ascontiguousarray(a)
    with warnings.catch_warnings():  # read-only arrays (np.asarray of a PIL image): we only read them
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(a)
    dst = torch.from_numpy(np.empty(a.shape, a.dtype))  # untouched (no pages) when the photo path runs
    if a.ndim == 2:
        src, dst = src[None, None], dst[None, None]
    else:
        src, dst = src.permute(2, 0, 1)[None], dst.permute(2, 0, 1)[None]
    _check_values(src)

    def result(t):  # (1, C, H, W) back to the array's H x W (x C): a view of t's memory when it lies so
        t = t[0, 0] if a.ndim == 2 else t[0].permute(1, 2, 0)
        return wrap(np.ascontiguousarray(t.cpu().numpy()))

    return _Frames(src, dst, result)


def _pil_frames(im) -> _Frames:
    from PIL import Image

    if im.mode not in PIL_MODES:
        raise ValueError(f"unsupported PIL image mode {im.mode!r} (supported: {', '.join(PIL_MODES)}; "
                         "use image.convert('RGB') first)")
    info = dict(im.info)

    def to_pil(out):
        res = Image.fromarray(out)
        res.info.update(info)
        return res

    return _numpy_frames(np.asarray(im), to_pil)


def _tensor_frames(t: torch.Tensor) -> _Frames:
    if t.dim() not in (3, 4):
        raise ValueError(f"expected a C x H x W or B x C x H x W tensor, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"tensor images must be floating point with values in [0, 1], got {t.dtype}")
    if t.is_meta:
        raise ValueError("the tensor is on the 'meta' device: it has a shape but no values to enhance")
    batch = (t if t.dim() == 4 else t[None]).detach()
    _check_shape(batch.shape, batch.shape[1], "a B x C x H x W tensor")
    _check_values(batch)
    out = torch.empty(batch.shape, dtype=t.dtype, device=t.device)
    return _Frames(batch, out, lambda o: (o if t.dim() == 4 else o[0]).to(t.device))


def _frames(image) -> _Frames:
    if isinstance(image, torch.Tensor):
        return _tensor_frames(image)
    if isinstance(image, np.ndarray):
        return _numpy_frames(image)
    if "PIL" in sys.modules and isinstance(image, sys.modules["PIL"].Image.Image):
        return _pil_frames(image)
    raise TypeError(f"image must be a numpy array, a PIL image or a torch tensor, got {type(image).__name__}")


def input_noise(inp):
    """The noise model (lowlight_core.noise.NoiseModel) of a numpy image as denoise_like estimates it: callers
    that denoise the same input many times (the napari widget's sliders) keep it and pass it back."""
    return _numpy_frames(np.asarray(inp)).noise_model()


def denoise_like(inp, out, strength, curve_model: bool = True, noise_model=None) -> None:
    """Denoises `out` (an enhanced numpy array) in place given the array `inp` it was enhanced from (same
    shape and dtype, H x W or H x W x C): what enhance(..., denoise=strength) adds after the model
    (curve_model: whether the model has curve maps; if not, the noise model is calibrated on the output;
    noise_model: input_noise(inp), when the caller has it). The napari widget uses it on its previews and
    stacks."""
    check_denoise(strength)
    if strength == 0:
        return
    inp = np.asarray(inp)
    if out.shape != inp.shape or out.dtype != inp.dtype:
        raise ValueError(f"denoise_like: out {out.shape} {out.dtype} does not match the input {inp.shape} {inp.dtype}")
    frames = _numpy_frames(inp)
    dst = torch.from_numpy(out)
    dst = dst[None, None] if out.ndim == 2 else dst.permute(2, 0, 1)[None]
    frames.denoise(dst, strength, measure_output=not curve_model, model=noise_model)


# ---------------------------------------------------------------- running the model

def _check_finite(alpha: torch.Tensor, model) -> None:
    """NaN curve maps would become arbitrary integers in the photo path: refuse them."""
    if not torch.isfinite(alpha).all():
        name = model if isinstance(model, str) else type(model).__name__
        raise ValueError(f"model {name!r} produced NaN or Inf curve maps (alpha): its weights are not finite")


def _windows(height: int, width: int, core: int, halo: int):
    """(input rows, input cols, crop rows, crop cols, output rows, output cols) covering the image."""
    for y0 in range(0, height, core):
        y1 = min(y0 + core, height)
        iy0, iy1 = max(0, y0 - halo), min(height, y1 + halo)
        for x0 in range(0, width, core):
            x1 = min(x0 + core, width)
            ix0, ix1 = max(0, x0 - halo), min(width, x1 + halo)
            yield (slice(iy0, iy1), slice(ix0, ix1), slice(y0 - iy0, y1 - iy0), slice(x0 - ix0, x1 - ix0),
                   slice(y0, y1), slice(x0, x1))


def enhance(image, model="zero_dce_pp", iterations: int = ITERATIONS_DEFAULT, exposure: float = EXPOSURE_DEFAULT,
            device="auto",
            tile: int | None = None, weights=None, denoise=DENOISE_DEFAULT, curve_maps=None):
    """Enhance a low-light image; returns the same kind, shape and dtype (see the module docstring).

    model: a registered name (see `lowlight models` / list_models()) or a model module with .enhance.
    iterations: curve steps, 1-MAX_ITERATIONS (curve models; others ignore it). exposure: target exposure E in
    EXPOSURE_RANGE
    (curve models trained with E-conditioning; others ignore it). device: 'auto', 'cpu', 'cuda', 'cuda:N'.
    tile: core tile size in pixels for full-resolution networks (None: the network's inference_tile, else 512;
    0: never tile).
    weights: a weights file to use instead of the shipped one.
    denoise: 0 (default, off: the output is exactly what it is without this control), a strength in [0, 1], or
    'auto' (strength from the input's estimated noise and the enhancement's gain): a noise-aware guided filter
    on the result (lowlight_core.noise; luminance and chroma separately, stronger where the gain is higher).
    curve_maps: for models with estimate_alpha_photo (Zero-DCE++), the curve maps to apply instead of estimating
    them from this image (what estimate_alpha_photo returns; enhance_sequence passes maps smoothed over time).
    """
    check_controls(iterations, exposure, tile, denoise)
    frames = _frames(image)
    dev = resolve_device(device, frames.pixels)
    net = _get_model(model, dev, weights)
    photo_curve = getattr(net, "photo_curve_ok", False)
    if curve_maps is not None and not (photo_curve and hasattr(net, "estimate_alpha_photo")):
        raise ValueError("curve_maps are taken only by models with a low-resolution curve estimate (zero_dce_pp)")
    if photo_curve and hasattr(net, "estimate_alpha_photo"):
        # Curve models with a low-resolution estimate (Zero-DCE++): the image stays in its own dtype and
        # layout, one fused pass (net.photo_curve), no full-size float copy. Outside inference_mode: the
        # result is handed back as is (no copy), and a returned tensor must not be an inference tensor.
        with torch.no_grad():
            pixels = frames.pixels.to(dev)
            alpha = (net.estimate_alpha_photo(pixels, exposure=float(exposure)) if curve_maps is None
                     else curve_maps.to(dev))
            _check_finite(alpha, model)
            out = net.photo_curve(pixels, alpha, int(iterations))
            if denoise != 0:
                frames.denoise(out, denoise)
            return frames.result(out)
    halo = int(getattr(net, "receptive_radius", 0))
    if isinstance(model, str):  # a registered network (a caller's own module runs as given)
        net = inference_model(net)
    fast = getattr(net, "channels_last_inputs", False)
    core = default_tile(net) if tile is None else tile
    batch, _, height, width = frames.pixels.shape
    if halo == 0 or core == 0:
        core = max(height, width)  # one window: the whole image
    with torch.inference_mode():
        for b in range(batch):
            for in_rows, in_cols, crop_rows, crop_cols, rows, cols in _windows(height, width, core, halo):
                x = frames.load(b, in_rows, in_cols, dev)
                if fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                if photo_curve:
                    # full-resolution curve maps (Zero-DCE): estimated per tile on the float window, the
                    # curve applied in one pass straight from and to the image's own dtype
                    alpha = net.estimate_alpha(x, exposure=float(exposure))[:, :, crop_rows, crop_cols].contiguous()
                    _check_finite(alpha, model)
                    y = net.photo_curve(frames.pixels[b:b + 1, :, rows, cols].to(dev), alpha, int(iterations))
                    frames.out[b:b + 1, :, rows, cols].copy_(y)
                    continue
                y = net.enhance(x, exposure=float(exposure), iterations=int(iterations))
                if not torch.isfinite(y).all():  # NaN curve maps (alpha) or weights: never a silent NaN image
                    name = model if isinstance(model, str) else type(model).__name__
                    raise ValueError(f"model {name!r} produced NaN or Inf values (its weights or its curve "
                                     "parameters alpha are not finite)")
                frames.store(y[:, :, crop_rows, crop_cols], b, rows, cols)
        frames.copy_alpha()
        if denoise != 0:  # networks without curve maps remove some noise themselves: measure what they left
            frames.denoise(frames.out, denoise, measure_output=not hasattr(net, "estimate_alpha"))
    return frames.result()

