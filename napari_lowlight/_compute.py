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
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lowlight_core.controls import DEFAULT_MODEL, DENOISE_DEFAULT, EXPOSURE_AUTO, EXPOSURE_DEFAULT, ITERATIONS_DEFAULT
from lowlight_core.frames import NUMPY_DTYPES
from lowlight_core.inference import check_controls, resolve_device
from lowlight_core.models import registry
from lowlight_core.models.base import DEFAULT_TILE
from lowlight_core.plan import Engine

DTYPES = tuple(np.dtype(t) for t in NUMPY_DTYPES)
CACHE_BYTES = 1 << 30  # curve maps, noise models and downscaled planes of recently previewed planes
# Core tile of previews (Apply runs the model's own, as enhance does): a preview is at most the canvas, and
# one DEFAULT_TILE (512) tile is fewer calls than the four of Zero-DCE's 256.
PREVIEW_TILE = DEFAULT_TILE
# Previews of heavy models (full-resolution networks, image-to-image networks; see is_heavy) run on the plane
# downscaled to what the canvas shows (the plane fit into the canvas), and smaller still when the model's
# measured cost would make one preview take longer than PREVIEW_SECONDS; Apply runs the full resolution.
PREVIEW_SECONDS = 0.25
PREVIEW_MIN_SIDE = 128   # a preview's long side is never cut below this (nor above the plane's own)
PROBE_SIDE = 256         # long side of a model's first preview, before its cost per pixel is known


@dataclass(frozen=True)
class Settings:
    """What to run: a registered model, its controls, the device, optionally a weights file."""
    model: str = DEFAULT_MODEL
    iterations: int = ITERATIONS_DEFAULT
    exposure: float | str = EXPOSURE_DEFAULT  # a target E or "auto"
    denoise: float | str = DENOISE_DEFAULT  # 0 (off), a strength in [0, 1] or "auto"
    device: str = "cpu"
    weights: str | None = None  # None: the registry's file for `model`

    def controls(self) -> dict:
        """These settings as keyword arguments of lowlight_core.enhance (and enhance_sequence): the same names."""
        return asdict(self)


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


# ---------------------------------------------------------------- reduced-resolution previews

def is_heavy(engine: Engine) -> bool:
    """Whether a preview of this model runs at reduced resolution: every model but those deciding on a thumbnail
    (Zero-DCE++: maps estimated on block means, one fused pass over the plane in its own dtype, 87 ms for 12 MP,
    and exact at full resolution; the bilateral grid likewise, its grid applied in one pass). The networks that run on every pixel (image-to-image
    networks, Zero-DCE's full-resolution maps, which depend on the resolution they are estimated at, so maps
    estimated on a preview would not give the full-resolution result) take seconds per megapixel; gamma and CLAHE
    run in float on the whole plane (1-4 s for 12 MP)."""
    return not engine.whole


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
        small = small.round_().clamp_(0, np.iinfo(plane.dtype).max) if plane.dtype.kind == "u" else small.clamp_(0, 1)
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


# ---------------------------------------------------------------- the enhancer with its cache

class Enhancer:
    """Enhances layer planes with lowlight_core's inference plan (lowlight_core.plan). Planes named by a `source`
    key (the widget passes (layer id, data version)) keep their curve maps (curve models), input noise model and
    downscaled copies in an LRU cache: a change of iterations then only re-applies the curve. Thread-safe; the
    cache holds at most `cache_bytes` of tensors."""

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

    def engine(self, settings: Settings) -> Engine:
        """The model of these settings, ready to run (the registry keeps the loaded model)."""
        return Engine(settings.model, resolve_device(settings.device), settings.weights)

    @torch.inference_mode()
    def enhance_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source=None,
                      index: tuple = (), tile: int | None = None) -> np.ndarray:
        """One plane (H, W) or (H, W, 3|4) -> the enhanced plane, same shape and dtype, as
        enhance(plane, ...) gives it with tile (None: PREVIEW_TILE). A named plane (source) keeps its curve maps
        and noise model in the cache: an iterations change re-applies the curve only, a denoise change
        re-runs the denoiser only."""
        check_controls(settings.iterations, settings.exposure, denoise=settings.denoise)
        engine = self.engine(settings)
        curve = engine.contract.curve_maps
        # rounded: the maps of one slider position are found again in the cache
        exposure = settings.exposure if settings.exposure == EXPOSURE_AUTO else round(float(settings.exposure), 6)
        plan = engine.plan(plane, exposure, PREVIEW_TILE if tile is None else tile)
        if curve:
            def make_maps():
                self.alpha_estimates += 1
                return plan.curve_maps(), engine.model  # the model kept alive: its id stays unique

            # the model object stands for (name, device, weights file and its mtime): registry caches it
            maps, _ = self._cached(("alpha", source, index, id(engine.model), exposure), make_maps)
            plan.apply_curve(maps, settings.iterations)
        else:
            plan.run(settings.iterations)
        if settings.denoise != 0:
            def make_noise():
                self.noise_estimates += 1
                return plan.noise_model()

            plan.denoise(settings.denoise, self._cached(("noise", source, index), make_noise))
        return plan.result()

    def preview_plane(self, plane: np.ndarray, rgb: bool, settings: Settings, source=None, index: tuple = (),
                      canvas=None, seconds: float | None = PREVIEW_SECONDS) -> np.ndarray:
        """What the live preview shows: light models (see is_heavy) enhance the whole plane; heavy ones enhance
        it downscaled (downscale_plane) to preview_shape: fit into canvas (rows, cols; None: no limit) and,
        when seconds is not None, to as many pixels as the model's measured cost lets run in that time (rounded
        down to a power of sqrt(2)). The model's first preview measures its cost on a PROBE_SIDE long side; when
        that took under a quarter of the time, the rest of the time goes to a second, larger run. The result has
        the plane's dtype and channels and either its size or a smaller one; preview_geometry lays it over the
        layer."""
        engine = self.engine(settings)
        height, width = plane.shape[:2]
        if not is_heavy(engine):
            return self.enhance_plane(plane, rgb, settings, source, index)
        if registry.get_model_info(settings.model).kind == "classical":
            seconds = None  # gamma, CLAHE: about linear in the pixels, fast enough at canvas size (no probe)
        cost_key = (settings.model, str(engine.device), settings.weights)
        probe = seconds is not None and cost_key not in self.seconds_per_pixel
        if probe:  # cost unknown: a small first run measures it
            out, shape = self._preview_at(plane, rgb, settings, source, index, engine, cost_key, canvas_limit(
                canvas, (PROBE_SIDE, PROBE_SIDE)), None)
            spent = self.seconds_per_pixel[cost_key] * shape[0] * shape[1]
            if spent >= seconds / 4 or shape == preview_shape(height, width, canvas):
                return out
            seconds -= spent  # cheap model: the rest of the budget goes to a larger preview
        return self._preview_at(plane, rgb, settings, source, index, engine, cost_key, canvas, seconds)[0]

    def _preview_at(self, plane, rgb, settings, source, index, engine, cost_key, canvas, seconds):
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
        if not engine.contract.curve_maps or self.alpha_estimates > estimates or rate is None:  # the model ran
            measured = elapsed / (shape[0] * shape[1])
            self.seconds_per_pixel[cost_key] = measured if rate is None else 0.5 * (rate + measured)
        return out, shape

    def enhance_stack(self, data, rgb: bool, settings: Settings, out: np.ndarray):
        """Generator: enhances every plane of `data` into `out` (no caching) as enhance() does, yielding (done,
        total) after each of the plan's windows (tiles with a halo for full-resolution networks, else the whole
        plane); the denoise then runs once on the whole plane, as enhance's does."""
        check_controls(settings.iterations, settings.exposure, denoise=settings.denoise)
        engine = self.engine(settings)
        indices = plane_indices(data.shape, rgb)
        done = 0
        for index in indices:
            plan = engine.plan(np.asarray(data[index]), settings.exposure)
            for step, steps in plan.run_windows(settings.iterations):
                if step == steps:
                    plan.denoise(settings.denoise)
                    out[index] = plan.result()
                done += 1
                yield done, len(indices) * steps


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
