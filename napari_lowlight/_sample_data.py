"""The sample data contribution: the bundled dark photo (a darkened public-domain NASA portrait)."""
from __future__ import annotations

from importlib.resources import as_file, files

SAMPLE_NAME = "Dark photo (lowlight)"


def dark_photo():
    """napari LayerData: the 512 x 512 uint8 RGB dark sample (lowlight_core/data/sample_dark.png)."""
    from lowlight_core.io import read_image  # numpy + Pillow only, no torch

    with as_file(files("lowlight_core") / "data" / "sample_dark.png") as path:
        array, _ = read_image(path)
    return [(array, {"name": SAMPLE_NAME, "rgb": True}, "image")]
