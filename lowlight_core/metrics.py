"""Full-reference image quality metrics: PSNR and SSIM, on torch tensors and on uint8 arrays.

Two entry points per metric, chosen by the input type (no guessing inside one function):
  psnr(a, b) / ssim(a, b)              torch tensors (B, C, H, W), float, any data_range; per-image (B,) results;
                                       ssim is differentiable (the DLN loss uses it).
  psnr_uint8(a, b) / ssim_uint8(a, b)  numpy uint8 arrays (H, W, C) or (H, W); one Python float. Use these for
                                       every reported number, after `to_uint8` of the model output.

Reporting protocol (SEEDS.md, "Metrics"): score the enhanced image against the normal-light reference, both as
uint8 RGB (round(clip(x, 0, 1) * 255)), never rescaled to the reference's mean. `PROTOCOL` holds the sentence to
print next to every number.

SSIM follows skimage.metrics.structural_similarity exactly (both agree within 1e-4, tested):
  local means, variances and covariance from a window filter, K1 = 0.01, K2 = 0.03, C1 = (K1 R)^2,
  C2 = (K2 R)^2 with R = data_range, SSIM map averaged over the pixels whose window lies inside the image (the
  (win - 1) / 2 border is dropped, which is what skimage's crop does, so no padding mode matters), then averaged
  over channels. Two conventions:
  - Wang et al. 2004 (the default here, and the project's protocol): gaussian_weights=True, sigma=1.5,
    11 x 11 window (radius int(3.5 sigma + 0.5)), population covariance (use_sample_covariance=False).
    skimage: structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False).
  - skimage's defaults: gaussian_weights=False, 7 x 7 uniform window, sample covariance (x win^2 / (win^2 - 1)).
    skimage: structural_similarity(a, b, channel_axis=-1) on uint8 (data_range 255).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .reference import gaussian_kernel1d

PROTOCOL = ("PSNR/SSIM on uint8 RGB (round(clip(x)*255)) against the normal-light reference, no mean "
            "rescaling; SSIM: 11x11 Gaussian window sigma 1.5, population covariance, K1=0.01, K2=0.03, "
            "data range 255, border of 5 px excluded, mean over channels (Wang et al. 2004; = skimage "
            "gaussian_weights=True, sigma=1.5, use_sample_covariance=False)")

GAUSSIAN_TRUNCATE = 3.5  # skimage/scipy truncation: sigma 1.5 gives an 11-tap window


def to_uint8(x) -> np.ndarray:
    """round(clip(x, 0, 1) * 255) as uint8, computed in float64 (np.round: halves go to even).

    torch tensor (C, H, W) -> numpy (H, W, C); (B, C, H, W) -> (B, H, W, C) (channels last, as images are stored).
    numpy float array of any shape -> uint8 array of the same shape.
    """
    if isinstance(x, torch.Tensor):
        if x.dim() not in (3, 4):
            raise ValueError(f"to_uint8: tensor must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
        x = x.detach().to("cpu", torch.float64).movedim(-3, -1).numpy()
    x = np.asarray(x, dtype=np.float64)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_pair(a, b, name: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{name}: a and b must be torch tensors (use {name}_uint8 for numpy uint8 arrays)")
    if a.dim() != 4 or a.shape != b.shape:
        raise ValueError(f"{name}: a and b must both be (B, C, H, W) of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def _check_uint8_pair(a, b, name: str) -> None:
    for arr in (a, b):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
            raise TypeError(f"{name}: inputs must be numpy uint8 arrays (convert with to_uint8), got "
                            f"{getattr(arr, 'dtype', type(arr).__name__)}")
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"{name}: inputs must be (H, W) or (H, W, C) of one shape, got {a.shape} and {b.shape}")


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB: 10 log10(data_range^2 / mean((a - b)^2)) over C, H, W.

    a, b: (B, C, H, W) float. Returns a (B,) float64 tensor; identical images give inf.
    """
    _check_pair(a, b, "psnr")
    mse = (a.double() - b.double()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(data_range**2 / mse)  # x / 0 -> inf, log10(inf) -> inf


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (H, W, C) or (H, W), data range 255 (= skimage peak_signal_noise_ratio).

    Identical images give inf.
    """
    _check_uint8_pair(a, b, "psnr")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _window(gaussian_weights: bool, sigma: float, win_size: int, dtype, device) -> torch.Tensor:
    """The 1-D separable SSIM window (normalized), as skimage builds it."""
    if gaussian_weights:
        if sigma <= 0:
            raise ValueError(f"ssim: sigma must be > 0, got {sigma}")
        radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
        return gaussian_kernel1d(sigma, 2 * radius + 1, dtype, device)
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"ssim: win_size must be odd and >= 1, got {win_size}")
    return torch.full((win_size,), 1.0 / win_size, dtype=dtype, device=device)


def _ssim_map(a, b, data_range, g, sample_covariance, K1, K2) -> torch.Tensor:
    """SSIM map (B, C, H - k + 1, W - k + 1) of a, b (B, C, H, W) with the 1-D window g (k,)."""
    B, C, H, W = a.shape
    k = g.numel()
    if H < k or W < k:
        raise ValueError(f"ssim: images must be at least {k}x{k} for this window, got {H}x{W}")
    # Filter the five moment planes in one grouped, separable, 'valid' convolution.
    planes = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    n = planes.shape[1]
    planes = F.conv2d(planes, g.view(1, 1, k, 1).expand(n, 1, k, 1), groups=n)
    planes = F.conv2d(planes, g.view(1, 1, 1, k).expand(n, 1, 1, k), groups=n)
    ux, uy, uxx, uyy, uxy = planes.split(C, dim=1)
    cov_norm = k * k / (k * k - 1) if sample_covariance else 1.0
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, *, gaussian_weights: bool = True,
         sigma: float = 1.5, win_size: int = 7, use_sample_covariance: bool = False,
         K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    """Per-image mean SSIM of a, b: (B, C, H, W) float, same dtype. Returns (B,) in a's dtype; differentiable.

    Defaults are Wang et al. (11 x 11 Gaussian, sigma 1.5, population covariance); win_size is used only with
    gaussian_weights=False (skimage's default convention is gaussian_weights=False, win_size=7,
    use_sample_covariance=True). H and W must be at least the window size. See the module docstring.
    """
    _check_pair(a, b, "ssim")
    g = _window(gaussian_weights, sigma, win_size, a.dtype, a.device)
    return _ssim_map(a, b, data_range, g, use_sample_covariance, K1, K2).mean(dim=(1, 2, 3))


def ssim_uint8(a: np.ndarray, b: np.ndarray, *, gaussian_weights: bool = True, sigma: float = 1.5,
               win_size: int = 7, use_sample_covariance: bool = False) -> float:
    """Mean SSIM of two uint8 images (H, W, C) or (H, W), data range 255, computed in float64.

    Same conventions and defaults as `ssim` (the project's protocol: Wang et al.). Channels are scored one at a
    time and averaged (as skimage does with channel_axis=-1), which bounds memory on large images.
    """
    _check_uint8_pair(a, b, "ssim")
    a3 = a if a.ndim == 3 else a[:, :, None]
    b3 = b if b.ndim == 3 else b[:, :, None]
    g = _window(gaussian_weights, sigma, win_size, torch.float64, "cpu")
    scores = []
    for c in range(a3.shape[2]):
        ta = torch.from_numpy(np.ascontiguousarray(a3[:, :, c])).to(torch.float64)[None, None]
        tb = torch.from_numpy(np.ascontiguousarray(b3[:, :, c])).to(torch.float64)[None, None]
        scores.append(_ssim_map(ta, tb, 255.0, g, use_sample_covariance, 0.01, 0.03).mean().item())
    return float(np.mean(scores))


def clipped_beyond_uint8(a: np.ndarray, ref: np.ndarray) -> float:
    """% of the values of `a` at 255 where the reference is below 255: highlights the enhancement blew out
    (the reference's own saturated pixels are not counted). uint8 arrays of equal shape."""
    _check_uint8_pair(a, ref, "clipped_beyond")
    return float(np.mean((a == 255) & (ref < 255)) * 100)


def color_shift_uint8(a: np.ndarray, ref: np.ndarray) -> float:
    """Colour cast of `a` against the reference, independent of brightness: mean over R, G, B of
    |c(a) - c(ref)|, c = the channel means divided by their average ((1, 1, 1) for a grey-balanced image).
    uint8 (H, W, 3) arrays; about 0.01 is a just-visible cast, 0.05 a clear one."""
    _check_uint8_pair(a, ref, "color_shift")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"color_shift: needs RGB images (H, W, 3), got shape {a.shape}")

    def chroma(x):
        m = x.reshape(-1, 3).mean(0, dtype=np.float64)
        return m / max(m.mean(), 1e-6)
    return float(np.abs(chroma(a) - chroma(ref)).mean())



# sRGB (D65) -> CIE XYZ -> CIELAB with the exact CIE constants (skimage.color rounds two of them: within 2e-4)
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L in [0, 100]) of sRGB values in [0, 1] (..., 3), float64, D65 white, 2-degree observer."""
    c = np.asarray(rgb, dtype=np.float64)
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    t = (linear @ _XYZ_FROM_RGB.T) / _D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(t > delta ** 3, np.cbrt(t), t / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 colour difference of two CIELAB arrays (..., 3) (Sharma, Wu and Dalal 2005;
    kL = kC = kH = 1). About 1 is a just-noticeable difference; 10 a clearly different colour."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_mean7 / (c_mean7 + 25.0 ** 7)))
    a1, a2 = a1 * (1 + g), a2 * (1 + g)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    chroma = c1 * c2 != 0  # a grey colour has no hue: its hue terms are 0
    dh = np.where(h2 - h1 > 180, h2 - h1 - 360, np.where(h2 - h1 < -180, h2 - h1 + 360, h2 - h1))
    dH = np.where(chroma, 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh) / 2), 0.0)
    h_sum = h1 + h2
    h_mean = np.where(np.abs(h1 - h2) <= 180, h_sum / 2, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_mean = np.where(chroma, h_mean, h_sum)
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    l_mean, c_mean = (L1 + L2) / 2, (c1 + c2) / 2
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    rotation = -np.sin(np.radians(60 * np.exp(-(((h_mean - 275) / 25) ** 2)))) * 2 * np.sqrt(
        c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7))
    dl, dc, dh_ = (L2 - L1) / s_l, (c2 - c1) / s_c, dH / s_h
    return np.sqrt(np.maximum(dl ** 2 + dc ** 2 + dh_ ** 2 + rotation * dc * dh_, 0.0))


def ciede2000_uint8(a: np.ndarray, ref: np.ndarray, match_brightness: bool = True) -> float:
    """Mean CIEDE2000 of `a` against the reference, uint8 RGB (H, W, 3) arrays: colour fidelity against the real
    well-exposed frame. match_brightness (the default, the protocol's): `a` is first scaled by
    mean(ref) / mean(a) and clipped, so that an exposure error counts in PSNR, not here twice."""
    _check_uint8_pair(a, ref, "ciede2000")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"ciede2000: needs RGB images (H, W, 3), got shape {a.shape}")
    x, y = a.astype(np.float64) / 255.0, ref.astype(np.float64) / 255.0
    if match_brightness:
        x = np.clip(x * (y.mean() / max(x.mean(), 1e-6)), 0.0, 1.0)
    return float(ciede2000(srgb_to_lab(x), srgb_to_lab(y)).mean())

# ---------------------------------------------------------------- no-reference checks of an enhanced photo
# Compared with the photo's own input, on 16 x 16 block means (noise averaged out), over the blocks where the
# input is not black (r + g + b of the block mean > 0.03). A pure gain keeps colour shift 0 and saturation
# ratio 1; any tone curve lowers saturation somewhat.
BLOCK = 16
BLACK_BLOCK = 0.03
REAL_PHOTO_NOTE = (
    "brightness: mean of the output; clip%: pixels whose brightest channel is 255 in the output but not in the "
    "input; colour shift: 95th percentile over 16x16 blocks of the L1 distance between input and output "
    "chromaticity (r, g, b)/(r + g + b); saturation ratio: mean block saturation (1 - min/max) of the output "
    "over the input's; noise: relative noise in flat regions (% of the local brightness, Immerkaer's "
    "estimator on the luminance of the 25 % flattest 16x16 blocks)")


def _blocks(image: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """(H, W, 3) uint8 -> (H // block, W // block, 3) float64 block means in [0, 1] (partial edge blocks dropped;
    an image smaller than one block is one block)."""
    x = image.astype(np.float64) / 255.0
    b = min(block, x.shape[0], x.shape[1])
    h, w = x.shape[0] // b, x.shape[1] // b
    return x[:h * b, :w * b].reshape(h, b, w, b, 3).mean(axis=(1, 3))


def _check_rgb_pair(inp, out, name: str) -> None:
    _check_uint8_pair(inp, out, name)
    if inp.ndim != 3 or inp.shape[2] != 3:
        raise ValueError(f"{name}: needs RGB images (H, W, 3), got shape {inp.shape}")


def color_shift_blocks(inp: np.ndarray, out: np.ndarray) -> float:
    """95th percentile over non-black blocks of |chroma(out) - chroma(inp)|_1, chroma = rgb / (r + g + b).
    uint8 (H, W, 3) input and output; nan if every block is black."""
    _check_rgb_pair(inp, out, "color_shift_blocks")
    a, b = _blocks(inp), _blocks(out)
    keep = a.sum(-1) > BLACK_BLOCK
    if not keep.any():
        return math.nan
    ca = a[keep] / a[keep].sum(-1, keepdims=True)
    cb = b[keep] / np.maximum(b[keep].sum(-1, keepdims=True), 1e-9)
    return float(np.percentile(np.abs(ca - cb).sum(-1), 95))


def saturation_ratio(inp: np.ndarray, out: np.ndarray) -> float:
    """Mean block saturation (1 - min/max of the block mean) of out over inp's, over the non-black blocks of
    inp. Below 1: washed out; above: more saturated. nan if every block is black or the input is grey."""
    _check_rgb_pair(inp, out, "saturation_ratio")
    a, b = _blocks(inp), _blocks(out)
    keep = a.sum(-1) > BLACK_BLOCK

    def saturation(m):
        return 1.0 - m.min(-1) / np.maximum(m.max(-1), 1e-9)
    s_in = saturation(a[keep]).mean() if keep.any() else 0.0
    return float(saturation(b[keep]).mean() / s_in) if s_in > 0 else math.nan


def clipped_beyond_input(inp: np.ndarray, out: np.ndarray) -> float:
    """% of pixels whose brightest channel is 255 in out but below 255 in inp (uint8 (H, W, 3) or (H, W))."""
    _check_uint8_pair(inp, out, "clipped_beyond_input")
    top = (lambda x: x.max(-1)) if inp.ndim == 3 else (lambda x: x)
    return float(np.mean((top(out) == 255) & (top(inp) < 255)) * 100)


def flat_noise(image: np.ndarray) -> float:
    """Relative noise in flat regions, % of the local brightness. Per 16 x 16 block of the luminance: the noise
    by Immerkaer's estimator (sqrt(pi/2) / 6 times the mean |response| of the Laplacian-difference kernel) over
    the block's mean; median over the flat blocks: the 25 % (of those at brightness 0.02-0.98) whose 4 x 4 px
    means vary least (that averaging removes most noise, so it ranks blocks by structure). nan if none."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError("flat_noise: needs a uint8 image (H, W) or (H, W, C)")
    y = image.astype(np.float64).mean(-1) / 255.0 if image.ndim == 3 else image.astype(np.float64) / 255.0
    b = BLOCK
    h, w = (y.shape[0] - 2) // b, (y.shape[1] - 2) // b
    if h < 1 or w < 1:
        return math.nan
    r = (y[:-2, :-2] - 2 * y[:-2, 1:-1] + y[:-2, 2:] - 2 * y[1:-1, :-2] + 4 * y[1:-1, 1:-1] - 2 * y[1:-1, 2:]
         + y[2:, :-2] - 2 * y[2:, 1:-1] + y[2:, 2:])
    sigma = np.sqrt(np.pi / 2) / 6 * np.abs(r[:h * b, :w * b]).reshape(h, b, w, b).mean(axis=(1, 3))
    inner = y[1:1 + h * b, 1:1 + w * b].reshape(h, b // 4, 4, w, b // 4, 4).mean(axis=(2, 5))
    level, structure = inner.mean(axis=(1, 3)), inner.std(axis=(1, 3))
    keep = (level > 0.02) & (level < 0.98)
    if not keep.any():
        return math.nan
    flat = np.argsort(structure[keep])[:max(1, keep.sum() // 4)]
    return float(np.median(sigma[keep][flat] / level[keep][flat]) * 100)


def real_photo_scores(inp: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """The no-reference numbers of one enhanced photo (uint8 RGB) against its input (REAL_PHOTO_NOTE)."""
    _check_rgb_pair(inp, out, "real_photo_scores")
    return {"brightness": float(out.mean() / 255.0), "clipped": clipped_beyond_input(inp, out),
            "color_shift": color_shift_blocks(inp, out), "saturation": saturation_ratio(inp, out),
            "noise": flat_noise(out)}
