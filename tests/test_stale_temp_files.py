"""Issue 26 item 7: the temp files of the atomic writes carry their owner's pid (and host); `lowlight enhance`
removes, from the folders it writes into, those whose owner is gone (a killed run's) and keeps those of a
live process."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from lowlight_core import cli
from lowlight_core.io import temp_name, write_image


def test_a_dead_owners_temp_file_is_removed_a_live_ones_kept(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    (raw / "sub").mkdir(parents=True)
    write_image(raw / "sub" / "a.png", np.full((4, 5, 3), 20, np.uint8))
    (out / "sub").mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE)
    dead_pid = int(gone.communicate()[0])
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = temp_name()  # this process's name pattern, with another owner's pid put in
        dead = out / "sub" / mine.replace(f"-{os.getpid()}-", f"-{dead_pid}-", 1)
        kept = out / "sub" / mine.replace(f"-{os.getpid()}-", f"-{live.pid}-", 1)
        other = out / "sub" / ".lowlight-0123456789abcdef.tmp"  # an older name: owner unknown, kept
        for f in (dead, kept, other):
            f.write_bytes(b"x" * 100)
        assert cli.main(["enhance", str(raw), "-o", str(out), "--model", "gamma"]) == 0
        assert not dead.exists() and kept.exists() and other.exists()
        assert "removed 1 temp file(s) left in" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()
