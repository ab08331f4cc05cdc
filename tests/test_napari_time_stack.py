"""The napari widget on time stacks (a real viewer via make_napari_viewer, the shipped weights): Apply along the
time axis is lowlight_core.sequence's result, the live preview of a frame equals that frame of Apply, z stacks
stay per plane, the axis comes from napari's labels or the widget's combo."""
from __future__ import annotations

import numpy as np
import pytest

from _clips import dark_clip
from lowlight_core import enhance
from lowlight_core.controls import DEFAULT_MODEL
from lowlight_core.sequence import enhance_sequence
from napari_lowlight._sequence import time_axis
from napari_viewer_support import make_widget, output, settle, viewer  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def clip():
    frames, _ = dark_clip(frames=12, size=(48, 64), cut=7)
    return frames


def test_time_axis_comes_from_the_labels():
    assert time_axis(("t", "y", "x"), (5, 8, 8), rgb=False) == 0
    assert time_axis(("z", "Time", "y", "x", "c"), (3, 5, 8, 8, 3), rgb=True) == 1
    assert time_axis(("z", "y", "x"), (5, 8, 8), rgb=False) is None
    assert time_axis(("-3", "-2", "-1"), (5, 8, 8), rgb=False) is None
    assert time_axis(("t", "y", "x"), (8, 8, 3), rgb=True) is None  # a single RGB image: no stack axis


def test_apply_along_time_is_the_sequence_result_and_the_preview_matches(viewer, make_widget, qtbot, clip):
    viewer.add_image(clip, name="night", rgb=True, axis_labels=("t", "y", "x"))
    widget = make_widget()
    widget.model_combo.setCurrentIndex(widget.model_combo.findData(DEFAULT_MODEL))
    widget.denoise_auto.setChecked(True)
    assert widget.time_combo.currentData() == 0  # picked from the label
    settle(qtbot, widget)
    expected = enhance_sequence(clip, denoise="auto", device="cpu")
    per_frame = np.stack([enhance(f, denoise="auto", device="cpu") for f in clip])
    assert not np.array_equal(expected, per_frame)  # the time path differs from plane by plane
    viewer.dims.set_current_step(0, 5)
    settle(qtbot, widget)
    np.testing.assert_array_equal(output(viewer, "night").data[5], expected[5])  # the live preview
    widget.apply_button.click()
    settle(qtbot, widget)
    np.testing.assert_array_equal(output(viewer, "night").data, expected)


def test_a_z_stack_stays_per_plane_and_the_combo_picks_time(viewer, make_widget, qtbot, clip):
    gray = clip.mean(3).astype(np.uint8)
    stack = np.stack([gray, gray[::-1]], axis=1)  # (t, z, y, x) labelled z first: time is not named
    viewer.add_image(stack, name="zt", axis_labels=("a", "z", "y", "x"))
    widget = make_widget()
    widget.model_combo.setCurrentIndex(widget.model_combo.findData(DEFAULT_MODEL))
    widget.live.setChecked(False)
    assert widget.time_combo.currentData() is None  # nothing labelled time: every plane alone
    widget.apply_button.click()
    settle(qtbot, widget)
    out = output(viewer, "zt").data
    np.testing.assert_array_equal(out[3, 1], enhance(stack[3, 1], device="cpu"))
    widget.time_combo.setCurrentIndex(widget.time_combo.findData(0))  # the user says axis 0 is time
    widget.apply_button.click()
    settle(qtbot, widget)
    out = output(viewer, "zt").data
    for z in range(2):
        np.testing.assert_array_equal(out[:, z], enhance_sequence(stack[:, z], device="cpu"))
