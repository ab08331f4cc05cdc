"""The bilateral-grid model's training task: supervised on real SICE pairs, E-conditioned.

Each sample's exposure target E is its target's mean brightness (what real_eval's brightness measures: the mean
of R, G, B over the image), so E sets the output's mean. To teach E across the slider, a share of the targets
(`retarget` in the recipe's options) is re-exposed to E ~ U(retarget_range) first: a gamma on the value
v = max(r, g, b), R, G, B scaled by v' / v, which keeps each pixel's hue and saturation.
Loss: 1 - SSIM of the output + L1 of the output before its clamp to [0, 1] (so clipped highlights are pulled
back), the grid applied at the crop's full resolution through the reference op (autograd); the network reads the
crop's 256 px thumbnail.
"""
from __future__ import annotations

import torch

from lowlight_core.controls import EXPOSURE_NOMINAL
from lowlight_core.losses import dln_loss

from .. import real_eval
from ..image_eval import pair_scores
from .image import ImageTask

GAMMA_LOG_RANGE = 3.0  # the bisection's gamma lies in [e^-3, e^3]: beyond it an image is black or white
BISECTION_STEPS = 24


def retarget(target: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
    """target (B, 3, H, W) in [0, 1] re-exposed so its mean is exposure (B,) (as near as the gamma reaches):
    v' = v ** g per pixel (v the value), colour scaled by v' / v; g found by bisection (the mean falls with g)."""
    v = target.amax(1, keepdim=True).clamp_min(1e-6)
    lo = torch.full_like(exposure, -GAMMA_LOG_RANGE)
    hi = torch.full_like(exposure, GAMMA_LOG_RANGE)

    def exposed(log_g):
        return target * v.pow(log_g.exp().view(-1, 1, 1, 1) - 1)

    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        too_bright = exposed(mid).mean(dim=(1, 2, 3)) > exposure
        lo, hi = torch.where(too_bright, mid, lo), torch.where(too_bright, hi, mid)
    return exposed((lo + hi) / 2).clamp(0, 1)


class GridTask(ImageTask):
    """The bilateral grid on real pairs; options: "retarget" (share of re-exposed targets), "retarget_range"
    (their E), "l1_weight" (the SSIM term's weight is 1)."""

    checkpoint_name = "bilateral_grid"

    def make_optimizers(self):
        return {"model": self.generator_optimizer()}

    def targets(self, normal: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, their E): a share re-exposed to a random E, the rest as they are."""
        o = self.recipe.options
        b = normal.shape[0]
        lo, hi = o["retarget_range"]
        pick = torch.rand(b, generator=gen) < o["retarget"]
        e = (lo + (hi - lo) * torch.rand(b, generator=gen)).to(normal.device)
        pick = pick.to(normal.device)
        if bool(pick.any()):
            normal = torch.where(pick.view(-1, 1, 1, 1), retarget(normal, e), normal)
        return normal, normal.mean(dim=(1, 2, 3))

    def train_step(self, batch, gen, update):
        low, normal = batch
        target, e = self.targets(normal, gen)
        raw = self.model(low, e, clamp=False)
        with torch.autocast(raw.device.type, enabled=False):
            raw = raw.float()
            y, target = raw.clamp(0, 1), target.float()
            total, terms = dln_loss(y, target, 0.0, 0.0)
            # L1 on the output before its clamp: the clamp passes no gradient above 1, so an L1 on the clamped
            # output never pulls a clipped highlight back (the first weights clipped 5.4 % of the pixels)
            terms["l1"] = (raw - target).abs().mean()
            total = total + self.recipe.options["l1_weight"] * terms["l1"]
        grad_norm = update(total, "model")
        return {"loss": total.item(), **{k: v.item() for k, v in terms.items() if k != "tv"},
                "exposure": e.mean().item(), "grad_norm": grad_norm}

    @torch.no_grad()
    def validate(self, pairs) -> dict[str, float]:
        """Mean scores over the held-out pairs at E = each target's mean brightness (the oracle E)."""
        sums: dict[str, float] = {}
        for low, normal in pairs:
            for k, v in pair_scores(self.preview(low, normal.mean()), normal).items():
                sums[k] = sums.get(k, 0.0) + v
        return {f"val_{k}": v / len(pairs) for k, v in sums.items()}

    def preview(self, x, exposure=None):
        return self.model(x) if exposure is None else self.model(x, exposure)

    def grid_labels(self, exposures):
        return ["low (real, held out)", "E = the target's mean", f"E = {EXPOSURE_NOMINAL:g}", "normal (target)"]

    def grid_row(self, pair, exposures):
        low, normal = pair
        return [low, self.preview(low, normal.mean()), self.preview(low, EXPOSURE_NOMINAL), normal]

    # ---- the card: the image models' card plus the real pairs at E = each reference's mean (an ideal auto E)
    @classmethod
    def evaluate(cls, model, run):
        ev = super().evaluate(model, run)
        enhancer = real_eval.model_enhancer(run.recipe.model, run.weights)
        ev["real_pairs_reference_e"] = real_eval.evaluate(enhancer, run.data, run.val_fraction,
                                                          exposure_from_reference=True)["pairs"]
        return ev

    @classmethod
    def model_card(cls, name, meta, ev, weights, figure):
        card = super().model_card(name, meta, ev, weights, figure)
        p = ev.get("real_pairs_reference_e")
        if not p:
            return card
        line = (f"At E = each reference frame's mean brightness (the exposure an ideal automatic E picks; "
                f"`python -m training.real_eval --models {name} --exposure-from-reference`), the real pairs score "
                f"PSNR {real_eval.fmt(p['psnr'], 2)} dB, SSIM {real_eval.fmt(p['ssim'])}, CIEDE2000 "
                f"{real_eval.fmt(p['ciede2000'], 2)}.")
        head, sep, rest = card.partition("\n## Synthetic pairs")
        return head + "\n" + line + "\n" + sep + rest

