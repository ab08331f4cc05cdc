"""Synthetic pairs (training.degrade), the image-model scores (training.image_eval) and a real tiny DLN run."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import data as data_mod
from training import degrade
from training import split as split_mod
from training.image_eval import pair_scores

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64
VAL_FRACTION = "0.3"  # with these names: SICE scenes s0016 and s0045 and lol 1.png, 2.png are held out


@pytest.fixture(scope="module")
def paired_dir(make_data_dir):
    """Well-exposed SICE photos on both sides of the split (astronaut, chelsea, rocket, coffee = 0..3)."""
    return make_data_dir({"sice_part1": {0: (0, 1.0), 16: (1, 1.0), 32: (2, 0.3), 45: (3, 1.0), 96: (1, 1.0)},
                          "lol_train_low": {1: (2, 0.15), 2: (0, 0.1), 3: (3, 0.12)}}, SIZE)


def test_fixture_has_held_out_normals(paired_dir):
    train, val = split_mod.split(data_mod.list_images(paired_dir), float(VAL_FRACTION))
    assert {p.name for p in data_mod.sice_normals(val)} == {"16.png", "45.png"}
    assert {p.name for p in data_mod.sice_normals(train)} == {"0.png", "96.png"}


def _image(seed=0, h=40, w=48):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 0.6 + 0.2


def test_degrade_is_a_function_of_the_generator():
    y = _image()
    a = degrade.degrade(y, torch.Generator().manual_seed(5))
    b = degrade.degrade(y, torch.Generator().manual_seed(5))
    c = degrade.degrade(y, torch.Generator().manual_seed(6))
    assert a.shape == y.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, (a * 255).round() / 255)  # stored as 8-bit levels


def test_degrade_darkens_and_the_mild_branch_keeps_brightness():
    y = _image()
    dark = degrade.Degradation(mild_prob=0.0, jpeg_prob=0.0)
    means = [float(degrade.degrade(y, torch.Generator().manual_seed(s), dark).mean()) for s in range(20)]
    assert max(means) < float(y.mean()) * 0.8
    mild = degrade.Degradation(mild_prob=1.0, gain=(1.0, 1.0), beta=(1.0, 1.0), jpeg_prob=0.0)
    m = float(degrade.degrade(y, torch.Generator().manual_seed(0), mild).mean())
    assert m > float(y.mean()) * 0.6


def test_degrade_jpeg_branch_changes_pixels_and_bad_shape_is_named():
    y = _image(h=64, w=64)
    no = degrade.Degradation(jpeg_prob=0.0, mild_prob=0.0)
    yes = degrade.Degradation(jpeg_prob=1.0, mild_prob=0.0)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert not torch.equal(degrade.degrade(y, g(), no), degrade.degrade(y, g(), yes))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        degrade.degrade(y[None], g())


def test_pair_batches_are_a_function_of_the_step(paired_dir):
    paths = data_mod.sice_normals(data_mod.list_images(paired_dir))
    pb = degrade.PairBatches(paths, batch=3, crop=24, seed=1)
    a, b = pb[7], pb[7]
    assert a.shape == (2, 3, 3, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, pb[8])
    assert float(a[0].mean()) < float(a[1].mean())  # low is darker than its target


def test_validation_pairs_are_fixed_per_file_and_written_for_lowlight_eval(paired_dir, tmp_path):
    normals = degrade.validation_normals(paired_dir, float(VAL_FRACTION))
    first, second = degrade.validation_pairs(normals), degrade.validation_pairs(normals)
    assert len(first) == 2 and all(torch.equal(a, b) for a, b in zip(first, second))
    out = tmp_path / "val"
    r = subprocess.run([sys.executable, "-m", "training.degrade", "--data", str(paired_dir), "--out", str(out),
                        "--val-fraction", VAL_FRACTION], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "low").iterdir()) == ["16.png", "45.png"]
    low = np.asarray(Image.open(out / "low" / "16.png"))
    assert np.array_equal(low, (first[0][0, 0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_scores_see_clipping_and_colour_casts():
    from lowlight_core.metrics import clipped_beyond_uint8, color_shift_uint8, to_uint8

    t = _image()[None]
    a = to_uint8(t[0])
    assert color_shift_uint8(a, a) == 0.0
    cast = to_uint8((t * torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1))[0])
    assert color_shift_uint8(cast, a) > 0.05
    bright = to_uint8((t + 0.5)[0])
    assert clipped_beyond_uint8(a, a) == 0.0 and clipped_beyond_uint8(bright, a) > 10
    assert clipped_beyond_uint8(bright, bright) == 0.0  # the reference's own highlights do not count
    s = pair_scores(t, t)
    assert s == {"psnr": float("inf"), "ssim": 1.0, "clipped": 0.0, "color_shift": 0.0, "ciede2000": 0.0}


def test_tiny_dln_run_beats_its_input_and_writes_a_card(paired_dir, tmp_path):
    out = tmp_path / "run"
    weights = out / "w" / "dln.pt"
    args = ["dln", "--data", str(paired_dir), "--out", str(out), "--weights", str(weights), "--batch", "4",
            "--crop", "32", "--steps", "40", "--val-every", "20", "--width", "8", "--workers", "0",
            "--val-fraction", VAL_FRACTION, "--pairs", "synthetic"]
    r = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("checkpoint.pt", "train.csv", "val.csv", "losses.png", "grid.png", "eval.json"):
        assert (out / name).is_file(), name
    ev = json.loads((out / "eval.json").read_text())
    assert ev["synthetic"]["images"] == 2 and ev["real_photos"]["counts"]["lol"] == 2
    assert ev["synthetic"]["psnr"] > ev["synthetic_input"]["psnr"] + 3  # 40 steps already lift the dark input
    card = weights.with_suffix(".md").read_text()
    assert "| **dln** |" in card and "python -m training dln" in card and weights.with_suffix(".png").is_file()

    from lowlight_core.models import registry

    model = registry.load_model("dln", weights=weights)
    assert model.config == {"width": 8, "blocks": 3, "output": "value"}  # the recipe's output
    y = model.enhance(torch.rand(1, 3, 13, 17))
    assert y.shape == (1, 3, 13, 17) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_curve_options_are_refused_for_image_recipes(paired_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "training", "dln", "--data", str(paired_dir), "--iterations", "8",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "curve recipes" in r.stderr


def test_circle_training_teaches_the_darkening_twin(paired_dir):
    from lowlight_core.models.dln import DLN
    from training.tasks.dln import DLNTask
    from training.recipes import get_recipe

    torch.manual_seed(0)
    recipe = get_recipe("dln", "cpu")
    recipe = dataclasses.replace(recipe, options={**recipe.options, "circle_weight": 1.0})
    task = DLNTask(DLN(width=8), recipe)
    assert set(task.modules) == {"model", "darkener"}
    opts = task.make_optimizers()

    def update(loss, name):
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        return 0.0

    # a batch whose dark side is not near-black (mean 0.15): on near-black crops (seed 0, mean 0.09) the twin's
    # SSIM term learns several times slower (measured: 0.997 of its first loss after 30 steps, 0.69 after 120)
    batch = degrade.PairBatches(data_mod.sice_normals(data_mod.list_images(paired_dir)), 4, 32, seed=1)[0]
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules.items()}
    logs = [task.train_step(batch, None, update) for _ in range(30)]
    for k, m in task.modules.items():  # each optimizer moved its own network
        assert any(not torch.equal(a, b) for a, b in zip(before[k], m.parameters())), k
    assert {"circle", "dark_ssim", "dark_circle", "dark_loss"} <= set(logs[0])
    assert logs[-1]["dark_loss"] < logs[0]["dark_loss"] * 0.8  # the twin learns normal -> low
    assert logs[-1]["loss"] < logs[0]["loss"]
    with torch.no_grad():
        low, normal = batch
        assert float(task.darkener(normal).mean()) < float(normal.mean())


def test_circle_run_checkpoints_the_twin_and_exports_only_the_model(paired_dir, tmp_path):
    out, weights = tmp_path / "run", tmp_path / "dln.pt"
    args = ["dln", "--circle", "0.5", "--data", str(paired_dir), "--out", str(out), "--weights", str(weights),
            "--batch", "2", "--crop", "32", "--steps", "4", "--val-every", "4", "--width", "8", "--workers", "0",
            "--val-fraction", VAL_FRACTION, "--pairs", "synthetic", "--no-eval"]
    r = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert r.returncode == 0, r.stdout + r.stderr
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(ckpt["modules"]) == {"model", "darkener"}
    assert "dark_loss" in (out / "train.csv").read_text().splitlines()[0]
    saved = torch.load(weights, weights_only=True)
    assert any("circle training" in n for n in saved["meta"]["training"]["notes"])
    assert not any(k.startswith("darkener") for k in saved["state_dict"])
    r = subprocess.run([sys.executable, "-m", "training", "iqe_dcgan", "--circle", "--data", str(paired_dir),
                        "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "applies to the dln recipe" in r.stderr


def test_recipe_degradation_option_reaches_training_but_not_validation(paired_dir):
    from lowlight_core.models import registry
    from training.recipes import get_recipe
    from training.run import Run

    recipe = get_recipe("dln", "cpu", val_images=1, pairs="synthetic")
    recipe = dataclasses.replace(recipe, options={**recipe.options, "degradation": {"beta": (0.2, 0.3)}})
    train, val = split_mod.split(data_mod.list_images(paired_dir), float(VAL_FRACTION))
    run = Run(recipe, data=paired_dir, val_fraction=float(VAL_FRACTION), train=train, val=val)
    model = registry.get_model_info("dln").build(**recipe.model_config)
    batches, val_pairs, summary = recipe.task(model, recipe).training_data(run)
    assert batches.degradation.beta == (0.2, 0.3) and "'beta': (0.2, 0.3)" in summary
    assert torch.equal(val_pairs[0], degrade.validation_pairs(data_mod.sice_normals(val)[:1], 256)[0])
