"""IQE DCGAN training (training.tasks.iqe): a tiny real run through the CLI, and the task's step on its own."""
import csv
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lowlight_core.models.dcgan import DCGANGenerator
from training import data as data_mod
from training import split as split_mod
from training.recipes import IMAGE_RECIPES, ImageRecipe, get_recipe
from training.tasks.iqe import CONTENT_OFF, IQETask

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64  # px, long side of the test photos
# SICE splits by scene (each photo's two exposures are one scene): at 0.3 the scene s0017 is held out, s0001 and
# s0049 train; lol_train_low/1.png and 2.png are held out.
VAL_FRACTION = 0.3


@pytest.fixture(scope="module")
def image_dir(make_data_dir):
    """Dark and well-exposed copies of real photos (astronaut, chelsea, rocket, coffee = 0..3)."""
    return make_data_dir({"sice_part1": {1: (0, 0.25), 2: (0, 1.0), 17: (1, 0.15), 18: (1, 0.9), 49: (3, 0.3),
                                         50: (3, 1.2)},
                          "lol_train_low": {1: (3, 0.2), 2: (0, 0.1), 3: (1, 0.2), 4: (3, 0.12)}}, SIZE)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tiny_recipe(**options) -> ImageRecipe:
    return ImageRecipe("iqe_dcgan", IQETask, steps=3, batch=2, crop=32, resize_long=64,
                       model_config={"width": 8, "blocks": 1}, options=options, lr=1e-3)


def tiny_task(recipe, **kw):
    torch.manual_seed(0)
    return IQETask(DCGANGenerator(**recipe.model_config), recipe, **kw)


def make_update(optimizers):
    """The trainer's update (backward, step) without AMP or clipping."""
    def update(loss, name):
        opt = optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]
                                               if p.grad is not None], math.inf)
        opt.step()
        return float(norm)
    return update


def fake_batch(crop=32, batch=2):
    g = torch.Generator().manual_seed(1)
    normal = torch.rand(batch, 3, crop, crop, generator=g) * 0.6 + 0.2
    return torch.stack([normal * 0.2, normal])


# ---------------------------------------------------------------- data layout

def test_layout_has_paired_normals_in_train_and_held_out(image_dir):
    train, val = split_mod.split(data_mod.list_images(image_dir), VAL_FRACTION)
    assert sorted(p.name for p in data_mod.sice_normals(train)) == ["2.png", "50.png"]
    assert [p.name for p in data_mod.sice_normals(val)] == ["18.png"]
    assert any(p.parent.name == "lol_train_low" for p in val)


# ---------------------------------------------------------------- the CLI, end to end

def test_tiny_cli_run_writes_outputs_and_loadable_weights(image_dir, tmp_path):
    out = tmp_path / "run"
    weights = out / "w" / "iqe_dcgan.pt"
    args = ["iqe_dcgan", "--data", str(image_dir), "--out", str(out), "--weights", str(weights),
            "--batch", "2", "--crop", "32", "--steps", "3", "--val-every", "3", "--workers", "0",
            "--val-fraction", str(VAL_FRACTION), "--width", "8", "--no-eval"]
    proc = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert CONTENT_OFF in proc.stderr
    for name in ("checkpoint.pt", "train.csv", "val.csv", "grid.png", "losses.png", "w/iqe_dcgan.pt"):
        assert (out / name).stat().st_size > 0, name
    rows = read_rows(out / "train.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for k in ("loss", "color", "tv", "texture", "d_loss", "d_acc_real", "d_acc_fake", "grad_norm", "d_grad_norm"):
        assert all(math.isfinite(float(r[k])) for r in rows), k
    assert all(float(r["content"]) == 0 for r in rows)
    val = read_rows(out / "val.csv")
    assert [int(r["step"]) for r in val] == [3] and math.isfinite(float(val[0]["val_psnr"]))

    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert set(ckpt["modules"]) == set(ckpt["optimizers"]) == {"model", "d"}
    from lowlight_core.models import registry

    model = registry.load_model("iqe_dcgan", weights=weights)
    assert model.config == {"width": 8, "blocks": 4, "output": "value"}  # the recipe's output
    meta = torch.load(weights, map_location="cpu", weights_only=True)["meta"]
    assert CONTENT_OFF in meta["training"]["notes"]
    y = model.enhance(torch.rand(1, 3, 24, 20) * 0.2)
    assert y.shape == (1, 3, 24, 20) and torch.isfinite(y).all() and 0 <= float(y.min()) <= float(y.max()) <= 1


# ---------------------------------------------------------------- the task

def test_one_step_updates_generator_and_discriminator():
    task = tiny_task(tiny_recipe(adv_start_step=0))
    assert set(task.modules) == {"model", "d"} and task.modules["d"].config == {"in_channels": 1, "crop": 32}
    opts = task.make_optimizers()
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in task.modules.items()}
    terms = task.train_step(fake_batch(), None, make_update(opts))
    for name, m in task.modules.items():
        changed = [not torch.equal(a, p) for a, p in zip(before[name], m.parameters())]
        assert all(changed), f"{name}: {changed.count(False)} parameter tensors did not change"
    assert terms["adversarial"] == 1 and terms["texture"] > 0 and terms["grad_norm"] > 0 and terms["d_grad_norm"] > 0
    assert 0 <= terms["d_acc_real"] <= 1 and 0 <= terms["d_acc_fake"] <= 1
    assert all(p.requires_grad for p in task.modules["d"].parameters())  # unfrozen after the generator step
    assert task.steps_done() == 1


def test_warm_up_leaves_out_the_texture_term_then_switches_it_on():
    recipe = tiny_recipe(adv_start_step=2, loss_weights={"color": 10.0, "tv": 0.5})
    task = tiny_task(recipe)
    update = make_update(task.make_optimizers())
    for step in range(3):
        terms = task.train_step(fake_batch(), None, update)
        expected = 10.0 * terms["color"] + 0.5 * terms["tv"] + (0.4 * terms["texture"] if step >= 2 else 0.0)
        assert terms["adversarial"] == int(step >= 2)
        assert terms["loss"] == pytest.approx(expected, rel=1e-5)


def test_warm_up_schedule_survives_a_checkpoint():
    recipe = tiny_recipe(adv_start_step=2)
    task = tiny_task(recipe)
    opts = task.make_optimizers()
    update = make_update(opts)
    for _ in range(2):
        task.train_step(fake_batch(), None, update)
    resumed = tiny_task(recipe)
    new_opts = resumed.make_optimizers()
    for k, m in task.modules.items():
        resumed.modules[k].load_state_dict(m.state_dict())
    for k, o in opts.items():
        new_opts[k].load_state_dict(o.state_dict())
    assert resumed.steps_done() == 2
    assert resumed.train_step(fake_batch(), None, make_update(new_opts))["adversarial"] == 1


class TinyFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_content_loss_with_an_injected_feature_extractor():
    task = tiny_task(tiny_recipe(adv_start_step=0), content_features=TinyFeatures())
    assert task.content.enabled and not task.notes
    terms = task.train_step(fake_batch(), None, make_update(task.make_optimizers()))
    assert terms["content"] > 0
    assert not any(p.requires_grad for p in task.content.parameters())


def test_content_off_is_logged_and_noted(capsys):
    task = tiny_task(tiny_recipe())
    assert not task.content.enabled and task.notes == [CONTENT_OFF]
    assert CONTENT_OFF in capsys.readouterr().err


def test_ssim_stands_in_for_the_content_loss_only_while_it_is_off():
    off = tiny_task(tiny_recipe(ssim_weight=5.0))
    assert off.ssim_weight == 5.0 and any("1 - SSIM" in n for n in off.notes)
    terms = off.train_step(fake_batch(), None, make_update(off.make_optimizers()))
    assert 0 < terms["ssim"] <= 2 and terms["loss"] > 5.0 * terms["ssim"]
    on = tiny_task(tiny_recipe(ssim_weight=5.0), content_features=TinyFeatures())
    assert on.ssim_weight == 0.0
    assert "ssim" not in on.train_step(fake_batch(), None, make_update(on.make_optimizers()))


def test_bad_options_and_crops_are_refused():
    with pytest.raises(ValueError, match="unknown option"):
        tiny_task(tiny_recipe(d_steps=2))
    with pytest.raises(ValueError, match="unknown loss weight"):
        tiny_task(tiny_recipe(loss_weights={"colour": 1.0}))
    with pytest.raises(ValueError, match="minimum"):
        tiny_task(replace(tiny_recipe(), crop=8))


def test_d_lr_scale():
    task = tiny_task(tiny_recipe(d_lr_scale=0.5))
    opts = task.make_optimizers()
    assert opts["d"].param_groups[0]["lr"] == pytest.approx(0.5 * opts["model"].param_groups[0]["lr"])


def test_recipes_are_paper_shaped():
    cpu, gpu = get_recipe("iqe_dcgan", "cpu"), get_recipe("iqe_dcgan", "gpu")
    assert set(IMAGE_RECIPES["iqe_dcgan"]) == {"cpu", "gpu"}
    assert gpu.crop == 100 and gpu.batch == 50 and gpu.steps == 20000 and gpu.lr == 5e-4
    assert gpu.model_config == {"width": 64, "blocks": 4, "output": "value"}  # the input's colour (docs/real-eval.md)
    assert cpu.model_config["width"] == 32 and cpu.batch == 8
    for r in (cpu, gpu):
        IQETask(DCGANGenerator(width=4, blocks=1), r)  # options are valid; the discriminator fits the crop
