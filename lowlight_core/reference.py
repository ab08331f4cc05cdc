"""Pure-PyTorch reference of every fused op: the spec the native kernels must match.

Readable and differentiable by autograd, not fast. Shapes: B batch, C channels, H x W image.
Sign convention (the paper's, used everywhere in this project): LE(x) = x + alpha * x * (1 - x),
so alpha > 0 brightens. The official Zero-DCE code uses r = -alpha; convert at load time only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .controls import DENOISE_EPS_FLOOR, DENOISE_GAIN_FLOOR, TV_ISO_EPS

TV_KINDS = ("zero_dce", "l1", "iso")
ISO_EPS = TV_ISO_EPS  # keeps sqrt differentiable in flat regions of the "iso" TV (one value: controls.py)


def alpha_map(alpha: torch.Tensor, step: int, channels: int) -> torch.Tensor:
    """The (B, C, h, w) map used by curve step `step`: map min(step, k - 1) of alpha's C*k channels."""
    k = alpha.shape[1] // channels
    m = min(step, k - 1)
    return alpha[:, channels * m: channels * (m + 1)]


def le_curve(x: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """Apply the LE-curve `iterations` times.

    x: (B, C, H, W) in [0, 1]. alpha: (B, C*k, h, w), k >= 1. Step i uses map min(i, k-1):
    k = 1 is Zero-DCE++ (one shared map), k = 8 with 8 iterations is Zero-DCE (one map per step).
    If (h, w) != (H, W) alpha is bilinearly resized (align_corners=False) to (H, W) first.
    """
    C, (H, W) = x.shape[1], x.shape[-2:]
    if alpha.shape[-2:] != (H, W):
        alpha = F.interpolate(alpha, size=(H, W), mode="bilinear", align_corners=False)
    for i in range(iterations):
        a = alpha_map(alpha, i, C)
        x = x + a * x * (1 - x)
    return x


def gaussian_kernel1d(sigma: float, ksize: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalized 1-D Gaussian of odd length ksize, centred."""
    r = ksize // 2
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return (g / g.sum()).to(dtype=dtype, device=device)


def gaussian_blur(t: torch.Tensor, sigma: float, ksize: int) -> torch.Tensor:
    """Per-channel 'same' Gaussian blur with zero padding, as a 2-D conv2d."""
    C = t.shape[1]
    g = gaussian_kernel1d(sigma, ksize, t.dtype, t.device)
    k2 = torch.outer(g, g).expand(C, 1, ksize, ksize)
    return F.conv2d(t, k2, padding=ksize // 2, groups=C)


def blur_color_loss(x: torch.Tensor, y: torch.Tensor, sigma: float = 3.0, ksize: int = 21) -> torch.Tensor:
    """mean((G * (x - y))^2): the IQE/DPED color loss. Blur is linear, so blur the difference once."""
    return gaussian_blur(x - y, sigma, ksize).pow(2).mean()


def _diffs(t: torch.Tensor):
    return t[:, :, 1:, :] - t[:, :, :-1, :], t[:, :, :, 1:] - t[:, :, :, :-1]


def tv_loss(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Total variation of a (B, C, H, W) tensor.

    zero_dce: 2 * (sum(dh^2) / ((H-1) W) + sum(dw^2) / (H (W-1))) / B   (official Zero-DCE L_tv(A))
    l1:       mean(|dh|) + mean(|dw|)                                     (IQE)
    iso:      mean(sqrt(dh^2 + dw^2 + eps)) over all B*C*H*W pixels, with forward differences that are
              zero past the last row/column (Neumann boundary), eps = 1e-6   (DLN)
    A direction with no neighbours (H == 1 or W == 1) contributes 0.
    """
    B, C, H, W = t.shape
    dh, dw = _diffs(t)
    # An empty difference tensor (H == 1 or W == 1) sums to 0 and stays in the autograd graph.
    if kind == "zero_dce":
        return 2 * (dh.pow(2).sum() / max((H - 1) * W, 1) + dw.pow(2).sum() / max(H * (W - 1), 1)) / B
    if kind == "l1":
        return (dh.abs().mean() if H > 1 else dh.sum()) + (dw.abs().mean() if W > 1 else dw.sum())
    if kind == "iso":
        dh = F.pad(dh, (0, 0, 0, 1))
        dw = F.pad(dw, (0, 1, 0, 0))
        return torch.sqrt(dh * dh + dw * dw + ISO_EPS).mean()
    raise ValueError(f"tv_loss: kind must be one of {TV_KINDS}, got {kind!r}")



# ---------------------------------------------------------------- the photo path (integer images in and out)

PHOTO_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}  # integer dtype -> the value that means 1.0
CURVE_CHANNELS = 3  # curve models estimate one map per RGB channel


def photo_color_channels(channels: int) -> int:
    """1 for gray (C = 1) and gray + alpha (C = 2), 3 for RGB and RGBA; the rest is alpha."""
    return 1 if channels <= 2 else 3


def photo_curve(image: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """le_curve on an image in its own dtype and layout: (B, C, H, W), C in 1-4, uint8/uint16 (scaled by
    255 / 65535) or float (clamped to [0, 1]); channels_last memory is an H x W x C photo.

    alpha: (B, 3k, h, w) float32 curve maps of an RGB curve model (resized like le_curve). The curve result
    is clamped to [0, 1]; a gray image is enhanced as R = G = B and gets the mean of the three results;
    integers are rounded to nearest (ties to even). Alpha channels (the 2nd of gray, the 4th of RGB) are
    copied. Returns a tensor like torch.empty_like(image) (same dtype and memory layout).
    """
    x = _photo_colors(image)
    gray = x.shape[1] == 1
    y = le_curve(x.expand(-1, CURVE_CHANNELS, -1, -1) if gray else x, alpha, iterations).clamp(0, 1)
    return _photo_result(image, y.mean(dim=1, keepdim=True) if gray else y)


def _photo_colors(image: torch.Tensor) -> torch.Tensor:
    """The colour channels of a photo-path image as float32 in [0, 1] (integers scaled, floats clamped)."""
    scale = PHOTO_SCALE.get(image.dtype)
    x = image[:, :photo_color_channels(image.shape[1])].to(torch.float32)
    return x / scale if scale else x.clamp(0, 1)


def _photo_result(image: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y (the colour channels in [0, 1]) in image's dtype and layout, integers rounded to nearest even;
    image's alpha channels copied."""
    color, scale = y.shape[1], PHOTO_SCALE.get(image.dtype)
    if scale:
        y = y.mul(scale).round().clamp(0, scale)
    out = torch.empty_like(image)
    out[:, :color] = y.to(image.dtype)
    out[:, color:] = image[:, color:]
    return out


def photo_value_curve(image: torch.Tensor, alpha: torch.Tensor, iterations: int) -> torch.Tensor:
    """photo_curve for models that curve the value (models.zero_dce.value_curve): the LE-curve on
    v = max of the colour channels (the gray channel itself for gray), every colour channel scaled by the gain
    v' / max(v, 1e-6), clamped to [0, 1]. image as photo_curve's; alpha: (B, k, h, w) float32, one map per
    step (the channel mean of an RGB model's maps, taken by the caller), resized like le_curve. Integers are
    rounded to nearest (ties to even); alpha channels are copied."""
    x = _photo_colors(image)
    v = x.amax(1, keepdim=True)
    return _photo_result(image, (x * (le_curve(v, alpha, iterations) / v.clamp_min(1e-6))).clamp(0, 1))


GRID_COEFFS = 12  # bilateral_apply: a 3 x 4 affine colour matrix per grid cell (row-major)


def bilateral_guide(x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The guidance map (B, 1, H, W) of bilateral_apply: clamp(w_r r + w_g g + w_b b + bias, 0, 1) of the RGB
    float image x (B, 3, H, W); guide = (w_r, w_g, w_b, bias) float32."""
    return (x * guide[:3].view(1, 3, 1, 1)).sum(1, keepdim=True).add(guide[3]).clamp(0, 1)


def bilateral_slice(grid: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The grid's coefficients (B, 12, H, W) at every pixel: trilinear interpolation of grid (B, 12, D, Gh, Gw)
    at depth g * D - 0.5 (g the guidance map, (B, 1, H, W) in [0, 1]) and at the pixel centre scaled to the
    grid, (y + 0.5) Gh / H - 0.5 (x likewise), every coordinate clamped to the grid's first..last cell centre."""
    b, _, h, w = g.shape
    ys = (torch.arange(h, dtype=g.dtype, device=g.device) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=g.dtype, device=g.device) * 2 + 1) / w - 1
    coords = torch.stack(torch.broadcast_tensors(xs.view(1, 1, w), ys.view(1, h, 1), g[:, 0] * 2 - 1), dim=-1)
    return F.grid_sample(grid.to(g.dtype), coords.unsqueeze(1), mode="bilinear", padding_mode="border",
                         align_corners=False)[:, :, 0]


def bilateral_apply(image: torch.Tensor, grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """A bilateral grid of affine colour transforms (HDRNet) applied to an image in its own dtype and layout.

    image: (B, C, H, W) as photo_curve's (C in 1-4, uint8 / uint16 / float; gray is enhanced as R = G = B and
    gets the mean of the three results; alpha channels are copied). grid: (B, 12, D, Gh, Gw) float32, per cell
    the matrix A (3 x 4, row-major): out_c = A[c, 0] r + A[c, 1] g + A[c, 2] b + A[c, 3]. guide: (4,) float32,
    the guidance map's weights (bilateral_guide). Every pixel: A sliced at (its guidance, its position)
    (bilateral_slice), out = clamp(A [r, g, b, 1], 0, 1), integers rounded to nearest (ties to even).
    Differentiable in grid and guide (and a float image) through autograd: the training path."""
    color = photo_color_channels(image.shape[1])
    # float64 stays float64 (gradcheck); every other dtype is computed in float32 like the kernels
    x = image[:, :color].clamp(0, 1) if image.dtype == torch.float64 else _photo_colors(image)
    y = bilateral_transform(x.expand(-1, CURVE_CHANNELS, -1, -1), grid, guide).clamp(0, 1)
    return _photo_result(image, y.mean(dim=1, keepdim=True) if color == 1 else y)


def bilateral_transform(x: torch.Tensor, grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """bilateral_apply's affine step on a float RGB image x (B, 3, H, W) in [0, 1], before the clamp to [0, 1]:
    the training loss reads it, as the clamp passes no gradient where the output leaves [0, 1] (a clipped
    highlight would teach the grid nothing)."""
    return bilateral_affine(x, bilateral_slice(grid, bilateral_guide(x, guide.to(x.dtype))))


def bilateral_affine(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A [r, g, b, 1] at every pixel of the float RGB image x (B, 3, H, W), A its sliced 3 x 4 transform
    a (B, 12, H, W) (bilateral_slice); not clamped."""
    a = a.unflatten(1, (3, 4))
    return (a[:, :, :3] * x.unsqueeze(1)).sum(2) + a[:, :, 3]


def area_reduce(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float32 (B, C, height, width): the mean of each output pixel's block of `image` (B, C, H, W) in the
    image's own units (adaptive average pooling: block i of H rows is [floor(i H / h), ceil((i + 1) H / h)))."""
    return F.adaptive_avg_pool2d(image.to(torch.float64), (height, width)).to(torch.float32)


# ---------------------------------------------------------------- guided_denoise (noise-aware edge-preserving filter)

def box_mean(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of t (B, C, H, W) over the (2r+1)^2 window around each pixel, the window clipped to the image
    (the divisor is the number of pixels inside). From cumulative sums, so the cost does not grow with r."""
    if radius == 0:
        return t
    for dim in (2, 3):
        n = t.shape[dim]
        idx = torch.arange(n, device=t.device)
        lo, hi = (idx - radius).clamp_min(0), (idx + radius).clamp_max(n - 1) + 1
        c = F.pad(t.cumsum(dim), (0, 0, 1, 0) if dim == 2 else (1, 0))
        t = (c.index_select(dim, hi) - c.index_select(dim, lo))
        count = (hi - lo).to(t.dtype)
        t = t / (count.view(-1, 1) if dim == 2 else count)
    return t


def _window_eps(lin, lout, weight, radius, noise_a, noise_b):
    """weight * gain^2 * the input's noise variance, per window: the noise the enhancement left there."""
    mi, mo = box_mean(lin, radius), box_mean(lout, radius)
    gain = mo / mi.clamp_min(DENOISE_GAIN_FLOOR)
    return weight * gain * gain * (noise_a * mi + noise_b).clamp_min(0)


def _guided_plane(p, lin, lout, weight, radius, noise_a, noise_b, dtype):
    """The luminance of guided_denoise (float64 in and out; a and b rounded to dtype as the kernels store them)."""
    if weight == 0 or radius == 0:
        return p
    m, mm = box_mean(p, radius), box_mean(p * p, radius)
    var = (mm - m * m).clamp_min(0)
    eps = _window_eps(lin, lout, weight, radius, noise_a, noise_b)
    a = torch.where(eps > 0, var / (var + eps), torch.ones_like(var))
    b = m - a * m
    a, b = a.to(dtype).to(torch.float64), b.to(dtype).to(torch.float64)
    return box_mean(a, radius) * p + box_mean(b, radius)


def _chroma_estimate(p, guide, lin, lout, weight, radius, noise_a, noise_b, dtype):
    """A chroma plane p as a local linear function of the denoised luminance `guide` (He et al.'s guided
    filter with another image as guide): per window A = cov(guide, p) / (var(guide) + eps), B = m_p - A m_guide,
    eps = the luminance's eps + DENOISE_EPS_FLOOR; then mean(A) guide + mean(B). Chroma edges follow the
    luminance edges; chroma that varies where the luminance does not (noise, blotches) is averaged away."""
    mg, mp = box_mean(guide, radius), box_mean(p, radius)
    var = (box_mean(guide * guide, radius) - mg * mg).clamp_min(0)
    cov = box_mean(guide * p, radius) - mg * mp
    eps = _window_eps(lin, lout, weight, radius, noise_a, noise_b) + DENOISE_EPS_FLOOR
    a = cov / (var + eps)
    b = mp - a * mg
    a, b = a.to(dtype).to(torch.float64), b.to(dtype).to(torch.float64)
    return box_mean(a, radius) * guide + box_mean(b, radius)


def guided_denoise(x: torch.Tensor, guide: torch.Tensor, noise_a: float, noise_b: float, luma: float,
                   chroma: float, luma_radius: int, chroma_radius: int) -> torch.Tensor:
    """Noise-aware guided filter of an enhanced image x (B, C, H, W), C = 1 (gray) or 3 (RGB), in [0, 1],
    given the image it was enhanced from, guide (same shape), whose noise variance is noise_a * I + noise_b at
    intensity I (Poisson-Gaussian, per channel).

    x is split into luminance L = mean of the channels and (RGB) three chroma planes p_c = x_c - L.
    Luminance: He et al.'s guided filter with itself as guide over (2r+1)^2 windows (r = luma_radius; windows
    clipped at the border): per window, with box means m = mean(L), var = mean(L^2) - m^2, the gain of the
    enhancement g = mean(L) / max(mean(L_in), DENOISE_GAIN_FLOOR) (L_in the guide's luminance) and
    eps = luma * g^2 * max(noise_a * mean(L_in) + noise_b, 0): a = var / (var + eps) (1 where eps = 0),
    b = m - a m; L' = mean(a) L + mean(b) (L passed through where luma or luma_radius is 0).
    Chroma (RGB, chroma in [0, 1], radius chroma_radius): each p_c is estimated as a local linear function of
    L' (rounded to x's dtype, as the kernels store it; `_chroma_estimate`, eps from the luma weight) and
    p_c' = p_c + chroma * (estimate - p_c): chroma 0 or chroma_radius 0 passes the planes through.
    Output: L' + p_c' per channel, clamped to [0, 1], x's dtype, contiguous. Computed in float64; the per-window
    coefficients rounded to x's dtype.
    """
    dtype = x.dtype
    xd, gd = x.to(torch.float64), guide.to(torch.float64)
    lout, lin = xd.mean(1, keepdim=True), gd.mean(1, keepdim=True)
    lum = _guided_plane(lout, lin, lout, luma, luma_radius, noise_a, noise_b, dtype)
    y = lum
    if x.shape[1] == 3:
        p = xd - lout
        if chroma > 0 and chroma_radius > 0:
            g = lum.to(dtype).to(torch.float64)
            est = torch.cat([_chroma_estimate(p[:, c:c + 1], g, lin, lout, luma, chroma_radius, noise_a, noise_b,
                                              dtype) for c in range(3)], 1)
            p = p + chroma * (est - p)
        y = y + p
    return y.clamp(0, 1).to(dtype).contiguous()
