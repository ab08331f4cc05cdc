"""The plugin's function commands (napari_lowlight._function) in a real viewer: napari builds their widgets from
the signatures (autogenerate in napari.yaml), as the Plugins menu does; napari-workflows / napari-assistant call
the same plain function `enhance(image: ImageData, ...) -> ImageData`."""
from __future__ import annotations

import inspect

import dask.array as da
import numpy as np
import pytest
from napari.types import ImageData

from lowlight_core.inference import enhance as core_enhance
from napari_lowlight import PLUGIN_NAME, _function
from napari_support import dark_rgb
from napari_viewer_support import viewer  # noqa: F401 (fixtures)

GEOMETRY = dict(scale=(0.5, 2.0), translate=(10.0, -4.0), units=("um", "mm"), axis_labels=("row", "col"))


def _function_widget(viewer, display_name):  # noqa: F811
    _, gui = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, display_name)
    return gui


def test_signature_is_the_workflow_convention():
    hints = _function.enhance.__annotations__  # read as types (not strings) by napari-assistant / workflows
    assert hints["image"] is ImageData and hints["return"] is ImageData
    assert list(hints) == ["image", "model", "exposure", "auto_exposure", "iterations", "denoise", "auto_denoise",
                           "return"]
    defaults = inspect.signature(_function.enhance).parameters
    assert defaults["auto_exposure"].default is True and defaults["auto_denoise"].default is True  # auto/auto


def test_enhance_function_from_the_plugins_menu_keeps_scale_translate_units(viewer):  # noqa: F811
    data = dark_rgb(40, 56)
    viewer.add_image(data, name="dark", rgb=True, **GEOMETRY)
    gui = _function_widget(viewer, "Enhance (function)")
    gui.model.value, gui.auto_exposure.value, gui.exposure.value = "gamma", False, 0.7
    before = set(viewer.layers)
    gui()
    (out,) = set(viewer.layers) - before
    assert np.array_equal(out.data, core_enhance(data, "gamma", exposure=0.7))
    assert out.data.dtype == np.uint8 and out.rgb
    dark = viewer.layers["dark"]
    assert np.allclose(out.scale, dark.scale) and np.allclose(out.translate, dark.translate)
    assert tuple(out.units) == tuple(dark.units)


def test_enhance_layer_function_keeps_axis_labels_too(viewer):  # noqa: F811
    stack = np.stack([(np.random.default_rng(i).random((24, 30)) * 50).astype(np.uint8) for i in range(3)])
    geometry = dict(scale=(3.0, 0.5, 2.0), translate=(1.0, 10.0, -4.0), units=("s", "um", "mm"),
                    axis_labels=("t", "row", "col"))
    viewer.add_image(stack, name="movie", **geometry)
    gui = _function_widget(viewer, "Enhance layer (function)")
    gui.model.value = "zero_dce_pp"
    gui()
    out = viewer.layers["movie enhanced"]
    for i in range(3):
        assert np.array_equal(out.data[i], core_enhance(stack[i], "zero_dce_pp"))
    movie = viewer.layers["movie"]
    assert np.allclose(out.scale, movie.scale) and np.allclose(out.translate, movie.translate)
    assert tuple(out.units) == tuple(movie.units) and tuple(out.axis_labels) == geometry["axis_labels"]
    assert tuple(out.contrast_limits) == (0, 255)


def test_plain_call_on_a_dask_stack_reads_one_plane_at_a_time():
    planes = [dark_rgb(20, 24, seed=i) for i in range(5)]
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[None]["chunk-location"][0])
        return block

    lazy = da.from_array(np.stack(planes), chunks=(1, 20, 24, 3)).map_blocks(load, dtype=np.uint8)
    out = _function.enhance(lazy, model="zero_dce_pp", exposure=0.5, auto_exposure=False, iterations=4)
    assert isinstance(out, np.ndarray) and out.shape == (5, 20, 24, 3) and out.dtype == np.uint8
    assert sorted(reads) == list(range(5))  # each plane read once, on its own
    for i, p in enumerate(planes):
        assert np.array_equal(out[i], core_enhance(p, "zero_dce_pp", exposure=0.5, iterations=4))


@pytest.mark.parametrize("data, error, match", [
    (np.zeros((8, 8), np.int16), TypeError, "unsupported layer dtype int16"),
    (np.full((8, 8), 3.0, np.float32), ValueError, r"must be in \[0, 1\]"),
    (None, ValueError, "no image"),
])
def test_bad_input_is_a_clear_error(data, error, match):
    with pytest.raises(error, match=match):
        _function.enhance(data)
