"""Recipes: what to train, on which data, for how long. Each has a "cpu" and a "gpu" config.

zero_dce     DCE-Net (24 maps, 8 iterations), full-resolution network, official zero-reference loss
             200 tv + spa + 5 col + 10 exp, Adam 1e-4, weight decay 1e-4, gradient-norm clip 0.1.
zero_dce_pp  Zero-DCE++ (one shared map), tv weight 1600. Trained as it runs at inference: alpha is estimated
             on the crop downscaled by `estimate_factor` (2: a 512 px photo is estimated at 256 px, the
             model's default estimate_size) and the curve is applied at the crop's full resolution through
             ops.le_curve, which resizes alpha inside. The number of curve iterations n is drawn per batch
             from n_range (4..12) and the network is not told n: one alpha must give a sensible image for any
             n in 1..16 (fewer steps: gentler, more: stronger), so the plugin can cache alpha and re-apply
             only the curve when the iterations slider moves. n = 8 then meets the exposure target E.

Both are E-conditioned: E ~ U(0.3, 0.8) per sample, fed to the network as an input plane and used as the
target of the exposure loss, so one network follows the exposure slider.

The "cpu" configs finish in about half an hour on a shared 2-core machine (small crops, a few thousand steps:
the Zero-DCE report in the seeds found the model stable after ~3,000 iterations); the "gpu" configs are the
official scale (about 100 epochs of the ~2,100 training images at 256 px (Zero-DCE) / 512 px (Zero-DCE++)).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from lowlight_core import ops
from lowlight_core.losses import ZERO_DCE_PP_WEIGHTS, ZERO_DCE_WEIGHTS, zero_reference_loss

from . import data as data_mod

EVAL_EXPOSURES = (0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class CurveRecipe:
    model: str  # registry name; also the weights file name
    loss_weights: dict
    steps: int
    batch: int
    crop: int  # square training crop (px)
    resize_long: int | None  # images resized so the long side is at most this before cropping
    estimate_factor: int = 1  # alpha estimated on the crop downscaled by this factor (Zero-DCE++)
    n_range: tuple[int, int] = (8, 8)  # curve iterations per batch, inclusive
    e_range: tuple[float, float] = (0.3, 0.8)
    lr: float = 1e-4
    lr_final: float | None = None  # cosine decay from lr to lr_final over the run; None: constant lr
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    val_every: int = 250
    ckpt_every: int = 100
    val_images: int = 16  # validation images scored during training (the model card uses all of them)
    val_resize_long: int | None = None
    channels_last: bool = False  # measured 2x faster for the depthwise convs of Zero-DCE++ on CPU
    seed: int = 0


RECIPES: dict[str, dict[str, CurveRecipe]] = {
    "zero_dce": {
        # 128 px crops of the 256 px images (the official training scale): ~0.8 s/step on 2 cores.
        "cpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=2000, batch=8, crop=128, resize_long=256,
                           val_resize_long=256),
        "gpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=27000, batch=8, crop=256, resize_long=256,
                           val_every=1000, ckpt_every=1000, val_images=64, val_resize_long=256),
    },
    "zero_dce_pp": {
        # 256 px crops at native resolution, alpha estimated at 128 px: ~0.5 s/step on 2 cores.
        "cpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=3000, batch=8, crop=256, resize_long=None,
                           estimate_factor=2, n_range=(4, 12), channels_last=True),
        "gpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=27000, batch=8, crop=512, resize_long=None,
                           estimate_factor=2, n_range=(4, 12), val_every=1000, ckpt_every=1000, val_images=64),
    },
}


def get_recipe(name: str, config: str = "cpu", **overrides) -> CurveRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    if config not in RECIPES[name]:
        raise ValueError(f"recipe {name!r} has configs {sorted(RECIPES[name])}, not {config!r}")
    return replace(RECIPES[name][config], **{k: v for k, v in overrides.items() if v is not None})


def estimate_alpha(model, x: torch.Tensor, exposure, factor: int, channels_last: bool = False) -> torch.Tensor:
    """Alpha for x, estimated on x downscaled by `factor` (antialiased), as at inference."""
    if factor > 1:
        h, w = max(1, round(x.shape[-2] / factor)), max(1, round(x.shape[-1] / factor))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return model.estimate_alpha(x, exposure)


class CurveTask:
    """Zero-reference training of a curve model (the trainer's task for zero_dce and zero_dce_pp)."""

    def __init__(self, model: torch.nn.Module, recipe: CurveRecipe):
        self.model, self.recipe = model, recipe
        if recipe.channels_last:
            model.to(memory_format=torch.channels_last)
        self.modules = {"model": model}

    def make_optimizers(self):
        r = self.recipe
        return {"model": torch.optim.Adam(self.model.parameters(), lr=r.lr, weight_decay=r.weight_decay)}

    def forward(self, x: torch.Tensor, exposure, iterations: int):
        r = self.recipe
        alpha = estimate_alpha(self.model, x, exposure, r.estimate_factor, r.channels_last)
        return ops.le_curve(x, alpha.contiguous(), iterations), alpha

    def loss(self, x, exposure, iterations):
        y, alpha = self.forward(x, exposure, iterations)
        with torch.autocast(x.device.type, enabled=False):  # the losses in float32 even under AMP
            return zero_reference_loss(x.float(), y.float(), alpha.float(), exposure, self.recipe.loss_weights)

    def train_step(self, batch, gen, update):
        r = self.recipe
        lo, hi = r.e_range
        exposure = (lo + (hi - lo) * torch.rand(batch.shape[0], generator=gen)).to(batch.device)
        n = int(torch.randint(r.n_range[0], r.n_range[1] + 1, (1,), generator=gen))
        total, terms = self.loss(batch, exposure, n)
        grad_norm = update(total, "model")
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "n": n, "grad_norm": grad_norm}

    def validate(self, images):
        """Zero-reference loss at E = 0.6, n = 8, and how well the output brightness follows E."""
        sums = {}
        for x in images:
            total, terms = self.loss(x, 0.6, 8)
            for k, v in {"loss": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            for e in EVAL_EXPOSURES:
                y = self.preview(x, e)
                sums["e_err"] = sums.get("e_err", 0.0) + abs(float(y.mean()) - e) / len(EVAL_EXPOSURES)
        return {f"val_{k}": v / len(images) for k, v in sums.items()}

    def preview(self, x, exposure, iterations: int = 8):
        """Inference path: curve applied at x's resolution, clamped to [0, 1]."""
        y, _ = self.forward(x, exposure, iterations)
        return y.clamp(0, 1)


def pick_validation(paths, k: int, cache_file=None) -> list:
    """k validation files spread over the brightness range, darkest first, so previews and scores cover
    dark, medium and bright inputs. The first four (used by the image grid) span the range."""
    means = data_mod.mean_intensities(paths, cache_file)
    ranked = sorted(paths, key=lambda p: means[str(p)])
    if len(ranked) <= k:
        return ranked
    idx = [round(i * (len(ranked) - 1) / (k - 1)) for i in range(k)] if k > 1 else [len(ranked) // 2]
    chosen = [ranked[i] for i in idx]
    # grid rows: very dark, dark, medium, well exposed
    grid = list(dict.fromkeys(chosen[round(q * (len(chosen) - 1))] for q in (0.1, 0.3, 0.5, 0.7)))
    return grid + [p for p in chosen if p not in grid]
