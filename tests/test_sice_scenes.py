"""The SICE scene manifest (training/sice_scenes.csv) against the images, the scene split, the pair batches."""
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training import data as data_mod
from training import sice_scenes as ss
from training import split as split_mod

SICE = data_mod.default_data_dir() / ss.FOLDER


@pytest.fixture(scope="module")
def rows():
    assert SICE.is_dir(), f"{SICE} not found: the manifest test needs ../shared/data (read its README)"
    return ss.read_manifest()


def spread(items, k):
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def test_manifest_covers_every_file_once_in_contiguous_scenes(rows):
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in ss.sorted_files(SICE))
    scenes = defaultdict(list)
    for r in rows:
        scenes[r["scene"]].append(int(Path(r["file"]).stem))
    for scene, numbers in scenes.items():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), scene
        assert scene == f"s{numbers[0]:04d}"
    assert {r["role"] for r in rows} <= {"target", "low", "unaligned", "other"}


def test_roles_follow_the_rules(rows):
    by_scene = defaultdict(list)
    for r in rows:
        by_scene[r["scene"]].append(r)
    n_pairs = 0
    for scene, members in by_scene.items():
        targets = [r for r in members if r["role"] == "target"]
        lows = [r for r in members if r["role"] == "low"]
        assert len(targets) <= 1, scene
        if lows:
            t = float(targets[0]["mean"])
            assert ss.TARGET_RANGE[0] <= t <= ss.TARGET_RANGE[1]
            for r in lows:
                assert float(r["mean"]) < ss.DARK_MAX and float(r["mean"]) <= ss.DARK_RATIO * t
                assert float(r["shift"]) <= ss.MAX_SHIFT and float(r["structure"]) >= ss.MIN_STRUCTURE
        n_pairs += len(lows)
    assert n_pairs >= 400, "far fewer real pairs than the ~450 the data holds"


def test_manifest_matches_the_images_on_a_sample(rows):
    """Recomputed from the JPEG files: brightness, scene links at boundaries and inside scenes, pair alignment."""
    frames = {}

    def frame(name):
        if name not in frames:
            frames[name] = ss.read_frame(SICE / name)
        return frames[name]

    by_file = {r["file"]: r for r in rows}
    ordered = [p.name for p in ss.sorted_files(SICE)]
    boundaries = [(a, b) for a, b in zip(ordered, ordered[1:]) if by_file[a]["scene"] != by_file[b]["scene"]]
    inside = [(a, b) for a, b in zip(ordered, ordered[1:]) if by_file[a]["scene"] == by_file[b]["scene"]]
    for a, b in spread(boundaries, 8):
        assert ss.link(frame(a), frame(b)) < ss.SCENE_LINK, (a, b)
    for a, b in spread(inside, 8):
        assert ss.link(frame(a), frame(b)) >= ss.SCENE_LINK, (a, b)
    targets = {r["scene"]: r["file"] for r in rows if r["role"] == "target"}
    lows = [r for r in rows if r["role"] == "low"]
    for r in spread(lows, 8):
        shift, structure = ss.alignment(frame(targets[r["scene"]]), frame(r["file"]))
        assert shift <= ss.MAX_SHIFT and structure >= ss.MIN_STRUCTURE, r
        assert abs(frame(r["file"]).mean - float(r["mean"])) < 1e-3


def test_scene_split_never_leaks(rows):
    train = ss.real_pairs(split="train")
    val = ss.real_pairs(split="validation")
    assert len(val) >= 40 and len(train) >= 300
    scene = ss.scene_of()
    train_scenes = {scene[p.name] for pair in train for p in pair}
    val_scenes = {scene[p.name] for pair in val for p in pair}
    assert not train_scenes & val_scenes
    assert not {p for pair in train for p in pair} & {p for pair in val for p in pair}
    # training.data's split (zero-reference and unpaired training) keeps every file of a scene on one side
    paths = data_mod.list_images(folders=(ss.FOLDER,))
    _, held = split_mod.split(paths)
    held_scenes = {scene[p.name] for p in held}
    assert held_scenes >= val_scenes
    assert all(scene[p.name] not in held_scenes for p in set(paths) - set(held))


def test_grouping_separates_scenes_and_keeps_exposures_together(tmp_path):
    """Two real photos, each shot at four exposures through a camera-like tone curve: two scenes."""
    import skimage.data as skd

    files = []
    for k, photo in enumerate((skd.astronaut(), skd.chelsea())):
        img = np.asarray(Image.fromarray(photo).resize((256, 256)), dtype=np.float64) / 255
        for j, gain in enumerate((0.08, 0.3, 1.0, 2.5)):
            out = np.clip((img ** 2.2 * gain) ** (1 / 2.2), 0, 1)
            path = tmp_path / f"{k * 4 + j + 1}.jpg"
            Image.fromarray((out * 255).round().astype(np.uint8)).save(path, quality=90)
            files.append(path)
    scenes = ss.group_scenes([ss.read_frame(p) for p in ss.sorted_files(tmp_path)])
    assert [[f.file for f in s] for s in scenes] == [[f"{i}.jpg" for i in range(1, 5)],
                                                     [f"{i}.jpg" for i in range(5, 9)]]


def test_real_pair_batches_crop_both_frames_alike(tmp_path):
    """Identical frames as a pair: every crop (window and flips) of the dark side equals the target's."""
    rng = np.random.default_rng(0)
    pairs = []
    for i, size in enumerate(((70, 90), (120, 64))):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        pairs.append((path, path))
    batches = ss.RealPairBatches(pairs, batch=5, crop=48, seed=3)
    for step in range(4):
        b = batches[step]
        assert b.shape == (2, 5, 3, 48, 48)
        torch.testing.assert_close(b[0], b[1], rtol=0, atol=0)
    assert not torch.equal(batches[0], batches[1])
    torch.testing.assert_close(batches[2], batches[2], rtol=0, atol=0)


def test_tiny_dln_run_trains_and_validates_on_real_pairs(make_data_dir, tmp_path):
    """A data folder without a manifest: its scenes are found from the images, pairs train and validate."""
    import subprocess
    import sys

    data = make_data_dir({"sice_part1": {1: (0, 0.25), 2: (0, 1.0), 3: (1, 0.15), 4: (1, 0.9)},
                          "lol_train_low": {1: (2, 0.1)}}, 64)
    roles = {r["file"]: r["role"] for r in ss.manifest_rows(data)}
    assert roles == {"1.png": "low", "2.png": "target", "3.png": "low", "4.png": "target"}
    assert ss.real_pairs(data, "train", 0.6) == [(data / "sice_part1" / "1.png", data / "sice_part1" / "2.png")]
    assert ss.real_pairs(data, "validation", 0.6) == [(data / "sice_part1" / "3.png", data / "sice_part1" / "4.png")]
    out, weights = tmp_path / "run", tmp_path / "dln.pt"
    args = ["dln", "--data", str(data), "--out", str(out), "--weights", str(weights), "--batch", "2", "--crop", "32",
            "--steps", "3", "--val-every", "3", "--width", "8", "--workers", "0", "--val-fraction", "0.6", "--no-eval"]
    r = subprocess.run([sys.executable, "-m", "training", *args], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = torch.load(weights, weights_only=True)["meta"]["training"]["summary"]
    assert summary.startswith("real pairs: 1 dark SICE frames")
    assert "val_psnr" in (out / "val.csv").read_text()
