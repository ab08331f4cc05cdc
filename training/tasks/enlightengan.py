"""EnlightenGAN training (seed 004): unpaired low-light -> well-exposed, global + local discriminators.

Each batch is (2, B, 3, crop, crop) [low, normal] of unrelated crops (training.data.UnpairedBatches).
One step:

1. fake = G(low).
2. Discriminators (optimizer "d", one Adam over both): the global one (whole crops) with the relativistic
   LSGAN loss on (normal, fake.detach()); the local one (PatchGAN on `patches` random `patch_size` px patches
   per image) with the plain LSGAN loss on patches of normal vs patches of fake (official EnlightenGAN).
3. Generator (optimizer "model"), discriminators frozen: RaLSGAN generator loss (global) + LSGAN generator
   loss on the fake patches + the self-feature-preserving (SFP) loss, IN(VGG relu5_4) of fake vs of low, on
   the whole crops and on patches cut at the same positions of low and fake -- when VGG-19 weights are given.
   Without them the SFP loss is off (the log and the model card say so) and the "low-frequency anchor" below
   stands in for it by default.

The low-frequency anchor (option `anchor_weight`, our addition, not in the paper). Nothing in a pure GAN loss
ties the output to the content of its input: the discriminators only see whether fake looks like *some*
well-exposed photo. The generator's residual form y = x + A * r helps, but a GAN trained for a few thousand
CPU steps still drifts in colour and in large-scale layout (whole regions brightened or darkened for
texture's sake). The SFP loss is what anchors the official model; without VGG weights we anchor the low
frequencies instead: L1 between the `anchor_pool` x `anchor_pool` average-pooled fake and the pooled
gamma-brightened input, gamma chosen per image so its mean luminance reaches `anchor_target` (0.5, the middle
of the well-exposed range 0.35-0.65), never darkening (gamma <= 1). Only coarse brightness and colour are
pinned, loosely (small weight); edges, local contrast and the exact tone curve are left to the GAN.
`anchor_weight` applies while the SFP loss is off; `anchor_weight_sfp` (default 0: the paper's losses only)
while it is on. For a value-gain generator (model config output="value_gain", the recipes' default) the
reference brightens the value V = max(r, g, b) by the same gamma and scales R, G, B with it (`brightened(...,
on_value=True)`), the one kind of change such a generator can make.

The structure loss (option `structure_weight`, our addition, also only while the SFP loss is off). The anchor
alone did not stop the first CPU run (anchor weight 1, 500 steps): the generator painted large bright blobs
that follow no edge of the input, and validation PSNR fell below the unenhanced input's. What SFP compares --
instance-normalized features of input and output -- can be had without VGG for one property that matters here:
where the edges are and how strong they are relative to each other. Features: x and y differences of the
luminance, average-pooled to 2, 4 and 8 px, each divided by its std over the image; reference: the same
features of the gamma-brightened input the anchor uses. L1 between the two. A blob or a halo adds edges the
reference lacks; the finest scale is 2 px, so the generator may still denoise. (A first version compared log
luminance, which is invariant to every gamma, but its epsilon made brightened shadows look like new edges, and
the generator learned to keep them dark.)

Warm-up (option `gan_warmup`, generator steps): the adversarial terms are off for the generator's first steps
(the discriminators train from step 0), so the generator first learns the anchored brightening and only then
the texture the discriminators ask for. The count is the generator optimizer's step, which the checkpoint holds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lowlight_core.losses import (SelfFeaturePreservingLoss, lsgan_discriminator_loss, lsgan_generator_loss,
                                  ralsgan_discriminator_loss, ralsgan_generator_loss, random_patches)
from lowlight_core.models._common import luminance
from lowlight_core.models.enlightengan import PatchDiscriminator

from .. import data as data_mod
from .base import log
from .image import ImageTask

DEFAULTS = {
    "patches": 5,  # local-discriminator patches per image (paper: 5)
    "patch_size": 32,  # px (paper: 32)
    "d_width": 32,  # first-layer width of both discriminators (paper: 64)
    "d_global_layers": 5,  # stride-2 layers of the global discriminator (paper: 5); fewer if the crop is small
    "d_local_layers": 3,  # stride-2 layers of the local discriminator
    "sfp_weight": 1.0,  # self-feature-preserving loss, whole image and patches (paper: 1 each)
    "anchor_weight": 1.0,  # low-frequency anchor while the SFP loss is off (see the module docstring)
    "anchor_weight_sfp": 0.0,  # ... and while it is on
    "anchor_pool": 8,  # px: the anchor compares averages over anchor_pool x anchor_pool blocks
    "anchor_target": 0.5,  # mean luminance of the gamma-brightened input the anchor compares to
    "structure_weight": 0.0,  # log-luminance edge structure while the SFP loss is off (module docstring)
    "gan_warmup": 0,  # generator steps without the adversarial terms
}
STRUCTURE_POOLS = (2, 4, 8)


def min_input_size(layers: int) -> int:
    """Smallest square input a PatchDiscriminator with `layers` stride-2 layers maps to >= 1 x 1: each halves
    the size, the two final 4x4 stride-1 convs (padding 1) take one pixel each."""
    return 3 * 2 ** layers


def edge_features(x: torch.Tensor) -> list[torch.Tensor]:
    """x/y luminance differences at STRUCTURE_POOLS px, each divided by its std over the image (gain-invariant)."""
    lum = luminance(x)
    feats = []
    for k in STRUCTURE_POOLS:
        p = F.avg_pool2d(lum, k, ceil_mode=True)
        for d in (p[..., :, 1:] - p[..., :, :-1], p[..., 1:, :] - p[..., :-1, :]):
            if d.numel() > d.shape[0]:
                feats.append(d / d.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-4))
    return feats


def structure_loss(fake: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean L1 between edge_features of fake and of the reference (a fixed target: no gradient)."""
    with torch.no_grad():
        target = edge_features(reference)
    return sum(F.l1_loss(f, t) for f, t in zip(edge_features(fake), target)) / len(target)


def brightened(low: torch.Tensor, target: float = 0.5, on_value: bool = False) -> torch.Tensor:
    """low ** gamma per image, gamma = log(target) / log(mean luminance), clamped to [0.1, 1] (never darkens).
    on_value: the power is taken of the value V = max(r, g, b) and R, G, B scaled by V ** gamma / V, so the
    reference keeps the input's chromaticity (the reference of a value-gain generator, which cannot change it)."""
    mean = luminance(low).mean(dim=(1, 2, 3), keepdim=True).clamp(1e-3, 0.999)
    gamma = (math.log(target) / mean.log()).clamp(0.1, 1.0)
    if on_value:
        v = low.amax(1, keepdim=True).clamp_min(1e-4)
        return low * (v.pow(gamma) / v)
    return low.clamp_min(1e-4).pow(gamma)


class EnlightenGANTask(ImageTask):
    checkpoint_name = "enlightengan"

    def __init__(self, model, recipe, vgg_weights=None):
        super().__init__(model, recipe, vgg_weights)
        unknown = set(recipe.options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"enlightengan: unknown options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        o = self.opt = {**DEFAULTS, **recipe.options}
        crop, size, n = recipe.crop, int(o["patch_size"]), int(o["patches"])
        if n < 1:
            raise ValueError(f"enlightengan: patches must be >= 1, got {n}")
        local_min = min_input_size(int(o["d_local_layers"]))
        if size < local_min:
            raise ValueError(f"enlightengan: patch_size {size} px is too small for the local discriminator "
                             f"({o['d_local_layers']} stride-2 layers need >= {local_min} px)")
        if crop < size:
            raise ValueError(f"enlightengan: crop {crop} px is smaller than the local discriminator's "
                             f"{size} px patches; use --crop {size} or more")
        # The global discriminator sees the whole crop: as many of its stride-2 layers as the crop allows
        # (5 need 96 px; the cpu recipe's 128 px crops and the paper's 320 px keep all 5).
        layers = int(o["d_global_layers"])
        while layers > 1 and crop < min_input_size(layers):
            layers -= 1
        if crop < min_input_size(layers):
            raise ValueError(f"enlightengan: crop {crop} px is too small for the global discriminator "
                             f"(>= {min_input_size(1)} px)")
        if layers != int(o["d_global_layers"]):
            self._say(f"global discriminator: {layers} stride-2 layers instead of {o['d_global_layers']} "
                      f"({crop} px crops are below {min_input_size(int(o['d_global_layers']))} px)")
        self.d_global = PatchDiscriminator(3, int(o["d_width"]), layers)
        self.d_local = PatchDiscriminator(3, int(o["d_width"]), int(o["d_local_layers"]))
        self.modules = {"model": model, "d_global": self.d_global, "d_local": self.d_local}
        self.on_value = model.config.get("output", "rgb") == "value_gain"
        if self.on_value:
            self._say("generator output: value gain (the input's chromaticity kept at every pixel; the anchor's "
                      "and the structure loss's reference brightens the value V = max(r, g, b) the same way)")

        self.sfp = SelfFeaturePreservingLoss(vgg_weights)  # frozen, not checkpointed
        self.sfp_weight = float(o["sfp_weight"]) if self.sfp.enabled else 0.0
        self.anchor_weight = float(o["anchor_weight_sfp"] if self.sfp.enabled else o["anchor_weight"])
        if self.sfp.enabled:
            log(f"self-feature-preserving loss ON (weight {self.sfp_weight:g}, VGG-19 relu5_4 from {vgg_weights})")
        else:
            self._say("self-feature-preserving loss OFF: no VGG-19 weights given (--vgg-weights)")
        self.structure_weight = 0.0 if self.sfp.enabled else float(o["structure_weight"])
        if self.structure_weight > 0:
            self._say(f"structure loss ON (weight {self.structure_weight:g}): std-normalized luminance edges at "
                      f"{STRUCTURE_POOLS} px of the output vs the gamma-brightened input (not in the paper; stands "
                      "in for the SFP loss: penalizes blobs and halos)")
        self.gan_warmup = int(o["gan_warmup"])
        if self.gan_warmup > 0:
            self._say(f"GAN warm-up: the generator's adversarial terms start after {self.gan_warmup} steps")
        if self.anchor_weight > 0:
            self._say(f"low-frequency anchor ON (weight {self.anchor_weight:g}): L1 between the "
                      f"{o['anchor_pool']}x{o['anchor_pool']}-pooled output and the pooled input gamma-brightened "
                      f"to mean luminance {o['anchor_target']:g} (not in the paper; keeps coarse colour and layout)")
        else:
            log("low-frequency anchor off")

    def _say(self, message: str) -> None:
        """A fact about this run the user and the model card must know."""
        log(message)
        self.notes.append(message)

    def batches(self, run, normals):
        """Unpaired: LOL lows and the dark SICE exposures against the well-exposed SICE photos."""
        r = self.recipe
        means = data_mod.mean_intensities(run.train, run.cache)
        lows = [p for p in run.train if p.parent.name == "lol_train_low" or means[str(p)] < data_mod.WELL_EXPOSED[0]]
        return (data_mod.UnpairedBatches(lows, normals, r.batch, r.crop, r.seed, r.resize_long),
                f"unpaired: {len(lows)} low-light vs {len(normals)} well-exposed photos")

    def make_optimizers(self):
        return {"model": self.generator_optimizer(),
                "d": self.adam(list(self.d_global.parameters()) + list(self.d_local.parameters()))}

    def train_step(self, batch, gen, update):
        o = self.opt
        low, normal = batch
        n, size = int(o["patches"]), int(o["patch_size"])
        if self.sfp.enabled:
            self.sfp.to(low.device)
        fake = self.model(low)
        # patch positions from the step's generator: a resumed run cuts the same patches
        low_p, fake_p = random_patches(low, fake, n=n, size=size, generator=gen)
        (normal_p,) = random_patches(normal, n=n, size=size, generator=gen)

        # ---- discriminators
        self.d_global.requires_grad_(True)
        self.d_local.requires_grad_(True)
        pg_real, pg_fake = self.d_global(normal), self.d_global(fake.detach())
        pl_real, pl_fake = self.d_local(normal_p), self.d_local(fake_p.detach())
        with torch.autocast(low.device.type, enabled=False):
            d_global = ralsgan_discriminator_loss(pg_real.float(), pg_fake.float())
            d_local = lsgan_discriminator_loss(pl_real.float(), pl_fake.float())
            d_loss = d_global + d_local
        d_norm = update(d_loss, "d")

        # ---- generator, against the updated discriminators (frozen: no gradients into their weights)
        self.d_global.requires_grad_(False)
        self.d_local.requires_grad_(False)
        with torch.no_grad():
            pg_real_g = self.d_global(normal)
        pg_fake_g, pl_fake_g = self.d_global(fake), self.d_local(fake_p)
        adversarial = self.steps_done() >= self.gan_warmup
        with torch.autocast(low.device.type, enabled=False):
            g_global = ralsgan_generator_loss(pg_real_g.float(), pg_fake_g.float())
            g_local = lsgan_generator_loss(pl_fake_g.float())
            g_loss = (g_global + g_local) * float(adversarial)
            terms = {"adversarial": float(adversarial)}
            reference = brightened(low.float(), float(o["anchor_target"]), on_value=self.on_value)
            if self.structure_weight:
                structure = structure_loss(fake.float(), reference)
                g_loss = g_loss + self.structure_weight * structure
                terms["structure"] = structure.item()
            if self.sfp_weight:
                sfp = self.sfp(low.float(), fake.float()) + self.sfp(low_p.float(), fake_p.float())
                g_loss = g_loss + self.sfp_weight * sfp
                terms["sfp"] = sfp.item()
            if self.anchor_weight:
                k = int(o["anchor_pool"])
                anchor = F.l1_loss(F.avg_pool2d(fake.float(), k, ceil_mode=True),
                                   F.avg_pool2d(reference, k, ceil_mode=True))
                g_loss = g_loss + self.anchor_weight * anchor
                terms["anchor"] = anchor.item()
        g_norm = update(g_loss, "model")
        self.d_global.requires_grad_(True)
        self.d_local.requires_grad_(True)

        return {"g_loss": g_loss.item(), "d_loss": d_loss.item(), "g_global": g_global.item(),
                "g_local": g_local.item(), **terms, "d_global": d_global.item(), "d_local": d_local.item(),
                # mean discriminator outputs (logits; LSGAN targets 1 real / 0 fake)
                "dg_real": pg_real.mean().item(), "dg_fake": pg_fake.mean().item(),
                "dl_real": pl_real.mean().item(), "dl_fake": pl_fake.mean().item(),
                "fake_mean": fake.detach().float().mean().item(), "low_mean": low.float().mean().item(),
                "grad_norm_g": g_norm, "grad_norm_d": d_norm}
