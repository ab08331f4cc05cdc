"""Training never touches the shipped weights unless asked (--export / `lowlight export`, with a backup);
checkpoints carry a content hash and their config; resume refuses what does not match; logs survive kills."""
import csv
import os
from pathlib import Path

import pytest
import torch

import training.__main__ as train_main
from lowlight_core import cli
from lowlight_core.models import registry
from training.trainer import CheckpointError, load_checkpoint, save_checkpoint

VAL_FRACTION = "0.3"
LAYOUT = {"sice_part1": {"1": (0, 0.25), "2": (0, 1.0), "3": (1, 0.15), "4": (1, 0.9), "5": (2, 0.3), "6": (2, 1.0)},
          "lol_train_low": {"1": (3, 0.2), "2": (0, 0.1), "3": (1, 0.2), "4": (3, 0.12)}}


@pytest.fixture(scope="module")
def data_dir(make_data_dir):
    return make_data_dir(LAYOUT, size=64)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A stand-in for lowlight_core/weights holding 'shipped' zero_dce_pp files (the real ones stay untouched)."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for suffix in (".pt", ".md", ".png"):
        (folder / f"zero_dce_pp{suffix}").write_bytes(b"shipped " + suffix.encode())
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    registry.clear_cache()
    return folder


def contents(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def args(data_dir, out, *extra, steps=2):
    return ["zero_dce_pp", "--data", str(data_dir), "--out", str(out), "--batch", "2", "--crop", "32",
            "--val-fraction", VAL_FRACTION, "--val-every", "2", "--workers", "0", "--steps", str(steps), *extra]


def test_training_without_weights_writes_only_into_its_run_folder(data_dir, shipped, tmp_path):
    before = contents(shipped)
    out = tmp_path / "run"
    assert train_main.main(args(data_dir, out, "--no-eval")) == 0
    assert contents(shipped) == before  # a trial run must never replace the shipped model
    saved = torch.load(out / "weights" / "zero_dce_pp.pt", weights_only=True)
    assert saved["model"] == "zero_dce_pp"


def test_weights_into_the_shipped_folder_and_export_without_card_are_refused(data_dir, shipped, tmp_path):
    before = contents(shipped)
    with pytest.raises(SystemExit, match="is in the shipped weights folder"):
        train_main.main(args(data_dir, tmp_path / "a", "--weights", str(shipped / "zero_dce_pp.pt")))
    with pytest.raises(SystemExit, match="--export needs the evaluation"):
        train_main.main(args(data_dir, tmp_path / "b", "--export", "--no-eval"))
    assert contents(shipped) == before and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_replaces_the_shipped_files_and_keeps_the_old_ones(data_dir, shipped, tmp_path, capsys):
    before = contents(shipped)
    out = tmp_path / "run"
    assert train_main.main(args(data_dir, out, "--export")) == 0
    run_files = {s: (out / "weights" / f"zero_dce_pp{s}").read_bytes() for s in (".pt", ".md", ".png")}
    now = contents(shipped)
    for s, blob in run_files.items():
        assert now[f"zero_dce_pp{s}"] == blob
    backups = sorted((shipped / "backup").iterdir())
    assert len(backups) == 1 and contents(backups[0]) == before
    # the explicit command does the same again, with a second backup holding the first export
    assert cli.main(["export", str(out)]) == 0
    backups = sorted((shipped / "backup").iterdir())
    assert len(backups) == 2 and contents(backups[1]) == {f"zero_dce_pp{s}": b for s, b in run_files.items()}
    assert registry.load_model("zero_dce_pp") is not None  # what is shipped now loads


def test_export_refuses_runs_without_card_or_with_garbage(shipped, tmp_path, capsys):
    before = contents(shipped)
    assert cli.main(["export", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    run = tmp_path / "run" / "weights"
    run.mkdir(parents=True)
    (run / "zero_dce_pp.pt").write_bytes(b"not a torch file")
    assert cli.main(["export", str(tmp_path / "run")]) == 2
    assert "not a lowlight weights file" in capsys.readouterr().err
    model = registry.get_model_info("zero_dce_pp").build()
    registry.save_weights(model, "zero_dce_pp", run / "zero_dce_pp.pt")
    assert cli.main(["export", str(tmp_path / "run")]) == 2
    assert "no .md, .png beside it" in capsys.readouterr().err
    assert contents(shipped) == before


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the installed package's weights folder (the real shipped zero_dce_pp files) that registry.WEIGHTS_DIR
    points to, and a working directory outside any checkout: the real shipped files are never at risk."""
    weights = tmp_path / "site-packages" / "lowlight_core" / "weights"
    weights.mkdir(parents=True)
    for suffix in (".pt", ".md", ".png"):
        (weights / f"zero_dce_pp{suffix}").write_bytes((registry.WEIGHTS_DIR / f"zero_dce_pp{suffix}").read_bytes())
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    registry.clear_cache()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return weights


def test_writes_into_the_installed_weights_folder_are_refused_from_any_folder(data_dir, package, tmp_path):
    """`lowlight train` run from outside the checkout: --weights naming a shipped file, --out naming the package (its
    weights/ subfolder is the shipped one), --out inside the shipped folder, and a symlink into it all stop before
    any training with an error naming the shipped folder; the shipped files stay byte-identical."""
    before = contents(package)
    link = tmp_path / "link"
    link.symlink_to(package, target_is_directory=True)
    attempts = [(tmp_path / "run", ["--weights", str(package / "zero_dce_pp.pt")]), (package.parent, []),
                (package / "run", []), (tmp_path / "run", ["--weights", str(link / "zero_dce_pp.pt")])]
    for out, extra in attempts:
        argv = ["train", *args(data_dir, out, "--no-eval", *extra)]
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code not in (0, None) and "is in the shipped weights folder" in str(e.value.code), argv
        assert str(package.resolve()) in str(e.value.code)
        assert contents(package) == before, argv
    assert not (tmp_path / "run").exists()


def test_export_from_any_folder_goes_to_the_installed_weights_folder(data_dir, package, tmp_path):
    """--export run from outside the checkout replaces the package's files (with a backup), not ./weights."""
    before = contents(package)
    out = tmp_path / "run"
    assert train_main.main(args(data_dir, out, "--export")) == 0
    assert (package / "zero_dce_pp.pt").read_bytes() == (out / "weights" / "zero_dce_pp.pt").read_bytes()
    assert contents(next((package / "backup").iterdir())) == before
    assert not (Path.cwd() / "weights").exists()


# ---------------------------------------------------------------- checkpoints and logs

def steps_logged(path):
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_flipped_bytes_inside_a_tensor_are_detected(tmp_path):
    """Item 9: the zip container has no checksum over tensor data; the content hash catches the flip."""
    path = tmp_path / "checkpoint.pt"
    w = torch.arange(4096, dtype=torch.float32)
    save_checkpoint(path, {"version": 1, "step": 3, "w": w})
    assert torch.equal(load_checkpoint(path)["w"], w) and "sha256" not in load_checkpoint(path)
    blob = bytearray(path.read_bytes())
    at = blob.find(w[1000:1016].numpy().tobytes())
    assert at > 0
    blob[at + 5] ^= 0x10
    path.write_bytes(bytes(blob))
    assert not torch.equal(torch.load(path, weights_only=True)["w"], w)  # torch itself reads it happily
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        load_checkpoint(path)


def test_resume_refuses_another_recipe_or_settings_naming_the_difference(data_dir, tmp_path):
    out = tmp_path / "run"
    train_main.main(args(data_dir, out, "--no-eval"))
    other = args(data_dir, out, "--no-eval", "--resume", steps=3)
    other[0] = "zero_dce"
    with pytest.raises(SystemExit, match="recipe: checkpoint 'zero_dce_pp', now 'zero_dce'"):
        train_main.main(other)
    with pytest.raises(SystemExit, match=r"settings.lr: checkpoint 0.005, now 0.02"):
        train_main.main(args(data_dir, out, "--no-eval", "--resume", "--lr", "0.02", steps=3))
    # more steps with the same settings is a legitimate continuation
    assert train_main.main(args(data_dir, out, "--no-eval", "--resume", steps=3)) == 0
    assert steps_logged(out / "train.csv") == [1, 2, 3]


def test_resume_without_checkpoint_is_an_error_and_a_fresh_run_drops_stale_rows(data_dir, tmp_path):
    """Item 6: --resume with no checkpoint started at step 0 and appended to the old CSVs."""
    out = tmp_path / "run"
    train_main.main(args(data_dir, out, "--no-eval"))
    (out / "checkpoint.pt").unlink()  # as if killed before its first checkpoint
    with pytest.raises(SystemExit, match="--resume: there is no checkpoint .*drop --resume"):
        train_main.main(args(data_dir, out, "--no-eval", "--resume"))
    assert train_main.main(args(data_dir, out, "--no-eval", steps=3)) == 0
    assert steps_logged(out / "train.csv") == [1, 2, 3]


def test_torn_csv_row_and_stale_temp_files_survive_a_resume(data_dir, tmp_path):
    """Item 9: a kill in the middle of a CSV write crashed --resume; temp files of a killed save stayed."""
    out = tmp_path / "run"
    train_main.main(args(data_dir, out, "--no-eval"))
    with open(out / "train.csv", "a") as f:
        f.write("3,0.41,0.2")  # torn: no newline, too few cells
    with open(out / "val.csv", "a") as f:
        f.write("x")
    stale = out / ".checkpoint.pt.tmp-999999999"  # above any pid_max: that process is gone
    stale.write_bytes(b"PK half a checkpoint")
    assert train_main.main(args(data_dir, out, "--no-eval", "--resume", steps=4)) == 0
    assert steps_logged(out / "train.csv") == [1, 2, 3, 4]
    assert steps_logged(out / "val.csv") == [2, 4]
    assert not stale.exists()
    assert load_checkpoint(out / "checkpoint.pt")["run_info"]["settings"]["model"] == "zero_dce_pp"


def test_checkpoint_from_before_the_settings_record_still_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    train_main.main(args(data_dir, out, "--no-eval"))
    state = load_checkpoint(out / "checkpoint.pt")
    del state["run_info"]["settings"]  # as written before checkpoints recorded the recipe's settings
    save_checkpoint(out / "checkpoint.pt", state)
    assert train_main.main(args(data_dir, out, "--no-eval", "--resume", steps=3)) == 0
    assert steps_logged(out / "train.csv") == [1, 2, 3]
