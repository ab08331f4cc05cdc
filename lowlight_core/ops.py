"""The public fused ops: native kernels (lowlight_core._C) when built, the pure-PyTorch reference otherwise.

Backend choice, fixed at import and changeable with `set_backend`:
  LOWLIGHT_BACKEND=reference  always the reference
  LOWLIGHT_BACKEND=native     the native kernels, or ImportError (tests and CI use this)
  unset / auto                native when available, else the reference with one warning
Native kernels: a prebuilt lowlight_core._C, or the bundled sources compiled on first use (see _native.py).
Native kernels cover float32/float64 on CPU and float32/float16/bfloat16/float64 on CUDA (when built
with CUDA), and uint8/uint16/float32/float64 images for the photo ops (photo_curve, photo_value_curve,
area_reduce: CPU only; bilateral_apply: also float16 / bfloat16, CPU and CUDA); bilateral_transform: float32 /
float64 only, CPU and CUDA; any other device/dtype pair runs the reference, which gives the same result.
"""
from __future__ import annotations

import math
import os
import warnings

import torch

from . import reference
from ._native import load as _load_native
from .controls import MAX_ITERATIONS, MAX_KSIZE  # also compiled into the kernels (csrc/limits.h)
from .reference import TV_KINDS

# The native kernels: a prebuilt lowlight_core._C, else the bundled sources compiled on first use (_native.py).
_native = _load_native(compile_ok=os.environ.get("LOWLIGHT_BACKEND") != "reference")
_C, _native_error = _native.lib, _native.reason
_backend = "reference"


def set_backend(name: str) -> None:
    """'native', 'reference' or 'auto' (see the module docstring)."""
    global _backend
    if name not in ("native", "reference", "auto"):
        raise ValueError(f"backend must be 'native', 'reference' or 'auto', got {name!r}")
    if name == "native" and _C is None:
        raise ImportError(f"LOWLIGHT_BACKEND=native but {_native_error}")
    if name == "auto":
        if _C is None:
            warnings.warn(f"{_native_error}; using the slower pure-PyTorch reference ops", stacklevel=2)
        name = "native" if _C is not None else "reference"
    _backend = name


def backend() -> str:
    """'native' or 'reference': which implementation the ops use."""
    return _backend


def backend_reason() -> str:
    """Why backend() is what it is: where the native kernels came from, or why they are missing."""
    if _backend == "native":
        return _native.reason
    if _C is not None:
        return "LOWLIGHT_BACKEND=reference (native kernels available: " + _native.reason + ")"
    return _native.reason


def cuda_built() -> bool:
    return _C is not None and bool(_C.with_cuda)


set_backend(os.environ.get("LOWLIGHT_BACKEND", "auto") or "auto")


# ---------------------------------------------------------------- shared: dispatch, input checks, registration
# Each op below has one section: its checks (clear messages, no crashes), the public wrapper, and, for the
# native kernel, its fake (shapes for torch.compile / opcheck, with torch._check for what the kernel assumes)
# and its autograd formula.

# The dtypes of the native float kernels per device (the C++ checks them too).
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64),
                  "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16)}


def _native_for(t: torch.Tensor) -> bool:
    if _backend != "native" or (t.device.type == "cuda" and not cuda_built()):
        return False
    return t.dtype in _KERNEL_DTYPES.get(t.device.type, ())


def _native_photo(image: torch.Tensor, cuda: bool = True) -> bool:
    if _backend != "native" or image.dtype not in PHOTO_DTYPES:
        return False
    return image.device.type == "cpu" or (cuda and image.device.type == "cuda" and cuda_built())


PHOTO_DTYPES = (torch.uint8, torch.uint16, torch.float32, torch.float64)  # the native kernels' image dtypes


def _check_image(name: str, t, op: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be 4-D (B, C, H, W), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    if t.shape[1] < 1 or t.shape[2] < 1 or t.shape[3] < 1:
        raise ValueError(f"{op}: {name} has an empty dimension: shape {tuple(t.shape)}")


def _check_same(op: str, a_name, a, b_name, b) -> None:
    if a.device != b.device:
        raise ValueError(f"{op}: {a_name} is on {a.device} but {b_name} is on {b.device}")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} is {a.dtype} but {b_name} is {b.dtype}")


def _check_pair(op: str, a_name, a, b_name, b) -> None:
    """Two images of one op that must match in shape, dtype and device."""
    _check_image(a_name, a, op)
    _check_image(b_name, b, op)
    _check_same(op, a_name, a, b_name, b)
    if a.shape != b.shape:
        raise ValueError(f"{op}: {b_name} shape {tuple(b.shape)} != {a_name} shape {tuple(a.shape)}")


def _check_int(op: str, name: str, v, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}], got {v}")


def _check_photo_image(op: str, image) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{op}: image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() != 4:
        raise ValueError(f"{op}: image must be 4-D (B, C, H, W), got shape {tuple(image.shape)}")
    if not (image.dtype in (torch.uint8, torch.uint16) or image.is_floating_point()):
        raise TypeError(f"{op}: image must be uint8, uint16 or floating point, got {image.dtype}")
    if not 1 <= image.shape[1] <= 4:
        raise ValueError(f"{op}: image must have 1-4 channels (gray, gray+alpha, RGB, RGBA), got shape "
                         f"{tuple(image.shape)}")
    if image.shape[2] < 1 or image.shape[3] < 1:
        raise ValueError(f"{op}: image has an empty dimension: shape {tuple(image.shape)}")


# A fake refuses what its kernel refuses, with torch._check, so that torch.compile / FakeTensorMode reject the
# input the real op rejects.
def _fake_image(op: str, name: str, t) -> None:
    """The kernels' checks of a float image argument: 4-D, a kernel dtype for its device, no empty dimension."""
    torch._check(t.dim() == 4, lambda: f"{op}: {name} must be 4-D (B, C, H, W), got {t.dim()}-D")
    dtypes = _KERNEL_DTYPES.get(t.device.type, _KERNEL_DTYPES["cuda"])
    torch._check(t.dtype in dtypes, lambda: f"{op}: {name} must be one of {dtypes} on {t.device.type}, got {t.dtype}")
    torch._check(t.shape[1] >= 1 and t.shape[2] >= 1 and t.shape[3] >= 1,
                 lambda: f"{op}: {name} has an empty dimension: shape {tuple(t.shape)}")


def _fake_same(op: str, a_name: str, a, b_name: str, b, shape: bool = True) -> None:
    """The kernels' checks that b matches a in device, dtype and (shape=True) shape."""
    torch._check(b.device == a.device, lambda: f"{op}: {b_name} is on {b.device} but {a_name} is on {a.device}")
    torch._check(b.dtype == a.dtype, lambda: f"{op}: {b_name} is {b.dtype} but {a_name} is {a.dtype}")
    if shape:
        torch._check(b.shape == a.shape,
                     lambda: f"{op}: {b_name} shape {tuple(b.shape)} != {a_name} shape {tuple(a.shape)}")


def _fake_range(op: str, name: str, v, lo, hi) -> None:
    torch._check(lo <= v <= hi, lambda: f"{op}: {name} must be in [{lo}, {hi}], got {v}")


def _fake_scalar_grad(op: str, grad, like) -> None:
    torch._check(grad.numel() == 1, lambda: f"{op}: grad must have one element, got shape {tuple(grad.shape)}")
    torch._check(grad.device == like.device,
                 lambda: f"{op}: grad is on {grad.device} but the input is on {like.device}")


def _fake(name: str):
    """Decorator: the fake kernel of lowlight::name (registered only when the native library is loaded)."""
    def register(fn):
        if _C is not None:
            torch.library.register_fake("lowlight::" + name)(fn)
        return fn
    return register


def _autograd(name: str, backward, setup_context) -> None:
    if _C is not None:
        torch.library.register_autograd("lowlight::" + name, backward, setup_context=setup_context)


def _contiguous_like(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- le_curve

def check_le_curve(x, alpha, iterations) -> None:
    op = "le_curve"
    _check_image("x", x, op)
    _check_image("alpha", alpha, op)
    _check_same(op, "x", x, "alpha", alpha)
    _check_int(op, "iterations", iterations, 1, MAX_ITERATIONS)
    B, C = x.shape[:2]
    if alpha.shape[0] != B:
        raise ValueError(f"{op}: alpha batch {alpha.shape[0]} != x batch {B}")
    if alpha.shape[1] % C != 0:
        raise ValueError(f"{op}: alpha must have C*k channels (C={C}, k>=1), got {alpha.shape[1]}")


def le_curve(x: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """y = LE^n(x) with LE(x) = x + alpha * x * (1 - x) (alpha > 0 brightens).

    x: (B, C, H, W) in [0, 1]. alpha: (B, C*k, h, w), k >= 1; step i uses map min(i, k-1) (k = 1: one
    shared map, Zero-DCE++; k = n: one map per step, Zero-DCE). If (h, w) != (H, W) alpha is bilinearly
    resized (align_corners=False) inside the kernel, never materialized at full size.
    Returns a contiguous (B, C, H, W) tensor. Differentiable in x and alpha. The backward is bitwise
    repeatable on the CPU; on CUDA the gradient of a resized alpha uses float atomics unless
    torch.use_deterministic_algorithms(True) is on, which selects a fixed-order (slower) path.
    """
    check_le_curve(x, alpha, iterations)
    if _native_for(x):
        return torch.ops.lowlight.le_curve(x, alpha, iterations)
    return reference.le_curve(x, alpha, iterations)


def _le_curve_fake_checks(op, x, alpha, iterations) -> None:
    _fake_image(op, "x", x)
    _fake_image(op, "alpha", alpha)
    _fake_same(op, "x", x, "alpha", alpha, shape=False)
    _fake_range(op, "iterations", iterations, 1, MAX_ITERATIONS)
    torch._check(alpha.shape[0] == x.shape[0], lambda: f"{op}: alpha batch {alpha.shape[0]} != x batch {x.shape[0]}")
    torch._check(alpha.shape[1] % x.shape[1] == 0,
                 lambda: f"{op}: alpha must have C*k channels (C={x.shape[1]}, k>=1), got {alpha.shape[1]}")


@_fake("le_curve")
def _le_curve_fake(x, alpha, iterations):
    _le_curve_fake_checks("le_curve", x, alpha, iterations)
    return _contiguous_like(x)


@_fake("le_curve_backward")
def _le_curve_backward_fake(grad_y, x, alpha, iterations):
    _le_curve_fake_checks("le_curve_backward", x, alpha, iterations)
    _fake_same("le_curve_backward", "x", x, "grad_y", grad_y)
    return _contiguous_like(x), _contiguous_like(alpha)


def _le_curve_setup(ctx, inputs, output):
    x, alpha, iterations = inputs
    ctx.save_for_backward(x, alpha)
    ctx.iterations = iterations


def _le_curve_backward(ctx, grad_y):
    x, alpha = ctx.saved_tensors
    gx, ga = torch.ops.lowlight.le_curve_backward(grad_y, x, alpha, ctx.iterations)
    return gx, ga, None


_autograd("le_curve", _le_curve_backward, _le_curve_setup)


# ---------------------------------------------------------------- blur_color_loss

def check_blur_color_loss(x, y, sigma, ksize) -> None:
    op = "blur_color_loss"
    _check_pair(op, "x", x, "y", y)
    _check_int(op, "ksize", ksize, 1, MAX_KSIZE)
    if ksize % 2 == 0:
        raise ValueError(f"{op}: ksize must be odd, got {ksize}")
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{op}: sigma must be a finite number > 0, got {sigma!r}")


def blur_color_loss(x: torch.Tensor, y: torch.Tensor, sigma: float = 3.0, ksize: int = 21) -> torch.Tensor:
    """mean((G * (x - y))^2), G the normalized ksize x ksize Gaussian of std sigma, zero padding.

    x, y: (B, C, H, W). Returns a 0-d tensor of x's dtype. Differentiable in x and y.
    """
    check_blur_color_loss(x, y, sigma, ksize)
    if _native_for(x):
        return torch.ops.lowlight.blur_color_loss(x, y, float(sigma), ksize)
    return reference.blur_color_loss(x, y, float(sigma), ksize)


def _blur_color_loss_fake_checks(op, x, y, sigma, ksize) -> None:
    _fake_image(op, "x", x)
    _fake_same(op, "x", x, "y", y)
    torch._check(1 <= ksize <= MAX_KSIZE and ksize % 2 == 1,
                 lambda: f"{op}: ksize must be odd in [1, {MAX_KSIZE}], got {ksize}")
    torch._check(math.isfinite(sigma) and sigma > 0, lambda: f"{op}: sigma must be a finite number > 0, got {sigma}")


@_fake("blur_color_loss")
def _blur_color_loss_fake(x, y, sigma, ksize):
    _blur_color_loss_fake_checks("blur_color_loss", x, y, sigma, ksize)
    return x.new_empty(())


@_fake("blur_color_loss_backward")
def _blur_color_loss_backward_fake(grad, x, y, sigma, ksize):
    _blur_color_loss_fake_checks("blur_color_loss_backward", x, y, sigma, ksize)
    _fake_scalar_grad("blur_color_loss_backward", grad, x)
    return _contiguous_like(x)


def _blur_color_loss_setup(ctx, inputs, output):
    x, y, sigma, ksize = inputs
    ctx.save_for_backward(x, y)
    ctx.sigma, ctx.ksize = sigma, ksize


def _blur_color_loss_backward(ctx, grad):
    x, y = ctx.saved_tensors
    gx = torch.ops.lowlight.blur_color_loss_backward(grad, x, y, ctx.sigma, ctx.ksize)
    return gx, (-gx if ctx.needs_input_grad[1] else None), None, None


_autograd("blur_color_loss", _blur_color_loss_backward, _blur_color_loss_setup)


# ---------------------------------------------------------------- tv_loss

def check_tv_loss(t, kind) -> None:
    _check_image("t", t, "tv_loss")
    if kind not in TV_KINDS:
        raise ValueError(f"tv_loss: kind must be one of {TV_KINDS}, got {kind!r}")


def tv_loss(t: torch.Tensor, kind: str = "zero_dce") -> torch.Tensor:
    """Total variation of (B, C, H, W) t; kind 'zero_dce', 'l1' or 'iso' (see reference.tv_loss)."""
    check_tv_loss(t, kind)
    if _native_for(t):
        return torch.ops.lowlight.tv_loss(t, kind)
    return reference.tv_loss(t, kind)


def _tv_loss_fake_checks(op, t, kind) -> None:
    _fake_image(op, "t", t)
    torch._check(kind in TV_KINDS, lambda: f"{op}: kind must be one of {TV_KINDS}, got {kind!r}")


@_fake("tv_loss")
def _tv_loss_fake(t, kind):
    _tv_loss_fake_checks("tv_loss", t, kind)
    return t.new_empty(())


@_fake("tv_loss_backward")
def _tv_loss_backward_fake(grad, t, kind):
    _tv_loss_fake_checks("tv_loss_backward", t, kind)
    _fake_scalar_grad("tv_loss_backward", grad, t)
    return _contiguous_like(t)


def _tv_loss_setup(ctx, inputs, output):
    t, kind = inputs
    ctx.save_for_backward(t)
    ctx.kind = kind


def _tv_loss_backward(ctx, grad):
    (t,) = ctx.saved_tensors
    return torch.ops.lowlight.tv_loss_backward(grad, t, ctx.kind), None


_autograd("tv_loss", _tv_loss_backward, _tv_loss_setup)


# ---------------------------------------------------------------- photo_curve (the photo path: forward only)

def check_photo_curve(image, alpha, iterations, op="photo_curve") -> None:
    _check_photo_image(op, image)
    _check_image("alpha", alpha, op)
    if alpha.dtype != torch.float32:
        raise TypeError(f"{op}: alpha must be float32, got {alpha.dtype}")
    if alpha.device != image.device:
        raise ValueError(f"{op}: alpha is on {alpha.device} but image is on {image.device}")
    _check_int(op, "iterations", iterations, 1, MAX_ITERATIONS)
    if alpha.shape[0] != image.shape[0]:
        raise ValueError(f"{op}: alpha batch {alpha.shape[0]} != image batch {image.shape[0]}")
    if op == "photo_curve" and alpha.shape[1] % reference.CURVE_CHANNELS != 0:
        raise ValueError(f"{op}: alpha must have 3*k channels (RGB curve maps), got {alpha.shape[1]}")


def photo_curve(image: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """Curve-enhance an image in its own dtype and memory layout in one pass (inference, no autograd).

    image: (B, C, H, W), C in 1-4 (gray, gray + alpha, RGB, RGBA); uint8 / uint16 (scaled by 255 / 65535,
    results rounded to nearest, ties to even) or float in [0, 1] (clamped). An H x W x C photo is the view
    torch.from_numpy(a).permute(2, 0, 1)[None] (channels_last): it is read and written as it lies.
    alpha: (B, 3k, h, w) float32 RGB curve maps, resized inside the kernel as in le_curve. The result is
    clamp(LE^n(x), 0, 1); gray gets the mean of the three curves; alpha channels are copied.
    Returns torch.empty_like(image) filled (same dtype and layout). See reference.photo_curve.
    """
    check_photo_curve(image, alpha, iterations)
    if _native_photo(image):
        return torch.ops.lowlight.photo_curve(image, alpha, iterations)
    return reference.photo_curve(image, alpha, iterations)


def _photo_fake_checks(op, image, alpha, iterations, map_channels) -> None:
    torch._check(image.dim() == 4, lambda: f"{op}: image must be 4-D (B, C, H, W), got {image.dim()}-D")
    torch._check(image.dtype in PHOTO_DTYPES, lambda: f"{op}: image must be one of {PHOTO_DTYPES}, got {image.dtype}")
    torch._check(1 <= image.shape[1] <= 4, lambda: f"{op}: image must have 1-4 channels, got {image.shape[1]}")
    torch._check(image.shape[2] >= 1 and image.shape[3] >= 1,
                 lambda: f"{op}: image has an empty dimension: shape {tuple(image.shape)}")
    torch._check(alpha.dim() == 4, lambda: f"{op}: alpha must be 4-D, got {alpha.dim()}-D")
    torch._check(alpha.dtype == torch.float32, lambda: f"{op}: alpha must be float32, got {alpha.dtype}")
    torch._check(alpha.device == image.device,
                 lambda: f"{op}: alpha is on {alpha.device} but image is on {image.device}")
    _fake_range(op, "iterations", iterations, 1, MAX_ITERATIONS)
    torch._check(alpha.shape[2] >= 1 and alpha.shape[3] >= 1,
                 lambda: f"{op}: alpha has an empty dimension: shape {tuple(alpha.shape)}")
    torch._check(alpha.shape[0] == image.shape[0],
                 lambda: f"{op}: alpha batch {alpha.shape[0]} != image batch {image.shape[0]}")
    torch._check(alpha.shape[1] >= map_channels and alpha.shape[1] % map_channels == 0,
                 lambda: f"{op}: alpha must have {'3*k' if map_channels == 3 else 'k'} channels (k >= 1), got "
                         f"{alpha.shape[1]}")


@_fake("photo_curve")
def _photo_curve_fake(image, alpha, iterations):
    _photo_fake_checks("photo_curve", image, alpha, iterations, reference.CURVE_CHANNELS)
    return torch.empty_like(image)


# ---------------------------------------------------------------- photo_value_curve (forward only)

def photo_value_curve(image: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """photo_curve for models that curve the value (models.zero_dce.value_curve): one pass in the image's own
    dtype and layout, one curve per pixel on v = max(r, g, b) (gray: the gray value), every colour channel
    times v' / max(v, 1e-6), clamped to [0, 1]; integers rounded to nearest (ties to even), alpha copied.

    image: as photo_curve. alpha: (B, k, h, w) float32, one map per step (k = 1: shared by all steps), resized
    inside the kernel as in le_curve; for a model's RGB maps pass their channel mean (taken at low resolution:
    CurveEstimator.photo_curve does). Returns torch.empty_like(image) filled. See reference.photo_value_curve.
    """
    check_photo_curve(image, alpha, iterations, "photo_value_curve")
    if _native_photo(image):
        return torch.ops.lowlight.photo_value_curve(image, alpha, iterations)
    return reference.photo_value_curve(image, alpha, iterations)


@_fake("photo_value_curve")
def _photo_value_curve_fake(image, alpha, iterations):
    _photo_fake_checks("photo_value_curve", image, alpha, iterations, 1)
    return torch.empty_like(image)


# ---------------------------------------------------------------- area_reduce (the estimate's downscale)

def area_reduce(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float32 (B, C, height, width) block means of image (B, C, H, W) in its own units (uint8, uint16 or
    float, any layout), as adaptive average pooling, read straight from the image (no float copy of it)."""
    op = "area_reduce"
    _check_photo_image(op, image)
    _check_int(op, "height", height, 1, 2 ** 31 - 1)
    _check_int(op, "width", width, 1, 2 ** 31 - 1)
    if _native_photo(image, cuda=False):
        return torch.ops.lowlight.area_reduce(image, height, width)
    return reference.area_reduce(image, height, width)


@_fake("area_reduce")
def _area_reduce_fake(image, height, width):
    op = "area_reduce"
    torch._check(image.device.type != "cuda", lambda: f"{op}: there is no CUDA kernel (image is on {image.device})")
    torch._check(image.dim() == 4, lambda: f"{op}: image must be 4-D (B, C, H, W), got {image.dim()}-D")
    torch._check(image.dtype in PHOTO_DTYPES, lambda: f"{op}: image must be one of {PHOTO_DTYPES}, got {image.dtype}")
    torch._check(image.shape[1] >= 1 and image.shape[2] >= 1 and image.shape[3] >= 1,
                 lambda: f"{op}: image has an empty dimension: shape {tuple(image.shape)}")
    torch._check(height >= 1 and width >= 1, lambda: f"{op}: the output size must be positive, got {height} x {width}")
    return image.new_empty((image.shape[0], image.shape[1], height, width), dtype=torch.float32)


# ---------------------------------------------------------------- guided_denoise (inference)

def check_guided_denoise(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius) -> None:
    op = "guided_denoise"
    _check_pair(op, "x", x, "guide", guide)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{op}: x must have 1 (gray) or 3 (RGB) channels, got shape {tuple(x.shape)}")
    for name, v, lo, hi in (("noise_a", noise_a, -math.inf, math.inf), ("noise_b", noise_b, -math.inf, math.inf),
                            ("luma", luma, 0.0, math.inf), ("chroma", chroma, 0.0, 1.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            bounds = "" if lo < 0 else " >= 0" if hi == math.inf else f" in [{lo:g}, {hi:g}]"
            raise ValueError(f"{op}: {name} must be a finite number{bounds}, got {v!r}")
    _check_int(op, "luma_radius", luma_radius, 0, 2 ** 20)
    _check_int(op, "chroma_radius", chroma_radius, 0, 2 ** 20)


def guided_denoise(x: torch.Tensor, guide: torch.Tensor, noise_a: float, noise_b: float, luma: float,
                   chroma: float, luma_radius: int, chroma_radius: int) -> torch.Tensor:
    """Noise-aware edge-preserving filter of an enhanced image (inference, no autograd on the native path).

    x: (B, C, H, W) float, C = 1 or 3, the enhanced image in [0, 1]; guide: the image x was enhanced from (same
    shape, dtype, device), whose per-channel noise variance is noise_a * I + noise_b (lowlight_core.noise).
    The luminance gets a self-guided filter (radius luma_radius) whose eps is luma * gain^2 * noise variance of
    the window, gain = the local mean of the output's luminance over the input's; each chroma plane x_c - L
    moves the share chroma (in [0, 1]) towards its estimate as a local linear function of the denoised
    luminance (radius chroma_radius), so colour edges stay where the luminance has edges. Returns a contiguous
    tensor like x, clamped to [0, 1].
    Box filters are running sums: the cost does not depend on the radii. See reference.guided_denoise.
    """
    check_guided_denoise(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius)
    args = (float(noise_a), float(noise_b), float(luma), float(chroma), int(luma_radius), int(chroma_radius))
    if _native_for(x):
        return torch.ops.lowlight.guided_denoise(x, guide, *args)
    return reference.guided_denoise(x, guide, *args)


@_fake("guided_denoise")
def _guided_denoise_fake(x, guide, noise_a, noise_b, luma, chroma, luma_radius, chroma_radius):
    op = "guided_denoise"
    _fake_image(op, "x", x)
    _fake_same(op, "x", x, "guide", guide)
    torch._check(x.shape[1] in (1, 3), lambda: f"{op}: x must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]}")
    torch._check(luma_radius >= 0 and chroma_radius >= 0, lambda: f"{op}: radii must be >= 0")
    torch._check(math.isfinite(noise_a) and math.isfinite(noise_b), lambda: f"{op}: the noise model must be finite")
    torch._check(math.isfinite(luma) and luma >= 0, lambda: f"{op}: luma must be finite and >= 0, got {luma}")
    torch._check(0 <= chroma <= 1, lambda: f"{op}: chroma must be in [0, 1], got {chroma}")
    return _contiguous_like(x)


# ---------------------------------------------------------------- bilateral_apply (the bilateral-grid model's apply)

def check_bilateral_apply(image, grid, guide) -> None:
    op = "bilateral_apply"
    _check_photo_image(op, image)
    _check_grid_and_guide(op, "image", image, grid, guide)


def _check_grid_and_guide(op, name, image, grid, guide) -> None:
    """The checks of a bilateral grid and its guide against the image `name` they apply to."""
    for arg, t in (("grid", grid), ("guide", guide)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {arg} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{op}: {arg} must be floating point, got {t.dtype}")
        if t.device != image.device:
            raise ValueError(f"{op}: {arg} is on {t.device} but {name} is on {image.device}")
    if grid.dim() != 5 or grid.shape[0] != image.shape[0] or grid.shape[1] != reference.GRID_COEFFS \
            or min(grid.shape[2:]) < 1:
        raise ValueError(f"{op}: grid must be (B, {reference.GRID_COEFFS}, D, Gh, Gw) with B = the {name}'s "
                         f"{image.shape[0]}, got shape {tuple(grid.shape)}")
    if guide.shape != (4,):
        raise ValueError(f"{op}: guide must be (4,) (w_r, w_g, w_b, bias), got shape {tuple(guide.shape)}")


# The image dtypes of the native bilateral_apply kernels (photo dtypes and the half floats).
BILATERAL_DTYPES = PHOTO_DTYPES + (torch.float16, torch.bfloat16)


def bilateral_apply(image: torch.Tensor, grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """A bilateral grid of affine colour transforms applied to an image in its own dtype and layout (the
    bilateral-grid model's full-resolution pass): see reference.bilateral_apply. Returns a tensor like
    torch.empty_like(image).

    The native kernel (CPU and CUDA) is forward only: one pass over the image, the grid sliced inside the kernel,
    no float copy of the image. When autograd needs a gradient (grad mode on and image, grid or guide requiring
    grad) the call runs the differentiable reference instead (the model trains through bilateral_transform below,
    which has native backward kernels). Integer
    results may differ from the reference by 1 level at a rounding tie (the trilinear weights are applied in
    another order)."""
    check_bilateral_apply(image, grid, guide)
    wants_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (image, grid, guide))
    # the reference computes a non-float64 image in float32: a float32 copy of the tiny grid and guide is exact
    narrow = image.dtype != torch.float64 or (grid.dtype == guide.dtype == torch.float32)
    if (_backend == "native" and image.dtype in BILATERAL_DTYPES and narrow and not wants_grad
            and (image.device.type == "cpu" or (image.device.type == "cuda" and cuda_built()))):
        return torch.ops.lowlight.bilateral_apply(image, grid.to(torch.float32), guide.to(torch.float32))
    return reference.bilateral_apply(image, grid, guide)


@_fake("bilateral_apply")
def _bilateral_apply_fake(image, grid, guide):
    op, coeffs = "bilateral_apply", reference.GRID_COEFFS
    torch._check(image.dim() == 4, lambda: f"{op}: image must be 4-D (B, C, H, W), got {image.dim()}-D")
    torch._check(image.dtype in BILATERAL_DTYPES,
                 lambda: f"{op}: image must be one of {BILATERAL_DTYPES}, got {image.dtype}")
    torch._check(1 <= image.shape[1] <= 4, lambda: f"{op}: image must have 1-4 channels, got {image.shape[1]}")
    torch._check(image.shape[2] >= 1 and image.shape[3] >= 1,
                 lambda: f"{op}: image has an empty dimension: shape {tuple(image.shape)}")
    torch._check(grid.dim() == 5, lambda: f"{op}: grid must be 5-D (B, {coeffs}, D, Gh, Gw), got {grid.dim()}-D")
    torch._check(grid.dtype == torch.float32, lambda: f"{op}: grid must be float32, got {grid.dtype}")
    torch._check(grid.device == image.device, lambda: f"{op}: grid is on {grid.device} but image is on {image.device}")
    torch._check(grid.shape[0] == image.shape[0],
                 lambda: f"{op}: grid batch {grid.shape[0]} != image batch {image.shape[0]}")
    torch._check(grid.shape[1] == coeffs,
                 lambda: f"{op}: grid must have {coeffs} coefficients (a 3 x 4 matrix) per cell, got {grid.shape[1]}")
    torch._check(min(grid.shape[2:]) >= 1, lambda: f"{op}: grid has an empty dimension: shape {tuple(grid.shape)}")
    torch._check(guide.dim() == 1 and guide.shape[0] == 4,
                 lambda: f"{op}: guide must be (4,) (w_r, w_g, w_b, bias), got shape {tuple(guide.shape)}")
    torch._check(guide.dtype == torch.float32, lambda: f"{op}: guide must be float32, got {guide.dtype}")
    torch._check(guide.device == image.device,
                 lambda: f"{op}: guide is on {guide.device} but image is on {image.device}")
    return torch.empty_like(image)


# ---------------------------------------------------------------- bilateral_transform (the grid's training path)

def check_bilateral_transform(x, grid, guide) -> None:
    op = "bilateral_transform"
    _check_image("x", x, op)
    if x.shape[1] != reference.CURVE_CHANNELS:
        raise ValueError(f"{op}: x must have 3 (RGB) channels, got {x.shape[1]}")
    _check_grid_and_guide(op, "x", x, grid, guide)


# The native kernels' dtypes (the grid's gradients are summed over many pixels: no half floats).
TRANSFORM_DTYPES = (torch.float32, torch.float64)


def bilateral_transform(x: torch.Tensor, grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """bilateral_apply's affine step, not clamped, on a float RGB image x (B, 3, H, W) in [0, 1]: the
    bilateral-grid model's training path (see reference.bilateral_transform). Differentiable in x, grid and guide.
    The native kernels (CPU and CUDA, float32 / float64; grid and guide cast to x's dtype as the reference casts
    them) compute the forward and the backward in one pass over the image each. Returns a contiguous tensor of
    x's dtype."""
    check_bilateral_transform(x, grid, guide)
    if _native_for(x) and x.dtype in TRANSFORM_DTYPES:
        return torch.ops.lowlight.bilateral_transform(x, grid.to(x.dtype), guide.to(x.dtype))
    return reference.bilateral_transform(x, grid, guide)


def _bilateral_transform_fake_checks(op, x, grid, guide) -> None:
    coeffs = reference.GRID_COEFFS
    torch._check(x.dim() == 4, lambda: f"{op}: x must be 4-D (B, 3, H, W), got {x.dim()}-D")
    torch._check(x.dtype in TRANSFORM_DTYPES, lambda: f"{op}: x must be float32 or float64, got {x.dtype}")
    torch._check(x.shape[1] == 3, lambda: f"{op}: x must have 3 (RGB) channels, got {x.shape[1]}")
    torch._check(x.shape[2] >= 1 and x.shape[3] >= 1, lambda: f"{op}: x has an empty dimension: {tuple(x.shape)}")
    torch._check(grid.dim() == 5, lambda: f"{op}: grid must be 5-D (B, {coeffs}, D, Gh, Gw), got {grid.dim()}-D")
    torch._check(guide.dim() == 1 and guide.shape[0] == 4,
                 lambda: f"{op}: guide must be (4,) (w_r, w_g, w_b, bias), got shape {tuple(guide.shape)}")
    _fake_same(op, "x", x, "grid", grid, shape=False)
    _fake_same(op, "x", x, "guide", guide, shape=False)
    torch._check(grid.shape[0] == x.shape[0], lambda: f"{op}: grid batch {grid.shape[0]} != x batch {x.shape[0]}")
    torch._check(grid.shape[1] == coeffs,
                 lambda: f"{op}: grid must have {coeffs} coefficients (a 3 x 4 matrix) per cell, got {grid.shape[1]}")
    torch._check(min(grid.shape[2:]) >= 1, lambda: f"{op}: grid has an empty dimension: shape {tuple(grid.shape)}")


@_fake("bilateral_transform")
def _bilateral_transform_fake(x, grid, guide):
    _bilateral_transform_fake_checks("bilateral_transform", x, grid, guide)
    return _contiguous_like(x)


@_fake("bilateral_transform_backward")
def _bilateral_transform_backward_fake(grad_y, x, grid, guide):
    op = "bilateral_transform_backward"
    _bilateral_transform_fake_checks(op, x, grid, guide)
    _fake_same(op, "x", x, "grad_y", grad_y)
    return _contiguous_like(x), _contiguous_like(grid), _contiguous_like(guide)


def _bilateral_transform_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _bilateral_transform_backward(ctx, grad_y):
    x, grid, guide = ctx.saved_tensors
    return torch.ops.lowlight.bilateral_transform_backward(grad_y, x, grid, guide)


_autograd("bilateral_transform", _bilateral_transform_backward, _bilateral_transform_setup)
