"""EnlightenGAN training (training/tasks/enlightengan.py): one step updates all three networks, clear errors for
crops too small for the patches, and a tiny end-to-end `python -m training enlightengan` run on real photos."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training import data as data_mod
from training import split as split_mod
from training.recipes import get_recipe

ROOT = Path(__file__).resolve().parent.parent
SIZE = 96  # px, long side of the test photos (crop 64 fits)
VAL_FRACTION = 0.4


@pytest.fixture(scope="module")
def image_dir(make_data_dir):
    """Dark and well-exposed versions of real photos (astronaut, chelsea, rocket, coffee = 0..3).

    sice_part1 numbers are spread over scene blocks of 16 (the split hashes blocks), so both the training
    and the held-out side get well-exposed and dark images (checked in test_layout_has_both_domains...)."""
    sice = {}
    for k, n in enumerate(range(1, 160, 16)):
        sice[n] = (k % 4, 1.0)  # well exposed
        sice[n + 1] = (k % 4, 0.2)  # dark
    return make_data_dir({"sice_part1": sice, "lol_train_low": {i: (i % 4, 0.15) for i in range(1, 5)}}, SIZE)


def test_layout_has_both_domains_in_train_and_held_out(image_dir):
    train, val = split_mod.split(data_mod.list_images(image_dir), VAL_FRACTION)
    means = data_mod.mean_intensities(train + val)
    for side in (train, val):
        assert data_mod.sice_normals(side), "no well-exposed sice images on one side of the split"
        assert any(means[str(p)] < data_mod.WELL_EXPOSED[0] for p in side), "no dark images on one side"


def small_task(crop=64, **options):
    from lowlight_core.models.enlightengan import EnlightenGANGenerator
    from training.tasks.enlightengan import EnlightenGANTask

    recipe = get_recipe("enlightengan", "cpu", crop=crop, batch=2)
    recipe = replace(recipe, options={**recipe.options, "d_width": 8, **options})
    torch.manual_seed(0)
    return EnlightenGANTask(EnlightenGANGenerator(width=4, depth=3), recipe)


def simple_update(optimizers):
    def update(loss, name):
        opt = optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return 0.0
    return update


def test_one_step_updates_generator_and_both_discriminators(capsys):
    task = small_task()
    assert "self-feature-preserving loss OFF" in capsys.readouterr().err
    assert any("self-feature-preserving loss OFF" in n for n in task.notes)
    assert set(task.modules) == {"model", "d_global", "d_local"}
    optimizers = task.make_optimizers()
    assert set(optimizers) == {"model", "d"}
    assert optimizers["d"].defaults["betas"] == (0.5, 0.999)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules.items()}
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(2, 2, 3, 64, 64, generator=g) * torch.tensor([0.2, 0.8]).view(2, 1, 1, 1, 1)
    terms = task.train_step(batch, torch.Generator().manual_seed(1), simple_update(optimizers))
    for k in ("g_loss", "d_loss", "g_global", "g_local", "anchor", "dg_real", "dg_fake", "dl_real", "dl_fake"):
        assert np.isfinite(terms[k]), k
    assert "sfp" not in terms
    for k, m in task.modules.items():
        changed = sum(not torch.equal(a, b) for a, b in zip(before[k], m.parameters()))
        assert changed > 0, f"{k} was not updated"
        assert all(p.requires_grad for p in m.parameters()), f"{k} left frozen"


def test_sfp_on_with_vgg_weights_turns_the_anchor_to_its_sfp_weight(monkeypatch, capsys):
    """With VGG weights the SFP loss is on (and logged) and the anchor takes anchor_weight_sfp (default 0)."""
    from lowlight_core.losses import SelfFeaturePreservingLoss
    from lowlight_core.models.enlightengan import EnlightenGANGenerator
    from training.tasks import enlightengan as eg

    monkeypatch.setattr(eg, "SelfFeaturePreservingLoss",  # a tiny stand-in for VGG-19 (no weights here)
                        lambda path: SelfFeaturePreservingLoss(features=torch.nn.Conv2d(3, 4, 3)))
    recipe = get_recipe("enlightengan", "cpu", crop=64, batch=2)
    task = eg.EnlightenGANTask(EnlightenGANGenerator(width=4, depth=3), recipe, vgg_weights="vgg19.pth")
    err = capsys.readouterr().err
    assert "self-feature-preserving loss ON" in err and "OFF" not in err
    assert task.anchor_weight == 0 and not any("anchor ON" in n for n in task.notes)
    terms = task.train_step(torch.rand(2, 2, 3, 64, 64), torch.Generator().manual_seed(1),
                            simple_update(task.make_optimizers()))
    assert terms["sfp"] > 0 and "anchor" not in terms


def test_brightened_reaches_the_target_mean_and_never_darkens():
    from lowlight_core.models._common import luminance
    from training.tasks.enlightengan import brightened

    x = torch.rand(2, 3, 32, 32) * torch.tensor([0.15, 0.5]).view(2, 1, 1, 1)
    x[1] += 0.5  # mean 0.75
    y = brightened(x, 0.5)
    assert (y >= x - 1e-6).all() and y.max() <= 1
    assert abs(float(luminance(y[:1]).mean()) - 0.5) < 0.08  # gamma of the mean, not exact for spread values
    torch.testing.assert_close(y[1], x[1].clamp_min(1e-4))  # bright image: gamma clamped to 1


@pytest.mark.parametrize("crop, options, match", [
    (24, {}, "crop 24 px is smaller than the local discriminator's 32 px patches"),
    (64, {"patch_size": 16}, "patch_size 16 px is too small"),
    (64, {"patchs": 5}, "unknown options"),
])
def test_too_small_crop_or_bad_options_give_a_clear_error(crop, options, match):
    with pytest.raises(ValueError, match=match):
        small_task(crop=crop, **options)


def test_small_crop_shrinks_the_global_discriminator_and_says_so():
    task = small_task(crop=64)
    assert task.d_global.config["layers"] == 4
    assert any("global discriminator: 4 stride-2 layers" in n for n in task.notes)
    assert small_task(crop=128).d_global.config["layers"] == 5


def test_tiny_cli_run(image_dir, tmp_path):
    from lowlight_core.models import registry

    out = tmp_path / "run"
    weights = out / "w" / "enlightengan.pt"
    args = ["enlightengan", "--data", str(image_dir), "--out", str(out), "--weights", str(weights),
            "--batch", "2", "--crop", "64", "--steps", "3", "--val-every", "3", "--workers", "0",
            "--val-fraction", str(VAL_FRACTION), "--val-images", "2", "--width", "4", "--no-eval"]
    proc = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "self-feature-preserving loss OFF: no VGG-19 weights given (--vgg-weights)" in proc.stderr
    assert "low-frequency anchor ON" in proc.stderr
    for name in ("checkpoint.pt", "train.csv", "val.csv", "grid.png"):
        assert (out / name).is_file(), name
    rows = (out / "train.csv").read_text().splitlines()
    assert len(rows) == 4 and "d_loss" in rows[0] and "dg_real" in rows[0]
    assert "val_psnr" in (out / "val.csv").read_text()

    saved = torch.load(weights, map_location="cpu", weights_only=True)
    meta = saved["meta"]["training"]
    assert any("self-feature-preserving loss OFF" in n for n in meta["notes"])
    assert meta["summary"].startswith("unpaired:")
    model = registry.load_model("enlightengan", weights=weights)
    x = torch.rand(1, 3, 37, 53) * 0.3
    y = model.enhance(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1


def test_structure_loss_ignores_gain_and_sees_blobs():
    from training.tasks.enlightengan import structure_loss

    g = torch.Generator().manual_seed(0)
    low = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 68, 68, generator=g), 5, 1) * 0.25 + 0.1
    gained = 2.5 * low  # a global brightening: same edges, relative to each other
    blob = gained.clone()
    blob[..., 10:40, 10:40] += 0.3  # a bright patch with edges the input does not have
    same, blotched = float(structure_loss(gained, low)), float(structure_loss(blob, low))
    assert same < 1e-4 and blotched > 0.1
    fake = gained.clone().requires_grad_(True)
    structure_loss(fake, low).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
