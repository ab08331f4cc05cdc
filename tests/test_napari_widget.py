"""The napari plugin in a real viewer (pytest-qt + napari's make_napari_viewer, under pytest-xvfb).

The widget's Qt-free work (napari_lowlight._compute) is tested in test_napari_compute.py.

The plugin is the installed one when the project is pip-installed (napari.manifest entry point); otherwise
the manifest file in this checkout is registered with npe2's plugin manager, so both setups run the same
tests. Curve-model tests use real weights files written with registry.save_weights into a temporary
weights directory: a Zero-DCE++ tuned for a few steps so that its curve maps grow with E (a random network
has no reason to brighten with E), and a randomly initialised Zero-DCE.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import npe2
import pytest
import torch
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import Qt

import napari_lowlight
from lowlight_core.controls import DEFAULT_MODEL
from lowlight_core.inference import enhance
from lowlight_core.models import registry
from lowlight_core.plan import Plan
from napari_lowlight import PLUGIN_NAME, WIDGET_NAME, _compute
from napari_lowlight._sample_data import SAMPLE_NAME
from napari_support import (SMALL_CONFIGS, as_float, dark_rgb, empty_weights_dir, heavy_weights,  # noqa: F401
                            noisy_dark_rgb, weights_dir)
from napari_viewer_support import (MANIFEST, TIMEOUT_MS, make_widget, output, pick_model,  # noqa: F401
                                   plugin_installed, settle, viewer)

pytestmark = pytest.mark.usefixtures("empty_weights_dir")  # tests choose their weights


@pytest.fixture
def notes():
    """The notifications dispatched during the test: notes() -> list of (severity, message)."""
    start = len(notification_manager.records)
    return lambda: [(n.severity, str(n.message)) for n in notification_manager.records[start:]]


def sweep(qtbot, widget, viewer, slider, values, expected) -> list:
    """Moves a slider through values; each output of the layer "img" must be expected(value) within one
    level. Returns the output's mean at each value."""
    means = []
    for value in values:
        slider.setValue(value)
        settle(qtbot, widget)
        out = output(viewer, "img").data
        means.append(out.mean())
        assert np.abs(out.astype(int) - expected(value)).max() <= 1, value
    return means


def gamma_on_rgb_stack_without_preview(viewer, make_widget, qtbot, stack):
    """A widget on the RGB layer "rgbstack" holding stack, gamma picked, the live preview off."""
    viewer.add_image(stack, name="rgbstack", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    widget.live.setChecked(False)
    return widget


# ---------------------------------------------------------------- manifest, imports, sample data


def test_manifest_validates_with_npe2():
    # the distribution name once pip-installed (the entry point is then real), else the manifest file
    target = "napari-lowlight" if plugin_installed() else str(MANIFEST)
    run = subprocess.run([sys.executable, "-m", "npe2", "validate", "--imports", target],
                         capture_output=True, text=True, cwd=Path(napari_lowlight.__file__).parent.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == PLUGIN_NAME == "napari-lowlight"  # npe2 requires the distribution's name
    assert [w.display_name for w in manifest.contributions.widgets] == [WIDGET_NAME, "Enhance (function)",
                                                                      "Enhance layer (function)"]
    assert [s.display_name for s in manifest.contributions.sample_data] == [SAMPLE_NAME]


def test_importing_the_plugin_and_its_sample_does_not_import_torch():
    code = ("import sys, napari_lowlight, napari_lowlight._sample_data as s; layers = s.dark_photo(); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(layers[0][0].shape)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(napari_lowlight.__file__).parent.parent)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(512, 512, 3)"


def test_sample_data_opens_in_napari(viewer):
    layers = viewer.open_sample(PLUGIN_NAME, "dark_photo")
    assert [layer.name for layer in layers] == [SAMPLE_NAME]
    data = layers[0].data
    assert layers[0].rgb and data.dtype == np.uint8 and data.shape == (512, 512, 3)
    assert data.mean() < 0.2 * 255  # it is a dark photo


# ---------------------------------------------------------------- the widget


def test_widget_opens_from_the_manifest_and_enhances_the_sample(viewer, make_widget):
    viewer.open_sample(PLUGIN_NAME, "dark_photo")
    viewer.layers[SAMPLE_NAME].scale = (2.0, 3.0)
    viewer.layers[SAMPLE_NAME].translate = (5.0, -7.0)
    widget = make_widget()
    assert widget.layer_combo.currentText() == SAMPLE_NAME
    out = output(viewer, SAMPLE_NAME)
    src = viewer.layers[SAMPLE_NAME]
    assert out.data.shape == src.data.shape and out.data.dtype == np.uint8 and out.rgb
    assert np.array_equal(out.scale, src.scale) and np.array_equal(out.translate, src.translate)
    assert out.data.mean() > src.data.mean() + 40  # gamma (no trained weights here) to E = 0.6
    assert [layer.name for layer in viewer.layers].count(SAMPLE_NAME + " enhanced") == 1


def test_model_list_marks_missing_weights_and_greys_out_controls(viewer, make_widget, weights_dir, qtbot):
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()
    names = [widget.model_combo.itemData(i) for i in range(widget.model_combo.count())]
    assert names == [m.name for m in registry.list_models()]
    for i, name in enumerate(names):
        marked = widget.model_combo.itemText(i).endswith("(no weights)")
        assert marked == (not registry.has_weights(name)), name
        tooltip = widget.model_combo.itemData(i, Qt.ItemDataRole.ToolTipRole)
        assert tooltip == registry.get_model_info(name).description
    assert widget.model_combo.itemText(names.index("dln")) == "dln (no weights)"
    assert widget.model_combo.currentData() == DEFAULT_MODEL  # trained weights exist here
    expected = {"zero_dce_pp": True, "gamma": False, "clahe": False, "dln": False}  # iterations enabled
    assert widget.exposure_auto.isChecked() and widget.denoise_auto.isChecked()  # the defaults are auto
    for auto in (True, False):  # exposure applies to every model: its slider is greyed out by its auto box only
        widget.exposure_auto.setChecked(auto)
        for name, iterations in expected.items():
            pick_model(qtbot, widget, name)
            assert (widget.iterations.isEnabled(), widget.exposure.isEnabled()) == (iterations, not auto), name
            assert widget.exposure_auto.isEnabled() and not widget.denoise.isEnabled()  # denoise: auto
            assert widget.description.text() == registry.get_model_info(name).description
    devices = [widget.device_combo.itemText(i) for i in range(widget.device_combo.count())]
    assert devices == ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_exposure_slider_brightens_with_gamma(viewer, make_widget, qtbot):
    image = dark_rgb()
    viewer.add_image(image, name="img")
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    widget.exposure_auto.setChecked(False)  # the slider, not auto (the default)
    means = sweep(qtbot, widget, viewer, widget.exposure, (0.4, 0.6, 0.8),
                  lambda e: enhance(image, "gamma", exposure=e, device="cpu"))
    assert means[0] + 10 < means[1] < means[2] - 10, means


def test_curve_model_sliders_iterations_reuse_cached_alpha(viewer, make_widget, weights_dir, qtbot):
    image = dark_rgb(seed=3)
    viewer.add_image(image, name="img")
    widget = make_widget()
    assert widget.model_combo.currentData() == DEFAULT_MODEL  # a curve model

    def expected(iterations, e, image=image):  # E is the target brightness: enhance calibrates the E input
        return enhance(image, DEFAULT_MODEL, exposure=e, iterations=iterations, denoise=0, device="cpu")

    widget.exposure_auto.setChecked(False)  # E from the slider, denoise off
    widget.denoise_auto.setChecked(False)
    widget.denoise.setValue(0)
    widget.exposure.setValue(0.8)
    settle(qtbot, widget)
    estimates = widget.enhancer.alpha_estimates
    means = sweep(qtbot, widget, viewer, widget.iterations, (2, 5, 12), lambda n: expected(n, 0.8))
    assert widget.enhancer.alpha_estimates == estimates  # iterations only re-ran the curve
    assert means[0] < means[1] < means[2], means

    # exposures none of them computed before
    means = sweep(qtbot, widget, viewer, widget.exposure, (0.4, 0.7, 0.9), lambda e: expected(12, e))
    assert widget.enhancer.alpha_estimates == estimates + 3
    assert means[0] < means[1] < means[2], means

    new_image = dark_rgb(seed=4)  # new layer data: the cached input and maps are stale
    viewer.layers["img"].data = new_image
    settle(qtbot, widget)
    assert widget.enhancer.alpha_estimates == estimates + 4
    assert np.abs(output(viewer, "img").data - expected(12, 0.9, new_image)).max() <= 1


def test_switching_models_updates_the_one_output_layer(viewer, make_widget, weights_dir, qtbot):
    image = dark_rgb(seed=5)
    viewer.add_image(image, name="img")
    widget = make_widget()
    shown = []
    widget.result_shown.connect(lambda name, settings, elapsed: shown.append(settings.model))
    results = {}
    for name in ("gamma", "clahe", "zero_dce", "zero_dce_pp"):
        pick_model(qtbot, widget, name)
        results[name] = output(viewer, "img").data.copy()
        expected = enhance(image, name, device="cpu")
        assert np.abs(results[name].astype(int) - expected).max() <= 1, name
    assert shown == ["gamma", "clahe", "zero_dce", "zero_dce_pp"]
    assert len({r.tobytes() for r in results.values()}) == 4
    assert [layer.name for layer in viewer.layers] == ["img", "img enhanced"]


@pytest.mark.parametrize("kind", ["rgba_uint8", "gray_uint16", "gray_float32", "rgb_float64"])
def test_layer_kinds_keep_dtype_shape_and_alpha(viewer, make_widget, qtbot, kind):
    rng = np.random.default_rng(7)
    image = {
        "rgba_uint8": np.concatenate([dark_rgb(seed=7), rng.integers(0, 256, (48, 64, 1), dtype=np.uint8)], 2),
        "gray_uint16": (rng.random((40, 56)) * 9000).astype(np.uint16),
        "gray_float32": (rng.random((40, 56)) * 0.15).astype(np.float32),
        "rgb_float64": rng.random((30, 20, 3)) * 0.2,
    }[kind]
    viewer.add_image(image, name=kind, rgb=kind.startswith("rgb"))
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    out = output(viewer, kind)
    assert out.data.dtype == image.dtype and out.data.shape == image.shape and out.rgb == (image.ndim == 3)
    if kind == "rgba_uint8":
        assert np.array_equal(out.data[..., 3], image[..., 3])
    assert as_float(out.data[..., :3] if out.rgb else out.data).mean() > as_float(image).mean() + 0.2
    expected = enhance(image, "gamma", device="cpu")
    assert np.abs(out.data.astype(np.float64) - expected).max() <= (1 if image.dtype.kind == "u" else 1e-5)


def test_stack_previews_the_current_plane_and_applies_to_all(viewer, make_widget, qtbot):
    stack = np.stack([(np.random.default_rng(i).random((32, 40)) * (20 + 30 * i)).astype(np.uint8)
                      for i in range(4)])
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 1)
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    out = output(viewer, "stack")
    assert out.data.shape == stack.shape

    def enhanced(i):
        return enhance(stack[i], "gamma", device="cpu")

    assert np.abs(out.data[1].astype(int) - enhanced(1)).max() <= 1
    assert not out.data[[0, 2, 3]].any()  # live preview works on the plane on screen only
    viewer.dims.set_current_step(0, 3)
    settle(qtbot, widget)
    assert np.abs(out.data[3].astype(int) - enhanced(3)).max() <= 1

    progress = []
    widget.progress.valueChanged.connect(progress.append)
    widget.apply_button.click()
    assert widget.apply_button.text() == "Cancel" and not widget._form.isEnabled()
    settle(qtbot, widget)
    assert progress[-1] == 4 and widget.progress.maximum() == 4
    assert widget.apply_button.text() == "Apply" and widget._form.isEnabled()
    out = output(viewer, "stack")
    for i in range(4):
        assert np.abs(out.data[i].astype(int) - enhanced(i)).max() <= 1, i


def test_rgb_stack_apply_without_live_preview(viewer, make_widget, qtbot):
    stack = np.stack([dark_rgb(24, 28, seed=i) for i in range(3)])
    widget = gamma_on_rgb_stack_without_preview(viewer, make_widget, qtbot, stack)
    widget.exposure_auto.setChecked(False)
    widget.exposure.setValue(0.8)
    settle(qtbot, widget)
    before = output(viewer, "rgbstack").data.copy()
    widget.apply_button.click()
    settle(qtbot, widget)
    out = output(viewer, "rgbstack").data
    assert not np.array_equal(out, before)
    for i in range(3):
        assert np.abs(out[i].astype(int) - enhance(stack[i], "gamma", exposure=0.8, device="cpu")).max() <= 1


# ---------------------------------------------------------------- errors never break the viewer


def test_model_without_weights_warns_and_leaves_output(viewer, make_widget, qtbot, notes):
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()
    before = output(viewer, "img").data.copy()
    assert not registry.has_weights("zero_dce")
    pick_model(qtbot, widget, "zero_dce")
    warnings = [m for s, m in notes() if s == NotificationSeverity.WARNING]
    assert len(warnings) == 1 and "zero_dce has no trained weights" in warnings[0]
    assert "lowlight train zero_dce" in warnings[0]
    widget.apply_button.click()
    settle(qtbot, widget)
    assert len([1 for s, _ in notes() if s == NotificationSeverity.WARNING]) == 2
    assert np.array_equal(output(viewer, "img").data, before)
    pick_model(qtbot, widget, "clahe")  # still usable
    assert not np.array_equal(output(viewer, "img").data, before)


def test_corrupt_weights_file_is_an_error_notification(viewer, make_widget, weights_dir, qtbot, notes):
    (weights_dir / f"{DEFAULT_MODEL}.pt").write_bytes(b"not a torch file")
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()  # starts on the default model: the file exists, loading it fails in the worker
    errors = [m for s, m in notes() if s == NotificationSeverity.ERROR]
    assert len(errors) == 1 and "could not read weights file" in errors[0] and DEFAULT_MODEL in errors[0]
    assert "img enhanced" not in viewer.layers
    pick_model(qtbot, widget, "gamma")  # the widget and the viewer carry on
    assert output(viewer, "img").data.mean() > 60
    viewer.add_image(dark_rgb(seed=9), name="other")
    widget.layer_combo.setCurrentText("other")
    settle(qtbot, widget)
    assert "other enhanced" in viewer.layers


@pytest.mark.parametrize("data, message", [
    (np.full((20, 30), 5, np.int32), "unsupported layer dtype int32"),
    (np.full((20, 30), 7.0, np.float32), "float image values must be in [0, 1]"),
])
def test_bad_layers_are_error_notifications(viewer, make_widget, qtbot, notes, data, message):
    viewer.add_image(data, name="bad")
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    errors = [m for s, m in notes() if s == NotificationSeverity.ERROR]
    assert errors and all(message in m for m in errors), errors
    assert "bad enhanced" not in viewer.layers
    viewer.add_image(dark_rgb(), name="good")
    widget.layer_combo.setCurrentText("good")
    settle(qtbot, widget)
    assert "good enhanced" in viewer.layers


def test_exception_inside_the_worker_is_a_notification(viewer, make_widget, qtbot, notes, monkeypatch):
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()

    def broken(*args, **kwargs):
        raise MemoryError("simulated allocation failure")

    monkeypatch.setattr(_compute.Enhancer, "enhance_plane", broken)
    widget.exposure_auto.setChecked(False)
    widget.exposure.setValue(0.7)
    settle(qtbot, widget)
    errors = [m for s, m in notes() if s == NotificationSeverity.ERROR]
    assert len(errors) == 1 and "out of memory" in errors[0] and "simulated allocation failure" in errors[0]
    monkeypatch.undo()
    widget.exposure.setValue(0.8)
    settle(qtbot, widget)
    assert "E = 0.80" in widget.status.text()


def test_closing_the_dock_widget_stops_it(viewer, make_widget, qtbot):
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()
    widget.exposure.setValue(0.8)  # a request in flight while napari removes the widget
    viewer.window.remove_dock_widget(widget)
    assert widget.closed
    settle(qtbot, widget)
    assert "E = 0.80" not in widget.status.text()  # its result was dropped
    viewer.add_image(dark_rgb(seed=2), name="later")
    viewer.layers.remove("img")
    assert widget.is_idle() and "later enhanced" not in viewer.layers
    again = make_widget()  # a new one works
    assert again is not widget and "later enhanced" in viewer.layers


# ---------------------------------------------------------------- stale results

def test_stale_results_are_dropped(viewer, make_widget, qtbot, monkeypatch):
    viewer.add_image(dark_rgb(), name="img")
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    widget.exposure_auto.setChecked(False)
    settle(qtbot, widget)
    entered, release = threading.Event(), threading.Event()
    calls = []
    real = _compute.preview_job

    def held_first(*args):
        calls.append(args[4].exposure)
        if len(calls) == 1:  # hold the first request until a newer one is waiting
            entered.set()
            assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(_compute, "preview_job", held_first)
    shown = []
    widget.result_shown.connect(lambda name, settings, elapsed: shown.append(settings.exposure))
    widget.exposure.setValue(0.4)
    qtbot.waitUntil(entered.is_set, timeout=TIMEOUT_MS)
    widget.exposure.setValue(0.5)
    widget.exposure.setValue(0.85)  # coalesced with 0.5: one pending request
    qtbot.waitUntil(lambda: widget._pending, timeout=TIMEOUT_MS)  # the debounce timer fired, worker busy
    release.set()
    settle(qtbot, widget)
    assert calls == [0.4, 0.85]
    assert widget.dropped_results == 1 and shown == [0.85]
    assert np.abs(output(viewer, "img").data.astype(int)
                  - enhance(viewer.layers["img"].data, "gamma", exposure=0.85, device="cpu")).max() <= 1


def test_a_users_layer_named_like_the_output_is_never_written(viewer, make_widget, qtbot):
    """Issue 13 item 7: the widget wrote into any layer named "<input> enhanced", changing the user's array;
    it now writes only into a layer it made (marked in the layer's metadata)."""
    from napari_lowlight._widget import OUTPUT_MARK

    image = dark_rgb(seed=3)
    users = np.full((20, 24), 7, np.uint16)  # gray: a different kind, which used to be removed and replaced
    src = viewer.add_image(image, name="img")
    viewer.add_image(users, name="img enhanced")
    viewer.layers.selection.active = src
    widget = make_widget()
    pick_model(qtbot, widget, "gamma")
    assert widget.layer_combo.currentText() == "img"
    mine = viewer.layers["img enhanced"]
    assert mine.data is users and (users == 7).all() and OUTPUT_MARK not in mine.metadata
    ours = [layer for layer in viewer.layers if OUTPUT_MARK in layer.metadata]
    assert [layer.name for layer in ours] == ["img enhanced [1]"]
    assert np.abs(ours[0].data.astype(int) - enhance(image, "gamma", device="cpu")).max() <= 1
    ours[0].name = "renamed by the user"  # still ours: the next result goes there, not to a new layer
    widget.exposure_auto.setChecked(False)
    widget.exposure.setValue(0.8)
    settle(qtbot, widget)
    assert len([layer for layer in viewer.layers if OUTPUT_MARK in layer.metadata]) == 1
    assert np.abs(ours[0].data.astype(int) - enhance(image, "gamma", exposure=0.8, device="cpu")).max() <= 1
    assert (users == 7).all() and len(viewer.layers) == 3


# ---------------------------------------------------------------- heavy models: reduced preview, full-res Apply


def pixel_edges(layer, shape):
    """World coordinates of the outer corners of a layer's (H, W) plane: the corners its pixels cover."""
    return np.array([layer.data_to_world([-0.5, -0.5]), layer.data_to_world([shape[0] - 0.5, shape[1] - 0.5])])


@pytest.mark.parametrize("model", list(SMALL_CONFIGS))
def test_heavy_model_previews_at_canvas_resolution_over_the_layers_extent(viewer, make_widget, heavy_weights,
                                                                         qtbot, model):
    image = dark_rgb(1500, 2000, seed=11)
    src = viewer.add_image(image, name="big", rgb=True, scale=(2.0, 3.0), translate=(5.0, -7.0))
    widget = make_widget()
    canvas = widget.canvas_shape()
    assert canvas is not None and canvas[0] < 1500 and canvas[1] < 2000, canvas  # the real Xvfb canvas
    widget.preview_seconds = None  # no time budget: the plane fit into the canvas
    pick_model(qtbot, widget, model)
    out = output(viewer, "big")
    shape = _compute.preview_shape(1500, 2000, canvas)
    assert max(shape[0] / canvas[0], shape[1] / canvas[1]) == pytest.approx(1, abs=0.01)  # fills the canvas
    assert out.data.shape == shape + (3,) and out.data.dtype == np.uint8
    np.testing.assert_allclose(pixel_edges(out, shape), pixel_edges(src, image.shape), atol=1e-6)
    # each preview pixel's centre lies at the centre of the block of layer pixels it stands for
    np.testing.assert_allclose(out.data_to_world([0, 0]), src.data_to_world([(1500 / shape[0] - 1) / 2,
                                                                            (2000 / shape[1] - 1) / 2]))
    expected = enhance(_compute.downscale_plane(image, True, shape), model, device="cpu")
    assert np.abs(out.data.astype(int) - expected).max() <= 1
    assert f"preview {shape[0]}×{shape[1]} of 1500×2000" in widget.status.text()


def test_heavy_preview_keeps_to_its_time_budget(viewer, make_widget, heavy_weights, qtbot):
    viewer.add_image(dark_rgb(1500, 2000, seed=12), name="big", rgb=True)
    widget = make_widget()
    widget.preview_seconds = 1e-6  # the probe takes longer: no second run
    pick_model(qtbot, widget, "dln")  # first preview: a PROBE_SIDE probe that measures the model's cost
    out = output(viewer, "big")
    assert max(out.data.shape[:2]) == _compute.PROBE_SIDE
    rate = widget.enhancer.seconds_per_pixel[("dln", "cpu", None)]
    widget.preview_seconds = 200 * 300 * rate  # what the measured cost allows for about 60,000 pixels
    widget.iterations.setValue(3)  # any control change re-runs the preview
    settle(qtbot, widget)
    h, w = out.data.shape[:2]
    budget = 2 ** (np.floor(2 * np.log2(200 * 300)) / 2)  # the budget rounded down to a power of sqrt(2)
    assert 0.98 * budget <= h * w <= 1.02 * budget and budget > 200 * 300 / 2 ** 0.5 and abs(h / w - 0.75) < 0.01


def test_apply_enhances_a_heavy_model_at_full_resolution_with_progress(viewer, make_widget, heavy_weights, qtbot,
                                                                      notes):
    image = dark_rgb(1100, 1300, seed=13)
    src = viewer.add_image(image, name="big", rgb=True, scale=(0.5, 0.5), translate=(1.0, 2.0))
    widget = make_widget()
    pick_model(qtbot, widget, "dln")
    out = output(viewer, "big")
    assert out.data.shape[:2] != image.shape[:2]  # the preview is reduced
    steps, bars = [], []
    widget.progress.valueChanged.connect(lambda v: (steps.append(v), bars.append(widget._apply_bar)))
    widget.apply_button.click()
    assert widget.apply_button.text() == "Cancel" and not widget._form.isEnabled()
    settle(qtbot, widget)
    assert widget.apply_button.text() == "Apply" and widget._form.isEnabled()
    tiles = 3 * 3  # lowlight_core.enhance's 512-pixel tiles of a 1100 x 1300 plane
    assert widget.progress.maximum() == tiles and steps == list(range(1, tiles + 1))
    # napari's progress bar (activity dock) ran while the steps came in, and is closed at the end
    assert all(b is not None for b in bars[:-1]) and widget._apply_bar is None
    out = output(viewer, "big")
    assert out.data.shape == image.shape
    assert np.array_equal(out.scale, src.scale) and np.array_equal(out.translate, src.translate)
    assert np.abs(out.data.astype(int) - enhance(image, "dln", device="cpu")).max() <= 1
    infos = [m for s, m in notes() if s == NotificationSeverity.INFO]
    assert infos and "at full resolution" in infos[-1]


def test_heavy_model_errors_keep_the_viewer_alive(viewer, make_widget, heavy_weights, qtbot, notes, monkeypatch):
    image = dark_rgb(900, 1200, seed=14)
    viewer.add_image(image, name="big", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "iqe_dcgan")
    preview = output(viewer, "big").data.copy()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the network")

    monkeypatch.setattr(Plan, "run_window", broken)  # every window of a network, in Apply and in previews
    widget.apply_button.click()
    settle(qtbot, widget)
    errors = [m for s, m in notes() if s == NotificationSeverity.ERROR]
    assert len(errors) == 1 and "simulated failure in the network" in errors[0] and "iqe_dcgan" in errors[0]
    assert np.array_equal(output(viewer, "big").data, preview)  # the preview stays
    assert widget.apply_button.text() == "Apply" and widget._form.isEnabled() and widget._apply_bar is None
    pick_model(qtbot, widget, "enlightengan")  # the preview fails too, as a notification
    assert len([1 for s, _ in notes() if s == NotificationSeverity.ERROR]) == 2
    monkeypatch.undo()
    pick_model(qtbot, widget, "dln")  # and works again
    assert "dln" in widget.status.text() and output(viewer, "big").data.shape[:2] != image.shape[:2]
    widget.apply_button.click()
    settle(qtbot, widget)
    assert output(viewer, "big").data.shape == image.shape


def test_a_preview_in_flight_when_apply_starts_is_dropped(viewer, make_widget, heavy_weights, qtbot, monkeypatch):
    image = dark_rgb(700, 800, seed=15)
    viewer.add_image(image, name="big", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "dln")
    entered, release = threading.Event(), threading.Event()
    real = _compute.preview_job

    def held(*args):
        entered.set()
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(_compute, "preview_job", held)
    dropped = widget.dropped_results
    widget.iterations.setValue(4)
    qtbot.waitUntil(entered.is_set, timeout=TIMEOUT_MS)
    widget.apply_button.click()  # the preview's result would replace the full-resolution one
    release.set()
    settle(qtbot, widget)
    assert widget.dropped_results == dropped + 1 and output(viewer, "big").data.shape == image.shape


def test_stack_apply_of_a_heavy_model_survives_moving_through_the_planes(viewer, make_widget, heavy_weights, qtbot):
    stack = np.stack([dark_rgb(600, 700, seed=20 + i) for i in range(2)])
    viewer.add_image(stack, name="stack", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "enlightengan")
    widget.apply_button.click()
    settle(qtbot, widget)
    assert widget.progress.maximum() == 2  # EnlightenGAN runs whole (receptive_radius 0): one step per plane
    viewer.dims.set_current_step(0, 1)  # moving to another plane keeps the full-resolution result
    settle(qtbot, widget)
    out = output(viewer, "stack").data
    assert out.shape == stack.shape
    for i in range(2):
        assert np.abs(out[i].astype(int) - enhance(stack[i], "enlightengan", device="cpu")).max() <= 1


def test_cancelling_a_heavy_apply_keeps_the_preview(viewer, make_widget, heavy_weights, qtbot, monkeypatch):
    image = dark_rgb(1100, 1300, seed=16)
    viewer.add_image(image, name="big", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "dln")
    preview = output(viewer, "big").data.copy()
    steps, cancelled = [], threading.Event()
    real, calls = Plan.run_window, []

    def second_tile_waits_for_cancel(*args, **kwargs):  # the worker cannot finish before the click
        calls.append(1)
        if len(calls) == 2:
            assert cancelled.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(Plan, "run_window", second_tile_waits_for_cancel)

    def cancel_at_first_step(value):
        steps.append(value)
        if value == 1:
            widget.apply_button.click()  # reads "Cancel" while Apply runs
            cancelled.set()

    widget.progress.valueChanged.connect(cancel_at_first_step)
    widget.apply_button.click()
    settle(qtbot, widget)
    assert steps[0] == 1 and max(steps) < 9  # stopped between tiles, before the last of the 9
    assert np.array_equal(output(viewer, "big").data, preview)
    assert widget.apply_button.text() == "Apply" and widget._form.isEnabled() and widget._apply_bar is None


# ---------------------------------------------------------------- denoise (issue 12)


@pytest.mark.parametrize("model", ["gamma", "zero_dce_pp"])
def test_denoise_slider_and_auto_are_live(viewer, make_widget, weights_dir, qtbot, model):
    image = noisy_dark_rgb()
    viewer.add_image(image, name="img")
    widget = make_widget()
    pick_model(qtbot, widget, model)
    weights = str(weights_dir / "zero_dce_pp.pt") if model == "zero_dce_pp" else None
    assert widget.denoise_auto.isChecked() and not widget.denoise.isEnabled()  # auto by default
    assert widget.settings().denoise == "auto"
    auto = enhance(image, model, device="cpu", weights=weights)
    assert np.abs(output(viewer, "img").data.astype(int) - auto).max() <= 1
    widget.denoise_auto.setChecked(False)
    widget.denoise.setValue(0)
    settle(qtbot, widget)
    assert widget.denoise.isEnabled() and widget.settings().denoise == 0
    plain = output(viewer, "img").data.copy()
    assert np.array_equal(plain, enhance(image, model, device="cpu", denoise=0, weights=weights))  # 0: off
    widget.denoise.setValue(0.8)
    settle(qtbot, widget)
    out = output(viewer, "img").data
    assert widget.settings().denoise == 0.8
    assert np.abs(out.astype(int) - enhance(image, model, device="cpu", denoise=0.8, weights=weights)).max() <= 1
    assert not np.array_equal(out, plain)
    estimates = widget.enhancer.noise_estimates
    widget.denoise.setValue(0.3)  # the same plane: its noise model comes from the cache
    settle(qtbot, widget)
    assert widget.enhancer.noise_estimates == estimates
    assert np.abs(output(viewer, "img").data.astype(int)
                  - enhance(image, model, device="cpu", denoise=0.3, weights=weights)).max() <= 1
    widget.denoise_auto.setChecked(True)
    settle(qtbot, widget)
    assert not widget.denoise.isEnabled() and widget.settings().denoise == "auto"
    expected = enhance(image, model, device="cpu", denoise="auto", weights=weights)
    assert np.abs(output(viewer, "img").data.astype(int) - expected).max() <= 1
    assert widget.enhancer.noise_estimates == estimates


def test_apply_on_a_stack_honours_denoise(viewer, make_widget, qtbot):
    stack = np.stack([noisy_dark_rgb(48, 64, seed=i) for i in range(3)])  # enough 8 x 8 blocks to measure noise
    widget = gamma_on_rgb_stack_without_preview(viewer, make_widget, qtbot, stack)
    widget.denoise_auto.setChecked(False)
    widget.denoise.setValue(0.6)
    settle(qtbot, widget)
    widget.apply_button.click()
    settle(qtbot, widget)
    out = output(viewer, "rgbstack").data
    for i in range(3):
        expected = enhance(stack[i], "gamma", device="cpu", denoise=0.6)
        assert np.abs(out[i].astype(int) - expected).max() <= 1, i
        assert not np.array_equal(expected, enhance(stack[i], "gamma", device="cpu", denoise=0))


def test_tiled_apply_denoises_the_whole_plane_once(viewer, make_widget, heavy_weights, qtbot):
    """A full-resolution network's Apply runs tile by tile; the denoise must still see the whole plane (its noise
    estimate and filter windows), as lowlight_core.enhance does: a per-tile estimate would differ at the seams."""
    image = noisy_dark_rgb(1100, 1300, seed=5)
    viewer.add_image(image, name="big", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "dln")
    widget.live.setChecked(False)
    widget.denoise_auto.setChecked(False)
    widget.denoise.setValue(0.7)
    widget.apply_button.click()
    settle(qtbot, widget)
    out = output(viewer, "big").data
    weights = str(heavy_weights / "dln.pt")
    expected = enhance(image, "dln", device="cpu", denoise=0.7, weights=weights)
    assert out.shape == image.shape
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert not np.array_equal(expected, enhance(image, "dln", device="cpu", denoise=0, weights=weights))
