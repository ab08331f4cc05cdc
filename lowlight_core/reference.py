"""Pure-PyTorch reference of every fused op: the spec the native kernels must match.

Readable and differentiable by autograd, not fast. Shapes: B batch, C channels, H x W image.
Sign convention (the paper's, used everywhere in this project): LE(x) = x + alpha * x * (1 - x),
so alpha > 0 brightens. The official Zero-DCE code uses r = -alpha; convert at load time only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .controls import TV_ISO_EPS

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

