"""The napari widget's work without Qt (napari_lowlight._compute): the plugin runs lowlight_core's inference plan,
so previews and Apply give what enhance() gives; it keeps curve maps and noise models per plane (an iterations
or denoise change re-runs only what it changes), budgets heavy previews and reports progress per tile.
The viewer tests are in test_napari_widget.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lowlight_core.inference import enhance
from lowlight_core.models import registry
from lowlight_core.plan import Engine
from napari_lowlight import _compute
from napari_support import (dark_rgb, empty_weights_dir, heavy_weights, noisy_dark_rgb,  # noqa: F401
                            weights_dir)

pytestmark = pytest.mark.usefixtures("empty_weights_dir")  # tests choose their weights


def run_apply(enhancer, data, rgb, settings):
    """apply_job to the end: (the progress it yielded, what it returned)."""
    job, progress = _compute.apply_job(enhancer, data, rgb, settings), []
    try:
        while True:
            progress.append(next(job))
    except StopIteration as stop:
        return progress, stop.value


def test_apply_job_yields_progress_per_plane_and_jobs_return_failures():
    rng = np.random.default_rng(0)
    enhancer = _compute.Enhancer()
    settings = _compute.Settings(model="gamma", exposure=0.7)
    stack = (rng.random((2, 3, 16, 20, 4)) * 255).astype(np.uint8)
    job = _compute.apply_job(enhancer, stack, True, settings)
    progress = []
    try:
        while True:
            progress.append(next(job))
    except StopIteration as stop:
        out = stop.value
    assert progress == [(i, 6) for i in range(1, 7)]
    assert out.shape == stack.shape and np.array_equal(out[..., 3], stack[..., 3])
    assert _compute.plane_at([1.4, 2.6, 3, 9], stack.shape, True) == (1, 2)
    assert _compute.plane_at([-3, 99], stack.shape, True) == (0, 2)
    failure = _compute.preview_job(enhancer, stack, True, (0, 0), _compute.Settings(model="nope"))
    assert isinstance(failure, _compute.Failure) and "unknown model 'nope'" in failure.message
    bad = _compute.apply_job(enhancer, np.zeros((4, 5, 2), np.uint8), True, settings)
    with pytest.raises(StopIteration) as stop:
        next(bad)
    assert "RGB layers need 3 or 4 channels" in stop.value.value.message


def test_a_preview_fits_the_canvas_and_covers_the_layers_extent():
    assert _compute.preview_shape(3000, 4000, (600, 1000)) == (600, 800)
    assert _compute.preview_shape(3000, 4000, None, 30_000) == (150, 200)
    assert _compute.preview_shape(3000, 4000, None, 1_000) == (96, 128)  # long side floor: 128 ...
    assert _compute.preview_shape(50, 60, (10, 10), 4) == (50, 60)  # ... or the plane's own
    assert _compute.preview_shape(300, 400, (600, 1000)) == (300, 400)  # never upscaled
    scale, translate = _compute.preview_geometry([1, 2.0, 3.0], [7, 5.0, -7.0], (100, 90), (25, 30))
    np.testing.assert_allclose(scale, [1, 8.0, 9.0])
    np.testing.assert_allclose(translate, [7, 5.0 + 2.0 * 1.5, -7.0 + 3.0 * 1.0])
    gray = (np.random.default_rng(0).random((64, 48)) * 65535).astype(np.uint16)
    small = _compute.downscale_plane(gray, False, (16, 12))
    assert small.dtype == np.uint16 and small.shape == (16, 12)
    assert abs(float(small.mean()) - float(gray.mean())) < 0.01 * 65535
    rgba = np.random.default_rng(1).integers(0, 256, (64, 48, 4), dtype=np.uint8)
    small = _compute.downscale_plane(rgba, True, (16, 12))
    assert small.dtype == np.uint8 and small.shape == (16, 12, 4)
    # the uint8 fast path (no float copy) agrees with antialiased bilinear in float
    x = torch.from_numpy(rgba).permute(2, 0, 1)[None].double()
    ref = torch.nn.functional.interpolate(x, size=(16, 12), mode="bilinear", antialias=True)[0].permute(1, 2, 0)
    assert np.abs(small.astype(float) - ref.numpy()).max() <= 1
    flat = np.full((64, 48, 3), 77, np.uint8)
    assert (_compute.downscale_plane(flat, True, (5, 7)) == 77).all()


def test_first_preview_probes_the_cost_then_spends_the_rest_of_the_budget(heavy_weights):
    plane = dark_rgb(600, 800, seed=2)
    settings = _compute.Settings(model="zero_dce")
    slow = _compute.Enhancer()  # a budget the probe already exceeds: the probe is the preview
    assert slow.preview_plane(plane, True, settings, canvas=(300, 400), seconds=1e-9).shape == (192, 256, 3)
    assert slow.seconds_per_pixel[("zero_dce", "cpu", None)] > 0
    fast = _compute.Enhancer()  # plenty of time: a second run at the canvas size
    gamma = fast.preview_plane(plane, True, _compute.Settings(model="gamma"), canvas=(300, 400), seconds=1e-9)
    assert gamma.shape == (300, 400, 3)  # classical methods: the canvas limit only, no probe
    out = fast.preview_plane(plane, True, settings, canvas=(300, 400), seconds=60.0)
    assert out.shape == (300, 400, 3)
    expected = enhance(_compute.downscale_plane(plane, True, (300, 400)), "zero_dce", device="cpu")
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("model", ["zero_dce_pp", "zero_dce", "dln", "iqe_dcgan", "enlightengan", "gamma", "clahe"])
def test_previews_and_apply_give_what_enhance_gives(weights_dir, heavy_weights, model):
    """One inference engine: a full-size preview and Apply of every model are enhance()'s result."""
    weights = str(weights_dir / f"{model}.pt") if registry.get_model_info(model).weights else None
    plane = noisy_dark_rgb(70, 90, seed=3)
    settings = _compute.Settings(model=model, iterations=5, exposure=0.7, denoise=0.5)
    expected = enhance(plane, model, iterations=5, exposure=0.7, denoise=0.5, device="cpu", weights=weights)
    preview = _compute.Enhancer().preview_plane(plane, True, settings, source=("img", 0), seconds=None)
    assert preview.shape == plane.shape and np.array_equal(preview, expected)
    gray = plane[..., 1]
    stack = np.stack([gray, gray[::-1]])
    progress, out = run_apply(_compute.Enhancer(), stack, False, settings)
    assert progress[-1] == (2, 2)
    for i in range(2):
        assert np.array_equal(out[i], enhance(stack[i], model, iterations=5, exposure=0.7, denoise=0.5,
                                              device="cpu", weights=weights))


@pytest.mark.parametrize("model", ["zero_dce_pp", "zero_dce"])
def test_an_iterations_or_denoise_change_reuses_the_planes_maps_and_noise_model(weights_dir, model):
    weights = str(weights_dir / f"{model}.pt")
    plane, enhancer = noisy_dark_rgb(60, 80, seed=4), _compute.Enhancer()
    for iterations, denoise in [(8, 0), (3, 0), (3, 0.4), (12, 0.9), (12, "auto")]:
        settings = _compute.Settings(model=model, iterations=iterations, denoise=denoise)
        out = enhancer.enhance_plane(plane, True, settings, source=("img", 0))
        assert np.array_equal(out, enhance(plane, model, iterations=iterations, denoise=denoise, device="cpu",
                                           weights=weights))
    assert enhancer.alpha_estimates == 1 and enhancer.noise_estimates == 1
    enhancer.enhance_plane(plane, True, _compute.Settings(model=model, exposure=0.5), source=("img", 0))
    assert enhancer.alpha_estimates == 2  # another exposure: other maps
    enhancer.forget(("img", 0))
    enhancer.enhance_plane(plane, True, _compute.Settings(model=model), source=("img", 0))
    assert enhancer.alpha_estimates == 3


def test_apply_of_a_tiled_network_reports_each_tile_and_equals_enhance(heavy_weights):
    plane = dark_rgb(600, 530, seed=5)  # DLN runs in 512-pixel tiles: 2 x 2
    progress, out = run_apply(_compute.Enhancer(), plane[None], True, _compute.Settings(model="dln"))
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert np.array_equal(out[0], enhance(plane, "dln", device="cpu", weights=str(heavy_weights / "dln.pt")))


def test_tiled_curve_maps_equal_untiled(heavy_weights):
    plane = dark_rgb(37, 50, seed=6)
    engine = Engine("zero_dce", torch.device("cpu"))
    whole = engine.plan(plane, 0.6, tile=0).curve_maps()
    plan = engine.plan(plane, 0.6, tile=16)
    assert len(plan.windows) == 3 * 4
    torch.testing.assert_close(plan.curve_maps(), whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="'gamma' declares no curve maps"):
        Engine("gamma", torch.device("cpu")).plan(plane, 0.6).curve_maps()


def test_a_float_layer_out_of_range_is_refused_by_the_core_check():
    failure = _compute.preview_job(_compute.Enhancer(), np.full((20, 30), 7.0, np.float32), False, (),
                                   _compute.Settings(model="gamma"))
    assert isinstance(failure, _compute.Failure) and "values must be in [0, 1]" in failure.message
