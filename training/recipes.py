"""Recipes: what to train, on which data, for how long. Each has a "cpu" and a "gpu" config.

zero_dce     DCE-Net (24 maps, 8 iterations), full-resolution network, official zero-reference loss
             200 tv + spa + 5 col + 10 exp, Adam, weight decay 1e-4, gradient-norm clip 0.1.
zero_dce_pp  Zero-DCE++ (one shared map), tv weight 1600. Trained exactly as it runs at inference: the model
             resizes its input to `estimate_size` (long side) and ops.le_curve applies the low-resolution
             alpha to the full-resolution crop. We ship estimate_size = 8 (the official test code estimates
             at 1/12 of the image, ~100 px for 1200 x 900): the 7-layer net (15 px receptive field) then sees
             the whole scene, so alpha can follow the scene's brightness while staying smooth at full
             resolution (an 8 x 6 grid of curves for a 4:3 photo, bilinearly blended). Measured on the 109
             held-out images after 1,500 steps, mean |brightness - E| over E = 0.4..0.7: estimate 32 px 0.170
             (4,000 steps), 16 px 0.111 (n 4..12) / 0.102 (n 6..10), 8 px 0.069 (n 6..10). At 128-256 px the
             net only learned a global gain per E (brightness ~ input x g(E), error ~ 0.27): any
             brightness-dependent alpha then carries texture, which the TV term forbids.
             The number of curve iterations n is drawn per batch from n_range (6..10) and the network is not
             told n: one alpha gives a sensible image for any n in 1..16 (fewer steps: gentler, more:
             stronger, monotonic), so the plugin can cache alpha and re-apply only the curve when the
             iterations slider moves; n = 8, the middle of the range, is where the output meets E. (4..12
             tracked E slightly worse at n = 8: the brightness is convex in n for dark images.)

L_tv is computed on the curve map as it is applied: alpha resized to the crop size (bilinear, as le_curve
does). For Zero-DCE alpha is already full size; for Zero-DCE++ this is the official L_tv(A) of the map that
multiplies the image (the official code trains with alpha at full size), independent of the estimate size.

Both are E-conditioned: E ~ U(0.3, 0.8) per sample, fed to the network as an input plane and used as the
target of the exposure loss, so one network follows the exposure slider.

Learning rate: the official 1e-4 needs ~100 epochs; the cpu configs use 5e-3 with a cosine decay to 1e-4
(measured: at 1e-4 the net had not left its initial constant-alpha state after 300 steps).
The "cpu" configs finish in about half an hour on a shared 2-core machine; the "gpu" configs are the
official scale (about 100 epochs of the ~2,100 training images); they have not been run here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from lowlight_core.controls import EXPOSURE_DEFAULT, EXPOSURE_GRID, EXPOSURE_TRAIN_RANGE, ITERATIONS_DEFAULT
from lowlight_core.losses import ZERO_DCE_PP_WEIGHTS, ZERO_DCE_WEIGHTS, zero_reference_loss

from . import data as data_mod

EVAL_EXPOSURES = EXPOSURE_GRID


@dataclass(frozen=True)
class CurveRecipe:
    model: str  # registry name; also the weights file name
    loss_weights: dict
    steps: int
    batch: int
    crop: int  # square training crop (px)
    resize_long: int | None  # images resized so the long side is at most this before cropping
    model_config: dict = field(default_factory=dict)  # constructor options (saved with the weights)
    n_range: tuple[int, int] = (8, 8)  # curve iterations per batch, inclusive
    e_range: tuple[float, float] = EXPOSURE_TRAIN_RANGE
    lr: float = 1e-4
    lr_final: float | None = None  # cosine decay from lr to lr_final over the run; None: constant lr
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    val_every: int = 250
    ckpt_every: int = 100
    val_images: int = 16  # validation images scored during training (the model card uses all of them)
    val_resize_long: int | None = None
    seed: int = 0


CURVE_RECIPES: dict[str, dict[str, CurveRecipe]] = {
    "zero_dce": {
        # 96 px crops of the 256 px images (the official training scale): ~0.6 s/step on 2 cores.
        "cpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=3000, batch=8, crop=96, resize_long=256,
                           model_config={"curve_on": "value"}, lr=5e-3, lr_final=1e-4, val_resize_long=256),
        "gpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=27000, batch=8, crop=256, resize_long=256,
                           model_config={"curve_on": "value"}, lr=1e-3, lr_final=1e-5, val_every=1000, ckpt_every=1000, val_images=64,
                           val_resize_long=256),
    },
    "zero_dce_pp": {
        # 128 px crops of the images at 160 px (80 % of the scene per crop), estimated at 8 px: ~0.2 s/step.
        "cpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=3000, batch=16, crop=128, resize_long=160,
                           model_config={"estimate_size": 8, "curve_on": "value"}, n_range=(6, 10), lr=5e-3, lr_final=1e-4),
        "gpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=27000, batch=8, crop=256, resize_long=320,
                           model_config={"estimate_size": 8, "curve_on": "value"}, n_range=(6, 10), lr=1e-3, lr_final=1e-5,
                           val_every=1000, ckpt_every=1000, val_images=64),
    },
}


@dataclass(frozen=True)
class ImageRecipe:
    """An image-to-image model (DLN, IQE DCGAN, EnlightenGAN); its task class lives in `task`."""
    model: str  # registry name; also the weights file name
    task: str  # "dln", "iqe_dcgan" or "enlightengan": see TASKS in __main__
    steps: int
    batch: int
    crop: int
    resize_long: int | None
    model_config: dict = field(default_factory=dict)
    # task-specific: loss weights, discriminator sizes, ...; paired recipes: "degradation", overrides of
    # training.degrade.Degradation for the training pairs (validation always uses the defaults)
    options: dict = field(default_factory=dict)
    lr: float = 1e-4
    lr_final: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float | None = None
    val_every: int = 250
    ckpt_every: int = 100
    val_images: int = 8  # synthetic validation pairs scored during training (the card uses all of them)
    val_resize_long: int | None = 256
    seed: int = 0
    # paired recipes: "real" (dark SICE frames and their scene's target, training.sice_scenes) or "synthetic"
    # (training.degrade); real_share < 1 mixes synthetic pairs into the real ones (that share of each batch real)
    pairs: str = "real"
    real_share: float = 1.0


# IQE loss weights. The paper's color loss is the squared L2 norm ||blur(X) - blur(Y)||^2, a SUM over the
# C x H x W values of a crop, while lowlight_core.losses.color_loss is the MEAN: the paper's 0.1 becomes
# 0.1 * 3 * crop^2 (1229 at 64 px, 3000 at the paper's 100 px). Its TV is normalized by 1/CHW, but
# ops.tv_loss(., "l1") at weight 400 dominates everything: at the target image its gradient per pixel
# (~4 * 400 / N) only balances a blurred colour error of 2 * 400 / 1229 = 0.65 (the whole range); measured: 150
# Adam steps (lr 3e-3) on the pixels of 16 real 64 px targets, starting AT the targets, minimizing 1229 color +
# w_tv tv, ended at 23.1 dB from the targets with w_tv 400 (TV 0.083 -> 0.014), 25.4 dB with 4, 26.0 dB with 1.
# We set tv so that the balance point is ~1.7/255 (2 * w_tv / w_color = 0.0065): a light smoothness prior on
# what the colour term cannot see (detail is kept by the texture and content terms). Texture 0.4 and content 1
# (when VGG-19 weights are given) as in the paper: both are batch means of per-crop normalized terms already.
# Not compared in full training runs; color is not rescaled when --crop overrides the crop.
IQE_CPU_WEIGHTS = {"content": 1.0, "texture": 0.4, "color": 1229.0, "tv": 4.0}
IQE_GPU_WEIGHTS = {"content": 1.0, "texture": 0.4, "color": 3000.0, "tv": 10.0}

# Image models on 2 CPU cores: widths halved (DLN 32, DCGAN 32) so a step takes ~0.5 s; the "gpu" configs are
# the papers' widths and scale and have not been run here.
IMAGE_RECIPES: dict[str, dict[str, ImageRecipe]] = {
    # Both paired recipes train output="value" (lowlight_core.models._common.value_output: the input's colour, the
    # network's value): their RGB outputs repainted hues with the references' colours on real photos (colour shift
    # 0.22-0.25) and DLN's blew out 2.4 % of the pixels; DLN pays 0.63 dB on the real pairs (docs/real-eval.md).
    "dln": {
        # 80 px crops of the real pairs at full size (512 px: the dark frames keep their real per-pixel noise),
        # width 32 (0.18 M parameters): ~1.5 s/step on 2 cores (the old synthetic run: 48 min for 2,000 steps)
        "cpu": ImageRecipe("dln", "dln", steps=2000, batch=8, crop=80, resize_long=None,
                           model_config={"width": 32, "output": "value"}, options={"tv_weight": 1e-3}, lr=1e-3,
                           lr_final=1e-5, grad_clip=1.0),
        "gpu": ImageRecipe("dln", "dln", steps=60000, batch=16, crop=128, resize_long=512,
                           model_config={"width": 64, "output": "value"}, options={"tv_weight": 1e-3}, lr=1e-3,
                           lr_final=1e-5, grad_clip=1.0, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=512),
    },
    # IQE DCGAN (training.iqe). Loss weights rescaled from the paper's content + 0.4 texture + 0.1 color + 400 tv
    # (IQE_WEIGHTS) to our normalized terms; see the comment above IQE_CPU_WEIGHTS. cpu: width 32, 64 px crops,
    # batch 8: measured 0.56 s/step (0.38-0.78) over 150 steps on the shared 2-core box (load ~3), so the 2,500
    # steps take ~25 min. The warm-up (adv_start_step, see training.iqe) is 8 % (cpu) / 5 % (gpu) of the run.
    # Without VGG weights 50 * (1 - SSIM) stands in for the content loss (same order as the color term, ~15):
    # validation on 8 synthetic pairs at step 500: 18.1 dB / SSIM 0.77 with it, 16.9 dB / 0.63 without
    # (blocky, painterly outputs; 16.2 dB / 0.64 at step 1,000).
    "iqe_dcgan": {
        "cpu": ImageRecipe("iqe_dcgan", "iqe_dcgan", steps=2500, batch=8, crop=64, resize_long=None,
                           model_config={"width": 32, "blocks": 4, "output": "value"},
                           options={"loss_weights": IQE_CPU_WEIGHTS, "d_lr_scale": 1.0, "adv_start_step": 200,
                                    "ssim_weight": 50.0},
                           lr=5e-4, lr_final=2e-5, betas=(0.9, 0.999)),
        "gpu": ImageRecipe("iqe_dcgan", "iqe_dcgan", steps=20000, batch=50, crop=100, resize_long=512,
                           model_config={"width": 64, "blocks": 4, "output": "value"},
                           options={"loss_weights": IQE_GPU_WEIGHTS, "d_lr_scale": 1.0, "adv_start_step": 1000,
                                    "ssim_weight": 50.0},
                           lr=5e-4, lr_final=1e-5, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=512),
    },
    # EnlightenGAN (training/enlightengan.py): Adam betas (0.5, 0.999) as the paper. cpu: generator width 16,
    # discriminators width 32, 128 px crops of the images at 256 px (the global discriminator keeps its 5
    # stride-2 layers), batch 4 (batch 8 took 1.0-1.6 s/step; the paper advises >= 8), lr 5e-4 cosine-decayed
    # to 2e-5. Without VGG weights: anchor 2 + structure 1 and a 300-step GAN warm-up. Measured (validation
    # PSNR on 8 synthetic pairs): anchor 1 alone, lr 2e-4: 8.6 dB at step 500 (blobs, below the input's
    # 9.8 dB); with the structure loss, warm-up and lr 5e-4: 15.4 dB at step 350.
    # gpu: the paper's scale, width 32, 320 px crops of the full-size images, batch 32, ~200 epochs of the
    # ~1,100 low-light training images (100 at lr 1e-4, then decayed; we decay by cosine over the run).
    # Both: output "value_gain" (lowlight_core.models.enlightengan: the generator moves the value V = max(r, g, b)
    # and scales R, G, B by one gain, so it cannot change colour; the paper's RGB residual painted blobs).
    # cpu steps 800 (was 2,500): with the value gain, 2,500 steps (38 min) scored 15.93 dB / SSIM 0.662 on the
    # held-out real pairs, colour shift 0.030, but the late GAN steps painted a dark blob into the middle of a
    # uniform sky (held-out SICE 50.jpg, docs/real-eval.md); 800 steps (15 min): 15.16 dB / 0.646, colour shift
    # 0.028, the sky stays uniform. Validation on 8 held-out pairs (256 px): 18.3-18.4 dB at step 750 in both runs,
    # 18.4-18.6 dB over the long run's last 500 steps.
    "enlightengan": {
        "cpu": ImageRecipe("enlightengan", "enlightengan", steps=800, batch=4, crop=128, resize_long=256,
                           model_config={"width": 16, "depth": 4, "output": "value_gain"},
                           options={"patches": 5, "patch_size": 32, "d_width": 32, "anchor_weight": 2.0,
                                    "structure_weight": 1.0, "gan_warmup": 300},
                           lr=5e-4, lr_final=2e-5, betas=(0.5, 0.999)),
        "gpu": ImageRecipe("enlightengan", "enlightengan", steps=7000, batch=32, crop=320, resize_long=600,
                           model_config={"width": 32, "depth": 4, "output": "value_gain"},
                           options={"patches": 5, "patch_size": 32, "d_width": 64, "anchor_weight": 1.0},
                           lr=1e-4, lr_final=1e-6, betas=(0.5, 0.999), val_every=500, ckpt_every=500,
                           val_images=32, val_resize_long=512),
    },
}
RECIPES = {**CURVE_RECIPES, **IMAGE_RECIPES}


def get_recipe(name: str, config: str = "cpu", **overrides) -> CurveRecipe | ImageRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    if config not in RECIPES[name]:
        raise ValueError(f"recipe {name!r} has configs {sorted(RECIPES[name])}, not {config!r}")
    return replace(RECIPES[name][config], **{k: v for k, v in overrides.items() if v is not None})


class CurveTask:
    """Zero-reference training of a curve model (the trainer's task for zero_dce and zero_dce_pp)."""

    def __init__(self, model: torch.nn.Module, recipe: CurveRecipe):
        self.model, self.recipe = model, recipe
        self.modules = {"model": model}
        self.shard = slice(None)  # this process's samples of the batch (training.distributed)

    def set_shard(self, world) -> None:
        self.shard = world.shard(self.recipe.batch)

    def make_optimizers(self):
        r = self.recipe
        return {"model": torch.optim.Adam(self.model.parameters(), lr=r.lr, weight_decay=r.weight_decay)}

    def forward(self, x: torch.Tensor, exposure, iterations: int):
        """The inference path with gradients: alpha at the model's estimate size, curve at x's size."""
        alpha = self.model.estimate_alpha(x, exposure)
        # under CUDA AMP the network gives float16 alpha: the curve and the losses run in float32
        alpha = alpha.to(x.dtype).contiguous()
        return self.model.curve(x, alpha, iterations), alpha

    def loss(self, x, exposure, iterations):
        y, alpha = self.forward(x, exposure, iterations)
        with torch.autocast(x.device.type, enabled=False):  # the losses in float32 even under AMP
            alpha = alpha.float()
            if alpha.shape[-2:] != x.shape[-2:]:  # L_tv of the map as applied (see the module docstring)
                alpha = F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return zero_reference_loss(x.float(), y.float(), alpha, exposure, self.recipe.loss_weights)

    def train_step(self, batch, gen, update):
        r = self.recipe
        lo, hi = r.e_range
        # drawn for the whole batch, then this process's part: the same E per sample for any process count
        exposure = (lo + (hi - lo) * torch.rand(r.batch, generator=gen))[self.shard].to(batch.device)
        n = int(torch.randint(r.n_range[0], r.n_range[1] + 1, (1,), generator=gen))
        total, terms = self.loss(batch, exposure, n)
        grad_norm = update(total, "model")
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "n": n, "grad_norm": grad_norm}

    def validate(self, images):
        """Zero-reference loss at E = 0.6, n = 8, and how well the output brightness follows E."""
        sums = {}
        for x in images:
            total, terms = self.loss(x, EXPOSURE_DEFAULT, ITERATIONS_DEFAULT)
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
