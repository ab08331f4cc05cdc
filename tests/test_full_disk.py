"""Issue 26 item 3: a disk that fills during `lowlight enhance --resume` or `lowlight eval --json`: each write
that fails is reported for its own file with a clear message, the run goes on and ends with exit 1, never a
traceback. The full disk is /dev/full (every write there fails with ENOSPC) behind the manifest's or the
report's name."""
from __future__ import annotations

import os

import numpy as np
import pytest

from lowlight_core import cli
from lowlight_core.io import write_image

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
RNG = np.random.default_rng(3)


def photos(folder, n):
    folder.mkdir()
    for k in range(n):
        write_image(folder / f"p{k}.png", (RNG.random((5, 6, 3)) * 60).astype(np.uint8))


def test_manifest_on_a_full_disk_fails_per_file_and_the_run_ends(tmp_path, capsys):
    photos(tmp_path / "raw", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lowlight-done.0.jsonl").symlink_to("/dev/full")
    code = cli.main(["enhance", str(tmp_path / "raw"), "-o", str(out), "--model", "gamma", "--resume"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("No space left on device") == 3 and "Traceback" not in err, err
    for k in range(3):
        assert f"p{k}.png: written to {out / f'p{k}.png'}, but not recorded in" in err, err
    assert "enhanced 0 of 3 images" in err and "3 problem(s)" in err


def test_eval_report_on_a_full_disk_is_an_error_not_a_traceback(tmp_path, capsys):
    photos(tmp_path / "low", 1)
    code = cli.main(["eval", "--low", str(tmp_path / "low"), "--model", "gamma", "--json", "/dev/full"])
    err = capsys.readouterr().err
    assert code == 1 and "--json /dev/full: the report could not be written (No space left on device)" in err, err
