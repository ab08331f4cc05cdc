import os

# OpenMP spin-waiting makes a loaded 2-core box crawl; see shared BUILD-NOTES.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]


@pytest.fixture(scope="session")
def native():
    """The native ops must be built: CPU tests never skip, they fail with the reason."""
    from lowlight_core import ops

    assert ops._C is not None, ops._native_error
    return torch.ops.lowlight


@pytest.fixture(scope="session")
def make_data_dir(tmp_path_factory):
    """make(layout, size) -> a tiny data folder laid out like ../shared/data, from real skimage photos.

    layout: {folder: {file stem: (photo, gain)}}, photo an index into (astronaut, chelsea, rocket, coffee),
    gain scales the pixel values (about 1: well exposed, below 0.3: dark); each photo is shrunk to `size` px.
    """
    import numpy as np
    import skimage.data as skd
    from PIL import Image

    photos = [skd.astronaut(), skd.chelsea(), skd.rocket(), skd.coffee()]

    def make(layout: dict, size: int = 64):
        root = tmp_path_factory.mktemp("data")
        for folder, items in layout.items():
            (root / folder).mkdir()
            for stem, (k, gain) in items.items():
                im = Image.fromarray(photos[k])
                im.thumbnail((size, size))
                a = (np.asarray(im, dtype=np.float32) * gain).clip(0, 255).astype(np.uint8)
                Image.fromarray(a).save(root / folder / f"{stem}.png")
        return root
    return make


@pytest.fixture(scope="session")
def dark_astronaut():
    """A real photo made dark (skimage's astronaut at 0.15 of its brightness), uint8 (H, W, 3)."""
    import numpy as np
    import skimage.data as skd

    return (skd.astronaut()[::2, ::2].astype(np.float32) * 0.15).round().astype(np.uint8)
