"""The caller's image of every kind (numpy, PIL, torch) as a (B, C, H, W) tensor in its own dtype, checked,
with the output buffer and the way back to the caller's kind (see lowlight_core.inference for the kinds)."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import torch

from .controls import DENOISE_LEARNED, DENOISE_LEARNED_STRIP_PIXELS, DENOISE_STRIP_PIXELS

FLOAT_TOLERANCE = 1e-3
PIL_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "F")
_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}
NUMPY_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


class Frames:
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

    def _summary(self, t: torch.Tensor):
        """noise.Summary of t (1, c, H, W, the pixels' dtype) as a float image in [0, 1], without a float copy of
        the whole image: the mean from exact block sums (ops.area_reduce), only the sampled tiles converted."""
        from . import ops
        from .noise import Summary, sample_tiles

        if self.scale:
            mean = float(ops.area_reduce(t, 1, 1).double().mean()) / self.scale
        else:  # float pixels: the mean of the clamped values
            mean = float(self._float(t).mean())
        return Summary(mean, t.shape[1], lambda: self._float(sample_tiles(t)))

    def noise_model(self):
        """The noise model of the first image's input pixels (lowlight_core.noise.estimate_noise)."""
        from .noise import fit_noise, sample_tiles

        return fit_noise(self._float(sample_tiles(self.pixels[:1, :self.color])))

    def denoise(self, out: torch.Tensor, strength, measure_output: bool = False, model=None) -> None:
        """Denoises the colour channels of out (B, C, H, W, the pixels' dtype and layout) in place, image by
        image, given the input pixels. strength a number: the guided filter at that strength
        (lowlight_core.noise); "auto": at the strength noise.auto_strength picks; "learned": the learned
        denoiser (lowlight_core.denoise_net). measure_output: the noise model calibrated on the output, for
        models without curve maps; model: the input's noise model when already known (one image), else
        estimated. What needs the whole image is decided first; then the filter runs in strips of about
        DENOISE_STRIP_PIXELS (the learned one: DENOISE_LEARNED_STRIP_PIXELS) with its reach of context rows (the
        whole-image result, within a peak of a few strips' floats)."""
        from .noise import FILTER_RADIUS, check_denoise, filter_weights, guided, noise_of

        check_denoise(strength)
        learned = strength == DENOISE_LEARNED
        if learned:
            from . import denoise_net
            net = denoise_net.load()
        radius = net.receptive_radius if learned else FILTER_RADIUS
        height, width = out.shape[2:]
        rows = max(radius, (DENOISE_LEARNED_STRIP_PIXELS if learned else DENOISE_STRIP_PIXELS) // width)
        rows += rows % 2  # strips start on even rows: the learned denoiser's 2 x 2 blocks stay on the image's grid
        for b in range(out.shape[0]):
            x, y = self._summary(self.pixels[b:b + 1, :self.color]), self._summary(out[b:b + 1, :self.color])
            if learned:
                noise = noise_of(x, y, model, measure_output)
                skip = noise.a == 0 and noise.b == 0  # no measurable noise
            else:
                noise, luma, chroma = filter_weights(x, y, strength, model, measure_output)
                skip = luma == 0 and chroma == 0
            if skip:
                continue
            pending = None  # a strip's result is written after the next strip has read its context
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                c0, c1 = max(0, r0 - radius), min(height, r1 + radius)
                xs = self._float(self.pixels[b:b + 1, :self.color, c0:c1])
                ys = self._float(out[b:b + 1, :self.color, c0:c1])
                if learned:
                    z = _gray_aware(lambda u, v: denoise_net.apply(net, u, v, noise.a, noise.b), xs, ys)
                else:
                    z = guided(xs, ys, noise, luma, chroma)
                if pending is not None:
                    self._write(out, b, *pending)
                pending = (r0, z[:, :, r0 - c0:r1 - c0])
            self._write(out, b, *pending)

    def _write(self, out: torch.Tensor, b: int, r0: int, z: torch.Tensor) -> None:
        if self.scale:
            z = z.mul_(self.scale).round_().clamp_(0, self.scale)
        out[b:b + 1, :self.color, r0:r0 + z.shape[2]].copy_(z)

    def copy_alpha(self) -> None:
        if self.pixels.shape[1] > self.color:
            self.out[:, self.color:].copy_(self.pixels[:, self.color:])


def _gray_aware(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """fn (of RGB images) on x, y with 1 or 3 channels: gray ones pass as three equal channels and come back
    as their mean."""
    if x.shape[1] == 3:
        return fn(x, y)
    return fn(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)).mean(1, keepdim=True)


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


def _numpy_frames(a: np.ndarray, wrap=lambda out: out) -> Frames:
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C array, got shape {a.shape}")
    if a.dtype not in NUMPY_DTYPES:
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

    return Frames(src, dst, result)


def _pil_frames(im) -> Frames:
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


def _tensor_frames(t: torch.Tensor) -> Frames:
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
    return Frames(batch, out, lambda o: (o if t.dim() == 4 else o[0]).to(t.device))


def to_frames(image) -> Frames:
    if isinstance(image, torch.Tensor):
        return _tensor_frames(image)
    if isinstance(image, np.ndarray):
        return _numpy_frames(image)
    if "PIL" in sys.modules and isinstance(image, sys.modules["PIL"].Image.Image):
        return _pil_frames(image)
    raise TypeError(f"image must be a numpy array, a PIL image or a torch tensor, got {type(image).__name__}")

