"""Multiscale and lazy (dask) layers in the dock widget, in a real viewer: a pyramid previews from the level that
fits the canvas and Apply writes a multiscale output; a dask stack is applied plane by plane without being
loaded whole (numpy's allocations traced), with progress and Cancel."""
from __future__ import annotations

import tracemalloc

import dask.array as da
import numpy as np

from lowlight_core.inference import enhance
from napari_lowlight import _large
from napari_support import dark_rgb
from napari_viewer_support import make_widget, output, pick_model, settle, viewer  # noqa: F401 (fixtures)


def pyramid(h=1536, w=2048, levels=4):
    """A dark RGB pyramid, finest first, each level half the one before (block means)."""
    out = [dark_rgb(h, w)]
    for _ in range(levels - 1):
        a = out[-1].astype(np.uint16)
        out.append(((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) // 4).astype(np.uint8))
    return out


def test_preview_level_is_the_coarsest_at_least_the_canvas_fit():
    shapes = [(4096, 8192, 3), (2048, 4096, 3), (1024, 2048, 3), (512, 1024, 3)]
    assert _large.preview_level(shapes, True, (600, 800)) == 3  # fit: 400 x 800
    assert _large.preview_level(shapes, True, (1000, 1600)) == 2  # fit: 800 x 1600
    assert _large.preview_level(shapes, True, (5000, 9000)) == 0  # the canvas is larger than the finest level
    assert _large.level_plane((5, 3), (10, 8, 64, 64), (5, 8, 32, 32), False) == (2, 3)


def test_multiscale_previews_the_fitting_level_and_applies_every_level(viewer, make_widget, qtbot):
    levels = pyramid()
    viewer.add_image(levels, name="big", rgb=True, multiscale=True, scale=(2.0, 2.0), translate=(5.0, 7.0))
    widget = make_widget()
    pick_model(qtbot, widget, "zero_dce_pp")
    level = _large.preview_level([a.shape for a in levels], True, widget.canvas_shape())
    assert level > 0  # the canvas under Xvfb is far smaller than 1536 x 2048
    out = output(viewer, "big")
    assert not out.multiscale and out.data.shape == levels[level].shape
    assert np.array_equal(out.data, enhance(levels[level], "zero_dce_pp"))
    f = 2 ** level  # the preview covers the input's extent
    assert np.allclose(out.scale, [2.0 * f, 2.0 * f]) and np.allclose(out.translate, [5.0 + (f - 1), 7.0 + (f - 1)])

    steps = []
    widget.progress.valueChanged.connect(steps.append)
    widget.apply_button.click()
    assert widget.apply_button.text() == "Cancel"
    settle(qtbot, widget)
    out = output(viewer, "big")
    assert out.multiscale and len(out.data) == len(levels)
    for a, b in zip(out.data, levels):
        assert np.array_equal(np.asarray(a), enhance(b, "zero_dce_pp"))
    assert steps[-1] == len(levels) == widget.progress.maximum()
    assert np.allclose(out.scale, [2.0, 2.0]) and np.allclose(out.translate, [5.0, 7.0])


def dark_plane(h, w, seed):
    """A dark RGB uint8 plane made without float temporaries (the test traces numpy's allocations)."""
    return np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)


def test_dask_stack_applies_plane_by_plane_without_loading_it_whole(viewer, make_widget, qtbot):
    n, h, w = 24, 256, 320
    plane_bytes = h * w * 3
    reads = []

    def make_plane(block_info=None):  # each plane is made when read: nothing of the stack exists up front
        i = block_info[None]["chunk-location"][0]
        reads.append(i)
        return dark_plane(h, w, seed=i)[None]

    lazy = da.map_blocks(make_plane, chunks=((1,) * n, (h,), (w,), (3,)), dtype=np.uint8)
    viewer.add_image(lazy, name="lazy", rgb=True)
    widget = make_widget()
    pick_model(qtbot, widget, "zero_dce_pp")
    assert len(set(reads)) <= 2  # napari and the preview read the plane on screen (and napari plane 0) only

    reads.clear()
    tracemalloc.start()
    try:
        widget.apply_button.click()
        settle(qtbot, widget)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = output(viewer, "lazy").data
    assert out.shape == (n, h, w, 3) and sorted(reads) == list(range(n))
    # the output stack plus a few planes in flight; loading the input whole would add n planes more
    assert peak < (n + n // 2) * plane_bytes, peak / plane_bytes
    for i in (0, n - 1):
        assert np.array_equal(out[i], enhance(dark_plane(h, w, seed=i), "zero_dce_pp"))


def test_cancelling_a_dask_stack_apply_stops_between_planes(viewer, make_widget, qtbot, monkeypatch):
    n, reads = 40, []

    def make_plane(block_info=None):
        reads.append(block_info[None]["chunk-location"][0])
        return dark_rgb(64, 64, seed=1)[None]

    lazy = da.map_blocks(make_plane, chunks=((1,) * n, (64,), (64,), (3,)), dtype=np.uint8)
    viewer.add_image(lazy, name="lazy", rgb=True)
    widget = make_widget()
    widget.live.setChecked(False)
    pick_model(qtbot, widget, "zero_dce_pp")
    reads.clear()
    widget.apply_button.click()
    qtbot.waitUntil(lambda: widget.progress.value() >= 2, timeout=60_000)
    widget.apply_button.click()  # "Cancel"
    settle(qtbot, widget)
    assert widget.apply_button.text() == "Apply" and len(reads) < n
