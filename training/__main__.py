"""lowlight train RECIPE [--config cpu|gpu] [--steps N] [--out DIR] [--resume] ... (or python -m training)

Trains RECIPE and writes only under its run folder (default runs/<recipe>-<config>/): checkpoint, train.csv,
val.csv, losses.png, grid.png, eval.json, the weights weights/<model>.pt (save_weights), and, after scoring
them on all held-out images, the model card weights/<model>.md and its figure weights/<model>.png.
The shipped weights in lowlight_core/weights/ change only with --export (or `lowlight export RUN`), which
keeps the files it replaces in lowlight_core/weights/backup/.
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: spin-waiting threads make a shared 2-core machine crawl (BUILD-NOTES).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import data as data_mod
from . import distributed
from . import evaluate as eval_mod
from . import real_eval, sice_scenes
from .trainer import CheckpointError, Trainer, TrainerConfig, resolve_device, seed_everything


WEIGHTS_DIR: Path | None = None  # the shipped weights folder; None: default_weights_dir() (tests point it elsewhere)


def default_weights_dir() -> Path:
    """WEIGHTS_DIR if set, else the checkout's lowlight_core/weights when run from its root, else weights/ in the
    working directory (never the installed package's folder)."""
    if WEIGHTS_DIR is not None:
        return Path(WEIGHTS_DIR)
    checkout = Path("lowlight_core") / "weights"
    return checkout if checkout.is_dir() else Path("weights")


def parse_args(argv):
    from .recipes import RECIPES

    p = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", choices=sorted(RECIPES))
    p.add_argument("--config", default="cpu", choices=["cpu", "gpu"], help="cpu: ~30 min on 2 cores; gpu: official scale")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: the config's)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<recipe>-<config>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--data", type=Path, help=f"folder holding {', '.join(data_mod.DEFAULT_FOLDERS)} "
                                             f"(default $LOWLIGHT_DATA or ../shared/data from the working directory)")
    p.add_argument("--weights", type=Path, help="where to write the weights (default RUN/weights/<model>.pt); "
                                                "the card goes beside them; never the shipped folder (see --export)")
    p.add_argument("--export", action="store_true", help="afterwards replace the shipped weights, card and figure "
                                                         "with this run's (the old ones go to weights/backup/)")
    p.add_argument("--batch", type=int)
    p.add_argument("--crop", type=int)
    p.add_argument("--estimate-size", type=int, help="Zero-DCE++: long side (px) at which alpha is estimated")
    p.add_argument("--iterations", help="curve iterations per batch, LO..HI (inclusive) or N")
    p.add_argument("--width", type=int, help="image models: network width (default: the config's)")
    p.add_argument("--vgg-weights", type=Path, help="VGG-19 state dict (torchvision key names) for the IQE content "
                                                    "loss and EnlightenGAN's self-feature-preserving loss; "
                                                    "without it those losses are off (the log says so)")
    p.add_argument("--circle", type=float, nargs="?", const=1.0, metavar="WEIGHT",
                   help="dln: circle training with a darkening twin, circle losses weighted WEIGHT (default 1)")
    p.add_argument("--pairs", choices=["real", "synthetic"], help="paired models: real SICE pairs or synthetic ones")
    p.add_argument("--real-share", type=float, help="paired models: share of each batch that is real pairs; the "
                                                    "rest synthetic (default: the config's)")
    p.add_argument("--init", type=Path, metavar="WEIGHTS", help="start from these weights (same architecture; "
                                                               "fine-tuning) instead of a random initialization")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's)")
    p.add_argument("--seed", type=int)
    p.add_argument("--val-every", type=int)
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--val-images", type=int, help="validation images scored during training")
    p.add_argument("--val-fraction", type=float, default=data_mod.VALIDATION_FRACTION,
                   help="held-out share of the SICE scenes and of the other images (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--workers", type=int, default=1, help="image-decoding processes (0: in the main process)")
    p.add_argument("--no-eval", action="store_true", help="skip the full evaluation and the model card")
    p.add_argument("--eval-only", action="store_true", help="only evaluate existing weights and rewrite the card")
    return p.parse_args(argv)


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


HALF_STORAGE_PARAMETERS = 1_000_000

# Task class of each image recipe ("module:Class" under training/, imported when used).
IMAGE_TASKS = {"dln": "image_tasks:DLNTask", "iqe_dcgan": "iqe:IQETask", "enlightengan": "enlightengan:EnlightenGANTask"}


def _curve_setup(args, recipe, train, val, cache):
    """(model, task, training batches, validation images, summary) of a curve recipe."""
    from lowlight_core.models import registry

    from .recipes import CurveTask, pick_validation

    model = registry.get_model_info(recipe.model).build(**recipe.model_config)
    batches = data_mod.CropBatches(train, recipe.batch, recipe.crop, seed=recipe.seed, resize_long=recipe.resize_long)
    val_images = data_mod.validation_images(pick_validation(val, recipe.val_images, cache), recipe.val_resize_long)
    summary = (f"E ~ U{recipe.e_range} per sample, iterations {recipe.n_range[0]}..{recipe.n_range[1]} "
               f"per batch, {recipe.crop} px crops of images resized to {recipe.resize_long} px, "
               f"model config {model.config}, loss weights {recipe.loss_weights}, Adam lr {recipe.lr}"
               + (f" cosine-decayed to {recipe.lr_final}" if recipe.lr_final else "")
               + f", weight decay {recipe.weight_decay}, grad-norm clip {recipe.grad_clip}, seed {recipe.seed}")
    return model, CurveTask(model, recipe), batches, val_images, summary


def _image_setup(args, recipe, train, val, cache):
    """(model, task, training batches, validation pairs, summary) of an image recipe (DLN, DCGAN, EnlightenGAN)."""
    import importlib

    from lowlight_core.models import registry

    from . import degrade
    from .image_tasks import log

    model = registry.get_model_info(recipe.model).build(**recipe.model_config)
    module, cls = IMAGE_TASKS[recipe.task].split(":")
    task = getattr(importlib.import_module(f".{module}", __package__), cls)(model, recipe, vgg_weights=args.vgg_weights)
    normals = data_mod.sice_normals(train, cache)
    if not normals:
        raise SystemExit("no well-exposed training images (mean intensity 0.35-0.65) in sice_part1")
    if recipe.task == "enlightengan":  # unpaired: LOL lows + the dark SICE exposures vs the well-exposed ones
        means = data_mod.mean_intensities(train, cache)
        lows = [p for p in train if p.parent.name == "lol_train_low" or means[str(p)] < data_mod.WELL_EXPOSED[0]]
        batches = data_mod.UnpairedBatches(lows, normals, recipe.batch, recipe.crop, recipe.seed, recipe.resize_long)
        data_summary = f"unpaired: {len(lows)} low-light vs {len(normals)} well-exposed photos"
    else:
        batches, data_summary = _paired_batches(args, recipe, normals)
    held_out = sice_scenes.real_pairs(args.data, "validation", args.val_fraction)
    if held_out:
        val_pairs = sice_scenes.validation_pairs(data_mod.spread(held_out, recipe.val_images), recipe.val_resize_long)
    else:  # a data folder without dark + well-exposed frames of one held-out scene
        log("no held-out real pairs (no validation scene with a dark and a well-exposed frame): validating on "
            "synthetic pairs instead")
        val_pairs = degrade.validation_pairs(data_mod.sice_normals(val, cache), recipe.val_resize_long,
                                             recipe.val_images)
    summary = (f"{data_summary}, {recipe.crop} px crops of images resized to {recipe.resize_long} px, "
               f"model config {model.config}, options {recipe.options}, Adam lr {recipe.lr} betas {recipe.betas}"
               + (f" cosine-decayed to {recipe.lr_final}" if recipe.lr_final else "")
               + f", grad-norm clip {recipe.grad_clip}, seed {recipe.seed}")
    return model, task, batches, val_pairs, summary


def _paired_batches(args, recipe, normals):
    """(training batches, summary) of a paired recipe: real SICE pairs, synthetic pairs, or a mix."""
    from . import degrade

    degradation = degrade.Degradation(**recipe.options.get("degradation", {}))
    if recipe.pairs == "synthetic":
        return (degrade.PairBatches(normals, recipe.batch, recipe.crop, recipe.seed, recipe.resize_long, degradation),
                f"synthetic pairs (training.degrade) from {len(normals)} well-exposed photos")
    if recipe.pairs != "real":
        raise SystemExit(f"recipe {recipe.model}: pairs must be 'real' or 'synthetic', not {recipe.pairs!r}")
    pairs = sice_scenes.real_pairs(args.data, "train", args.val_fraction)
    if not pairs:
        raise SystemExit("no real training pairs: no training scene in sice_part1 holds a dark frame and a "
                         "well-exposed one (see training/sice_scenes.py); use --pairs synthetic")
    n_real = max(1, round(recipe.batch * recipe.real_share))
    real = sice_scenes.RealPairBatches(pairs, n_real, recipe.crop, recipe.seed, recipe.resize_long)
    summary = (f"real pairs: {len(pairs)} dark SICE frames and their scene's well-exposed frame "
               f"({len({p[1] for p in pairs})} training scenes, training.sice_scenes)")
    if n_real == recipe.batch:
        return real, summary
    synthetic = degrade.PairBatches(normals, recipe.batch - n_real, recipe.crop, recipe.seed + 7, recipe.resize_long,
                                    degradation)
    return (sice_scenes.MixedBatches(real, synthetic),
            f"{summary}, plus {recipe.batch - n_real} synthetic pairs per batch of {recipe.batch}")


def main(argv=None) -> int:
    from lowlight_core.models import registry

    from .recipes import CurveRecipe, get_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    recipe = get_recipe(args.recipe, args.config, steps=args.steps, batch=args.batch, crop=args.crop,
                        lr=args.lr, seed=args.seed, val_every=args.val_every, ckpt_every=args.ckpt_every,
                        val_images=args.val_images, pairs=args.pairs, real_share=args.real_share)
    curve = isinstance(recipe, CurveRecipe)
    if args.iterations or args.estimate_size is not None:
        if not curve or (args.estimate_size is not None and "estimate_size" not in recipe.model_config):
            raise SystemExit(f"--iterations/--estimate-size apply to curve recipes (--estimate-size to "
                             f"zero_dce_pp), not {args.recipe}")
    if args.iterations:
        lo, _, hi = args.iterations.partition("..")
        recipe = replace(recipe, n_range=(int(lo), int(hi or lo)))
    if args.estimate_size is not None:
        recipe = replace(recipe, model_config={**recipe.model_config, "estimate_size": args.estimate_size})
    if args.width is not None:
        if curve:
            raise SystemExit(f"--width applies to the image recipes, not {args.recipe}")
        recipe = replace(recipe, model_config={**recipe.model_config, "width": args.width})
    if args.circle is not None:
        if recipe.task != "dln" or args.circle <= 0:
            raise SystemExit(f"--circle takes a positive weight and applies to the dln recipe, not {args.recipe}")
        recipe = replace(recipe, options={**recipe.options, "circle_weight": args.circle})
    if args.init is not None and not args.init.is_file():
        raise SystemExit(f"--init {args.init}: file not found")
    if args.vgg_weights is not None and not args.vgg_weights.is_file():
        raise SystemExit(f"--vgg-weights {args.vgg_weights}: file not found")
    out = args.out or Path("runs") / f"{args.recipe}-{args.config}"
    weights = args.weights or out / "weights" / f"{recipe.model}.pt"
    if default_weights_dir().resolve() in weights.resolve().parents:
        raise SystemExit(f"--weights {weights}: training never writes into the shipped weights folder "
                         f"{default_weights_dir()}; train into the run folder and add --export (the old files are kept)")
    if args.export and args.no_eval:
        raise SystemExit("--export needs the evaluation that writes the model card; drop --no-eval")
    cache = Path("runs") / "cache" / "mean_intensity.json"

    paths = data_mod.list_images(args.data)
    train, val = data_mod.split(paths, args.val_fraction)
    if not val:
        raise SystemExit(f"no validation images among {len(paths)} files at --val-fraction {args.val_fraction}")
    world = distributed.init(args.device)  # under torchrun: this process's rank (training.distributed)
    device = resolve_device(args.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    try:
        if not args.eval_only:
            _train(args, argv, recipe, curve, train, val, paths, out, weights, cache, device, world)
    finally:
        distributed.finish()
    if args.no_eval or not world.main:
        return 0
    (_evaluate_curve_model if curve else _evaluate_image_model)(recipe, weights, val, out, device, cache, args)
    if args.export:
        from .export import export_run

        export_run(weights, default_weights_dir())
    return 0


def _train(args, argv, recipe, curve, train, val, paths, out, weights, cache, device, world) -> None:
    """Trains (in every process of a torchrun launch) and writes the weights (rank 0)."""
    from lowlight_core.models import registry

    t0 = time.time()
    seed_everything(recipe.seed)  # the initial weights too are a function of the seed
    setup = _curve_setup if curve else _image_setup
    model, task, batches, val_images, summary = setup(args, recipe, train, val, cache)
    if args.init:
        model.load_state_dict(registry.load_model(recipe.model, weights=args.init).state_dict())
        summary += f"; initialized from {args.init.name}"
    cfg = TrainerConfig(steps=recipe.steps, seed=recipe.seed, val_every=recipe.val_every,
                        ckpt_every=recipe.ckpt_every, grad_clip=recipe.grad_clip, device=str(device),
                        lr_final_factor=recipe.lr_final / recipe.lr if recipe.lr_final else None,
                        workers=args.workers)
    # What a resumed run must share with the checkpoint (not steps or logging intervals: extending is fine)
    settings = {k: v for k, v in asdict(recipe).items() if k not in ("steps", "val_every", "ckpt_every",
                                                                     "val_images")}
    trainer = Trainer(task, batches, val_images, cfg, out,
                      run_info={"recipe": args.recipe, "config": args.config, "settings": settings})
    try:
        final_val = trainer.run(resume=args.resume)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    if not world.main:  # the weights, the card and the export are rank 0's
        return
    model = model.to("cpu")
    data_desc = (f"{len(train)} training / {len(val)} held-out images from "
                 + ", ".join(f"{f} ({sum(p.parent.name == f for p in paths)})" for f in data_mod.DEFAULT_FOLDERS))
    meta = {
        "description": registry.get_model_info(recipe.model).description,
        "licence": eval_mod.LICENCE,  # the training data's terms travel with the file, not only in the card
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": {
            "command": "python -m training " + shlex.join(argv),
            "recipe": args.recipe, "config": args.config, "summary": summary,
            "notes": list(getattr(task, "notes", [])),
            "data": data_desc, "steps": trainer.step, "batch": recipe.batch, "crop": recipe.crop,
            "wall_time_min": trainer.elapsed / 60, "run_time_min": (time.time() - t0) / 60,
            "device": device_description(device), "val_images": len(val_images),
            "val_resize_long": getattr(recipe, "val_resize_long", None),
            "final_validation": final_val, "commit": git_commit(), "backend": _ops_backend(),
        },
    }
    weights.parent.mkdir(parents=True, exist_ok=True)
    # Shipped weights stay a few MB: networks over 1 M parameters are stored in float16 (and say so).
    half = meta["parameters"] > HALF_STORAGE_PARAMETERS
    if half:
        meta["training"]["notes"].append("weights stored in float16 (loaded as float32); the numbers below "
                                         "are measured with these stored weights")
    registry.save_weights(model, recipe.model, weights, meta, storage_dtype=torch.float16 if half else None)
    print(f"weights: {weights} ({weights.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


def _evaluate_curve_model(recipe, weights, val, out, device, cache, args) -> None:
    from lowlight_core.models import registry

    from .recipes import pick_validation

    saved = torch.load(weights, map_location="cpu", weights_only=True)
    model = registry.load_model(recipe.model, device=str(device), weights=weights)
    ev = eval_mod.evaluate(model, val, device=device)
    ev.update(real_eval.card_scores(recipe.model, weights, args.data, args.val_fraction))
    out.mkdir(parents=True, exist_ok=True)
    eval_mod.write_json(out / "eval.json", ev)
    fig = weights.with_suffix(".png")
    eval_mod.card_figure(model, pick_validation(val, 4, cache)[:4], fig, device=device)
    card = eval_mod.model_card(recipe.model, saved.get("meta", {}), ev, weights, fig.name)
    weights.with_suffix(".md").write_text(card)
    print(f"card: {weights.with_suffix('.md')}; mean |brightness - E| {ev['mean_abs_err']:.3f}", file=sys.stderr)


def _evaluate_image_model(recipe, weights, val, out, device, cache, args) -> None:
    """Scores on all synthetic validation pairs and the held-out real LOL images; the model card."""
    from lowlight_core.models import registry

    from . import image_eval

    saved = torch.load(weights, map_location="cpu", weights_only=True)
    model = registry.load_model(recipe.model, device=str(device), weights=weights)
    normals = data_mod.sice_normals(val, cache)
    ev = image_eval.evaluate(model, normals, device=device)
    ev.update(real_eval.card_scores(recipe.model, weights, args.data, args.val_fraction))
    out.mkdir(parents=True, exist_ok=True)
    eval_mod.write_json(out / "eval.json", ev)
    fig = weights.with_suffix(".png")
    image_eval.card_figure(model, real_eval.sheet_photos(args.data, args.val_fraction)[::2], fig, device=device)
    card = image_eval.model_card(recipe.model, saved.get("meta", {}), ev, weights, fig.name)
    weights.with_suffix(".md").write_text(card)
    print(f"card: {weights.with_suffix('.md')}; real pairs {ev['real_photos']['pairs']['psnr']:.2f} dB, "
          f"SSIM {ev['real_photos']['pairs']['ssim']:.3f}", file=sys.stderr)


def _ops_backend() -> str:
    from lowlight_core import ops

    return ops.backend()


if __name__ == "__main__":
    sys.exit(main())
