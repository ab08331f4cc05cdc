"""Zero-DCE++'s curve model trained on the real SICE pairs (`zero_dce_pp_paired`): the same network, the same
value curve and the same photo path as `zero_dce_pp`, with a reference loss instead of the zero-reference one.

Why: the zero-reference exposure loss pulls every 16 x 16 region towards E, so `zero_dce_pp` lifts shadows and
compresses mid-tones; a real longer exposure is closer to a gain with a highlight roll-off, and that tone is
what its colour against the real frames lacked (docs/real-eval.md). The curve still acts on the value
v = max(r, g, b) with R, G, B scaled by v' / v: hue and saturation stay the input's.

Training is the bilateral grid's (training.tasks.grid): crops of the real pairs, E = the target's mean
brightness, a share of the targets re-exposed to a random E by a gamma on the value; loss 1 - SSIM + L1.
The network reads the crop's thumbnail at its estimate size, the curve runs at the crop's resolution with the
default number of steps (the iterations control then sets the strength around it).
"""
from __future__ import annotations

import torch

from lowlight_core.controls import EXPOSURE_NOMINAL, ITERATIONS_DEFAULT
from lowlight_core.losses import dln_loss

from .grid import GridTask


class PairedCurveTask(GridTask):
    """Options as GridTask's: "retarget", "retarget_range", "l1_weight". Validation is GridTask's (through
    preview: the clamped curve at E = each target's mean)."""

    checkpoint_name = "zero_dce_pp_paired"

    def enhance(self, x: torch.Tensor, exposure) -> torch.Tensor:
        """The inference path with gradients: alpha from x's thumbnail, the curve at x's size (unclamped: the
        LE curve keeps [0, 1])."""
        alpha = self.model.estimate_alpha(x, exposure)
        return self.model.curve(x, alpha.to(x.dtype).contiguous(), ITERATIONS_DEFAULT)

    def train_step(self, batch, gen, update):
        low, normal = batch
        target, e = self.targets(normal, gen)
        y = self.enhance(low, e)
        with torch.autocast(y.device.type, enabled=False):
            y, target = y.float(), target.float()
            total, terms = dln_loss(y, target, 0.0, self.recipe.options["l1_weight"])
        grad_norm = update(total, "model")
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items() if k != "tv"},
                "exposure": e.mean().item(), "grad_norm": grad_norm}

    def preview(self, x, exposure=None):
        return self.enhance(x, EXPOSURE_NOMINAL if exposure is None else exposure).clamp(0, 1)
