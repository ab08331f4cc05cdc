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
    # the output folder *is* the input folder: with a suffix it works, and earlier outputs are inputs again
    assert cli.main(["enhance", "raw", "-o", "raw", "--model", "gamma", "--suffix", "_lit"]) == 0
    assert (raw / "a_lit.png").is_file() and (raw / "sub" / "b_lit.png").is_file()


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


def test_eval_json_that_is_a_folder_exits_2(tmp_path, capsys):
    for d in ("low", "high"):
        (tmp_path / d).mkdir()
        write_image(tmp_path / d / "x.png", dark((5, 5, 3)))
    code = cli.main(["eval", "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "--model", "gamma",
                     "--json", str(tmp_path)])
    assert code == 2 and "is a folder" in capsys.readouterr().err


def test_longest_valid_file_name_is_written(tmp_path):
    """Item 10: the temp file name added ~12 bytes, so a name near the file-system limit failed at write."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = "n" * (limit - 4) + ".png"
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / name, dark((4, 4, 3)))
    assert cli.main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "gamma"]) == 0
    assert read_image(tmp_path / "out" / name)[0].shape == (4, 4, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [name]  # no temp file left
