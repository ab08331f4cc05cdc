"""Recipes: what to train, on which data, for how long. Each has a "cpu" and a "gpu" config; each names its task
class (training.tasks), which knows how to train and score that kind of model. Why the numbers are what they are,
and what was measured before settling on them: docs/training.md.

zero_dce     DCE-Net (24 maps), full-resolution network, official zero-reference loss 200 tv + spa + 5 col + 10 exp,
             Adam, weight decay 1e-4, gradient-norm clip 0.1.
zero_dce_pp  Zero-DCE++ (one shared map), tv weight 1600, trained exactly as it runs at inference: the model resizes
             its input to `estimate_size` (long side; 8 px: the 7-layer net then sees the whole scene, so alpha
             follows the scene's brightness and stays smooth at full size) and ops.le_curve applies that alpha to
             the full-resolution crop. The curve iterations are drawn per batch from n_range and the network is not
             told n: one alpha serves any n (the plugin re-applies only the curve when the slider moves), and the
             default iterations, the middle of the range, is where the output meets E.

Both curve models are E-conditioned: E ~ U(EXPOSURE_TRAIN_RANGE) per sample, fed to the network as an input plane
and the target of the exposure loss, so one network follows the exposure slider. The cpu configs use lr 5e-3
with a cosine decay (at the official 1e-4 a short run stays at its initial constant alpha) and finish in about
half an hour on 2 cores; the gpu configs are the papers' scale and have not been run here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from lowlight_core.controls import EXPOSURE_TRAIN_RANGE, ITERATIONS_DEFAULT
from lowlight_core.losses import ZERO_DCE_PP_WEIGHTS, ZERO_DCE_WEIGHTS

from .tasks.base import TrainTask
from .tasks.curve import CurveTask
from .tasks.dln import DLNTask
from .tasks.enlightengan import EnlightenGANTask
from .tasks.grid import GridTask
from .tasks.iqe import IQETask
from .tasks.paired_curve import PairedCurveTask


@dataclass(frozen=True)
class CurveRecipe:
    model: str  # registry name; also the weights file name
    loss_weights: dict
    steps: int
    batch: int
    crop: int  # square training crop (px)
    resize_long: int | None  # images resized so the long side is at most this before cropping
    model_config: dict = field(default_factory=dict)  # constructor options (saved with the weights)
    n_range: tuple[int, int] = (ITERATIONS_DEFAULT, ITERATIONS_DEFAULT)  # curve iterations per batch, inclusive
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
    task: type[TrainTask] = CurveTask


CURVE_RECIPES: dict[str, dict[str, CurveRecipe]] = {
    "zero_dce": {
        # 96 px crops of the 256 px images (the official training scale)
        "cpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=3000, batch=8, crop=96, resize_long=256,
                           model_config={"curve_on": "value"}, lr=5e-3, lr_final=1e-4, val_resize_long=256),
        "gpu": CurveRecipe("zero_dce", ZERO_DCE_WEIGHTS, steps=27000, batch=8, crop=256, resize_long=256,
                           model_config={"curve_on": "value"}, lr=1e-3, lr_final=1e-5, val_every=1000, ckpt_every=1000, val_images=64,
                           val_resize_long=256),
    },
    "zero_dce_pp": {
        # 128 px crops of the images at 160 px: 80 % of the scene per crop, so alpha at 8 px sees the scene
        "cpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=3000, batch=16, crop=128, resize_long=160,
                           model_config={"estimate_size": 8, "curve_on": "value"}, n_range=(6, 10), lr=5e-3, lr_final=1e-4),
        "gpu": CurveRecipe("zero_dce_pp", ZERO_DCE_PP_WEIGHTS, steps=27000, batch=8, crop=256, resize_long=320,
                           model_config={"estimate_size": 8, "curve_on": "value"}, n_range=(6, 10), lr=1e-3, lr_final=1e-5,
                           val_every=1000, ckpt_every=1000, val_images=64),
    },
}


@dataclass(frozen=True)
class ImageRecipe:
    """An image-to-image model (DLN, IQE DCGAN, EnlightenGAN)."""
    model: str  # registry name; also the weights file name
    task: type[TrainTask]  # the task class that trains it
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


# IQE loss weights: the paper's content + 0.4 texture + 0.1 color + 400 tv, rescaled to our normalized terms.
# Its color loss is a SUM over the C x H x W values of a crop, ours the MEAN: 0.1 becomes 0.1 * 3 * crop^2 (1229 at
# 64 px, 3000 at 100 px; not rescaled when --crop overrides the crop). tv is set so that it balances a blurred
# colour error of ~1.7/255 (2 * w_tv / w_color = 0.0065): a light smoothness prior, where the paper's 400 would
# outweigh the colour term (docs/training.md).
IQE_CPU_WEIGHTS = {"content": 1.0, "texture": 0.4, "color": 1229.0, "tv": 4.0}
IQE_GPU_WEIGHTS = {"content": 1.0, "texture": 0.4, "color": 3000.0, "tv": 10.0}

# cpu configs: the papers' widths halved so that a step takes about a second on 2 cores; the gpu configs are the
# papers' widths and scale and have not been run here.
IMAGE_RECIPES: dict[str, dict[str, ImageRecipe]] = {
    # Both paired recipes train output="value" (lowlight_core.models._common.value_output: the input's colour, the
    # network's value): RGB outputs repaint hues with the references' colours on real photos (docs/real-eval.md).
    "dln": {
        # crops of the real pairs at full size: the dark frames keep their real per-pixel noise
        "cpu": ImageRecipe("dln", DLNTask, steps=2000, batch=8, crop=80, resize_long=None,
                           model_config={"width": 32, "output": "value"}, options={"tv_weight": 1e-3}, lr=1e-3,
                           lr_final=1e-5, grad_clip=1.0),
        "gpu": ImageRecipe("dln", DLNTask, steps=60000, batch=16, crop=128, resize_long=512,
                           model_config={"width": 64, "output": "value"}, options={"tv_weight": 1e-3}, lr=1e-3,
                           lr_final=1e-5, grad_clip=1.0, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=512),
    },
    # The bilateral grid (training.tasks.grid): 256 px crops of the 512 px real pairs (real noise), the network on their
    # 256 px thumbnail, the grid applied at the crop's resolution; half the targets re-exposed to E ~ U(0.3, 0.7).
    "bilateral_grid": {
        "cpu": ImageRecipe("bilateral_grid", GridTask, steps=10000, batch=4, crop=256, resize_long=None,
                           model_config={"depth": 8, "width": 16},
                           options={"retarget": 0.5, "retarget_range": (0.3, 0.7), "l1_weight": 1.0},
                           lr=1e-3, lr_final=1e-5, grad_clip=1.0, val_resize_long=None),
        "gpu": ImageRecipe("bilateral_grid", GridTask, steps=30000, batch=16, crop=512, resize_long=None,
                           model_config={"depth": 8, "width": 32},
                           options={"retarget": 0.5, "retarget_range": (0.3, 0.7), "l1_weight": 1.0},
                           lr=1e-3, lr_final=1e-5, grad_clip=1.0, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=None),
    },
    # Zero-DCE++'s network and value curve on the real pairs (training.tasks.paired_curve): 224 px crops of the
    # frames at 256 px (most of the scene, as the network reads it through its 8 px thumbnail), trained as the grid.
    "zero_dce_pp_paired": {
        "cpu": ImageRecipe("zero_dce_pp_paired", PairedCurveTask, steps=8000, batch=16, crop=224, resize_long=256,
                           model_config={"estimate_size": 8, "curve_on": "value"},
                           options={"retarget": 0.5, "retarget_range": (0.3, 0.7), "l1_weight": 1.0},
                           lr=5e-3, lr_final=1e-4, grad_clip=1.0, val_resize_long=256),
        "gpu": ImageRecipe("zero_dce_pp_paired", PairedCurveTask, steps=20000, batch=16, crop=448,
                           resize_long=512, model_config={"estimate_size": 8, "curve_on": "value"},
                           options={"retarget": 0.5, "retarget_range": (0.3, 0.7), "l1_weight": 1.0},
                           lr=1e-3, lr_final=1e-5, grad_clip=1.0, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=512),
    },
    # IQE DCGAN (training.tasks.iqe); loss weights: see IQE_CPU_WEIGHTS. The warm-up (adv_start_step) is 8 % (cpu)
    # / 5 % (gpu) of the run. Without VGG weights 50 * (1 - SSIM) stands in for the content loss (the same order as
    # the color term): without it the outputs turn blocky and painterly.
    "iqe_dcgan": {
        "cpu": ImageRecipe("iqe_dcgan", IQETask, steps=2500, batch=8, crop=64, resize_long=None,
                           model_config={"width": 32, "blocks": 4, "output": "value"},
                           options={"loss_weights": IQE_CPU_WEIGHTS, "d_lr_scale": 1.0, "adv_start_step": 200,
                                    "ssim_weight": 50.0},
                           lr=5e-4, lr_final=2e-5, betas=(0.9, 0.999)),
        "gpu": ImageRecipe("iqe_dcgan", IQETask, steps=20000, batch=50, crop=100, resize_long=512,
                           model_config={"width": 64, "blocks": 4, "output": "value"},
                           options={"loss_weights": IQE_GPU_WEIGHTS, "d_lr_scale": 1.0, "adv_start_step": 1000,
                                    "ssim_weight": 50.0},
                           lr=5e-4, lr_final=1e-5, val_every=2000, ckpt_every=1000, val_images=32,
                           val_resize_long=512),
    },
    # EnlightenGAN (training.tasks.enlightengan): Adam betas (0.5, 0.999) as the paper. Output "value_gain" (the
    # generator moves the value V = max(r, g, b) and scales R, G, B by one gain, so it cannot change colour; the
    # paper's RGB residual painted blobs). cpu: batch 4 (8 is too slow on 2 cores), and without VGG weights the
    # anchor + structure losses and a GAN warm-up (anchor alone painted blobs); 800 steps, as longer runs let the
    # late GAN steps paint a dark blob into a uniform sky. gpu: the paper's scale (~200 epochs, batch 32).
    "enlightengan": {
        "cpu": ImageRecipe("enlightengan", EnlightenGANTask, steps=800, batch=4, crop=128, resize_long=256,
                           model_config={"width": 16, "depth": 4, "output": "value_gain"},
                           options={"patches": 5, "patch_size": 32, "d_width": 32, "anchor_weight": 2.0,
                                    "structure_weight": 1.0, "gan_warmup": 300},
                           lr=5e-4, lr_final=2e-5, betas=(0.5, 0.999)),
        "gpu": ImageRecipe("enlightengan", EnlightenGANTask, steps=7000, batch=32, crop=320, resize_long=600,
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
