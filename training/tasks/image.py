"""The image-to-image models' tasks (DLN, IQE DCGAN, EnlightenGAN): what they share.

Every training batch is a (2, B, 3, crop, crop) tensor: [low, normal]. For the paired recipes the two are a
real pair (a dark SICE frame and its scene's well-exposed frame, training.sice_scenes), optionally mixed with
synthetic ones (training.degrade); for EnlightenGAN two unrelated crops (low-light and well-exposed photos).
Every task validates on the same held-out real pairs (training.sice_scenes, validation scenes), so the numbers
of all image models compare directly: PSNR / SSIM of the uint8 output against the normal image, the share of
output values clipped at 255 where the target is not, and the colour shift (lowlight_core.metrics).
"""
from __future__ import annotations

import torch

from .. import data as data_mod
from .. import degrade, image_eval, real_eval, sice_scenes
from ..image_eval import pair_scores
from .base import TrainTask, log


class ImageTask(TrainTask):
    """Base of the image-model tasks: `self.model` (the generator that gets exported), paired training data,
    validation, previews and the model card. Subclasses add their modules, make_optimizers and train_step.
    """

    def __init__(self, model: torch.nn.Module, recipe, vgg_weights=None):
        super().__init__(model, recipe, vgg_weights)
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

    def grid_labels(self, exposures):  # no exposure control: input, output, target
        return ["low (real, held out)", "enhanced", "normal (target)"]

    def grid_row(self, pair: torch.Tensor, exposures) -> list[torch.Tensor]:
        low, normal = pair
        return [low, self.preview(low), normal]

    # ---- a run
    def training_data(self, run):
        """Training batches (self.batches) and the held-out real pairs."""
        r = self.recipe
        normals = data_mod.sice_normals(run.train, run.cache)
        if not normals:
            raise SystemExit("no well-exposed training images (mean intensity 0.35-0.65) in sice_part1")
        batches, data_summary = self.batches(run, normals)
        return batches, validation_pairs(run, r), (
            f"{data_summary}, {r.crop} px crops of images resized to {r.resize_long} px, "
            f"model config {self.model.config}, options {r.options}, Adam lr {r.lr} betas {r.betas}"
            + (f" cosine-decayed to {r.lr_final}" if r.lr_final else "")
            + f", grad-norm clip {r.grad_clip}, seed {r.seed}")

    def batches(self, run, normals: list) -> tuple[torch.utils.data.Dataset, str]:
        """(training batches, summary): real SICE pairs, synthetic pairs of `normals`, or a mix (recipe.pairs)."""
        r = self.recipe
        degradation = degrade.Degradation(**r.options.get("degradation", {}))
        if r.pairs == "synthetic":
            return (degrade.PairBatches(normals, r.batch, r.crop, r.seed, r.resize_long, degradation),
                    f"synthetic pairs (training.degrade) from {len(normals)} well-exposed photos")
        if r.pairs != "real":
            raise SystemExit(f"recipe {r.model}: pairs must be 'real' or 'synthetic', not {r.pairs!r}")
        pairs = sice_scenes.real_pairs(run.data, "train", run.val_fraction)
        if not pairs:
            raise SystemExit("no real training pairs: no training scene in sice_part1 holds a dark frame and a "
                             "well-exposed one (see training/sice_scenes.py); use --pairs synthetic")
        n_real = max(1, round(r.batch * r.real_share))
        real = sice_scenes.RealPairBatches(pairs, n_real, r.crop, r.seed, r.resize_long)
        summary = (f"real pairs: {len(pairs)} dark SICE frames and their scene's well-exposed frame "
                   f"({len({p[1] for p in pairs})} training scenes, training.sice_scenes)")
        if n_real == r.batch:
            return real, summary
        synthetic = degrade.PairBatches(normals, r.batch - n_real, r.crop, r.seed + 7, r.resize_long, degradation)
        return (sice_scenes.MixedBatches(real, synthetic),
                f"{summary}, plus {r.batch - n_real} synthetic pairs per batch of {r.batch}")

    @classmethod
    def evaluate(cls, model, run):
        return image_eval.evaluate(model, data_mod.sice_normals(run.val, run.cache), device=run.device)

    @classmethod
    def card_figure(cls, model, run, out_png):
        image_eval.card_figure(model, real_eval.sheet_photos(run.data, run.val_fraction)[::2], out_png,
                               device=run.device)

    @classmethod
    def model_card(cls, name, meta, ev, weights, figure):
        return image_eval.model_card(name, meta, ev, weights, figure)

    @classmethod
    def card_summary(cls, ev):
        pairs = ev["real_photos"]["pairs"]
        return f"real pairs {pairs['psnr']:.2f} dB, SSIM {pairs['ssim']:.3f}"


def validation_pairs(run, r) -> list[torch.Tensor]:
    """Recipe r's held-out real pairs (or, for a data folder without them, synthetic pairs of held-out images)."""
    held_out = sice_scenes.real_pairs(run.data, "validation", run.val_fraction)
    if held_out:
        return sice_scenes.validation_pairs(data_mod.spread(held_out, r.val_images), r.val_resize_long)
    log("no held-out real pairs (no validation scene with a dark and a well-exposed frame): validating on "
        "synthetic pairs instead")
    return degrade.validation_pairs(data_mod.sice_normals(run.val, run.cache), r.val_resize_long, r.val_images)


