"""DLN's training task: supervised on real (or synthetic) pairs, optionally with circle training."""
from __future__ import annotations

import torch

from lowlight_core.losses import DLN_TV_WEIGHT, dln_loss

from .image import ImageTask


class DLNTask(ImageTask):
    """DLN, supervised on real (or synthetic) pairs: 1 - SSIM(y, normal) + tv_weight * TV_iso(y) (lowlight_core.losses).

    With options["circle_weight"] > 0 (`--circle`), circle training (DLN paper, seed 003): a darkening twin D
    (same architecture) learns normal -> low beside the brightening model B, and each network also learns from
    the other's output: B maps D(normal) back to normal, D maps B(low) back to low, weighted by circle_weight.
    The twin's outputs are inputs only (detached), so each optimizer sees just its own network's losses.
    D is checkpointed but never exported.
    """

    checkpoint_name = "dln"

    def __init__(self, model, recipe, vgg_weights=None):
        super().__init__(model, recipe, vgg_weights)
        self.circle_weight = float(recipe.options.get("circle_weight", 0.0))
        if self.circle_weight > 0:
            self.darkener = type(model)(**model.config)
            self.modules["darkener"] = self.darkener
            self.notes.append(f"circle training: a darkening twin trained beside it, circle weight "
                              f"{self.circle_weight:g}")

    def make_optimizers(self):
        opts = {"model": self.generator_optimizer()}
        if self.circle_weight > 0:
            opts["darkener"] = self.adam(self.darkener.parameters())
        return opts

    def _loss(self, y, target):
        with torch.autocast(y.device.type, enabled=False):
            o = self.recipe.options
            return dln_loss(y.float(), target.float(), o.get("tv_weight", DLN_TV_WEIGHT), o.get("l1_weight", 0.0))

    def train_step(self, batch, gen, update):
        low, normal = batch
        y = self.model(low)
        total, terms = self._loss(y, normal)
        logs = {k: v.item() for k, v in terms.items()}
        if self.circle_weight > 0:
            darkened = self.darkener(normal)
            back, _ = self._loss(self.model(darkened.detach().clamp(0, 1)), normal)
            total = total + self.circle_weight * back
            dark_total, dark_terms = self._loss(darkened, low)
            redark, _ = self._loss(self.darkener(y.detach().clamp(0, 1)), low)
            dark_total = dark_total + self.circle_weight * redark
            logs |= {"circle": back.item(), "dark_ssim": dark_terms["ssim"].item(), "dark_circle": redark.item(),
                     "dark_loss": dark_total.item()}
        grad_norm = update(total, "model")
        if self.circle_weight > 0:
            update(dark_total, "darkener")
        return {"loss": total.item(), **logs, "grad_norm": grad_norm}
