"""The widget's work, free of Qt: napari layer planes in, enhanced planes out, curve maps cached.

The dock widget runs `preview_job` and `apply_job` in napari thread workers; tests call them directly.
A layer is napari-shaped: gray (..., H, W), or RGB/RGBA (..., H, W, 3|4) when `rgb` is true; leading axes
(time, z, ...) make a stack of planes, each enhanced on its own. Output planes keep the input's dtype
(uint8, uint16, float16/32/64 in [0, 1]) and shape; an alpha channel is copied through untouched.
"""
from __future__ import annotations

import itertools
import math
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from lowlight_core.controls import DENOISE_DEFAULT, EXPOSURE_DEFAULT, ITERATIONS_DEFAULT
from lowlight_core.inference import (FLOAT_TOLERANCE, check_controls, default_tile, denoise_like, input_noise,
                                     resolve_device)
from lowlight_core.inference import enhance as enhance_tensor
from lowlight_core.inference import inference_model
from lowlight_core.models import registry

DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.float16, np.float32, np.float64))
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
CACHE_BYTES = 1 << 30  # inputs and curve maps of recently previewed planes
ALPHA_TILE = 512       # tile size for estimating full-resolution curve maps (Zero-DCE) in bounded memory
# Previews of heavy models (full-resolution networks, image-to-image networks; see is_heavy) run on the plane
# downscaled to what the canvas shows (the plane fit into the canvas), and smaller still when the model's
# measured cost would make one preview take longer than PREVIEW_SECONDS; Apply runs the full resolution.
PREVIEW_SECONDS = 0.25
PREVIEW_MIN_SIDE = 128   # a preview's long side is never cut below this (nor above the plane's own)
PROBE_SIDE = 256         # long side of a model's first preview, before its cost per pixel is known


@dataclass(frozen=True)
class Settings:
    """What to run: a registered model, its controls, the device, optionally a weights file."""
    model: str = "zero_dce_pp"
    iterations: int = ITERATIONS_DEFAULT
    exposure: float = EXPOSURE_DEFAULT
    denoise: float | str = DENOISE_DEFAULT  # 0 (off), a strength in [0, 1] or "auto"
    device: str = "cpu"
    weights: str | None = None  # None: the registry's file for `model`


@dataclass
class Failure:
    """An exception caught in a worker thread, handed back to be shown as a notification."""
    error: Exception
    details: str  # formatted traceback, for logs

    @classmethod
    def from_exception(cls, error: Exception) -> Failure:
        return cls(error, "".join(traceback.format_exception(error)))

    @property
    def message(self) -> str:
        if isinstance(self.error, (MemoryError, torch.OutOfMemoryError)):
            return ("out of memory while enhancing; try the cpu device, Zero-DCE++ or a smaller image "
                    f"({type(self.error).__name__}: {self.error})")
        return f"{type(self.error).__name__}: {self.error}"


# ---------------------------------------------------------------- layer geometry

def plane_axes(rgb: bool) -> int:
    """How many trailing axes one plane spans: (H, W, C) for RGB(A), (H, W) for gray."""
    return 3 if rgb else 2


def check_layer(shape, dtype, rgb: bool) -> None:
    """ValueError/TypeError naming what is wrong with image layer data of this shape and dtype."""
    if np.dtype(dtype) not in DTYPES:
        raise TypeError(f"unsupported layer dtype {np.dtype(dtype)}: use uint8, uint16 or float in [0, 1]")
    if len(shape) < plane_axes(rgb):
        raise ValueError(f"layer of shape {tuple(shape)} has no {'H x W x C' if rgb else 'H x W'} plane")
    if rgb and shape[-1] not in (3, 4):
        raise ValueError(f"RGB layers need 3 or 4 channels (RGB, RGBA), got {shape[-1]}")
    if 0 in shape:
        raise ValueError(f"empty layer of shape {tuple(shape)}")


def stack_shape(shape, rgb: bool) -> tuple[int, ...]:
    """The leading (time, z, ...) axes of a layer: () for a single image."""
    return tuple(shape[:len(shape) - plane_axes(rgb)])


def plane_indices(shape, rgb: bool) -> list[tuple[int, ...]]:
    """Index tuples of every plane of a stack, in order; [()] for a single image."""
    return list(itertools.product(*(range(n) for n in stack_shape(shape, rgb))))


def plane_at(data_coords, shape, rgb: bool) -> tuple[int, ...]:
    """The plane shown at these data coordinates (a layer's world_to_data of the viewer's dims point)."""
    leading = stack_shape(shape, rgb)
    coords = list(data_coords)[:len(leading)]
    return tuple(int(min(max(round(float(c)), 0), n - 1)) for c, n in zip(coords, leading))


# ---------------------------------------------------------------- planes <-> tensors

def to_tensor(plane: np.ndarray, rgb: bool, device) -> torch.Tensor:
    """A layer plane -> contiguous float32 (1, 3, H, W) in [0, 1] on device (gray replicated to RGB)."""
    if plane.dtype not in DTYPES:
        raise TypeError(f"unsupported layer dtype {plane.dtype}: use uint8, uint16 or float in [0, 1]")
    t = torch.from_numpy(plane if plane.flags.writeable else plane.copy())  # torch warns on read-only arrays
    t = t[..., :3].permute(2, 0, 1) if rgb else t[None]
    t = t.to(device).to(torch.float32)  # move first: uint8 crosses the bus in a quarter of the bytes
    scale = _SCALE.get(plane.dtype)
    if scale:
        t = t / scale
    else:
        if not bool(torch.isfinite(t).all()):
            raise ValueError("the layer contains NaN or Inf values")
        lo, hi = (float(v) for v in torch.aminmax(t))
        if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
            raise ValueError(f"float layers must hold values in [0, 1] (found {lo:.4g} to {hi:.4g}); "
                             "rescale the layer first")
        t = t.clamp(0, 1)
    return t.expand(3, -1, -1).contiguous()[None]


def to_plane(y: torch.Tensor, like: np.ndarray, rgb: bool) -> np.ndarray:
    """An enhanced (1, 3, H, W) float tensor -> an array shaped and typed as `like` (alpha copied from it).

    Gray planes get the mean of the three channels; integers are rounded to nearest (ties to even).
    `y` is a fresh result and is overwritten (in place saves a full-size temporary on every preview).
    """
    out = np.empty(like.shape, like.dtype)
    y = y[0].permute(1, 2, 0) if rgb else y[0].mean(0)
    scale = _SCALE.get(like.dtype)
    y = y.mul_(scale).round_().clamp_(0, scale) if scale else y.clamp_(0, 1)
    dst = torch.from_numpy(out)
    (dst[..., :3] if rgb else dst).copy_(y)
    if rgb and like.shape[-1] == 4:
        out[..., 3] = like[..., 3]
    return out


def to_pixels(plane: np.ndarray, rgb: bool, device) -> torch.Tensor:
    """A layer plane as a (1, C, H, W) tensor in its own dtype on device: a view of the plane's memory on the
    CPU (an RGB(A) plane is a channels_last view), for net.photo_curve. Float planes are checked like
    to_tensor checks them."""
    if plane.dtype not in DTYPES:
        raise TypeError(f"unsupported layer dtype {plane.dtype}: use uint8, uint16 or float in [0, 1]")
    t = torch.from_numpy(plane if plane.flags.writeable else plane.copy())
    t = (t.permute(2, 0, 1) if rgb else t[None])[None].to(device)
    if plane.dtype.kind == "f":
        if not bool(torch.isfinite(t).all()):
            raise ValueError("the layer contains NaN or Inf values")
        lo, hi = (float(v) for v in torch.aminmax(t))
        if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
            raise ValueError(f"float layers must hold values in [0, 1] (found {lo:.4g} to {hi:.4g}); "
                             "rescale the layer first")
    return t


def from_pixels(y: torch.Tensor, rgb: bool) -> np.ndarray:
    """net.photo_curve's (1, C, H, W) result as a layer plane (no copy when it lies as one)."""
    y = y[0].permute(1, 2, 0) if rgb else y[0, 0]
    return np.ascontiguousarray(y.cpu().numpy())


def estimate_alpha(net, x: torch.Tensor, exposure: float, tile: int = ALPHA_TILE) -> torch.Tensor:
    """net.estimate_alpha(x, exposure); full-resolution estimators (receptive_radius > 0) run in tiles with a
    halo of the receptive radius, which gives the untiled maps (zero padding only at the image border).
    tile=0: never tile."""
    radius = int(getattr(net, "receptive_radius", 0))
    H, W = x.shape[2:]
    if getattr(net, "channels_last_inputs", False):  # inference_model's copy: channels_last in, contiguous out
        def estimate(x, exposure, estimate=net.estimate_alpha):
            return estimate(x.contiguous(memory_format=torch.channels_last), exposure).contiguous()
    else:
        estimate = net.estimate_alpha
    if radius == 0 or tile == 0 or max(H, W) <= tile:
        return estimate(x, exposure)
    alpha = None
    for y0, x0 in itertools.product(range(0, H, tile), range(0, W, tile)):
        y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
        iy0, ix0 = max(0, y0 - radius), max(0, x0 - radius)
        a = estimate(x[:, :, iy0:min(H, y1 + radius), ix0:min(W, x1 + radius)], exposure)
        if alpha is None:
            alpha = a.new_empty((x.shape[0], a.shape[1], H, W))
        alpha[:, :, y0:y1, x0:x1] = a[:, :, y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0]
    return alpha


# ---------------------------------------------------------------- reduced-resolution previews

def is_heavy(info, net) -> bool:
    """Whether a preview of this model runs at reduced resolution: every model but the curve models with a
    low-resolution estimate (Zero-DCE++: maps estimated on block means, one fused pass over the plane in its own
    dtype, 87 ms for 12 MP, and exact at full resolution). The networks that run on every pixel (image-to-image
    networks, Zero-DCE's full-resolution maps, which depend on the resolution they are estimated at, so maps
    estimated on a preview would not give the full-resolution result) take seconds per megapixel; gamma and CLAHE
    run in float on the whole plane (1-4 s for 12 MP)."""
    return not (info.kind == "curve" and hasattr(net, "estimate_alpha_photo"))


def preview_shape(height: int, width: int, canvas=None, max_pixels=None) -> tuple[int, int]:
    """(h, w) of a reduced preview of a height x width plane: fit into canvas (rows, cols of screen pixels,
    None: no limit), at most max_pixels pixels (None: no limit), aspect kept, never larger than the plane,
    long side never below min(PREVIEW_MIN_SIDE, the plane's)."""
    s = 1.0
    if canvas is not None:
        s = min(s, canvas[0] / height, canvas[1] / width)
    if max_pixels is not None:
        s = min(s, (max_pixels / (height * width)) ** 0.5)
    s = max(s, min(1.0, PREVIEW_MIN_SIDE / max(height, width)))
    return max(1, min(height, round(height * s))), max(1, min(width, round(width * s)))


def canvas_limit(canvas, limit):
    """The smaller of two (rows, cols) limits; None stands for no limit."""
    if canvas is None or limit is None:
        return limit if canvas is None else canvas
    return min(canvas[0], limit[0]), min(canvas[1], limit[1])


def downscale_plane(plane: np.ndarray, rgb: bool, shape) -> np.ndarray:
    """A layer plane resized to shape (h, w) by antialiased bilinear interpolation, in its own dtype (integers
    rounded; every channel, alpha included). uint8 RGB(A) stays uint8 throughout (no float copy of the plane)."""
    h, w = shape
    if (h, w) == plane.shape[:2]:
        return plane
    t = torch.from_numpy(plane if plane.flags.writeable else plane.copy())
    t = (t.permute(2, 0, 1) if rgb else t[None])[None]
    if plane.dtype == np.uint8:
        # torch's uint8 antialiased path wants channels_last with 3 or 4 channels; gray goes through float
        small = (torch.nn.functional.interpolate(t.contiguous(memory_format=torch.channels_last), size=(h, w),
                                                 mode="bilinear", antialias=True, align_corners=False)
                 if rgb else None)
    else:
        small = None
    if small is None:
        small = torch.nn.functional.interpolate(t.float(), size=(h, w), mode="bilinear", antialias=True,
                                                align_corners=False)
        scale = _SCALE.get(plane.dtype)
        small = small.round_().clamp_(0, scale) if scale else small.clamp_(0, 1)
        small = small.to(torch.from_numpy(plane[:0]).dtype)
    small = small[0].permute(1, 2, 0) if rgb else small[0, 0]
    return np.ascontiguousarray(small.numpy())


def preview_geometry(scale, translate, plane_shape, preview_hw):
    """(scale, translate) that lay a preview of preview_hw pixels over the plane of plane_shape (H, W) drawn
    with the layer's (scale, translate): each preview pixel covers H/h x W/w plane pixels, and its centre sits
    at the centre of that block, so the preview spans the layer's extent exactly."""
    scale = np.asarray(scale, dtype=float).copy()
    translate = np.asarray(translate, dtype=float).copy()
    f = np.array([plane_shape[0] / preview_hw[0], plane_shape[1] / preview_hw[1]])
    translate[-2:] = translate[-2:] + scale[-2:] * (f - 1) / 2
    scale[-2:] = scale[-2:] * f
    return scale, translate


def _windows(height: int, width: int, tile: int, halo: int):
    from lowlight_core.inference import _windows as windows  # the tiles lowlight_core.enhance uses

    return list(windows(height, width, tile, halo))


# ---------------------------------------------------------------- the enhancer with its cache

class Enhancer:
    """Enhances layer planes. Planes named by a `source` key (the widget passes (layer id, data version))
    keep their float input and, for curve models, their curve maps in an LRU cache: a change of iterations
    then only re-runs ops.le_curve. Thread-safe; the cache holds at most `cache_bytes` of tensors."""

    def __init__(self, cache_bytes: int = CACHE_BYTES):
        self.cache_bytes = cache_bytes
        self.alpha_estimates = 0  # curve maps computed (cache misses); tests and benchmarks read it
        self.noise_estimates = 0  # input noise models estimated (cache misses)
        self.seconds_per_pixel: dict = {}  # (model, device, weights) -> measured cost of a heavy preview
        self._cache: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def forget(self, source=None) -> None:
        """Drop the cached planes of one source (its data changed), or of all sources."""
        self._drop(lambda s: source is None or s == source)

    def keep_only(self, layer_ids) -> None:
        """Drop the cached planes of sources (layer id, version) whose layer id is not in layer_ids."""
        alive = set(layer_ids)
        self._drop(lambda s: s[0] not in alive)

    def _drop(self, condition) -> None:
        with self._lock:
            for key in [k for k in self._cache if condition(k[1])]:
                self._bytes -= self._cache.pop(key)[1]

    def _cached(self, key, make):
        if key[1] is None:  # no source: nothing to share with later calls
            return make()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][0]
        value = make()
        tensor = value[0] if isinstance(value, tuple) else value
        size = tensor.numel() * tensor.element_size() if isinstance(tensor, torch.Tensor) else 0
        with self._lock:
            if key not in self._cache and size <= self.cache_bytes:
                self._cache[key] = (value, size)
                self._bytes += size
                while self._bytes > self.cache_bytes:
                    self._bytes -= self._cache.popitem(last=False)[1][1]
        return value

    @torch.inference_mode()
    def enhance_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source=None,
                      index: tuple = (), tile: int | None = None, denoise: bool = True) -> np.ndarray:
        """One plane (H, W) or (H, W, 3|4) -> the enhanced plane, same shape and dtype, denoised as
        enhance(..., denoise=settings.denoise) denoises (inference.denoise_like) unless denoise is False.
        tile: as lowlight_core.enhance's (None: its default, 0: the plane in one piece)."""
        check_controls(settings.iterations, settings.exposure, denoise=settings.denoise)
        out = self._enhance_plane(plane, rgb, settings, source, index, tile)
        if denoise and settings.denoise != 0:
            if not out.flags.writeable or np.shares_memory(out, plane):
                out = out.copy()
            self.denoise_into(plane, out, settings, source, index)
        return out

    def denoise_into(self, plane: np.ndarray, out: np.ndarray, settings: Settings, source=None,
                     index: tuple = ()) -> None:
        """settings.denoise applied to `out` in place, `plane` being what it was enhanced from. A named plane
        keeps its noise model in the cache: moving a slider then does not estimate it again."""
        curve = hasattr(registry.load_model(settings.model, device=str(resolve_device(settings.device)),
                                            weights=settings.weights), "estimate_alpha")

        def make_noise():
            self.noise_estimates += 1
            return input_noise(plane)

        model = self._cached(("noise", source, index), make_noise)
        denoise_like(plane, out, settings.denoise, curve_model=curve, noise_model=model)

    def _enhance_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source, index, tile) -> np.ndarray:
        info = registry.get_model_info(settings.model)
        device = resolve_device(settings.device)
        net = registry.load_model(settings.model, device=str(device), weights=settings.weights)
        photo_curve = info.kind == "curve" and getattr(net, "photo_curve_ok", False)
        if photo_curve and hasattr(net, "estimate_alpha_photo"):
            # Zero-DCE++: maps estimated from the plane in its own dtype, the curve applied in one fused pass
            # (net.photo_curve: RGB or value curve): no float copy of the plane, neither cached nor per preview
            pixels = to_pixels(plane, rgb, device)
            exposure = round(float(settings.exposure), 6)

            def make_photo_alpha():
                self.alpha_estimates += 1
                return net.estimate_alpha_photo(pixels, exposure), net  # net kept alive: its id stays unique

            alpha, _ = self._cached(("alpha", source, index, id(net), exposure), make_photo_alpha)
            return from_pixels(net.photo_curve(pixels, alpha, settings.iterations), rgb)
        x = self._cached(("x", source, index, str(device)), lambda: to_tensor(plane, rgb, device))
        if info.kind == "curve":
            exposure = round(float(settings.exposure), 6)

            def make_alpha():
                self.alpha_estimates += 1
                # inference_model: the network's CPU inference copy; net kept alive so its id stays unique
                return estimate_alpha(inference_model(net), x, exposure, ALPHA_TILE if tile is None else tile), net

            # the model object stands for (name, device, weights file and its mtime): registry caches it
            alpha, _ = self._cached(("alpha", source, index, id(net), exposure), make_alpha)
            if photo_curve:  # full-resolution maps (Zero-DCE): the float x serves the estimate, the curve the plane
                return from_pixels(net.photo_curve(to_pixels(plane, rgb, device), alpha, settings.iterations), rgb)
            y = net.apply_curve(x, alpha, settings.iterations)
            return to_plane(y, plane, rgb)
        # image-to-image networks and classical methods; enhance tiles full-resolution networks
        y = enhance_tensor(x, model=inference_model(net), iterations=settings.iterations, exposure=settings.exposure,
                           device=device, tile=tile)
        return to_plane(y, plane, rgb)

    def preview_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source=None, index: tuple = (),
                      canvas=None, seconds: float | None = PREVIEW_SECONDS) -> np.ndarray:
        """What the live preview shows: light models (see is_heavy) enhance the whole plane; heavy ones enhance
        it downscaled (downscale_plane) to preview_shape: fit into canvas (rows, cols; None: no limit) and,
        when seconds is not None, to as many pixels as the model's measured cost lets run in that time (rounded
        down to a power of sqrt(2)). The model's first preview measures its cost on a PROBE_SIDE long side; when
        that took under a quarter of the time, the rest of the time goes to a second, larger run. The result has
        the plane's dtype and channels and either its size or a smaller one; preview_geometry lays it over the
        layer."""
        info = registry.get_model_info(settings.model)
        device = resolve_device(settings.device)
        net = registry.load_model(settings.model, device=str(device), weights=settings.weights)
        height, width = plane.shape[:2]
        if not is_heavy(info, net):
            return self.enhance_plane(plane, rgb, settings, source, index)
        if info.kind == "classical":
            seconds = None  # gamma, CLAHE: about linear in the pixels, fast enough at canvas size (no probe)
        cost_key = (settings.model, str(device), settings.weights)
        probe = seconds is not None and cost_key not in self.seconds_per_pixel
        if probe:  # cost unknown: a small first run measures it
            out, shape = self._preview_at(plane, rgb, settings, source, index, info, cost_key, canvas_limit(
                canvas, (PROBE_SIDE, PROBE_SIDE)), None)
            spent = self.seconds_per_pixel[cost_key] * shape[0] * shape[1]
            if spent >= seconds / 4 or shape == preview_shape(height, width, canvas):
                return out
            seconds -= spent  # cheap model: the rest of the budget goes to a larger preview
        return self._preview_at(plane, rgb, settings, source, index, info, cost_key, canvas, seconds)[0]

    def _preview_at(self, plane, rgb, settings, source, index, info, cost_key, canvas, seconds):
        """(preview, its shape): the plane fit into canvas, at most as large as the measured cost allows in
        seconds (None: no limit); updates the cost per pixel."""
        rate = self.seconds_per_pixel.get(cost_key)
        max_pixels = None
        if seconds is not None and rate is not None:
            # in steps of sqrt(2) pixels: a cost estimate that moves a little keeps the preview's shape, so
            # the cached downscaled plane (and oneDNN's kernels made for that shape) are reused
            max_pixels = 2.0 ** (math.floor(2 * math.log2(max(seconds / rate, 1.0))) / 2)
        shape = preview_shape(plane.shape[0], plane.shape[1], canvas, max_pixels)
        small = self._cached(("small", source, index, shape),
                             lambda: torch.from_numpy(downscale_plane(plane, rgb, shape))).numpy()
        estimates = self.alpha_estimates
        start = time.perf_counter()
        out = self.enhance_plane(small, rgb, settings, source, (index, shape))
        elapsed = time.perf_counter() - start
        if info.kind != "curve" or self.alpha_estimates > estimates or rate is None:  # the model ran
            measured = elapsed / (shape[0] * shape[1])
            self.seconds_per_pixel[cost_key] = measured if rate is None else 0.5 * (rate + measured)
        return out, shape

    def apply_windows(self, plane_hw, settings: Settings) -> list:
        """The pieces Apply enhances one plane in, one progress step each: lowlight_core.enhance's tiles (with
        their halo) for full-resolution networks, else [None] (the whole plane at once)."""
        info = registry.get_model_info(settings.model)
        device = resolve_device(settings.device)
        net = registry.load_model(settings.model, device=str(device), weights=settings.weights)
        radius = int(getattr(net, "receptive_radius", 0))
        if is_heavy(info, net) and radius > 0:
            return _windows(plane_hw[0], plane_hw[1], default_tile(net), radius)
        return [None]

    def enhance_stack(self, data, rgb: bool, settings: Settings, out: np.ndarray):
        """Generator: enhances every plane of `data` into `out` (no caching), yielding (done, total) after each
        plane, or after each tile of full-resolution networks (tiles with a halo: equal to the whole plane's
        result up to float rounding; the denoise then runs once on the whole plane, as enhance's does)."""
        indices = plane_indices(data.shape, rgb)
        plane_hw = tuple(data.shape[len(data.shape) - plane_axes(rgb):][:2])
        windows = self.apply_windows(plane_hw, settings)
        total, done = len(indices) * len(windows), 0
        for index in indices:
            for window in windows:
                if window is None:
                    out[index] = self.enhance_plane(np.asarray(data[index]), rgb, settings)
                else:
                    in_rows, in_cols, crop_rows, crop_cols, rows, cols = window
                    piece = self.enhance_plane(np.asarray(data[index][in_rows, in_cols]), rgb, settings, tile=0,
                                               denoise=False)
                    out[index][rows, cols] = piece[crop_rows, crop_cols]
                done += 1
                if window is not None and window is windows[-1] and settings.denoise != 0:
                    # once on the whole plane: a noise estimate per tile would differ from tile to tile
                    self.denoise_into(np.asarray(data[index]), out[index], settings)
                yield done, total


# ---------------------------------------------------------------- worker bodies (no exception escapes)

def preview_job(enhancer: Enhancer, data, rgb: bool, index: tuple, settings: Settings, source=None, canvas=None,
                seconds: float | None = PREVIEW_SECONDS):
    """The preview of plane `index` of `data` (Enhancer.preview_plane: full size, or smaller for heavy
    models), or a Failure."""
    try:
        return enhancer.preview_plane(np.asarray(data[index]), rgb, settings, source, index, canvas, seconds)
    except Exception as e:  # shown as a notification by the widget; the viewer carries on
        return Failure.from_exception(e)


def apply_job(enhancer: Enhancer, data, rgb: bool, settings: Settings):
    """Generator worker: yields (done, total) after each plane; returns the enhanced stack or a Failure."""
    try:
        check_layer(data.shape, data.dtype, rgb)
        out = np.empty(data.shape, data.dtype)
        yield from enhancer.enhance_stack(data, rgb, settings, out)
        return out
    except Exception as e:
        return Failure.from_exception(e)
