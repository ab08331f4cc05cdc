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
import sys
from dataclasses import replace
from pathlib import Path

import torch

from . import data as data_mod
from . import distributed
from .split import split


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


def main(argv=None) -> int:
    from . import run as run_mod
    from .export import export_run, refuse_shipped
    from .recipes import CurveRecipe, get_recipe
    from .tasks.dln import DLNTask
    from .trainer import resolve_device

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    recipe = get_recipe(args.recipe, args.config, steps=args.steps, batch=args.batch, crop=args.crop,
                        lr=args.lr, seed=args.seed, val_every=args.val_every, ckpt_every=args.ckpt_every,
                        val_images=args.val_images, pairs=args.pairs, real_share=args.real_share)
    curve = isinstance(recipe, CurveRecipe)
    if (args.iterations and not curve) or (args.estimate_size is not None
                                           and "estimate_size" not in recipe.model_config):
        raise SystemExit(f"--iterations applies to the curve recipes, --estimate-size to zero_dce_pp and "
                         f"zero_dce_pp_paired, not to {args.recipe}")
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
        if recipe.task is not DLNTask or args.circle <= 0:
            raise SystemExit(f"--circle takes a positive weight and applies to the dln recipe, not {args.recipe}")
        recipe = replace(recipe, options={**recipe.options, "circle_weight": args.circle})
    if args.init is not None and not args.init.is_file():
        raise SystemExit(f"--init {args.init}: file not found")
    if args.vgg_weights is not None and not args.vgg_weights.is_file():
        raise SystemExit(f"--vgg-weights {args.vgg_weights}: file not found")
    out = args.out or Path("runs") / f"{args.recipe}-{args.config}"
    weights = args.weights or out / "weights" / f"{recipe.model}.pt"
    refuse_shipped(out, "--out")  # the run folder takes checkpoints, logs and eval.json
    refuse_shipped(weights, "--weights" if args.weights else "the weights file (RUN/weights/) of --out")
    if args.export and args.no_eval:
        raise SystemExit("--export needs the evaluation that writes the model card; drop --no-eval")
    cache = Path("runs") / "cache" / "mean_intensity.json"

    paths = data_mod.list_images(args.data)
    train, val = split(paths, args.val_fraction)
    if not val:
        raise SystemExit(f"no validation images among {len(paths)} files at --val-fraction {args.val_fraction}")
    world = distributed.init(args.device)  # under torchrun: this process's rank (training.distributed)
    device = resolve_device(args.device)
    if device.type == "cuda" and world.size > 1:
        device = torch.device("cuda", world.local_rank)
    run = run_mod.Run(recipe, name=args.recipe, config=args.config, out=out, weights=weights, data=args.data,
                      val_fraction=args.val_fraction, paths=paths, train=train, val=val, cache=cache, device=device,
                      workers=args.workers, resume=args.resume, init=args.init, vgg_weights=args.vgg_weights,
                      command="python -m training " + shlex.join(argv))
    try:
        if not args.eval_only:
            run_mod.train(run)
    finally:
        distributed.finish()
    if args.no_eval or not world.main:
        return 0
    run_mod.evaluate(run)
    if args.export:
        export_run(weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
