"""Issue 26 item 8: the widget writes only into the output layers it made itself. napari's Duplicate Layer
copies a layer's metadata, so a mark kept there made a user's renamed duplicate of the output look like the
output: once it came first in the list, or the original was deleted, the next slider move overwrote it.
In a real viewer (make_napari_viewer, under pytest-xvfb), with napari's own Duplicate Layer command."""
from __future__ import annotations

import npe2
import numpy as np
import pytest
from napari._app_model import get_app_model

import napari_lowlight
from lowlight_core.inference import enhance
from napari_lowlight import PLUGIN_NAME, WIDGET_NAME

TIMEOUT_MS = 60_000


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    pm = npe2.PluginManager.instance()
    if PLUGIN_NAME not in pm:  # not pip-installed: register this checkout's manifest
        pm.register(npe2.PluginManifest.from_file(napari_lowlight.__path__[0] + "/napari.yaml"))
    image = (np.random.default_rng(4).random((40, 52, 3)) * 60).astype(np.uint8)
    viewer.layers.selection.active = viewer.add_image(image, name="img")
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    w.model_combo.setCurrentIndex(w.model_combo.findData("gamma"))
    w.exposure_auto.setChecked(False)  # the exposure slider is what these tests move
    qtbot.waitUntil(w.is_idle, timeout=TIMEOUT_MS)
    yield viewer, w, image
    qtbot.waitUntil(w.is_idle, timeout=TIMEOUT_MS)  # no worker may outlive the viewer


def move_exposure(qtbot, w, value):
    w.exposure.setValue(value)
    qtbot.waitUntil(w.is_idle, timeout=TIMEOUT_MS)


def test_a_renamed_duplicate_of_the_output_is_never_overwritten(widget, qtbot):
    viewer, w, image = widget
    out = viewer.layers["img enhanced"]
    viewer.layers.selection = {out}
    get_app_model().commands.execute_command("napari.layer.duplicate")  # Duplicate Layer, as from the menu
    dup = viewer.layers["img enhanced copy"]
    assert dup.unique_id != out.unique_id and dup.metadata == out.metadata  # napari copies the metadata
    dup.name = "my favourite"
    kept = dup.data.copy()

    viewer.layers.move(viewer.layers.index(dup), viewer.layers.index(out))  # the copy now comes first
    move_exposure(qtbot, w, 0.8)
    np.testing.assert_array_equal(dup.data, kept)
    assert np.abs(out.data.astype(int) - enhance(image, "gamma", exposure=0.8, device="cpu")).max() <= 1

    viewer.layers.remove(out)  # the original output gone: a new one is made, the copy stays the user's
    move_exposure(qtbot, w, 0.5)
    np.testing.assert_array_equal(dup.data, kept)
    new = viewer.layers["img enhanced"]
    assert new is not dup and [layer.name for layer in viewer.layers] == ["img", "my favourite", "img enhanced"]
    assert np.abs(new.data.astype(int) - enhance(image, "gamma", exposure=0.5, device="cpu")).max() <= 1
