"""The fixed validation split: which image files are held out. A SICE file goes with its scene
(training.sice_scenes: all exposures of a scene land on one side), any other file by its folder and name."""
from __future__ import annotations

import functools
from pathlib import Path

from . import sice_scenes
from .data import VALIDATION_FRACTION, in_validation_share


@functools.cache
def _scene_of(data_dir: Path) -> dict[str, str]:
    return sice_scenes.scene_of(data_dir)


def split_key(path: Path) -> str:
    """What the validation split hashes: the folder and file name, or for SICE the file's scene."""
    folder = path.parent.name
    if folder == sice_scenes.FOLDER:
        scene = _scene_of(path.parent.parent.resolve()).get(path.name)
        if scene:
            return f"{folder}/{scene}"
    return f"{folder}/{path.name}"


def is_validation(path: Path, fraction: float = VALIDATION_FRACTION) -> bool:
    return in_validation_share(split_key(path), fraction)


def split(paths, fraction: float = VALIDATION_FRACTION) -> tuple[list[Path], list[Path]]:
    """(train, validation) lists; the same files land in validation on every run."""
    train = [p for p in paths if not is_validation(p, fraction)]
    val = [p for p in paths if is_validation(p, fraction)]
    if not train:
        raise ValueError(f"no training images left after a {fraction:.0%} validation split of {len(paths)} files")
    return train, val
