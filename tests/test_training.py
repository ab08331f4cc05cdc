"""Training infrastructure: data split and sampling, checkpoints, resume after a kill, outputs of a real
(tiny) run of both curve recipes on real photographs from skimage.data."""
import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import data as data_mod
from training import plots
from training import split as split_mod
from training.trainer import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SIZE = 80  # px, long side of the test photos: big enough for the 16 px exposure patches, fast on CPU
VAL_FRACTION = "0.3"  # with the names below: lol_train_low/1.png and 2.png are held out


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """A tiny data folder laid out like ../shared/data: dark and normal exposures of real photos."""
    import skimage.data as skd

    root = tmp_path_factory.mktemp("data")
    photos = [skd.astronaut(), skd.chelsea(), skd.rocket(), skd.coffee()]
    layout = {"sice_part1": [(0, 0.25), (0, 1.0), (1, 0.15), (1, 0.9), (2, 0.3), (2, 1.0)],
              "lol_train_low": [(3, 0.2), (0, 0.1), (1, 0.2), (3, 0.12)]}
    for folder, items in layout.items():
        (root / folder).mkdir()
        for i, (k, gain) in enumerate(items, start=1):
            im = Image.fromarray(photos[k])
            im.thumbnail((SIZE, SIZE))
            a = (np.asarray(im, dtype=np.float32) * gain).clip(0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / folder / f"{i}.png")
    return root


def run_cli(args, **env):
    """python -m training ... in a fresh process (as a user would run it); returns the Popen."""
    return subprocess.Popen([sys.executable, "-m", "training", *args], cwd=ROOT,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tiny_args(recipe, image_dir, out, *extra):
    return [recipe, "--data", str(image_dir), "--out", str(out), "--weights", str(out / "w" / f"{recipe}.pt"),
            "--batch", "2", "--crop", "32", "--val-fraction", VAL_FRACTION, "--val-every", "3",
            "--workers", "0", *extra]


# ---------------------------------------------------------------- the package

ONE_NAME_CHECK = """
import importlib, os, pkgutil, sys
import training, lowlight_training
for package in (lowlight_training, training):  # every module, imported under both names
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(m.name)
import training.tasks.dln, lowlight_training.tasks.dln
folder = os.path.dirname(os.path.realpath(lowlight_training.__file__))
loaded = {}
for mod in list(sys.modules.values()):
    if getattr(mod, "__file__", None) and os.path.realpath(mod.__file__).startswith(folder + os.sep):
        loaded.setdefault(os.path.realpath(mod.__file__), set()).add(id(mod))
twice = sorted(f for f, ids in loaded.items() if len(ids) > 1)
assert not twice, twice
assert training is lowlight_training and training.tasks.dln.DLNTask is lowlight_training.tasks.dln.DLNTask
print(len(loaded))
"""


def test_no_module_is_loaded_under_two_names():
    """In a checkout the folder imports as `training` and as `lowlight_training`: one module object per file."""
    r = subprocess.run([sys.executable, "-c", ONE_NAME_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) >= 20  # every training module was imported


def test_every_recipe_names_a_complete_task():
    from training.recipes import RECIPES
    from training.tasks.base import TrainTask

    members = ("make_optimizers", "train_step", "validate", "preview", "training_data", "evaluate", "card_figure",
               "model_card", "card_summary")
    for name, configs in RECIPES.items():
        for recipe in configs.values():
            assert issubclass(recipe.task, TrainTask), name
            missing = [m for m in members if next(c for c in recipe.task.__mro__ if m in vars(c)) is TrainTask]
            assert not missing, (name, missing)


# ---------------------------------------------------------------- data

def test_split_is_stable_and_keeps_sice_scenes_together(image_dir):
    paths = data_mod.list_images(image_dir)
    train, val = split_mod.split(paths, float(VAL_FRACTION))
    assert [p.name for p in val] == ["1.png", "2.png"] and all(p.parent.name == "lol_train_low" for p in val)
    assert split_mod.split(paths, float(VAL_FRACTION)) == (train, val)
    # the exposures of one SICE scene (training/sice_scenes.csv: 2..8 is one scene, 9 starts the next) share a
    # split key; LOL files do not
    sice = data_mod.default_data_dir() / "sice_part1"
    assert split_mod.split_key(sice / "2.jpg") == split_mod.split_key(sice / "8.jpg")
    assert split_mod.split_key(sice / "8.jpg") != split_mod.split_key(sice / "9.jpg")
    assert split_mod.split_key(Path("lol_train_low/33.png")) != split_mod.split_key(Path("lol_train_low/34.png"))


def test_missing_data_folder_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data"):
        data_mod.list_images(tmp_path)


def test_crop_batches_are_a_function_of_the_step(image_dir):
    train, _ = split_mod.split(data_mod.list_images(image_dir), float(VAL_FRACTION))
    ds = data_mod.CropBatches(train, batch=3, crop=40, seed=5)
    a, b, c = ds[7], ds[7], ds[8]
    assert a.shape == (3, 3, 40, 40) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(ds[7], data_mod.CropBatches(train, batch=3, crop=40, seed=6)[7])
    # a crop larger than the image is upscaled to fit, not padded
    assert data_mod.CropBatches(train, batch=1, crop=120, seed=0)[0].shape == (1, 3, 120, 120)


def test_mean_intensity_and_well_exposed(image_dir, tmp_path):
    paths = data_mod.list_images(image_dir)
    cache = tmp_path / "means.json"
    means = data_mod.mean_intensities(paths, cache)
    exact = {str(p): float(data_mod.load_rgb(p).mean()) for p in paths}
    for k in means:
        assert abs(means[k] - exact[k]) < 0.02  # measured on a thumbnail
    assert cache.stat().st_size > 0 and data_mod.mean_intensities(paths, cache) == means
    well = data_mod.well_exposed(paths, cache_file=cache)
    assert well and all(0.35 <= means[str(p)] <= 0.65 for p in well)
    assert len(well) < len(paths)  # the darkened copies are not well exposed


# ---------------------------------------------------------------- checkpoints

def test_truncated_checkpoint_is_detected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"version": 1, "step": 3, "w": torch.randn(1000)}
    save_checkpoint(path, state)
    assert torch.equal(load_checkpoint(path)["w"], state["w"])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"version": 1, "step": 1})
    good = path.read_bytes()

    def dies_halfway(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # a kill while writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"version": 1, "step": 2})
    assert path.read_bytes() == good and load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left behind


# ---------------------------------------------------------------- real runs

def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("recipe", ["zero_dce", "zero_dce_pp"])
def test_tiny_run_writes_every_output(recipe, image_dir, tmp_path):
    from training.__main__ import main

    out = tmp_path / "run"
    assert main(tiny_args(recipe, image_dir, out, "--steps", "4", "--ckpt-every", "2")) == 0
    rows = read_rows(out / "train.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("loss", "tv", "spa", "col", "exp", "grad_norm"))
    val = read_rows(out / "val.csv")
    assert [int(r["step"]) for r in val] == [3, 4] and all(math.isfinite(float(r["val_loss"])) for r in val)
    if recipe == "zero_dce_pp":
        assert all(6 <= int(r["n"]) <= 10 for r in rows)
    for name in ("losses.png", "grid.png", "checkpoint.pt", "eval.json", f"w/{recipe}.pt", f"w/{recipe}.md",
                 f"w/{recipe}.png"):
        assert (out / name).stat().st_size > 0, name
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    with Image.open(out / "grid.png") as im:  # 2 validation images x (input + 4 exposures)
        assert im.width > 4 * im.height / 2
    card = (out / "w" / f"{recipe}.md").read_text()
    assert "| 0.4 |" in card and "non-commercial" in card and "python -m training" in card
    from lowlight_core.models import registry

    model = registry.load_model(recipe, weights=out / "w" / f"{recipe}.pt")
    y = model.enhance(torch.rand(1, 3, 24, 20) * 0.2, exposure=0.6, iterations=8)
    assert y.shape == (1, 3, 24, 20) and torch.isfinite(y).all()


def test_training_lowers_the_validation_loss(image_dir, tmp_path):
    from training.__main__ import main

    out = tmp_path / "run"
    main(tiny_args("zero_dce_pp", image_dir, out, "--steps", "30", "--val-every", "1", "--ckpt-every", "30",
                   "--crop", "48", "--batch", "4", "--lr", "1e-2", "--no-eval"))
    val = [float(r["val_loss"]) for r in read_rows(out / "val.csv")]
    assert all(math.isfinite(v) for v in val) and min(val[-5:]) < 0.9 * val[0]


def test_resume_after_kill_matches_an_uninterrupted_run(image_dir, tmp_path):
    from training.__main__ import main

    steps = ["--steps", "6", "--ckpt-every", "2", "--no-eval"]
    killed = tmp_path / "killed"
    proc = run_cli(tiny_args("zero_dce", image_dir, killed, *steps), LOWLIGHT_TRAIN_PAUSE_AFTER_CKPT="60")
    ckpt = killed / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # while it sleeps after its first checkpoint
    output = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, output
    first = load_checkpoint(ckpt)
    assert first["step"] == 2
    assert [int(r["step"]) for r in read_rows(killed / "train.csv")] == [1, 2]
    with pytest.raises(FileExistsError, match="--resume"):
        main(tiny_args("zero_dce", image_dir, killed, *steps))

    main(tiny_args("zero_dce", image_dir, killed, *steps, "--resume"))
    straight = tmp_path / "straight"
    main(tiny_args("zero_dce", image_dir, straight, *steps))
    a, b = load_checkpoint(killed / "checkpoint.pt"), load_checkpoint(straight / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    assert [int(r["step"]) for r in read_rows(killed / "train.csv")] == list(range(1, 7))
    for k, v in b["modules"]["model"].items():
        torch.testing.assert_close(a["modules"]["model"][k], v, msg=k)
    sa, sb = a["optimizers"]["model"]["state"], b["optimizers"]["model"]["state"]
    for i in sb:
        torch.testing.assert_close(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    killed_loss = [float(r["loss"]) for r in read_rows(killed / "train.csv")]
    straight_loss = [float(r["loss"]) for r in read_rows(straight / "train.csv")]
    np.testing.assert_allclose(killed_loss, straight_loss, rtol=1e-5)
    # the first piece's weights differ from the final ones: the resumed run did train
    assert any(not torch.equal(first["modules"]["model"][k], v) for k, v in a["modules"]["model"].items())


def test_grid_fits_a_byte_budget(tmp_path):
    ramp = torch.linspace(0, 1, 120).expand(1, 3, 90, 120)  # smooth, like photos (noise would not compress)
    rows = [[(ramp * (0.2 + 0.2 * j) + 0.1 * i).clamp(0, 1) for j in range(5)] for i in range(3)]
    path = tmp_path / "grid.png"
    plots.image_grid(rows, ["input", "a", "b", "c", "d"], path, tile=300, max_bytes=60_000)
    assert 0 < path.stat().st_size <= 60_000
    assert not list(tmp_path.glob(".*tmp"))


def test_smooth_is_a_trailing_mean():
    v = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(plots.smooth(v, 2), [1.0, 2.0, 4.0, 6.0])


def test_real_eval_tables_report_ciede2000_and_exposure_error_in_every_row():
    """The card's real-photo section and the real-eval table carry the CIEDE2000 column (the input's row: the
    dark frame's own colour) and the exposure error against the reference, and every row has as many cells as
    the header."""
    from training.real_eval import PAIR_KEYS, PHOTO_KEYS, card_section, table_rows

    pairs = dict(zip(PAIR_KEYS, (18.5, 0.74, 0.1, 7.25, 0.043)))
    photos = dict(zip(PHOTO_KEYS, (0.45, 0.1, 0.05, 0.95, 0.7)))
    r = {"pairs": pairs, "photos": photos, "sice": photos, "lol": photos, "reference": photos,
         "input": {**dict(zip(PAIR_KEYS, (8.0, 0.3, 0.0, 9.5, 0.31))), **photos},
         "worst_photo": {"color_shift": 0.2, "clipped": 0.5},
         "counts": {"pairs": 100, "scenes": 34, "sice_dark": 100, "lol": 24}, "protocol": "p", "note": "n"}
    for table in (card_section(r), table_rows({"dln": r})):
        rows = [line for line in table if line.startswith("|")]
        assert "CIEDE2000" in rows[0] and "exposure error" in rows[0]
        assert len({line.count("|") for line in rows}) == 1, rows
    card = "\n".join(card_section(r))
    assert "| input | 8.00 | 0.300 | 9.50 | 0.310 |" in card
    assert "| all dark photos | 18.50 | 0.740 | 7.25 | 0.043 |" in card
