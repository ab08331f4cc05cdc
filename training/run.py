"""One training run, whatever the model: its data, the trainer, the weights, and the model card.

What differs between models is the recipe's task class (training.tasks): its data, its steps, its scores and
its card. `train` and `evaluate` are the two stages of `lowlight train` (training.__main__ turns the command
line into a `Run`).
"""
from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import data as data_mod
from . import distributed
from . import evaluate as eval_mod
from . import real_eval
from .trainer import CheckpointError, Trainer, TrainerConfig, seed_everything

HALF_STORAGE_PARAMETERS = 1_000_000  # networks above this are stored in float16: shipped weights stay a few MB


@dataclass(frozen=True)
class Run:
    """A resolved `lowlight train` invocation: what every stage of the run reads."""
    recipe: object  # training.recipes.CurveRecipe or ImageRecipe; recipe.task is its task class
    name: str = ""  # the recipe's name (RECIPES key)
    config: str = "cpu"
    out: Path = Path("runs")  # run folder: checkpoint, logs, figures, eval.json
    weights: Path | None = None  # where the weights go (the card and its figure beside them)
    data: Path | None = None  # folder holding training.data.DEFAULT_FOLDERS (None: the default one)
    val_fraction: float = data_mod.VALIDATION_FRACTION
    paths: list[Path] = field(default_factory=list)  # every image file; train + val
    train: list[Path] = field(default_factory=list)
    val: list[Path] = field(default_factory=list)
    cache: Path | None = None  # mean-intensity cache file
    device: torch.device = torch.device("cpu")
    workers: int = 1  # image-decoding processes
    resume: bool = False
    init: Path | None = None  # weights to start from (fine-tuning)
    vgg_weights: Path | None = None
    command: str = ""  # the command line, as recorded in the weights' metadata


def train(run: Run) -> None:
    """Trains (in every process of a torchrun launch) and writes the weights (rank 0)."""
    from lowlight_core.models import registry

    recipe = run.recipe
    t0 = time.time()
    seed_everything(recipe.seed)  # the initial weights too are a function of the seed
    model = registry.get_model_info(recipe.model).build(**recipe.model_config)
    task = recipe.task(model, recipe, vgg_weights=run.vgg_weights)
    batches, val_items, summary = task.training_data(run)
    if run.init:
        model.load_state_dict(registry.load_model(recipe.model, weights=run.init).state_dict())
        summary += f"; initialized from {run.init.name}"
    cfg = TrainerConfig(steps=recipe.steps, seed=recipe.seed, val_every=recipe.val_every,
                        ckpt_every=recipe.ckpt_every, grad_clip=recipe.grad_clip, device=str(run.device),
                        lr_final_factor=recipe.lr_final / recipe.lr if recipe.lr_final else None,
                        workers=run.workers)
    trainer = Trainer(task, batches, val_items, cfg, run.out,
                      run_info={"recipe": run.name, "config": run.config, "settings": resume_settings(recipe)})
    try:
        final_val = trainer.run(resume=run.resume)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    if not distributed.current().main:  # the weights, the card and the export are rank 0's
        return
    model = model.to("cpu")
    data_desc = (f"{len(run.train)} training / {len(run.val)} held-out images from "
                 + ", ".join(f"{f} ({sum(p.parent.name == f for p in run.paths)})" for f in data_mod.DEFAULT_FOLDERS))
    meta = {
        "description": registry.get_model_info(recipe.model).description,
        "licence": eval_mod.LICENCE,  # the training data's terms travel with the file, not only in the card
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "command": run.command,
            "recipe": run.name, "config": run.config, "summary": summary, "notes": list(task.notes),
            "data": data_desc, "steps": trainer.step, "batch": recipe.batch, "crop": recipe.crop,
            "wall_time_min": trainer.elapsed / 60, "run_time_min": (time.time() - t0) / 60,
            "device": device_description(run.device), "val_images": len(val_items),
            "val_resize_long": recipe.val_resize_long,
            "final_validation": final_val, "commit": git_commit(), "backend": ops_backend(),
        },
    }
    run.weights.parent.mkdir(parents=True, exist_ok=True)
    half = meta["parameters"] > HALF_STORAGE_PARAMETERS
    if half:
        meta["training"]["notes"].append("weights stored in float16 (loaded as float32); the numbers below "
                                         "are measured with these stored weights")
    registry.save_weights(model, recipe.model, run.weights, meta, storage_dtype=torch.float16 if half else None)
    print(f"weights: {run.weights} ({run.weights.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


def resume_settings(recipe) -> dict:
    """What a resumed run must share with its checkpoint: the recipe, not its length or logging intervals
    (extending a run is fine). The task class is recorded by name, as the recipes named it before they held
    the class, so checkpoints of either kind compare."""
    settings = {k: v for k, v in asdict(recipe).items()
                if k not in ("steps", "val_every", "ckpt_every", "val_images", "task")}
    if recipe.task.checkpoint_name is not None:
        settings["task"] = recipe.task.checkpoint_name
    return settings


def evaluate(run: Run) -> None:
    """Scores the run's weights on every held-out image and the real photos; writes eval.json and the model
    card (weights/<model>.md) with its figure (<model>.png) beside the weights."""
    from lowlight_core.models import registry

    task = run.recipe.task
    saved = torch.load(run.weights, map_location="cpu", weights_only=True)
    model = registry.load_model(run.recipe.model, device=str(run.device), weights=run.weights)
    ev = task.evaluate(model, run)
    ev.update(real_eval.card_scores(run.recipe.model, run.weights, run.data, run.val_fraction))
    run.out.mkdir(parents=True, exist_ok=True)
    eval_mod.write_json(run.out / "eval.json", ev)
    fig = run.weights.with_suffix(".png")
    task.card_figure(model, run, fig)
    card = task.model_card(run.recipe.model, saved.get("meta", {}), ev, run.weights, fig.name)
    run.weights.with_suffix(".md").write_text(card)
    print(f"card: {run.weights.with_suffix('.md')}; {task.card_summary(ev)}", file=sys.stderr)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, AMP float16)"
    return f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"


def ops_backend() -> str:
    from lowlight_core import ops

    return ops.backend()
