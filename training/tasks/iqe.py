"""IQE DCGAN (seed 000) training task: a DPED-style generator against a grayscale texture discriminator.

One step, on a batch [low, normal] of synthetic pairs (training.degrade):
  1. enhanced = G(low) (generator in train mode: BatchNorm uses the batch statistics).
  2. Discriminator step: texture_loss_discriminator on D(gray(normal)) vs D(gray(enhanced.detach())).
  3. Generator step: iqe_generator_loss(enhanced, normal, D(gray(enhanced))) = content + 0.4 texture
     + 0.1 color + 400 tv (IQE_WEIGHTS; a recipe overrides them with options["loss_weights"]).

D sees real and fake crops in ONE forward pass (the batch concatenated), in both steps: its BatchNorm then
normalizes with the statistics of the same real+fake mix when it is trained and when it judges the generator
(DPED shows its discriminator a mix of both). Separate passes would give D two different normalizations,
and in the generator step a fake-only batch would be normalized differently from what D was trained on.
D's parameters are frozen (requires_grad False) during the generator step, so no gradient is spent on them.

The discriminator has a dense head, so it takes crops of one fixed size: it is built with crop=recipe.crop.

Options (recipe.options):
  loss_weights    overrides of IQE_WEIGHTS (see recipes.py for why the cpu/gpu recipes rescale color and tv)
  d_lr_scale      discriminator lr = recipe.lr * d_lr_scale (default 1)
  ssim_weight     weight of 1 - SSIM(enhanced, normal), added while the content loss is off (default 0). Why:
                  without VGG nothing in the paper's loss ties fine detail to the target (the color loss
                  compares blurred images, the texture loss only asks for plausible texture): the first CPU run
                  (1,200 steps) gave blocky, painterly outputs at 16-17 dB. SSIM compares local structure and
                  contrast, the role the content loss plays; it is not in the paper, and the log says when it
                  is used.
  adv_start_step  generator steps before the texture (adversarial) term is switched on (default 0); the
                  discriminator trains from step 0. Why: at the start G's output has the wrong brightness and
                  colours, and a freshly initialized D reacts to anything; the adversarial gradient is then
                  noise that fights the colour term (in short CPU runs this showed as a wandering brightness).
                  Warming G up with color + tv (+ content) first puts it near the target's tones, so the
                  adversarial term only has texture left to judge, and D has had those steps to learn what
                  real texture looks like. (SRGAN / ESRGAN pre-train their generators for the same reason.)
                  The step count is read from the generator optimizer's Adam state, which the checkpoint
                  holds, so a resumed run continues the schedule. (Under CUDA AMP a step the GradScaler skips
                  does not count: the warm-up then ends a few steps later.)
"""
from __future__ import annotations

import torch

from lowlight_core.losses import (IQE_WEIGHTS, REAL, ContentLoss, iqe_generator_loss, texture_loss_discriminator,
                                  to_grayscale)
from lowlight_core.metrics import ssim
from lowlight_core.models.dcgan import DCGANDiscriminator

from .base import log
from .image import ImageTask

CONTENT_OFF = "content loss OFF: no VGG-19 weights given (--vgg-weights)"
MIN_CROP = 16  # the discriminator's stride-16 stack needs at least this


class IQETask(ImageTask):
    checkpoint_name = "iqe_dcgan"

    def __init__(self, model: torch.nn.Module, recipe, vgg_weights=None,
                 content_features: torch.nn.Module | None = None):
        """content_features: a frozen (B, 3, H, W) -> features module to use instead of VGG-19 (tests)."""
        super().__init__(model, recipe, vgg_weights)
        opts = dict(recipe.options)
        unknown = set(opts) - {"loss_weights", "d_lr_scale", "adv_start_step", "ssim_weight"}
        if unknown:
            raise ValueError(f"IQETask: unknown option(s) {sorted(unknown)}")
        if recipe.crop < MIN_CROP:
            raise ValueError(f"IQETask: crop {recipe.crop} px is below the discriminator's minimum {MIN_CROP}")
        self.weights = {**IQE_WEIGHTS, **opts.get("loss_weights", {})}
        unknown = set(self.weights) - set(IQE_WEIGHTS)
        if unknown:
            raise ValueError(f"IQETask: unknown loss weight(s) {sorted(unknown)}; known: {sorted(IQE_WEIGHTS)}")
        self.d_lr_scale = float(opts.get("d_lr_scale", 1.0))
        self.adv_start_step = int(opts.get("adv_start_step", 0))
        self.discriminator = DCGANDiscriminator(in_channels=1, crop=recipe.crop)
        self.content = ContentLoss(vgg_weights, features=content_features)
        self.modules = {"model": model, "d": self.discriminator}
        self.ssim_weight = 0.0 if self.content.enabled else float(opts.get("ssim_weight", 0.0))
        if not self.content.enabled:
            log(CONTENT_OFF)
            self.notes.append(CONTENT_OFF)
        if self.ssim_weight:
            note = (f"structure term ON in place of the content loss: {self.ssim_weight:g} * (1 - SSIM(enhanced, "
                    "target)) (not in the paper)")
            log(note)
            self.notes.append(note)
        if self.adv_start_step:
            self.notes.append(f"texture (adversarial) term off for the first {self.adv_start_step} steps "
                              f"(generator warm-up on color + tv + content)")

    def make_optimizers(self):
        return {"model": self.generator_optimizer(), "d": self.adam(self.discriminator.parameters(), self.d_lr_scale)}

    def _judge(self, real_gray: torch.Tensor, fake_gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of real and fake crops from one discriminator pass over both (shared BatchNorm statistics)."""
        logits = self.discriminator(torch.cat([real_gray, fake_gray])).float()
        return logits[: len(real_gray)], logits[len(real_gray):]

    def train_step(self, batch, gen, update):
        low, normal = batch
        adversarial = self.steps_done() >= self.adv_start_step
        enhanced = self.model(low)
        with torch.autocast(enhanced.device.type, enabled=False):
            enhanced = enhanced.float()
            normal = normal.float()
        real_gray, fake_gray = to_grayscale(normal), to_grayscale(enhanced)

        # discriminator step on the detached output
        real_logits, fake_logits = self._judge(real_gray, fake_gray.detach())
        d_loss = texture_loss_discriminator(real_logits, fake_logits)
        d_grad = update(d_loss, "d")
        with torch.no_grad():
            d_acc_real = float((real_logits.argmax(1) == REAL).float().mean())
            d_acc_fake = float((fake_logits.argmax(1) != REAL).float().mean())

        # generator step against the updated discriminator (frozen here)
        weights = self.weights if adversarial else {**self.weights, "texture": 0.0}
        self.discriminator.requires_grad_(False)
        try:
            with torch.set_grad_enabled(adversarial):  # warm-up: the texture term is logged, not trained on
                _, g_fake_logits = self._judge(real_gray, fake_gray)
            with torch.autocast(enhanced.device.type, enabled=False):
                total, terms = iqe_generator_loss(enhanced, normal, g_fake_logits, self.content, weights)
                if self.ssim_weight:
                    terms["ssim"] = 1.0 - ssim(enhanced, normal).mean()
                    total = total + self.ssim_weight * terms["ssim"]
            g_grad = update(total, "model")
        finally:
            self.discriminator.requires_grad_(True)
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items()}, "d_loss": d_loss.item(),
                "d_acc_real": d_acc_real, "d_acc_fake": d_acc_fake, "adversarial": int(adversarial),
                "grad_norm": g_grad, "d_grad_norm": d_grad}
