"""Replacing the shipped weights: the one explicit step that writes into lowlight_core/weights/.

Training writes only under its run folder (RUN/weights/<model>.pt and its card <model>.md and figure <model>.png);
`refuse_shipped` keeps every other write out of the installed package's weights folder, from any working directory.
`export_run(RUN)` (`lowlight export RUN`, or `lowlight train ... --export`) checks that the run's weights load
as the model they name and that the card is there, moves the shipped files it replaces to
lowlight_core/weights/backup/<UTC time>/, then copies the run's files in (each atomically).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from lowlight_core.models import registry

CARD_FILES = (".pt", ".md", ".png")  # the weights, the model card, the card's figure


def shipped_weights_dir() -> Path:
    """The weights folder of the lowlight_core that is imported (a checkout's or a pip install's), symlinks
    resolved: the one place the shipped weights live, whatever the working directory."""
    return Path(registry.WEIGHTS_DIR).resolve()


def refuse_shipped(path: str | os.PathLike, what: str) -> None:
    """SystemExit naming the problem when `path` (resolved: symlinks followed, relative to the working directory)
    is the shipped weights folder or inside it; `what` names the argument it came from."""
    shipped = shipped_weights_dir()
    resolved = Path(path).resolve()
    if resolved == shipped or shipped in resolved.parents:
        raise SystemExit(f"{what} {path} is in the shipped weights folder {shipped}, which only an export writes "
                         f"(--export or `lowlight export RUN`, keeping the old files); write into a run folder")


def run_weights(run: str | os.PathLike) -> Path:
    """The weights file of a run folder (RUN/weights/<model>.pt), or `run` itself when it is a .pt file."""
    run = Path(run)
    if run.is_file() and run.suffix == ".pt":
        return run
    found = sorted((run / "weights").glob("*.pt")) if run.is_dir() else []
    if len(found) != 1:
        where = f"{run}/weights/" if run.is_dir() else f"{run} (no such run folder)"
        raise ValueError(f"expected one weights file in {where}, found {len(found)}; pass the .pt file itself")
    return found[0]


def export_run(run: str | os.PathLike) -> Path:
    """Copy the run's weights, card and figure over the shipped ones; returns the new shipped weights path."""
    import torch

    src = run_weights(run)
    try:
        name = torch.load(src, map_location="cpu", weights_only=True)["model"]
        info = registry.get_model_info(name)
    except Exception as e:
        raise ValueError(f"{src} is not a lowlight weights file ({type(e).__name__}: {e})") from None
    registry.load_model(name, weights=src)  # refuses a file that does not fit the model, before anything moves
    missing = [s for s in CARD_FILES if not src.with_suffix(s).is_file()]
    if missing:
        raise ValueError(f"{src}: no {', '.join(missing)} beside it; the card comes from the evaluation "
                         f"(train without --no-eval, or with --eval-only --out RUN)")
    dest_dir = shipped_weights_dir()
    dest = dest_dir / info.weights
    if dest.resolve() == src.resolve():
        raise ValueError(f"{src} already is the shipped weights file")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    backup, n = dest_dir / "backup" / stamp, 1
    while backup.exists():  # two exports in one second must not overwrite the first one's backup
        backup, n = dest_dir / "backup" / f"{stamp}-{n}", n + 1
    for suffix in CARD_FILES:
        old = dest.with_suffix(suffix)
        if old.is_file():
            backup.mkdir(parents=True, exist_ok=True)
            shutil.copy2(old, backup / old.name)
    for suffix in CARD_FILES:
        target = dest.with_suffix(suffix)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copyfile(src.with_suffix(suffix), tmp)
        os.replace(tmp, target)
    print(f"exported {src} -> {dest}" + (f" (previous files kept in {backup})" if backup.is_dir() else ""),
          file=sys.stderr)
    return dest
