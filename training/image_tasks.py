"""Trainer tasks of the image-to-image models (DLN, IQE DCGAN, EnlightenGAN): what they share, and DLN.

Every training batch is a (2, B, 3, crop, crop) tensor: [low, normal]. For the paired recipes the two are a
real pair (a dark SICE frame and its scene's well-exposed frame, training.sice_scenes), optionally mixed with
synthetic ones (training.degrade); for EnlightenGAN two unrelated crops (low-light and well-exposed photos).
Every task validates on the same held-out real pairs (training.sice_scenes, validation scenes), so the numbers
of all image models compare directly: PSNR / SSIM of the uint8 output against the normal image, the share of
output values clipped at 255 where the target is not, and the colour shift (lowlight_core.metrics).
"""
from __future__ import annotations

import sys

import torch

from lowlight_core.losses import DLN_TV_WEIGHT, dln_loss
from lowlight_core.metrics import clipped_beyond_uint8, color_shift_uint8, psnr_uint8, ssim_uint8, to_uint8


def pair_scores(y: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The reported numbers of one enhanced image y against its target, both (1, 3, H, W), as saved (uint8)."""
    a, b = to_uint8(y[0]), to_uint8(target[0])
    return {"psnr": psnr_uint8(a, b), "ssim": ssim_uint8(a, b), "clipped": clipped_beyond_uint8(a, b),
            "color_shift": color_shift_uint8(a, b)}


def log(message: str) -> None:
    """Training notices the user must see (a loss switched off, say); goes to stderr beside the progress bar."""
    print(f"[training] {message}", file=sys.stderr, flush=True)


class ImageTask:
    """Base of the image-model tasks: `self.model` (the generator that gets exported), validation, previews.

    Subclasses set self.modules and implement make_optimizers and train_step (see trainer.TrainTask).
    """

    grid_labels = ("low (real, held out)", "enhanced", "normal (target)")

    def __init__(self, model: torch.nn.Module, recipe, vgg_weights=None):
        self.model, self.recipe, self.vgg_weights = model, recipe, vgg_weights
        self.modules = {"model": model}
        self.notes: list[str] = []  # what the model card should say about this run (losses that were off)
        self._opt_g: torch.optim.Optimizer | None = None

    def adam(self, params, lr_scale: float = 1.0) -> torch.optim.Adam:
        r = self.recipe
        return torch.optim.Adam(params, lr=r.lr * lr_scale, betas=r.betas, weight_decay=r.weight_decay)

    def generator_optimizer(self) -> torch.optim.Adam:
        """The exported model's optimizer; steps_done() counts its updates."""
        self._opt_g = self.adam(self.model.parameters())
        return self._opt_g

    def steps_done(self) -> int:
        """Generator updates so far: Adam's step count of the first parameter (restored from checkpoints, so a
        resumed run keeps any schedule built on it)."""
        opt = self._opt_g
        if opt is None:
            return 0
        state = opt.state.get(opt.param_groups[0]["params"][0])
        return int(state["step"]) if state else 0

    def validate(self, pairs) -> dict[str, float]:
        """Mean scores over the held-out validation pairs ((2, 1, 3, H, W) tensors [low, normal])."""
        sums: dict[str, float] = {}
        for pair in pairs:
            low, normal = pair
            for k, v in pair_scores(self.model(low), normal).items():
                sums[k] = sums.get(k, 0.0) + v
        return {f"val_{k}": v / len(pairs) for k, v in sums.items()}

    def preview(self, x: torch.Tensor, exposure=None) -> torch.Tensor:
        return self.model(x).clamp(0, 1)

    def grid_row(self, pair: torch.Tensor) -> list[torch.Tensor]:
        low, normal = pair
        return [low, self.preview(low), normal]


class DLNTask(ImageTask):
    """DLN, supervised on real (or synthetic) pairs: 1 - SSIM(y, normal) + tv_weight * TV_iso(y) (lowlight_core.losses).

    With options["circle_weight"] > 0 (`--circle`), circle training (DLN paper, seed 003): a darkening twin D
    (same architecture) learns normal -> low beside the brightening model B, and each network also learns from
    the other's output: B maps D(normal) back to normal, D maps B(low) back to low, weighted by circle_weight.
    The twin's outputs are inputs only (detached), so each optimizer sees just its own network's losses.
    D is checkpointed but never exported.
    """

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
