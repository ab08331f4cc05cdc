"""Zero-reference training of the curve models (Zero-DCE, Zero-DCE++): the task, its data and its model card."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lowlight_core.controls import EXPOSURE_NOMINAL, EXPOSURE_GRID, ITERATIONS_DEFAULT
from lowlight_core.losses import zero_reference_loss

from .. import data as data_mod
from .. import evaluate as eval_mod
from .base import TrainTask


class CurveTask(TrainTask):
    """The trainer's task for zero_dce and zero_dce_pp (recipe: training.recipes.CurveRecipe)."""

    def __init__(self, model: torch.nn.Module, recipe, vgg_weights=None):
        super().__init__(model, recipe, vgg_weights)
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
            if alpha.shape[-2:] != x.shape[-2:]:  # L_tv of the map as applied: resized as le_curve does
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
        """Zero-reference loss at the default E and iterations, and how well the output brightness follows E."""
        sums = {}
        for x in images:
            total, terms = self.loss(x, EXPOSURE_NOMINAL, ITERATIONS_DEFAULT)
            for k, v in {"loss": total, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            for e in EXPOSURE_GRID:
                y = self.preview(x, e)
                sums["e_err"] = sums.get("e_err", 0.0) + abs(float(y.mean()) - e) / len(EXPOSURE_GRID)
        return {f"val_{k}": v / len(images) for k, v in sums.items()}

    def preview(self, x, exposure, iterations: int = ITERATIONS_DEFAULT):
        """Inference path: curve applied at x's resolution, clamped to [0, 1]."""
        y, _ = self.forward(x, exposure, iterations)
        return y.clamp(0, 1)

    # ---- a run
    def training_data(self, run):
        r = self.recipe
        batches = data_mod.CropBatches(run.train, r.batch, r.crop, seed=r.seed, resize_long=r.resize_long)
        val_images = data_mod.validation_images(pick_validation(run.val, r.val_images, run.cache), r.val_resize_long)
        summary = (f"E ~ U{r.e_range} per sample, iterations {r.n_range[0]}..{r.n_range[1]} "
                   f"per batch, {r.crop} px crops of images resized to {r.resize_long} px, "
                   f"model config {self.model.config}, loss weights {r.loss_weights}, Adam lr {r.lr}"
                   + (f" cosine-decayed to {r.lr_final}" if r.lr_final else "")
                   + f", weight decay {r.weight_decay}, grad-norm clip {r.grad_clip}, seed {r.seed}")
        return batches, val_images, summary

    @classmethod
    def evaluate(cls, model, run):
        return eval_mod.evaluate(model, run.val, device=run.device)

    @classmethod
    def card_figure(cls, model, run, out_png):
        eval_mod.card_figure(model, pick_validation(run.val, 4, run.cache)[:4], out_png, device=run.device)

    @classmethod
    def model_card(cls, name, meta, ev, weights, figure):
        return eval_mod.model_card(name, meta, ev, weights, figure)

    @classmethod
    def card_summary(cls, ev):
        return f"mean |brightness - E| {ev['mean_abs_err']:.3f}"


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
