"""zero_dce_pp_paired: Zero-DCE++'s curve model trained on the real pairs (training.tasks.paired_curve), with
its shipped weights through enhance(), and its training task."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlight_core import enhance
from lowlight_core.models import registry
from lowlight_core.models.zero_dce_pp import ZeroDCEPP
from training.recipes import get_recipe
from training.tasks.paired_curve import PairedCurveTask

ROOT = Path(__file__).resolve().parent.parent


def test_it_is_zero_dce_pp_with_other_weights():
    model = registry.load_model("zero_dce_pp_paired")
    assert isinstance(model, ZeroDCEPP)
    assert model.config == {"e_conditioned": True, "estimate_size": 8, "curve_on": "value"}
    assert model.contract == registry.load_model("zero_dce_pp").contract  # the same photo path and controls
    assert any((a != b).any() for a, b in zip(model.state_dict().values(),
                                              registry.load_model("zero_dce_pp").state_dict().values()))


def test_exposure_sets_the_brightness_and_the_colour_stays(dark_astronaut):
    means = [float(enhance(dark_astronaut, model="zero_dce_pp_paired", exposure=e, denoise=0).mean()) / 255
             for e in (0.3, 0.45, 0.6)]
    assert means == sorted(means) and all(abs(m - e) < 0.03 for m, e in zip(means, (0.3, 0.45, 0.6))), means
    y = enhance(dark_astronaut, model="zero_dce_pp_paired", exposure=0.45, denoise=0).astype(np.float64)
    x = dark_astronaut.astype(np.float64)
    lit = x.max(2) > 20  # a value curve scales R, G, B by one factor: the chromaticity is the input's
    chroma = lambda a: a[lit] / a[lit].sum(1, keepdims=True)
    assert np.abs(chroma(y) - chroma(x)).mean() < 0.01


def test_its_tone_is_closer_to_a_gain_than_zero_dce_pp(dark_astronaut):
    """What it was trained for: a real longer exposure is close to a gain on the dark frame, so at the same
    brightness its result lies closer to the gained input than zero_dce_pp's (which flattens every region
    towards E)."""
    x = dark_astronaut.astype(np.float64)

    def distance_to_gain(name):
        y = enhance(dark_astronaut, model=name, exposure=0.4, denoise=0).astype(np.float64)
        gained = np.clip(x * (y.mean() / x.mean()), 0, 255)
        return np.abs(y - gained).mean()

    assert distance_to_gain("zero_dce_pp_paired") < distance_to_gain("zero_dce_pp")


def test_a_training_step_lowers_the_loss_on_one_pair():
    torch.manual_seed(0)
    recipe = get_recipe("zero_dce_pp_paired", batch=2, crop=32)
    task = PairedCurveTask(ZeroDCEPP(estimate_size=8, curve_on="value"), recipe)
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-2)
    normal = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    batch = torch.stack([normal * 0.1, normal])

    def update(loss, _name):
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 0.0

    losses = [task.train_step(batch, torch.Generator().manual_seed(1), update)["loss"] for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_two_step_training_run_on_real_pairs(make_data_dir, tmp_path):
    data = make_data_dir({"sice_part1": {1: (0, 0.25), 2: (0, 1.0), 3: (1, 0.15), 4: (1, 0.9)},
                          "lol_train_low": {1: (2, 0.1)}}, 64)
    out, weights = tmp_path / "run", tmp_path / "zero_dce_pp_paired.pt"
    args = ["zero_dce_pp_paired", "--data", str(data), "--out", str(out), "--weights", str(weights), "--batch",
            "2", "--crop", "32", "--steps", "2", "--val-every", "2", "--workers", "0", "--val-fraction", "0.6",
            "--no-eval"]
    r = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "val_ciede2000" in (out / "val.csv").read_text()
    y = enhance(np.full((9, 11, 3), 20, np.uint8), model="zero_dce_pp_paired", weights=weights)
    assert y.shape == (9, 11, 3)
