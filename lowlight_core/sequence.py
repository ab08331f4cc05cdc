"""Enhancing frame sequences (video, time-lapse stacks) without flicker: `enhance_sequence` and `enhance_frame`.

Every frame is enhanced by `lowlight_core.enhance` with the same controls; in temporal mode (the default) what
enhance would decide per frame from the whole frame is decided over time instead:
- the curve maps of Zero-DCE++ (estimated from a thumbnail of each frame) and, with denoise on, the input's noise
  model (lowlight_core.noise) are fitted by a least-squares line over the frames within TEMPORAL_RADIUS of a
  frame and of its scene, evaluated at the frame: jitter averages out, slow changes (an exposure ramp) are
  followed without lag, and nothing crosses a scene cut;
- scene cuts: the gain-normalised luma signature (block means on a CUT_GRID grid) of two consecutive frames
  differs by more than CUT_STRUCTURE, or the mean brightness jumps by more than CUT_GAIN;
- with denoise on, each frame's input is first averaged with its scene neighbours pixel by pixel, each
  neighbour scaled to the scene's brightness trend and weighted by how far the box-filtered difference lies
  from what the noise model allows (moving content gets weight 0, so it does not ghost; a static camera's
  noise averages over up to 2 x radius + 1 frames); the float average is enhanced, and the spatial denoise
  runs with the noise model scaled by the averaging's variance reduction.
The denoisers ('auto' and numbers: the guided filter, 'learned') read the smoothed noise model and each
frame's gain. Other models
(Zero-DCE's full-resolution maps, image networks, gamma, CLAHE) decide locally or inside the model: their
frames get the temporal noise averaging and the smoothed noise model only.

Frame t's result depends on frames t - radius - 1 ... t + radius only (the extra frame before: the cut test),
so `enhance_frame` (one frame of a stack, the napari preview) equals that frame of `enhance_sequence`.
Frames stream through: an iterator in gives an iterator out, holding 2 x radius + 2 frames at a time.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .controls import (CUT_GAIN, CUT_GRID, CUT_STRUCTURE, DEFAULT_MODEL, DENOISE_DEFAULT, DENOISE_EPS_FLOOR,
                       EXPOSURE_DEFAULT, EXPOSURE_NOMINAL, ITERATIONS_DEFAULT, MOTION_NOISE_K, MOTION_RADIUS, TEMPORAL_RADIUS)
from .inference import check_controls, enhance, resolve_device
from .noise import NoiseModel, estimate_noise

_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
NOISE_SAMPLE_PIXELS = 500_000
_BAND = 128  # rows of a frame accumulated at a time


@dataclass
class _Record:
    """One frame in the window and what was decided from it alone."""
    pixels: np.ndarray
    cut: bool                          # a scene cut between the frame before and this one
    signature: np.ndarray
    alpha: torch.Tensor | None = None  # the frame's own curve maps (Zero-DCE++)
    tone: float | None = None          # the frame's own tone-stage alpha (models without curve maps)
    noise: NoiseModel | None = None    # the frame's own noise model (denoise on)
    luma: torch.Tensor | None = None   # box-filtered luma for the motion test (denoise on; made when needed)


def _pixels(frame: np.ndarray) -> torch.Tensor:
    """(1, C, H, W) view of an H x W (x C) frame in its own dtype (what the photo path reads)."""
    t = torch.from_numpy(frame)
    return t[None, None] if frame.ndim == 2 else t.permute(2, 0, 1)[None]


def _float(frame: np.ndarray) -> np.ndarray:
    """float32 H x W x c in [0, 1], colour channels only (gray: c = 1; alpha dropped)."""
    f = frame[..., None] if frame.ndim == 2 else frame[..., :1 if frame.shape[2] <= 2 else 3]
    scale = _SCALE.get(frame.dtype)
    f = f.astype(np.float32)
    return f / scale if scale else np.clip(f, 0, 1)


def signature(frame: np.ndarray) -> np.ndarray:
    """The frame's luma block means on a CUT_GRID x CUT_GRID grid (fewer where the frame is smaller)."""
    from . import ops

    x = _pixels(np.ascontiguousarray(frame))
    color = 1 if x.shape[1] <= 2 else 3
    h, w = min(CUT_GRID, x.shape[2]), min(CUT_GRID, x.shape[3])
    s = ops.area_reduce(x, h, w)[0, :color].mean(0).numpy()
    scale = _SCALE.get(frame.dtype)
    return s / scale if scale else s


def is_cut(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two consecutive frames' signatures belong to different scenes (see the module docstring)."""
    mb, ma = float(before.mean()), float(after.mean())
    floor = 1.0 / 255  # black frames: no layout to compare, and a fade from black is a cut
    mb, ma = max(mb, floor), max(ma, floor)
    if max(ma / mb, mb / ma) > CUT_GAIN:
        return True
    return float(np.abs(after / ma - before / mb).mean()) > CUT_STRUCTURE


def _line_weights(offsets: list[int]) -> list[float]:
    """Weights c_s with sum_s c_s v_s = the least-squares line through (offset_s, v_s) at offset 0."""
    n, su, suu = len(offsets), sum(offsets), sum(u * u for u in offsets)
    den = n * suu - su * su
    if den == 0:  # one frame
        return [1.0 / n] * n
    return [(suu - su * u) / den for u in offsets]


class _Plan:
    """The controls of one sequence and the per-frame work (records in, enhanced frames out)."""

    def __init__(self, model, iterations, exposure, device, tile, weights, denoise, temporal, radius):
        check_controls(iterations, exposure, tile, denoise)
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise ValueError(f"radius must be a whole number of frames >= 0, got {radius!r}")
        self.controls = dict(model=model, iterations=iterations, exposure=exposure, device=device, tile=tile,
                             weights=weights)
        self.denoise, self.temporal, self.radius = denoise, bool(temporal), radius
        from .plan import Engine

        # fails here on an unknown name or missing weights, before any frame
        self.engine = Engine(model, resolve_device(device), weights)
        # curve maps from a thumbnail (Zero-DCE++) are smoothed over time; other models decide per frame
        self.curve_maps = self.temporal and self.engine.whole
        self.first: np.ndarray | None = None

    def check(self, frame, index: int) -> np.ndarray:
        frame = np.asarray(frame)
        if self.first is None:
            if frame.ndim not in (2, 3):
                raise ValueError(f"frame {index}: expected an H x W or H x W x C frame, got shape {frame.shape}")
            self.first = frame
        elif frame.shape != self.first.shape or frame.dtype != self.first.dtype:
            raise ValueError(f"frame {index}: shape {frame.shape} {frame.dtype} differs from the first frame's "
                             f"{self.first.shape} {self.first.dtype}")
        if any(st < 0 for st in frame.strides):  # torch cannot view negative strides (np.rot90, flips)
            frame = np.ascontiguousarray(frame)
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():  # before its decisions reach other frames
            raise ValueError(f"frame {index}: image contains NaN or Inf values")
        return frame

    def record(self, frame: np.ndarray, before: _Record | None) -> _Record:
        sig = signature(frame)
        rec = _Record(frame, before is None or is_cut(before.signature, sig), sig)
        plan = self.engine.plan(frame, self.controls["exposure"])
        if self.curve_maps:
            rec.alpha = plan.curve_maps()
        elif self.engine.contract.exposure == "tone":
            rec.tone = plan.decide()[1][0]
        if self.denoise != 0:
            rec.noise = estimate_noise(torch.from_numpy(_float(_noise_sample(frame))).permute(2, 0, 1))
        return rec

    def emit(self, window: list[_Record], i: int) -> np.ndarray:
        """The result of window[i] given its scene neighbours in the window."""
        if not self.temporal:
            return enhance(window[i].pixels, denoise=self.denoise, **self.controls)
        lo = i  # the frame's scene within `radius` frames
        while lo > max(0, i - self.radius) and not window[lo].cut:
            lo -= 1
        hi = i
        while hi + 1 < min(len(window), i + self.radius + 1) and not window[hi + 1].cut:
            hi += 1
        scene = window[lo:hi + 1]
        c = _line_weights([k - i for k in range(lo, hi + 1)])
        alpha = sum(w * r.alpha for w, r in zip(c, scene)) if self.curve_maps else None
        # tone-mode models: the line through the frames' tone stages, like the maps
        tone = sum(w * r.tone for w, r in zip(c, scene)) if window[i].tone is not None else None
        pixels = window[i].pixels
        if self.denoise == 0:
            return self._enhance(pixels, alpha, tone=tone)
        noise = NoiseModel(max(sum(w * r.noise.a for w, r in zip(c, scene)), 0.0),
                           max(sum(w * r.noise.b for w, r in zip(c, scene)), 0.0))
        averaged, reduction = average_static(scene, i - lo, noise, _trend_gains(scene, i - lo))
        out = self._enhance(averaged, alpha, NoiseModel(noise.a * reduction, noise.b * reduction), tone)
        scale = _SCALE.get(pixels.dtype)
        if scale:  # in place: a 1080p float frame is 25 MB a copy
            np.multiply(out, scale, out=out)
            np.rint(out, out=out)
            np.clip(out, 0, scale, out=out)
        return out.astype(pixels.dtype)


    def _enhance(self, image: np.ndarray, alpha: torch.Tensor | None, noise: NoiseModel | None = None,
                 tone: float | None = None) -> np.ndarray:
        """enhance() of one image with the given curve maps (None: the model decides) or tone stage (None: the
        plan decides) and, when noise is given, denoised with that noise model."""
        c = self.controls
        plan = self.engine.plan(image, c["exposure"] if tone is None else EXPOSURE_NOMINAL, c["tile"])
        if tone is not None:
            plan.set_tones([tone])
        if alpha is None:
            plan.run(c["iterations"])
        else:
            plan.apply_curve(alpha, c["iterations"])
        if noise is not None:
            with torch.no_grad():
                plan.denoise(self.denoise, noise)
        return plan.result()

def _box(plane: torch.Tensor) -> torch.Tensor:
    """Mean over the (2 MOTION_RADIUS + 1)^2 window of an H x W plane (separable; edges: the window's part inside)."""
    k, r = 2 * MOTION_RADIUS + 1, MOTION_RADIUS
    p = F.avg_pool2d(plane[None, None], (1, k), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(p, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)[0, 0]


def _motion_luma(rec: _Record) -> torch.Tensor:
    """The record's box-filtered luma (cached: every frame of the window compares against it)."""
    if rec.luma is None:
        rec.luma = _box(torch.from_numpy(_float(rec.pixels)).mean(2))
    return rec.luma


def _trend_gains(scene: list[_Record], i: int) -> np.ndarray:
    """Per frame of the scene, the gain that brings its mean brightness to the scene's brightness trend at
    frame i (a least-squares line through the frame means): an exposure ramp is followed, while the noise of
    a frame's own mean (which the curve would amplify into flicker) is averaged out."""
    means = np.array([max(float(r.signature.mean()), 1e-6) for r in scene])
    target = float(np.dot(_line_weights(list(range(-i, len(scene) - i))), means))
    return np.maximum(target, 1e-6) / means


def _noise_sample(frame: np.ndarray) -> np.ndarray:
    """The frame, or for a large one NOISE_SAMPLE_PIXELS of it in bands of 64 rows spread from top to bottom (the
    per-frame estimates are averaged over time anyway; a whole 2 MP float frame and the estimate's working
    copies would cost a few hundred MB per frame)."""
    band = 64  # a multiple of the estimate's 8 x 8 blocks: no block straddles two bands
    height, width = frame.shape[:2]
    bands = math.ceil(NOISE_SAMPLE_PIXELS / (band * width))
    if height * width <= NOISE_SAMPLE_PIXELS or height < band * (bands + 1):
        return frame
    starts = np.linspace(0, height - band, bands).astype(int)
    return np.concatenate([frame[s:s + band] for s in starts], axis=0)


def average_static(scene: list[_Record], i: int, noise: NoiseModel, gains: np.ndarray) -> tuple[np.ndarray, float]:
    """Frame scene[i] averaged pixel by pixel with the other frames of its scene where they match it within the
    noise (motion-aware), as float32 in [0, 1] in its layout (rounded back to 8 bits, its quantisation would be
    amplified by the curve in the shadows, differently for each count of frames averaged: flicker near cuts);
    and the mean variance reduction (1 + sum w^2) / (1 + sum w)^2 of the noise it had. gains: per frame, what
    brings it to frame i's brightness (_trend_gains)."""
    frame = scene[i].pixels
    x = torch.from_numpy(_float(frame))
    c = x.shape[2]
    k = 2 * MOTION_RADIUS + 1
    level = _motion_luma(scene[i])
    # noise std of the box-filtered luma difference of two frames with independent noise
    limit = MOTION_NOISE_K * torch.sqrt(2 * (noise.a * level + noise.b).clamp_min(DENOISE_EPS_FLOOR) / (c * k * k))
    total = x.mul_(float(gains[i]))  # x is _float's own copy
    scale = _SCALE.get(frame.dtype)
    weight, weight_sq = torch.ones_like(level), torch.ones_like(level)
    level = level * float(gains[i])
    for j, rec in enumerate(scene):
        if j == i:
            continue
        gain = float(gains[j])
        w = _motion_luma(rec).mul(gain).sub_(level).div_(limit).square_().neg_().add_(1).clamp_min_(0)
        # the neighbour's colour channels straight from its own dtype: the scale to [0, 1] rides on the weight
        pixels = torch.from_numpy(rec.pixels)
        pixels = pixels[..., None] if pixels.dim() == 2 else pixels[..., :c]
        wg = (w * (gain / (scale or 1.0)))[..., None]
        for rows in range(0, pixels.shape[0], _BAND):  # in bands: the float copy of the pixels stays small
            total[rows:rows + _BAND].addcmul_(pixels[rows:rows + _BAND], wg[rows:rows + _BAND])
        weight += w
        weight_sq.addcmul_(w, w)
    avg = (total / weight[..., None]).clamp_(0, 1).numpy()
    reduction = float((weight_sq / (weight * weight)).mean())
    if frame.ndim == 2:
        return avg[..., 0], reduction
    alpha = frame[..., c:].astype(np.float32) / scale if scale else np.clip(frame[..., c:], 0, 1).astype(np.float32)
    return np.concatenate([avg, alpha], axis=2) if alpha.shape[2] else avg, reduction


def _stream(frames: Iterable, plan: _Plan, only: int | None = None) -> Iterator[np.ndarray]:
    """Enhanced frames in order (only: just that index, from the frames it depends on)."""
    window: deque[_Record] = deque()
    first = 0   # index of window[0]
    t = 0       # next frame to emit
    source = iter(frames)
    done = False
    r = plan.radius
    while True:
        while not done and first + len(window) <= t + r:
            try:
                frame = next(source)
            except StopIteration:
                done = True
                break
            index = first + len(window)
            frame = plan.check(frame, index)
            try:
                window.append(plan.record(frame, window[-1] if window else None))
            except (ValueError, TypeError) as e:
                raise type(e)(f"frame {index}: {e}") from None
        if t >= first + len(window):
            return
        if only is None or t == only:
            try:
                yield plan.emit(list(window), t - first)
            except (ValueError, TypeError) as e:
                raise type(e)(f"frame {t}: {e}") from None
        t += 1
        if only is not None and t > only:
            return
        while t - first > r:  # records keep their cut flag: the frame before them is no longer needed
            window.popleft()
            first += 1


def enhance_sequence(frames, model=DEFAULT_MODEL, iterations: int = ITERATIONS_DEFAULT,
                     exposure=EXPOSURE_DEFAULT, device="auto", tile: int | None = None, weights=None,
                     denoise=DENOISE_DEFAULT, temporal: bool = True, radius: int = TEMPORAL_RADIUS):
    """Enhance a sequence of frames: a T x H x W (x C) numpy array (returns one of the same shape and dtype)
    or an iterable of H x W (x C) frames (returns an iterator of frames, streaming). The controls are
    enhance's; temporal=False enhances every frame alone (exactly enhance per frame); radius: frames either
    side a frame's decisions and noise averaging may use (see the module docstring)."""
    plan = _Plan(model, iterations, exposure, device, tile, weights, denoise, temporal, radius)
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(f"expected a T x H x W or T x H x W x C array of frames, got shape {frames.shape}")
        out = np.empty_like(frames)
        for t, y in enumerate(_stream(frames, plan)):
            out[t] = y
        return out
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise TypeError(f"frames must be a numpy array or an iterable of frames, got {type(frames).__name__}")
    return _stream(frames, plan)


def enhance_frame(frames, index: int, model=DEFAULT_MODEL, iterations: int = ITERATIONS_DEFAULT,
                  exposure=EXPOSURE_DEFAULT, device="auto", tile: int | None = None, weights=None,
                  denoise=DENOISE_DEFAULT, temporal: bool = True, radius: int = TEMPORAL_RADIUS) -> np.ndarray:
    """Frame `index` of enhance_sequence(frames, ...) (frames: a T x H x W (x C) array), computed from the
    frames it depends on only."""
    plan = _Plan(model, iterations, exposure, device, tile, weights, denoise, temporal, radius)
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        raise ValueError(f"expected a T x H x W or T x H x W x C array of frames, got shape {frames.shape}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(frames):
        raise IndexError(f"frame index {index!r} outside 0-{len(frames) - 1}")
    lo = 0 if not plan.temporal else max(0, index - radius - 1)
    return next(_stream(frames[lo:index + radius + 1], plan, only=index - lo))
