"""A model that runs on the whole image (EnlightenGAN: ~310 bytes per pixel) is refused with a clear
MemoryError where the image would not fit in the available memory, before anything runs; tiled models are
bounded by their tiles and never refused."""
import numpy as np
import pytest

import lowlight_core
from lowlight_core import plan as plan_mod
from lowlight_core.models.enlightengan import EnlightenGANGenerator

IMAGE = (np.random.default_rng(0).random((300, 400, 3)) * 60).astype(np.uint8)  # 0.12 MP


def test_a_whole_image_model_is_refused_when_the_image_cannot_fit(monkeypatch):
    need = IMAGE.shape[0] * IMAGE.shape[1] * EnlightenGANGenerator.bytes_per_pixel
    monkeypatch.setattr(plan_mod, "available_memory", lambda: need // 2)
    with pytest.raises(MemoryError, match=r"'enlightengan' runs on the whole image.*0\.1 MP needs about.*GiB"):
        lowlight_core.enhance(IMAGE, model="enlightengan")
    # the same image fits with the memory it needs, and tiled models are bounded by their tiles
    monkeypatch.setattr(plan_mod, "available_memory", lambda: 2 * need)
    assert lowlight_core.enhance(IMAGE, model="enlightengan").shape == IMAGE.shape
    monkeypatch.setattr(plan_mod, "available_memory", lambda: 1)
    assert lowlight_core.enhance(IMAGE, model="zero_dce_pp").shape == IMAGE.shape


def test_available_memory_reads_the_system():
    free = plan_mod.available_memory()
    assert free is None or 0 < free < 2 ** 50
