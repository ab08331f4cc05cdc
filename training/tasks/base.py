"""TrainTask: everything the trainer (training.trainer) and a run (training.run) use of a model's training.

One subclass per kind of model (training/tasks/*.py); a recipe names its class (`recipe.task`). Members with a
default here are the ones most tasks share; a task overrides what differs, nothing is probed.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch


def log(message: str) -> None:
    """Training notices the user must see (a loss switched off, say); goes to stderr beside the progress bar."""
    print(f"[training] {message}", file=sys.stderr, flush=True)


class TrainTask:
    # The name a checkpoint's recorded settings give this task ("task"); None: not recorded (curve recipes).
    # Kept so that runs checkpointed before the recipes named the class still resume.
    checkpoint_name: str | None = None

    def __init__(self, model: torch.nn.Module, recipe, vgg_weights: Path | None = None):
        self.model, self.recipe, self.vgg_weights = model, recipe, vgg_weights
        self.modules: dict[str, torch.nn.Module] = {"model": model}  # all checkpointed; "model" is exported
        self.notes: list[str] = []  # what the model card should say about this run (losses that were off, ...)

    # ---- training (training.trainer)
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: torch.Tensor, gen: torch.Generator,
                   update: Callable[[torch.Tensor, str], float]) -> dict[str, float]:
        """One step: compute losses and call update(loss, optimizer_name) per optimizer. Returns numbers to
        log; update returns the gradient norm before clipping."""
        raise NotImplementedError

    def set_shard(self, world) -> None:
        """Before training: this process's part of the batch (training.distributed); a task that draws
        per-sample values itself keeps only its part. Default: nothing to split."""

    def validate(self, items: list[torch.Tensor]) -> dict[str, float]:
        """Mean validation numbers over the items training_data returned (keys start with "val_")."""
        raise NotImplementedError

    def preview(self, x: torch.Tensor, exposure: float) -> torch.Tensor:
        """(1, 3, H, W) -> (1, 3, H, W) enhanced at exposure target E."""
        raise NotImplementedError

    def grid_labels(self, exposures: tuple[float, ...]) -> list[str]:
        """Column titles of grid.png; default: the input and one column per E."""
        return ["input"] + [f"E = {e:g}" for e in exposures]

    def grid_row(self, item: torch.Tensor, exposures: tuple[float, ...]) -> list[torch.Tensor]:
        """One row of grid.png for a validation item, matching grid_labels."""
        return [item] + [self.preview(item, e) for e in exposures]

    # ---- a run (training.run)
    def training_data(self, run) -> tuple[torch.utils.data.Dataset, list[torch.Tensor], str]:
        """(training batches, validation items, the run's summary for the weights' metadata) from run.train,
        run.val and run.data."""
        raise NotImplementedError

    @classmethod
    def evaluate(cls, model: torch.nn.Module, run) -> dict:
        """The model card's scores on every held-out image (the real photos are added by the run)."""
        raise NotImplementedError

    @classmethod
    def card_figure(cls, model: torch.nn.Module, run, out_png: Path) -> None:
        raise NotImplementedError

    @classmethod
    def model_card(cls, name: str, meta: dict, ev: dict, weights: Path, figure: str | None) -> str:
        raise NotImplementedError

    @classmethod
    def card_summary(cls, ev: dict) -> str:
        """The line printed after the card: its headline number."""
        raise NotImplementedError
