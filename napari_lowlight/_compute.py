"""The widget's work, free of Qt: napari layer planes in, enhanced planes out, curve maps cached.

The dock widget runs `preview_job` and `apply_job` in napari thread workers; tests call them directly.
A layer is napari-shaped: gray (..., H, W), or RGB/RGBA (..., H, W, 3|4) when `rgb` is true; leading axes
(time, z, ...) make a stack of planes, each enhanced on its own. Output planes keep the input's dtype
(uint8, uint16, float16/32/64 in [0, 1]) and shape; an alpha channel is copied through untouched.
"""
from __future__ import annotations

import itertools
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from lowlight_core.controls import DENOISE_DEFAULT, EXPOSURE_DEFAULT, ITERATIONS_DEFAULT
from lowlight_core.inference import FLOAT_TOLERANCE, check_controls, denoise_like, resolve_device
from lowlight_core.inference import enhance as enhance_tensor
from lowlight_core.models import registry

DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.float16, np.float32, np.float64))
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
CACHE_BYTES = 1 << 30  # inputs and curve maps of recently previewed planes
ALPHA_TILE = 512       # tile size for estimating full-resolution curve maps (Zero-DCE) in bounded memory


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
    halo of the receptive radius, which gives the untiled maps (zero padding only at the image border)."""
    radius = int(getattr(net, "receptive_radius", 0))
    H, W = x.shape[2:]
    if radius == 0 or max(H, W) <= tile:
        return net.estimate_alpha(x, exposure)
    alpha = None
    for y0, x0 in itertools.product(range(0, H, tile), range(0, W, tile)):
        y1, x1 = min(y0 + tile, H), min(x0 + tile, W)
        iy0, ix0 = max(0, y0 - radius), max(0, x0 - radius)
        a = net.estimate_alpha(x[:, :, iy0:min(H, y1 + radius), ix0:min(W, x1 + radius)], exposure)
        if alpha is None:
            alpha = a.new_empty((x.shape[0], a.shape[1], H, W))
        alpha[:, :, y0:y1, x0:x1] = a[:, :, y0 - iy0:y1 - iy0, x0 - ix0:x1 - ix0]
    return alpha


# ---------------------------------------------------------------- the enhancer with its cache

class Enhancer:
    """Enhances layer planes. Planes named by a `source` key (the widget passes (layer id, data version))
    keep their float input and, for curve models, their curve maps in an LRU cache: a change of iterations
    then only re-runs ops.le_curve. Thread-safe; the cache holds at most `cache_bytes` of tensors."""

    def __init__(self, cache_bytes: int = CACHE_BYTES):
        self.cache_bytes = cache_bytes
        self.alpha_estimates = 0  # curve maps computed (cache misses); tests and benchmarks read it
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
        size = tensor.numel() * tensor.element_size()
        with self._lock:
            if key not in self._cache and size <= self.cache_bytes:
                self._cache[key] = (value, size)
                self._bytes += size
                while self._bytes > self.cache_bytes:
                    self._bytes -= self._cache.popitem(last=False)[1][1]
        return value

    @torch.inference_mode()
    def enhance_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source=None,
                      index: tuple = ()) -> np.ndarray:
        """One plane (H, W) or (H, W, 3|4) -> the enhanced plane, same shape and dtype, denoised as
        enhance(..., denoise=settings.denoise) denoises (inference.denoise_like)."""
        check_controls(settings.iterations, settings.exposure, denoise=settings.denoise)
        out = self._enhance_plane(plane, rgb, settings, source, index)
        if settings.denoise != 0:
            if not out.flags.writeable or np.shares_memory(out, plane):
                out = out.copy()
            curve = hasattr(registry.load_model(settings.model, device=str(resolve_device(settings.device)),
                                                weights=settings.weights), "estimate_alpha")
            denoise_like(plane, out, settings.denoise, curve_model=curve)
        return out

    def _enhance_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source, index) -> np.ndarray:
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
                return estimate_alpha(net, x, exposure), net  # net kept alive: its id stays unique

            # the model object stands for (name, device, weights file and its mtime): registry caches it
            alpha, _ = self._cached(("alpha", source, index, id(net), exposure), make_alpha)
            if photo_curve:  # full-resolution maps (Zero-DCE): the float x serves the estimate, the curve the plane
                return from_pixels(net.photo_curve(to_pixels(plane, rgb, device), alpha, settings.iterations), rgb)
            y = net.apply_curve(x, alpha, settings.iterations)
            return to_plane(y, plane, rgb)
        # image-to-image networks and classical methods; enhance tiles full-resolution networks
        y = enhance_tensor(x, model=net, iterations=settings.iterations, exposure=settings.exposure, device=device)
        return to_plane(y, plane, rgb)

    def enhance_stack(self, data, rgb: bool, settings: Settings, out: np.ndarray):
        """Generator: enhances every plane of `data` into `out` (no caching), yielding (done, total)."""
        indices = plane_indices(data.shape, rgb)
        for done, index in enumerate(indices, 1):
            out[index] = self.enhance_plane(np.asarray(data[index]), rgb, settings)
            yield done, len(indices)


# ---------------------------------------------------------------- worker bodies (no exception escapes)

def preview_job(enhancer: Enhancer, data, rgb: bool, index: tuple, settings: Settings, source=None):
    """The enhanced plane `index` of `data`, or a Failure."""
    try:
        return enhancer.enhance_plane(np.asarray(data[index]), rgb, settings, source, index)
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
