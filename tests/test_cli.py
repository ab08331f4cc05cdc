"""The `lowlight` command end to end on real files, through main(argv)."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from lowlight_core import cli
from lowlight_core.io import read_image, write_image
from lowlight_core.metrics import PROTOCOL, ciede2000_uint8, psnr_uint8, ssim_uint8

RNG = np.random.default_rng(0)


def _dark(shape, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (RNG.random(shape) * 0.3 * top).astype(dtype)


@pytest.fixture
def photos(tmp_path):
    """A folder with several formats and depths, a sub-folder, a broken file and a non-image."""
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    write_image(src / "a.png", _dark((20, 24, 3)))
    write_image(src / "deep16.png", _dark((20, 24, 3), np.uint16))
    write_image(src / "sub" / "c.jpg", _dark((20, 24, 3)))
    write_image(src / "sub" / "f.tif", _dark((20, 24, 4), np.uint16))
    write_image(src / "gray.bmp", _dark((20, 24)))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("not an image, not picked up from a folder")
    return src


def _snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_enhance_folder_keeps_names_formats_and_depths_and_carries_on(photos, tmp_path, capsys):
    before = _snapshot(photos)
    out = tmp_path / "out"
    code = cli.main(["enhance", str(photos), "-o", str(out), "--model", "gamma", "--exposure", "0.5"])
    err = capsys.readouterr().err
    assert code == 1  # broken.png failed ...
    assert "broken.png" in err and "corrupt" in err
    assert "enhanced 5 of 6" in err
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    manifest = made.pop(0)  # every run records its outputs (a later run never takes them for inputs)
    assert manifest == ".lowlight-done.0.jsonl" and len((out / manifest).read_text().splitlines()) == 5
    assert made == ["a.png", "deep16.png", "gray.bmp", "sub/c.jpg", "sub/f.tif"]  # ... the others were done
    for rel in made:
        original, _ = read_image(photos / rel)
        result, info = read_image(out / rel)
        assert result.shape == original.shape and result.dtype == original.dtype
        assert info["format"] == read_image(photos / rel)[1]["format"]
        assert result[..., :3].mean() > original[..., :3].mean()  # brighter
    np.testing.assert_array_equal(read_image(out / "sub/f.tif")[0][..., 3], read_image(photos / "sub/f.tif")[0][..., 3])
    assert _snapshot(photos) == before  # inputs untouched


def test_enhance_never_overwrites_an_input(photos, capsys):
    before = _snapshot(photos)
    code = cli.main(["enhance", str(photos / "a.png"), "-o", str(photos), "--model", "gamma"])
    assert code == 1
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert _snapshot(photos) == before
    # with a suffix the same folder is fine
    assert cli.main(["enhance", str(photos / "a.png"), "-o", str(photos), "--model", "gamma", "--suffix", "_lit"]) == 0
    assert (photos / "a_lit.png").is_file()


def test_enhance_refuses_two_inputs_onto_one_output(tmp_path, capsys):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "same.png", _dark((8, 8, 3)))
    code = cli.main(["enhance", str(tmp_path / "x/same.png"), str(tmp_path / "y/same.png"), "-o",
                     str(tmp_path / "out"), "--model", "gamma"])
    assert code == 1
    assert "would overwrite the result of" in capsys.readouterr().err
    assert (tmp_path / "out/same.png").is_file()


def test_enhance_skips_its_own_output_folder_inside_the_input(photos, capsys):
    out = photos / "enhanced"
    assert cli.main(["enhance", str(photos / "sub"), "-o", str(out), "--model", "gamma"]) == 0
    assert cli.main(["enhance", str(photos / "sub"), "-o", str(photos / "sub" / "lit"), "--model", "gamma"]) == 0
    assert cli.main(["enhance", str(photos / "sub"), "-o", str(photos / "sub" / "lit"), "--model", "gamma"]) == 0
    assert not (photos / "sub" / "lit" / "lit").exists()


def test_enhance_keeps_icc_and_turns_exif_orientation_upright(tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_dark((16, 30, 3))).save(tmp_path / "o.jpg", exif=exif.tobytes(), icc_profile=icc)
    assert cli.main(["enhance", str(tmp_path / "o.jpg"), "-o", str(tmp_path / "out"), "--model", "gamma"]) == 0
    result, info = read_image(tmp_path / "out" / "o.jpg")
    assert result.shape == (30, 16, 3) and info["orientation"] == 1 and info["icc_profile"] == icc


def test_enhance_with_a_weights_file(tmp_path):
    from lowlight_core.models.registry import get_model_info, save_weights

    torch.manual_seed(0)
    weights = save_weights(get_model_info("zero_dce").build(), "zero_dce", tmp_path / "w.pt", {})
    write_image(tmp_path / "in.png", _dark((12, 14, 3)))
    code = cli.main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", "zero_dce",
                     "--weights", str(weights), "--iterations", "4", "--tile", "8"])
    assert code == 0 and read_image(tmp_path / "out" / "in.png")[0].shape == (12, 14, 3)


@pytest.mark.parametrize("argv,match", [
    (["--model", "nope"], "unknown model 'nope'.*gamma"),
    (["--model", "zero_dce", "--weights", "/nonexistent/w.pt"], "lowlight train zero_dce"),
    (["--exposure", "2"], "exposure must be in"),
    (["--iterations", "0"], "iterations must be in"),
    (["--device", "bogus"], "unknown device"),
])
def test_enhance_bad_setup_exits_2_before_any_work(tmp_path, capsys, argv, match):
    write_image(tmp_path / "in.png", _dark((8, 8, 3)))
    code = cli.main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", "gamma"] + argv)
    assert code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_enhance_missing_input_is_reported(tmp_path, capsys):
    write_image(tmp_path / "in.png", _dark((8, 8, 3)))
    code = cli.main(["enhance", str(tmp_path / "missing.png"), str(tmp_path / "in.png"), "-o",
                     str(tmp_path / "out"), "--model", "gamma"])
    assert code == 1
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    assert (tmp_path / "out" / "in.png").is_file()


@pytest.fixture
def pairs(tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    low.mkdir()
    high.mkdir()
    for name in ("1", "2"):
        ref = (RNG.random((24, 28, 3)) * 255).astype(np.uint8)
        write_image(high / f"{name}.png", ref)
        write_image(low / f"{name}.png", (ref * 0.2).astype(np.uint8))
    return low, high


def test_eval_scores_models_side_by_side(pairs, tmp_path, capsys):
    low, high = pairs
    report = tmp_path / "r.json"
    code = cli.main(["eval", "--low", str(low), "--high", str(high), "--model", "input", "--model", "gamma",
                     "--json", str(report)])
    printed = capsys.readouterr().out
    assert code == 0
    assert PROTOCOL in printed and "gamma" in printed and "mean" in printed
    data = json.loads(report.read_text())
    assert data["protocol"] == PROTOCOL and data["models"] == ["input", "gamma"]
    for name in ("1", "2"):
        a, b = read_image(low / f"{name}.png")[0], read_image(high / f"{name}.png")[0]
        assert data["images"][name]["input"]["psnr"] == pytest.approx(psnr_uint8(a, b))
        assert data["images"][name]["input"]["ssim"] == pytest.approx(ssim_uint8(a, b))
        assert data["images"][name]["gamma"]["psnr"] > data["images"][name]["input"]["psnr"]
        assert data["images"][name]["input"]["clipped"] == 0.0  # the input never exceeds its own reference here
        assert 0 <= data["images"][name]["gamma"]["color_shift"] < 1
        assert data["images"][name]["input"]["ciede2000"] == pytest.approx(ciede2000_uint8(a, b))
    assert "dE00" in printed
    mean_psnr = np.mean([data["images"][n]["gamma"]["psnr"] for n in ("1", "2")])
    assert data["mean"]["gamma"]["psnr"] == pytest.approx(mean_psnr)


def test_eval_default_models_are_the_input_and_those_with_weights(pairs, capsys):
    low, high = pairs
    assert cli.main(["eval", "--low", str(low), "--high", str(high)]) == 0
    header = capsys.readouterr().out.splitlines()[2].split()
    from lowlight_core.models.registry import has_weights, list_models

    assert header == ["input"] + [m.name for m in list_models() if has_weights(m.name)]


def test_eval_reports_unpaired_and_mismatched_images(pairs, capsys):
    low, high = pairs
    write_image(low / "3.png", _dark((8, 8, 3)))  # no reference
    write_image(low / "4.png", _dark((8, 8, 3)))
    write_image(high / "4.jpg", _dark((9, 8, 3)))  # paired by stem, but another size
    code = cli.main(["eval", "--low", str(low), "--high", str(high), "--model", "input"])
    captured = capsys.readouterr()
    assert code == 1
    assert "3.png: no reference" in captured.err and "4.png: shape" in captured.err
    assert "(2 images scored)" in captured.out


def test_eval_bad_folders_exit_2(tmp_path, capsys):
    assert cli.main(["eval", "--low", str(tmp_path / "no"), "--high", str(tmp_path), "--model", "input"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_models_lists_every_model(capsys):
    from lowlight_core.models.registry import list_models

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for m in list_models():
        assert m.name in out
    assert "none needed" in out and "controls" in out


def test_subcommands_are_a_table():
    assert {"enhance", "eval", "models"} <= set(cli.SUBCOMMANDS)
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0


def test_train_subcommand_reaches_the_trainer(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train"])  # no recipe: the trainer prints its usage
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m lowlight_training" in out and "zero_dce_pp" in out  # reached via the entry point


def test_eval_without_references_scores_the_real_photo_checks(pairs, tmp_path, capsys):
    from lowlight_core import enhance
    from lowlight_core.metrics import real_photo_scores

    low, _ = pairs
    report = tmp_path / "r.json"
    assert cli.main(["eval", "--low", str(low), "--model", "input", "--model", "gamma", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "Real-photo checks" in printed and "PSNR" not in printed.split("Real-photo")[1]
    data = json.loads(report.read_text())
    for name in ("1", "2"):
        a = read_image(low / f"{name}.png")[0]
        assert data["images"][name]["input"]["photo"]["color_shift"] == pytest.approx(0.0)
        assert data["images"][name]["input"]["photo"]["saturation"] == pytest.approx(1.0)
        assert "psnr" not in data["images"][name]["gamma"]
        g = data["images"][name]["gamma"]["photo"]
        assert g["brightness"] > a.mean() / 255
        assert g == pytest.approx(real_photo_scores(a, enhance(a, model="gamma")), nan_ok=True)


# ---------------------------------------------------------------- folders at full throughput (lowlight_core.batch)

def _outputs(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_enhance_with_decode_workers_writes_the_same_files(photos, tmp_path, capsys):
    """Decoding in 2 worker processes and writing in a thread: the same bytes as one file after another,
    and a corrupt file is still reported by name while the others are done."""
    args = ["enhance", str(photos), "--model", "zero_dce_pp", "--exposure", "0.5"]
    assert cli.main([*args, "-o", str(tmp_path / "serial"), "--workers", "0"]) == 1
    assert cli.main([*args, "-o", str(tmp_path / "piped"), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("lowlight: error:")]
    assert len(errors) == 2 and all("broken.png" in e for e in errors) and err.count("enhanced 5 of 6") == 2
    serial, piped = _outputs(tmp_path / "serial"), _outputs(tmp_path / "piped")
    assert len(serial) == 5 and serial == piped


def test_enhance_shards_files_across_processes_and_resumes(photos, tmp_path, capsys, monkeypatch):
    """Under torchrun (RANK / WORLD_SIZE) each process takes its share: no file twice, none left out; a
    --resume rerun skips what a manifest lists as done with the same settings, and only that."""
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    args = ["enhance", str(photos), "-o", str(out), "--model", "gamma", "--resume"]
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert cli.main(args) == 0
    done = [[json.loads(line)["dst"] for line in (out / f".lowlight-done.{r}.jsonl").read_text().splitlines()]
            for r in (0, 1)]
    assert sorted(map(len, done)) == [2, 3] and not set(done[0]) & set(done[1])
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    whole = tmp_path / "whole"
    assert cli.main(["enhance", str(photos), "-o", str(whole), "--model", "gamma"]) == 0
    assert _outputs(out) == _outputs(whole)
    capsys.readouterr()

    (out / "a.png").unlink()  # lost since: made again
    with open(out / ".lowlight-done.1.jsonl", "a") as f:
        f.write('{"src": "torn by a ki')  # a line torn by a kill is ignored
    assert cli.main(args) == 0
    assert "enhanced 1 of 5" in capsys.readouterr().err and (out / "a.png").is_file()
    assert cli.main([*args, "--exposure", "0.7"]) == 0  # other settings: nothing is skipped
    assert "enhanced 5 of 5" in capsys.readouterr().err


def test_enhance_start_does_not_import_the_compiler(tmp_path):
    """Loading a model builds a meta-device shell first (the parameter limit); torch.nn.init under the meta device
    used to import torch._dynamo, ~2-3 s of every `lowlight enhance` start. Fresh process: nothing imported yet."""
    import subprocess
    import sys
    src = tmp_path / "in.png"
    Image.fromarray(np.full((40, 56, 3), 30, np.uint8)).save(src)
    code = ("import sys; from lowlight_core import cli; "
            f"rc = cli.main(['enhance', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}, '--model', 'zero_dce_pp']); "
            "print(rc, 'torch._dynamo' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["0", "False"], run.stdout + run.stderr
