"""The `lowlight` command against careless arguments: every one checked before the first file is read
(exit 2), odd output folders, long file names."""
import os
import re

import numpy as np
import pytest

from lowlight_core import cli
from lowlight_core.io import read_image, write_image

RNG = np.random.default_rng(1)


def dark(shape):
    return (RNG.random(shape) * 60).astype(np.uint8)


def test_output_folder_at_or_above_the_input_folder_finds_the_inputs(tmp_path, monkeypatch, capsys):
    """Item 5: `lowlight enhance raw -o .` said "no images found": the filter for earlier outputs hid them."""
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    write_image(raw / "a.png", dark((6, 7, 3)))
    write_image(raw / "sub" / "b.png", dark((6, 7, 3)))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["enhance", "raw", "-o", ".", "--model", "gamma"]) == 0, capsys.readouterr().err
    assert read_image(tmp_path / "a.png")[0].shape == (6, 7, 3) and (tmp_path / "sub" / "b.png").is_file()
    # the output folder *is* the input folder: with a suffix it works
    assert cli.main(["enhance", "raw", "-o", "raw", "--model", "gamma", "--suffix", "_lit"]) == 0
    assert (raw / "a_lit.png").is_file() and (raw / "sub" / "b_lit.png").is_file()


def test_rerun_into_the_input_folder_leaves_earlier_outputs_alone(tmp_path, monkeypatch, capsys):
    """Issue 26 item 9: a second `enhance raw -o raw --suffix _e` enhanced the first run's outputs again
    (*_e_e.png) and reported errors. Outputs are recognised by the manifest, whatever their names: a later
    run with another suffix, or into another folder, leaves them out too; a photo named like an output is
    still an input."""
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "c_e.png"):  # c_e.png: the user's photo, not an output
        write_image(raw / name, dark((6, 7, 3)))
    monkeypatch.chdir(tmp_path)
    argv = ["enhance", "raw", "-o", "raw", "--model", "gamma", "--suffix", "_e"]
    assert cli.main(argv) == 0
    first = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.png"))
    assert first == ["a.png", "a_e.png", "c_e.png", "c_e_e.png", "sub/b.png", "sub/b_e.png"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.png")) == first, err
    assert "enhanced 3 of 3 images" in err and "3 output(s) of earlier runs" in err, err
    monkeypatch.chdir(raw / "sub")  # the manifest's paths hold from any working folder
    assert cli.main(["enhance", "..", "-o", str(tmp_path / "other"), "--model", "gamma", "--suffix", "_x"]) == 0
    assert sorted(p.name for p in (tmp_path / "other").rglob("*.png")) == ["a_x.png", "b_x.png", "c_e_x.png"]


@pytest.mark.parametrize("argv,match", [
    (["--max-megapixels", "nan"], "--max-megapixels must be a positive number, got nan"),
    (["--max-megapixels", "-3"], "--max-megapixels must be a positive number"),
    (["--max-megapixels", "inf"], "--max-megapixels must be a positive number"),
    (["--suffix", "/x"], "--suffix '/x': must not contain a path separator"),
    (["--suffix", "a/b"], "must not contain a path separator"),
])
def test_bad_arguments_exit_2_before_any_file(tmp_path, capsys, argv, match):
    write_image(tmp_path / "in.png", dark((5, 5, 3)))
    code = cli.main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", "gamma"] + argv)
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(re.escape(match), err) and "in.png" not in err
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_or_cannot_be_created_exits_2(tmp_path, capsys):
    write_image(tmp_path / "in.png", dark((5, 5, 3)))
    (tmp_path / "taken").write_text("a file")
    assert cli.main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "taken"), "--model", "gamma"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert cli.main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "taken" / "below"),
                     "--model", "gamma"]) == 2
    assert "cannot write there" in capsys.readouterr().err
    # /proc takes no new folders, even for root (chmod does not stop root)
    assert cli.main(["enhance", str(tmp_path / "in.png"), "-o", "/proc/lowlight-out", "--model", "gamma"]) == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.parametrize("json_path,match", [
    ("{tmp}", "is a folder, expected a file name"),
    ("{tmp}/missing/report.json", "report.json: the folder {tmp}/missing does not exist"),
    ("/proc/lowlight-report.json", "cannot write there"),  # /proc takes no new files, even for root
])
def test_eval_json_that_cannot_be_written_exits_2_before_any_work(tmp_path, capsys, json_path, match):
    """Issue 26 item 6: a --json path that cannot be written gave a traceback after all the scoring."""
    for d in ("low", "high"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "x.png", dark((5, 5, 3)))
    # scoring would fail on this file: the message must come first and alone
    (tmp_path / "low" / "y.png").write_bytes(b"not an image")
    json_path = json_path.format(tmp=tmp_path)
    code = cli.main(["eval", "--low", str(tmp_path / "low"), "--model", "gamma", "--json", json_path])
    err = capsys.readouterr().err
    assert code == 2 and match.format(tmp=tmp_path) in err and "y.png" not in err, err


def test_longest_valid_file_name_is_written(tmp_path):
    """Item 10: the temp file name added ~12 bytes, so a name near the file-system limit failed at write."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "n" * (limit - 4) + ".png"
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / name, dark((4, 4, 3)))
    assert cli.main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "gamma"]) == 0
    assert read_image(tmp_path / "out" / name)[0].shape == (4, 4, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lowlight-done.0.jsonl", name]  # no temp file
