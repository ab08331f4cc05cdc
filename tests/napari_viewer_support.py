"""The napari viewer tests' shared fixtures and helpers: a real viewer with this checkout's plugin registered,
the dock widget, waiting for it to settle."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import npe2
import pytest

import napari_lowlight
from napari_lowlight import PLUGIN_NAME, WIDGET_NAME

MANIFEST = Path(napari_lowlight.__file__).parent / "napari.yaml"
TIMEOUT_MS = 60_000


def plugin_installed() -> bool:
    return any(ep.value == "napari_lowlight:napari.yaml"
               for ep in importlib.metadata.entry_points(group="napari.manifest"))


@pytest.fixture
def viewer(make_napari_viewer):
    v = make_napari_viewer()
    pm = npe2.PluginManager.instance()
    if PLUGIN_NAME not in pm:  # not pip-installed: register this checkout's manifest
        assert not plugin_installed()
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    return v


@pytest.fixture
def make_widget(viewer, qtbot):
    made = []

    def make():
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
        made.append(widget)
        settle(qtbot, widget)
        return widget

    yield make
    for widget in made:  # no worker may outlive the viewer
        settle(qtbot, widget)


def settle(qtbot, widget):
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)


def output(viewer, name):
    return viewer.layers[name + " enhanced"]


def pick_model(qtbot, widget, name):
    widget.model_combo.setCurrentIndex(widget.model_combo.findData(name))
    settle(qtbot, widget)
