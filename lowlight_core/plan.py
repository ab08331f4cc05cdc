"""The one inference plan, used by lowlight_core.enhance and the napari plugin.

`Engine(model, device, weights)`: a model resolved once (a registered name through the registry, or a caller's
module), its declared contract (lowlight_core.models.base) and the module that runs: the CPU inference copy for
registered networks that declare one.
`engine.plan(image, exposure, tile)`: one image (numpy, PIL or torch, checked; see lowlight_core.frames) and what
is decided once for the whole image before any window runs: the windows (`windows`: tiles shaped to the image,
with a halo of the receptive radius, or the whole image), the curve maps of a photo-estimate model (Zero-DCE++:
one low-resolution estimate from the thumbnail of the integer image) and the input's noise model (the denoiser's).
Then `run` (everything), `run_windows` / `run_window` (window by window, for progress), `curve_maps` +
`apply_curve` (curve models: a caller may keep the maps and apply the curve again for another iteration count),
`noise_model` + `denoise`, and `result` (the caller's kind of image).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from . import exposure as exposure_mod
from .controls import EXPOSURE_AUTO, EXPOSURE_NOMINAL, ITERATIONS_DEFAULT, MAX_ITERATIONS
from .frames import Frames, to_frames
from .models.base import contract_of, inference_model


class Window(NamedTuple):
    """One tile: the input rows/cols read (core plus halo), the core within them, and the core's rows/cols."""
    in_rows: slice
    in_cols: slice
    crop_rows: slice
    crop_cols: slice
    rows: slice
    cols: slice


def tile_shape(height: int, width: int, core: int) -> tuple[int, int]:
    """(rows, cols) of the tiles of a height x width image for a core tile size (0: the whole image): core x
    core, or, where the image is thinner than core, tiles of the same area as long as the image is thin (a
    1-pixel strip gets 1 x core**2 tiles, not thousands of 1 x core ones that each cost a call and a halo)."""
    if core == 0 or (height <= core and width <= core):
        return height, width
    if height < core:
        return height, min(width, core * core // height)
    if width < core:
        return min(height, core * core // width), width
    return core, core


def windows(height: int, width: int, core: int, halo: int) -> list[Window]:
    """The windows covering the image: tiles of tile_shape(height, width, core) with `halo` pixels of context
    on each side (clipped at the border), in row-major order."""
    th, tw = tile_shape(height, width, core)
    out = []
    for y0 in range(0, height, th):
        y1 = min(y0 + th, height)
        iy0, iy1 = max(0, y0 - halo), min(height, y1 + halo)
        for x0 in range(0, width, tw):
            x1 = min(x0 + tw, width)
            ix0, ix1 = max(0, x0 - halo), min(width, x1 + halo)
            out.append(Window(slice(iy0, iy1), slice(ix0, ix1), slice(y0 - iy0, y1 - iy0),
                              slice(x0 - ix0, x1 - ix0), slice(y0, y1), slice(x0, x1)))
    return out


def available_memory() -> int | None:
    """Bytes the system can give without swapping now (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_whole_image_memory(name: str, pixels: int, bytes_per_pixel: int) -> None:
    """MemoryError naming the model, the image's size and the memory, where a model that runs on the whole
    image at full resolution would need more than is available (rather than the out-of-memory killer)."""
    need, free = pixels * bytes_per_pixel, available_memory()
    if free is not None and need > free:
        raise MemoryError(f"model {name!r} runs on the whole image at once: {pixels / 1e6:.1f} MP needs about "
                          f"{need / 2 ** 30:.1f} GiB, only {free / 2 ** 30:.1f} GiB of memory is available; use a "
                          "smaller image or a model that runs in tiles (zero_dce_pp, bilateral_grid, dln, ...)")


class Engine:
    """A model ready to run on `device` (a torch.device): `model` a registered name (loaded through the
    registry, `weights` a file to use instead of the shipped one) or a caller's module (run as given).
    `model` is the loaded module, `net` what runs the windows (the CPU inference copy or `model`), `contract`
    its declaration, `whole` whether it runs from one thumbnail's decision (curve maps, photo_enhance)."""

    def __init__(self, model, device: torch.device, weights=None):
        if isinstance(model, str):
            from .models.registry import load_model

            self.name, self.model = model, load_model(model, device=str(device), weights=weights)
        else:
            contract_of(model)  # TypeError naming what the module lacks, before it is moved
            self.name, self.model = type(model).__name__, model.to(device).eval()
        self.device = device
        self.contract = contract_of(self.model)
        # the copy serves the networks that run on full-resolution windows (not a thumbnail's decision)
        self.whole = self.contract.photo_enhance or (self.photo and self.contract.photo_estimate)
        copy = isinstance(model, str) and self.contract.cpu_copy and not self.whole
        self.net = inference_model(self.model) if copy else self.model
        self.channels_last = self.net is not self.model  # the inference copy takes channels_last inputs

    @property
    def photo(self) -> bool:
        """Whether the curve runs on the image in its own dtype (a photo op computes the model's curve)."""
        return self.contract.curve_space is not None

    def plan(self, image, exposure, tile: int | None = None) -> Plan:
        """The plan for one image (a batch of them for tensors; or its Frames); exposure: a target E or
        'auto'; tile: as enhance's."""
        frames = image if isinstance(image, Frames) else to_frames(image)
        return Plan(self, frames, exposure if exposure == EXPOSURE_AUTO else float(exposure), tile)

    def check_curve_maps(self) -> None:
        if not self.contract.curve_maps:
            raise TypeError(f"model {self.name!r} declares no curve maps (its contract: {self.contract})")

    def check_finite(self, t: torch.Tensor, what: str) -> None:
        if not torch.isfinite(t).all():
            raise ValueError(f"model {self.name!r} produced NaN or Inf {what}")


_NAN_MAPS = "curve maps (alpha): its weights are not finite"
_NAN_IMAGE = "values (its weights or its curve parameters alpha are not finite)"


class Plan:
    """One image's run; see the module docstring. Results land in `out` (B, C, H, W, the image's dtype)."""

    def __init__(self, engine: Engine, frames: Frames, exposure, tile: int | None):
        self.engine, self.frames = engine, frames
        self.out = frames.out
        contract = engine.contract
        batch, _, height, width = frames.pixels.shape
        core = contract.tile if tile is None else tile
        halo = contract.receptive_radius
        self.windows = windows(height, width, core if halo else 0, halo)
        if not halo and contract.bytes_per_pixel and engine.device.type == "cpu":
            check_whole_image_memory(engine.name, batch * height * width, contract.bytes_per_pixel)
        self._probe = None
        # the target brightness of each image (lowlight_core.exposure), decided on the whole image
        self.targets = exposure_mod.auto_targets(self.probe()) if exposure == EXPOSURE_AUTO else [exposure] * batch
        self._decided = None  # (the model's E input per image, the tone gain per image or None)

    # ---------------------------------------------------------------- exposure (decided once per image)
    def probe(self) -> torch.Tensor:
        """The batch's probe (lowlight_core.exposure.probe), on the engine's device, made once."""
        if self._probe is None:
            self._probe = exposure_mod.probe(self.frames.pixels).to(self.engine.device)
        return self._probe

    def _probe_result(self, b: int, e: float, iterations: int) -> torch.Tensor:
        x = self.probe()[b:b + 1]
        if self.engine.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.engine.net.enhance(x, exposure=e, iterations=iterations)
        self.engine.check_finite(y, _NAN_IMAGE)  # else its NaN brightness would surface as a NaN exposure
        return y

    def decide(self) -> tuple[list[float], list[float]]:
        """(the E input the model gets, the tone stage's alpha) per image, so that each result's brightness is
        its target (lowlight_core.exposure, by the contract's exposure mode), made once. Curve models are
        calibrated for ITERATIONS_DEFAULT steps and get a tone stage only for what their E input cannot reach;
        their maps serve every iteration count (more steps brighten more), so a caller may keep them
        (curve_maps) and re-apply the curve only."""
        if self._decided is None:
            mode, steps = self.engine.contract.exposure, ITERATIONS_DEFAULT
            inputs, tones = [], []
            for b, target in enumerate(self.targets):
                e, tone = target, 0.0
                if mode == "tone":
                    e = EXPOSURE_NOMINAL
                    tone = exposure_mod.fit_tone(self._probe_result(b, e, steps), target)
                elif mode == "calibrate":
                    results = {}  # every E input tried: calibrate returns one of them, so its result is here

                    def result_brightness(e_in, b=b):
                        results[e_in] = self._probe_result(b, e_in, steps)
                        return exposure_mod.brightness(results[e_in])

                    e = exposure_mod.calibrate(result_brightness, target)
                    if abs(exposure_mod.brightness(results[e]) - target) > 2 * exposure_mod.CALIBRATE_TOLERANCE:
                        tone = exposure_mod.fit_tone(results[e], target)  # beyond the E input's reach
                inputs.append(e)
                tones.append(tone)
            self._decided = (inputs, tones)
        return self._decided

    def set_tones(self, tones: list[float]) -> None:
        """Use these tone-stage alphas (one per image; a tone-mode model) instead of deciding them: a sequence
        smooths its frames' own decisions over time."""
        if self.engine.contract.exposure != "tone" or len(tones) != len(self.targets):
            raise ValueError(f"set_tones: model {self.engine.name!r} (exposure mode "
                             f"{self.engine.contract.exposure!r}) takes no tone stage, or {len(tones)} values for "
                             f"{len(self.targets)} images")
        self._decided = ([EXPOSURE_NOMINAL] * len(tones), list(tones))

    def _with_tone(self, maps: torch.Tensor, iterations: int, b: slice) -> tuple[torch.Tensor, int]:
        """Curve maps and step count with the tone stage of images b appended (unchanged when none has one, or
        when the steps would pass MAX_ITERATIONS)."""
        tones = self.decide()[1][b]
        if not any(tones) or iterations + exposure_mod.TONE_STEPS > MAX_ITERATIONS:
            return maps, iterations
        return exposure_mod.extend_maps(maps, iterations, tones)

    # ---------------------------------------------------------------- curve models
    def curve_maps(self) -> torch.Tensor:
        """The curve maps of the whole image (curve models only), for a result of the target brightness
        (decide): from the thumbnail of the integer image for photo-estimate models, else estimated window by
        window and assembled (full resolution)."""
        e = self.engine
        e.check_curve_maps()
        inputs, _ = self.decide()
        if e.whole:  # read from the thumbnail, for the whole batch at once
            with torch.no_grad():
                alpha = e.model.estimate_alpha_photo(self.frames.pixels.to(e.device),
                                                     exposure=torch.tensor(inputs, device=e.device))
            e.check_finite(alpha, _NAN_MAPS)
            return alpha
        maps = None
        with torch.inference_mode():
            for b in range(self.frames.pixels.shape[0]):
                for w in self.windows:
                    a = self._window_maps(b, w, inputs[b])
                    if maps is None:
                        maps = a.new_empty((self.frames.pixels.shape[0], a.shape[1], *self.frames.pixels.shape[2:]))
                    maps[b:b + 1, :, w.rows, w.cols] = a
        return maps

    def apply_curve(self, maps: torch.Tensor, iterations: int) -> None:
        """The curve with these maps (curve_maps()) on the whole image, into `out`."""
        e = self.engine
        e.check_curve_maps()
        if e.photo:  # one pass from and to the image's own dtype and layout: no full-size float copy
            with torch.no_grad():
                self.out = e.model.photo_curve(self.frames.pixels.to(e.device),
                                               *self._with_tone(maps, int(iterations), slice(None)))
            return
        with torch.inference_mode():
            for b in range(self.frames.pixels.shape[0]):
                x = self.frames.load(b, slice(None), slice(None), e.device)
                y = e.net.apply_curve(x, *self._with_tone(maps[b:b + 1], int(iterations), slice(b, b + 1)))
                self.frames.store(y, b, slice(None), slice(None))
            self.frames.copy_alpha()

    def _load(self, b: int, w: Window) -> torch.Tensor:
        x = self.frames.load(b, w.in_rows, w.in_cols, self.engine.device)
        return x.contiguous(memory_format=torch.channels_last) if self.engine.channels_last else x

    def _window_maps(self, b: int, w: Window, e: float) -> torch.Tensor:
        """Full-resolution curve maps of a window's core, estimated on the float window with its halo, E input e."""
        alpha = self.engine.net.estimate_alpha(self._load(b, w), exposure=e)
        alpha = alpha[:, :, w.crop_rows, w.crop_cols].contiguous()
        self.engine.check_finite(alpha, _NAN_MAPS)
        return alpha

    # ---------------------------------------------------------------- running
    def run_windows(self, iterations: int):
        """Generator: runs the model window by window into `out`, yielding (done, total) after each window
        (a photo-estimate or photo-enhance model: once, the whole batch)."""
        e = self.engine
        if e.contract.photo_enhance:  # from and to the image's own dtype and layout, the whole batch at once
            inputs, _ = self.decide()
            with torch.no_grad():
                self.out = e.model.enhance_photo(self.frames.pixels.to(e.device),
                                                 torch.tensor(inputs, device=e.device))
            yield 1, 1
            return
        if e.whole:
            self.apply_curve(self.curve_maps(), iterations)
            yield 1, 1
            return
        self.decide()
        total = self.frames.pixels.shape[0] * len(self.windows)
        self.frames.copy_alpha()
        for b in range(self.frames.pixels.shape[0]):
            for i, w in enumerate(self.windows):
                self.run_window(b, w, iterations)
                yield b * len(self.windows) + i + 1, total

    @torch.inference_mode()
    def run_window(self, b: int, w: Window, iterations: int) -> None:
        """The model on one window of image b, its core written into `out` (alpha aside)."""
        e = self.engine
        inputs, tones = self.decide()
        if e.photo:  # full-resolution maps (Zero-DCE): the curve straight from and to the image's dtype
            maps = self._window_maps(b, w, inputs[b])
            y = e.model.photo_curve(self.frames.pixels[b:b + 1, :, w.rows, w.cols].to(e.device),
                                    *self._with_tone(maps, int(iterations), slice(b, b + 1)))
            self.out[b:b + 1, :, w.rows, w.cols].copy_(y)
            return
        y = e.net.enhance(self._load(b, w), exposure=inputs[b], iterations=int(iterations))
        e.check_finite(y, _NAN_IMAGE)
        y = exposure_mod.tone(y, tones[b])
        self.frames.store(y[:, :, w.crop_rows, w.crop_cols], b, w.rows, w.cols)

    def run(self, iterations: int) -> None:
        for _ in self.run_windows(iterations):
            pass

    # ---------------------------------------------------------------- denoise and result
    def noise_model(self):
        """The input's noise model (lowlight_core.noise.estimate_noise of the first image): callers that
        denoise the same input many times keep it and pass it to denoise()."""
        return self.frames.noise_model()

    def denoise(self, strength, noise_model=None) -> None:
        """`out` denoised in place (lowlight_core.noise.denoise, strength 0 a no-op); models without curve maps
        remove some noise themselves, so the noise model is calibrated on their output."""
        if strength != 0:
            self.frames.denoise(self.out, strength, measure_output=not self.engine.contract.curve_maps,
                                model=noise_model)

    def result(self):
        """`out` as the caller's kind of image (same kind, shape and dtype as the input)."""
        return self.frames.result(self.out)
