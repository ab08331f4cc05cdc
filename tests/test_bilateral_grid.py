"""The bilateral-grid model (lowlight_core.models.bilateral_grid) through enhance() with its shipped weights, and
its training task (training.tasks.grid)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_core import enhance
from lowlight_core.models import registry
from lowlight_core.models.bilateral_grid import GRID, THUMBNAIL, BilateralGrid
from lowlight_core.plan import Engine
from training.tasks.grid import retarget

ROOT = Path(__file__).resolve().parent.parent


def test_contract_and_registry():
    info = registry.get_model_info("bilateral_grid")
    c = info.contract
    assert c.photo_enhance and c.receptive_radius == 0 and c.controls == {"exposure"} and not c.curve_maps
    assert registry.has_weights("bilateral_grid")
    model = registry.load_model("bilateral_grid")
    assert model.contract == c
    engine = Engine("bilateral_grid", torch.device("cpu"))
    assert engine.whole and engine.net is engine.model  # runs whole, from the thumbnail's decision
    grid = model.grid(torch.rand(2, 3, THUMBNAIL, THUMBNAIL) * 0.2, 0.6)
    assert grid.shape == (2, 12, model.config["depth"], GRID, GRID)


def test_a_fresh_process_loads_it_through_the_registry():
    """The registry first imports the module under torch.device("meta"): nothing made at import may be meta."""
    code = ("import numpy as np; from lowlight_core import enhance; "
            "print(enhance(np.full((8, 8, 3), 20, np.uint8), model='bilateral_grid').mean() > 20)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-2000:]


def test_exposure_sets_the_output_brightness(dark_astronaut):
    means = [float(enhance(dark_astronaut, model="bilateral_grid", exposure=e).mean()) / 255
             for e in (0.3, 0.45, 0.6, 0.75)]
    assert means == sorted(means) and means[-1] - means[0] > 0.15, means
    assert abs(means[2] - 0.6) < 0.1, means  # E is the output's mean brightness, roughly


def test_photo_path_equals_the_float_path_within_one_level(dark_astronaut):
    out = enhance(dark_astronaut, model="bilateral_grid", exposure=0.5, denoise=0)
    model = registry.load_model("bilateral_grid")
    with torch.no_grad():
        y = model.enhance(torch.from_numpy(dark_astronaut).permute(2, 0, 1)[None].float() / 255, 0.5)
    ref = (y[0].permute(1, 2, 0) * 255).round().numpy()
    assert np.abs(out.astype(np.float32) - ref).max() <= 1


def test_every_kind_of_image(dark_astronaut):
    rgb = enhance(dark_astronaut, model="bilateral_grid", denoise=0)
    assert rgb.shape == dark_astronaut.shape and rgb.dtype == np.uint8 and rgb.mean() > 2 * dark_astronaut.mean()
    wide = enhance(dark_astronaut.astype(np.uint16) * 257, model="bilateral_grid", denoise=0)
    assert wide.dtype == np.uint16 and np.abs(wide / 257.0 - rgb).max() <= 1.5
    flt = enhance(dark_astronaut.astype(np.float32) / 255, model="bilateral_grid", denoise=0)
    assert flt.dtype == np.float32 and np.abs(flt * 255 - rgb).max() <= 1.5
    gray = dark_astronaut[..., 1].copy()
    g = enhance(gray, model="bilateral_grid", denoise=0)
    rep = enhance(np.repeat(gray[..., None], 3, axis=2), model="bilateral_grid", denoise=0)
    assert g.shape == gray.shape and np.abs(g - rep.astype(np.float32).mean(2)).max() <= 1
    rgba = np.concatenate([dark_astronaut, np.full(dark_astronaut.shape[:2] + (1,), 77, np.uint8)], axis=2)
    a = enhance(rgba, model="bilateral_grid", denoise=0)
    assert (a[..., 3] == 77).all() and np.array_equal(a[..., :3], rgb)
    # smaller than the grid: still one decision
    tiny = enhance(dark_astronaut[:1, :3], model="bilateral_grid", denoise=0)
    assert tiny.shape == (1, 3, 3)


def test_napari_previews_it_at_full_resolution(dark_astronaut):
    """Like Zero-DCE++: one decision on the thumbnail and one pass, so even a tiny time budget previews every pixel."""
    from napari_lowlight import _compute

    settings = _compute.Settings(model="bilateral_grid", exposure=0.5)
    out = _compute.Enhancer().preview_plane(dark_astronaut, True, settings, canvas=(50, 60), seconds=1e-9)
    assert np.array_equal(out, enhance(dark_astronaut, model="bilateral_grid", exposure=0.5))


def test_the_model_checks_its_input():
    model = BilateralGrid(width=4)
    with pytest.raises(ValueError, match="RGB"):
        model.enhance(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="depth"):
        BilateralGrid(depth=0)
    with pytest.raises(ValueError, match="exposure"):
        model.enhance(torch.rand(1, 3, 8, 8), exposure=1.5)
    with torch.no_grad():
        model.guide.fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        model.enhance(torch.rand(1, 3, 8, 8))


def test_retarget_reaches_the_exposure_and_keeps_hue():
    t = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    e = torch.tensor([0.3, 0.5, 0.7])
    r = retarget(t, e)
    torch.testing.assert_close(r.mean(dim=(1, 2, 3)), e, atol=2e-3, rtol=0)
    torch.testing.assert_close(r / r.amax(1, keepdim=True), t / t.amax(1, keepdim=True), atol=1e-4, rtol=0)


def test_the_unclamped_output_is_the_clamped_one_before_its_clamp():
    """forward(clamp=False) (what the training L1 reads) equals forward() wherever forward() is not clamped,
    and carries a gradient where the clamp passes none (over-bright highlights)."""
    torch.manual_seed(0)
    model = BilateralGrid(width=4)
    with torch.no_grad():  # a grid that overshoots: a gain of 3 on a bright image
        model.to_grid.bias.copy_(torch.eye(3, 4).flatten().repeat_interleave(8) * 2)
    x = torch.rand(2, 3, 40, 56)
    raw, y = model(x, 0.9, clamp=False), model(x, 0.9)
    assert bool((raw > 1).any())
    torch.testing.assert_close(raw.clamp(0, 1), y)
    grid = model.grid(model.thumbnail(x), 0.9).detach().requires_grad_()
    from lowlight_core import reference
    over = reference.bilateral_transform(x, grid, model.guide)
    (over - 1).clamp_min(0).sum().backward()
    assert grid.grad.abs().sum() > 0
    grid.grad = None
    reference.bilateral_apply(x, grid, model.guide).sub(1).clamp_min(0).sum().backward()
    assert grid.grad is None or grid.grad.abs().sum() == 0


def test_a_two_step_training_run_on_real_pairs(make_data_dir, tmp_path):
    data = make_data_dir({"sice_part1": {1: (0, 0.25), 2: (0, 1.0), 3: (1, 0.15), 4: (1, 0.9)},
                          "lol_train_low": {1: (2, 0.1)}}, 64)
    out, weights = tmp_path / "run", tmp_path / "bilateral_grid.pt"
    args = ["bilateral_grid", "--data", str(data), "--out", str(out), "--weights", str(weights), "--batch", "2",
            "--crop", "32", "--steps", "2", "--val-every", "2", "--width", "4", "--workers", "0",
            "--val-fraction", "0.6", "--no-eval"]
    r = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "val_psnr" in (out / "val.csv").read_text()
    model = registry.load_model("bilateral_grid", weights=weights)
    assert model.config == {"depth": 8, "width": 4, "global_path": True, "normalize_exposure": True}
    y = enhance(np.full((9, 11, 3), 20, np.uint8), model="bilateral_grid", weights=weights)
    assert y.shape == (9, 11, 3)


def test_without_the_global_path_each_image_gets_its_own_exposure_plane():
    """global_path=False conditions the grid on a constant plane of E (models._common.value_plane): per image."""
    torch.manual_seed(0)
    model = BilateralGrid(width=4, global_path=False).eval()
    x = torch.rand(2, 3, 40, 50)
    with torch.no_grad():
        both = model(x, torch.tensor([0.3, 0.6]))
        alone = model(x[1:], 0.6), model(x[:1], 0.3)
    torch.testing.assert_close(both[1:], alone[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(both[:1], alone[1], atol=1e-6, rtol=0)
    assert both[0].mean() < both[1].mean()  # brightness follows each image's E
