"""Training losses of every model in the project (pure functions; nn.Modules only where state is needed).

Images are (B, 3, H, W) float tensors in [0, 1]; every loss returns a 0-d tensor unless stated. The fused ops
(ops.tv_loss, ops.blur_color_loss) run natively when built, through the pure-PyTorch reference otherwise.

- Zero-DCE / Zero-DCE++ (zero-reference, as the official code computes them):
    L = w_tv L_tv(alpha) + w_spa L_spa + w_col L_col + w_exp L_exp,  weights 200/1/5/10 (Zero-DCE++: tv 1600).
- IQE DCGAN:   L = L_content + 0.4 L_texture + 0.1 L_color + 400 L_tv.
- DLN:         L = 1 - SSIM(y, target) + 0.001 TV_iso(y).
- EnlightenGAN (unpaired):
    L = L_SFP(global) + L_SFP(local patches) + L_G(global, relativistic LSGAN) + L_G(local patches, LSGAN).
The VGG-based losses (ContentLoss, SelfFeaturePreservingLoss) need VGG-19 weights from a user-given file;
without one they are disabled: they return 0 and say why in `.reason`.
"""
from __future__ import annotations

import functools
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .controls import EXPOSURE_NOMINAL
from . import ops
from .metrics import ssim

ZERO_DCE_WEIGHTS = {"tv": 200.0, "spa": 1.0, "col": 5.0, "exp": 10.0}
ZERO_DCE_PP_WEIGHTS = {"tv": 1600.0, "spa": 1.0, "col": 5.0, "exp": 10.0}
IQE_WEIGHTS = {"content": 1.0, "texture": 0.4, "color": 0.1, "tv": 400.0}
DLN_TV_WEIGHT = 0.001

SPA_POOL = 4  # L_spa region size (official)
EXP_PATCH = 16  # L_exp region size (official)
REAL, FAKE = 1, 0  # class indices of the two-way (DPED-style) discriminator logits


def _merge_weights(defaults: dict, weights: dict | None, name: str) -> dict:
    weights = dict(weights or {})
    unknown = set(weights) - set(defaults)
    if unknown:
        raise ValueError(f"{name}: unknown weight(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **weights}


def _nonempty(loss):
    """A loss over an empty batch is the mean of nothing (NaN): refuse it, naming the loss and the shape."""
    @functools.wraps(loss)
    def checked(*args, **kwargs):
        for a in (*args, *kwargs.values()):
            if isinstance(a, torch.Tensor) and a.numel() == 0:
                raise ValueError(f"{loss.__name__}: empty input of shape {tuple(a.shape)} (no samples to average)")
        return loss(*args, **kwargs)
    return checked


def _check_min_size(t: torch.Tensor, size: int, name: str) -> None:
    if t.dim() != 4 or t.shape[-2] < size or t.shape[-1] < size:
        raise ValueError(f"{name}: needs a (B, C, H, W) tensor with H, W >= {size}, got {tuple(t.shape)}")


# ---------------------------------------------------------------- Zero-DCE zero-reference losses

@_nonempty
def spatial_consistency_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_spa: keep the contrast between neighbouring 4x4 regions of the input x in the enhanced y.

    x, y: (B, C, H, W), H, W >= 4. Channel mean, 4x4 average pooling (trailing rows/columns that do not fill a
    region are dropped, as AvgPool2d does), then for each region and each of its 4 neighbours (zero outside the
    map, so border regions compare against 0 as in the official code): (D_x - D_y)^2 with D the difference
    to that neighbour. Summed over the 4 neighbours, averaged over B and the regions.
    """
    _check_min_size(x, SPA_POOL, "spatial_consistency_loss")
    if x.shape != y.shape:
        raise ValueError(f"spatial_consistency_loss: x {tuple(x.shape)} and y {tuple(y.shape)} differ")
    # Differences are linear, so D_x - D_y is the neighbour difference of q = pool(x) - pool(y).
    q = F.avg_pool2d(x.mean(1, keepdim=True) - y.mean(1, keepdim=True), SPA_POOL)  # (B, 1, h, w)
    p = F.pad(q, (1, 1, 1, 1))
    neighbours = (p[..., 1:-1, :-2], p[..., 1:-1, 2:], p[..., :-2, 1:-1], p[..., 2:, 1:-1])
    return sum((q - n).pow(2) for n in neighbours).mean()


def _exposure_target(exposure, y: torch.Tensor) -> torch.Tensor:
    """E as a tensor broadcastable to (B, 1, h, w): a float, a 0-d tensor or a (B,) tensor."""
    e = torch.as_tensor(exposure, dtype=y.dtype, device=y.device)
    if e.dim() == 0:
        return e
    if e.shape != (y.shape[0],):
        raise ValueError(f"exposure must be a float or a (B,) tensor with B={y.shape[0]}, got {tuple(e.shape)}")
    return e.view(-1, 1, 1, 1)


@_nonempty
def exposure_loss(y: torch.Tensor, exposure=EXPOSURE_NOMINAL) -> torch.Tensor:
    """L_exp: mean over B and 16x16 regions of (region mean of the channel-mean image - E)^2.

    y: (B, C, H, W), H, W >= 16. exposure E: float, 0-d tensor or (B,) tensor (one target per sample).
    Squared as in the official code (the paper writes |.|).
    """
    _check_min_size(y, EXP_PATCH, "exposure_loss")
    m = F.avg_pool2d(y.mean(1, keepdim=True), EXP_PATCH)  # (B, 1, H//16, W//16)
    return (m - _exposure_target(exposure, y)).pow(2).mean()


def _safe_sqrt(t: torch.Tensor) -> torch.Tensor:
    """sqrt(t) for t >= 0 with gradient 0 (not NaN) at t = 0: a grey image has an exactly zero colour deviation.

    The inner where keeps sqrt away from 0, so its backward never forms inf * 0.
    """
    positive = t > 0
    return torch.where(positive, torch.where(positive, t, 1.0).sqrt(), 0.0)


@_nonempty
def color_constancy_loss(y: torch.Tensor) -> torch.Tensor:
    """L_col (official code): mean over B of sqrt(Drg^2 + Drb^2 + Dgb^2), Dpq = (J_p - J_q)^2.

    y: (B, 3, H, W); J_p is the mean of channel p over the image. An exactly grey image gives 0 with a zero
    gradient (plain sqrt would give NaN there).
    """
    if y.dim() != 4 or y.shape[1] != 3:
        raise ValueError(f"color_constancy_loss: needs (B, 3, H, W), got {tuple(y.shape)}")
    r, g, b = y.mean(dim=(2, 3)).unbind(1)  # (B,) each
    return _safe_sqrt((r - g).pow(4) + (r - b).pow(4) + (g - b).pow(4)).mean()


@_nonempty
def illumination_smoothness_loss(alpha: torch.Tensor) -> torch.Tensor:
    """L_tv(A) of the curve maps alpha (B, 3k, h, w): 2 (sum dh^2 / ((h-1) w) + sum dw^2 / (h (w-1))) / B."""
    return ops.tv_loss(alpha, "zero_dce")


@_nonempty
def zero_reference_loss(x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, exposure=EXPOSURE_NOMINAL,
                        weights: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Zero-DCE training loss: w_tv L_tv(alpha) + w_spa L_spa(x, y) + w_col L_col(y) + w_exp L_exp(y, E).

    x: input (B, 3, H, W), y: enhanced (B, 3, H, W), H, W >= 16; alpha: the curve maps (B, 3k, h, w) (any h, w:
    Zero-DCE++ regularizes its low-resolution map). exposure: float or (B,) tensor. weights: overrides of
    ZERO_DCE_WEIGHTS (tv 200, spa 1, col 5, exp 10); Zero-DCE++ uses ZERO_DCE_PP_WEIGHTS (tv 1600).
    Returns (total, {"tv", "spa", "col", "exp"}): the unweighted terms, for logging.
    """
    w = _merge_weights(ZERO_DCE_WEIGHTS, weights, "zero_reference_loss")
    terms = {
        "tv": illumination_smoothness_loss(alpha),
        "spa": spatial_consistency_loss(x, y),
        "col": color_constancy_loss(y),
        "exp": exposure_loss(y, exposure),
    }
    return sum(w[k] * v for k, v in terms.items()), terms


# ---------------------------------------------------------------- IQE DCGAN (DPED-style) losses

def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601): (B, 3, H, W) -> (B, 1, H, W).

    DPED feeds its texture discriminator grayscale images so it judges texture, not colour.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"to_grayscale: needs (B, 3, H, W), got {tuple(x.shape)}")
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * w.view(1, 3, 1, 1)).sum(1, keepdim=True)


@_nonempty
def color_loss(enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((G * (enhanced - target))^2), G the 21x21 Gaussian of sigma 3 (DPED). Inputs (B, C, H, W)."""
    return ops.blur_color_loss(enhanced, target, 3.0, 21)


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if logits.dim() != 2 or logits.shape[1] != 2:
        raise ValueError(f"{name}: needs two-class logits (B, 2) (pre-softmax), got {tuple(logits.shape)}")


def _cross_entropy_to(logits: torch.Tensor, cls: int) -> torch.Tensor:
    return F.cross_entropy(logits, torch.full((logits.shape[0],), cls, dtype=torch.long, device=logits.device))


@_nonempty
def texture_loss_generator(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side of the texture loss: mean of -log D_real(enhanced) (the IQE paper's -sum log D(F(I_s))).

    fake_logits: (B, 2) discriminator logits (pre-softmax; class 1 = real, 0 = fake) of the grayscale
    enhanced images. Mean over the batch instead of the paper's sum, so the weight 0.4 does not scale with B.
    """
    _check_logits(fake_logits, "texture_loss_generator")
    return _cross_entropy_to(fake_logits, REAL)


@_nonempty
def texture_loss_discriminator(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator side: (CE(real_logits, real) + CE(fake_logits, fake)) / 2, each a batch mean.

    real_logits, fake_logits: (B, 2) logits (class 1 = real) of grayscale target and (detached) enhanced
    images. DPED shows D a random mix of both; the even average is the expectation of that.
    """
    _check_logits(real_logits, "texture_loss_discriminator")
    _check_logits(fake_logits, "texture_loss_discriminator")
    return 0.5 * (_cross_entropy_to(real_logits, REAL) + _cross_entropy_to(fake_logits, FAKE))


class _SingleLayer(nn.Module):
    """The one feature map `layer` of an extractor that returns {layer name: features}."""

    def __init__(self, extractor: nn.Module, layer: str):
        super().__init__()
        self.extractor, self.layer = extractor, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)[self.layer]


class _FeatureLoss(nn.Module):
    """Base of the VGG-feature losses: a frozen feature extractor, or disabled with a reason.

    vgg_weights_path: VGG-19 weights file for lowlight_core.models.vgg.VGG19Features (relu5_4 features of an
    input in [0, 1]); None disables the loss. features: any frozen nn.Module (B, 3, H, W) -> (B, C', H', W')
    to use instead (tests, other backbones); it takes precedence over the path.
    """

    def __init__(self, vgg_weights_path=None, features: nn.Module | None = None):
        super().__init__()
        self.features = None
        self.reason = ""
        if features is None and vgg_weights_path is not None:
            if not os.path.isfile(vgg_weights_path):
                raise FileNotFoundError(f"{type(self).__name__}: VGG-19 weights file not found: {vgg_weights_path}")
            from .models.vgg import VGG19Features  # lazy: the VGG module is only needed with weights

            features = _SingleLayer(VGG19Features(vgg_weights_path), "relu5_4")
        if features is None:
            self.reason = (f"{type(self).__name__} disabled: no VGG-19 weights given (pretrained weights cannot "
                           f"be downloaded here; pass vgg_weights_path=<file>)")
            return
        self.features = features.eval().requires_grad_(False)

    @property
    def enabled(self) -> bool:
        return self.features is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.features is not None:
            self.features.eval()  # a frozen extractor never switches to training behaviour
        return self


class ContentLoss(_FeatureLoss):
    """IQE/DPED content loss: mean((phi(enhanced) - phi(target))^2), i.e. ||.||^2 / (C H W) averaged over B.

    enhanced, target: (B, 3, H, W) in [0, 1]; phi = VGG-19 relu5_4. Returns 0 (and .enabled is False, .reason
    says why) without weights. Gradients flow to `enhanced` only.
    """

    def forward(self, enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            return enhanced.new_zeros(())
        with torch.no_grad():
            target_features = self.features(target)
        return F.mse_loss(self.features(enhanced), target_features)


@_nonempty
def iqe_generator_loss(enhanced: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor,
                       content: ContentLoss | None = None,
                       weights: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IQE generator loss: content + 0.4 texture + 0.1 color + 400 tv (overrides of IQE_WEIGHTS in weights).

    enhanced, target: (B, 3, H, W) in [0, 1]; fake_logits: (B, 2) discriminator logits of
    to_grayscale(enhanced); content: a ContentLoss (None or disabled: the term is 0).
    TV is ops.tv_loss(enhanced, "l1"). Returns (total, {"content", "texture", "color", "tv"}) unweighted.
    """
    w = _merge_weights(IQE_WEIGHTS, weights, "iqe_generator_loss")
    terms = {
        "content": content(enhanced, target) if content is not None else enhanced.new_zeros(()),
        "texture": texture_loss_generator(fake_logits),
        "color": color_loss(enhanced, target),
        "tv": ops.tv_loss(enhanced, "l1"),
    }
    return sum(w[k] * v for k, v in terms.items()), terms


# ---------------------------------------------------------------- DLN

@_nonempty
def dln_loss(y: torch.Tensor, target: torch.Tensor, tv_weight: float = DLN_TV_WEIGHT,
             l1_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DLN loss: 1 - SSIM(y, target) + tv_weight * ops.tv_loss(y, "iso") [+ l1_weight * mean |y - target|].

    y, target: (B, C, H, W) in [0, 1], H, W >= 11. SSIM: metrics.ssim with data range 1, 11x11 Gaussian
    (sigma 1.5), population covariance, per channel, averaged over the valid region, channels and batch.
    The isotropic TV with eps replaces the slides' sqrt of a product, which can be negative.
    The L1 term (not in the paper, off by default) ties the brightness to the target's, which SSIM's
    luminance term alone does loosely. Returns (total, {"ssim": 1 - SSIM, "tv": TV[, "l1": L1]}) unweighted.
    """
    terms = {"ssim": 1.0 - ssim(y, target).mean(), "tv": ops.tv_loss(y, "iso")}
    total = terms["ssim"] + tv_weight * terms["tv"]
    if l1_weight:
        terms["l1"] = (y - target).abs().mean()
        total = total + l1_weight * terms["l1"]
    return total, terms


# ---------------------------------------------------------------- EnlightenGAN

@_nonempty
def lsgan_generator_loss(pred_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN, generator side (local patches): mean((D(fake) - 1)^2). pred_fake: discriminator output, any shape."""
    return (pred_fake - 1).pow(2).mean()


@_nonempty
def lsgan_discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN, discriminator side: (mean((D(real) - 1)^2) + mean(D(fake)^2)) / 2; pred_fake from detached fakes."""
    return 0.5 * ((pred_real - 1).pow(2).mean() + pred_fake.pow(2).mean())


@_nonempty
def ralsgan_generator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic LSGAN, generator side (global discriminator, official EnlightenGAN):

    (mean((D(real) - mean D(fake))^2) + mean((D(fake) - mean D(real) - 1)^2)) / 2.
    pred_real: D on unpaired normal-light images, pred_fake: D on the enhanced images (any, equal-rank shapes).
    """
    return 0.5 * ((pred_real - pred_fake.mean()).pow(2).mean()
                  + (pred_fake - pred_real.mean() - 1).pow(2).mean())


@_nonempty
def ralsgan_discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic LSGAN, discriminator side:

    (mean((D(real) - mean D(fake) - 1)^2) + mean((D(fake) - mean D(real))^2)) / 2, pred_fake from detached fakes.
    """
    return 0.5 * ((pred_real - pred_fake.mean() - 1).pow(2).mean()
                  + (pred_fake - pred_real.mean()).pow(2).mean())


def random_patches(*images: torch.Tensor, n: int = 5, size: int = 32,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Crop n random size x size patches per sample, at the same positions in every given image.

    images: one or more (B, C_i, H, W) tensors of equal B, H, W (e.g. low and enhanced; crop the unpaired
    normal-light batch with a separate call). Positions are drawn per sample (uniformly over valid top-left
    corners) with `generator` (a CPU torch.Generator, for reproducibility). Returns one (B * n, C_i, size, size)
    tensor per image, sample-major (rows b*n .. b*n + n - 1 come from sample b).
    """
    if not images:
        raise ValueError("random_patches: give at least one image")
    B, _, H, W = images[0].shape
    for t in images:
        if t.dim() != 4 or t.shape[0] != B or t.shape[-2:] != (H, W):
            raise ValueError(f"random_patches: images must share (B, H, W), got {[tuple(i.shape) for i in images]}")
    if H < size or W < size:
        raise ValueError(f"random_patches: images {H}x{W} are smaller than the patch size {size}")
    tops = torch.randint(0, H - size + 1, (B, n), generator=generator).tolist()
    lefts = torch.randint(0, W - size + 1, (B, n), generator=generator).tolist()
    corners = [(b, tops[b][i], lefts[b][i]) for b in range(B) for i in range(n)]
    return tuple(torch.stack([t[b, :, y:y + size, x:x + size] for b, y, x in corners]) for t in images)


class SelfFeaturePreservingLoss(_FeatureLoss):
    """EnlightenGAN self-feature-preserving loss: mean((IN(phi(enhanced)) - IN(phi(low)))^2).

    low, enhanced: (B, 3, H, W) in [0, 1] (whole images or stacked patches); phi = VGG-19 features (relu5_4 from
    VGG19Features), IN = instance normalization without affine parameters (official code: it makes the loss
    insensitive to the brightness change the generator is supposed to make); instance_norm=False gives the
    paper's plain L2. Disabled (returns 0, .enabled False, .reason) without weights, like ContentLoss.
    """

    def __init__(self, vgg_weights_path=None, features: nn.Module | None = None, instance_norm: bool = True):
        super().__init__(vgg_weights_path, features)
        self.instance_norm = instance_norm

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return F.instance_norm(f) if self.instance_norm else f

    def forward(self, low: torch.Tensor, enhanced: torch.Tensor) -> torch.Tensor:
        if self.features is None:
            return enhanced.new_zeros(())
        with torch.no_grad():
            low_features = self._phi(low)
        return F.mse_loss(self._phi(enhanced), low_features)
