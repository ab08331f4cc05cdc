"""Issue 26 item 2: a first-use build killed at any point blocks nothing. Before, the next start waited
forever on the lock file that torch's builder had left ("compiling ... (about a minute)", then nothing).

A stand-in build (the lock, then torch's own FileBaton around a build step, as torch.utils.cpp_extension
does it) is killed with SIGKILL at each point; the next start must finish and say it took the build over.
A live owner is waited for until the time limit, then the build is taken over. The real first-use build is
killed too, while its compilers run; the next start must get past the lock (with a failing compiler it
then ends at once with the reason, so the test need not compile the ops for a minute).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STANDIN = """
import sys, time
from pathlib import Path
from torch.utils.file_baton import FileBaton
from lowlight_core._native import build_lock

folder, stage, limit = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
with build_lock(folder, limit_s=limit):
    print("locked", flush=True)
    if stage == "locked":
        time.sleep(120)
    baton = FileBaton(str(folder / "lock"))  # torch's builder: waits while this file exists
    if baton.try_acquire():
        try:
            print("building", flush=True)
            if stage == "building":
                time.sleep(120)
            (folder / "ops.so").write_bytes(b"built")
        finally:
            baton.release()
    else:
        baton.wait()
print("done", flush=True)
"""


def standin(folder: Path, stage: str = "none", limit: float = 1800) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STANDIN, str(folder), stage, str(limit)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    while got and got != line:
        got = proc.stdout.readline().strip()
    assert got == line, f"the stand-in build ended before {line!r}: {proc.stderr.read()[-2000:]}"


@pytest.mark.parametrize("stage", ["locked", "building"])
def test_a_build_killed_at_any_point_is_taken_over(tmp_path, stage):
    killed = standin(tmp_path, stage)
    wait_for_line(killed, stage)
    killed.kill()
    killed.wait()
    assert (tmp_path / "lowlight-build.lock").exists()
    assert (stage == "building") == (tmp_path / "lock").exists()  # torch's lock file, left by the kill
    out, err = standin(tmp_path).communicate(timeout=60)
    assert out.split() == ["locked", "building", "done"], err
    assert f"process {killed.pid} on " in err and "did not finish (the process is gone): taking it over" in err
    assert (tmp_path / "ops.so").read_bytes() == b"built"
    assert not (tmp_path / "lowlight-build.lock").exists() and not (tmp_path / "lock").exists()


LIMIT = 10  # s: longer than a loaded machine takes to start the second stand-in (importing torch)


def test_a_live_owner_is_waited_for_until_the_time_limit(tmp_path):
    owner = standin(tmp_path, "locked")
    try:
        wait_for_line(owner, "locked")
        started = time.monotonic()
        out, err = standin(tmp_path, limit=LIMIT).communicate(timeout=60)
        waited = time.monotonic() - started
    finally:
        owner.kill()
        owner.wait()
    assert out.split() == ["locked", "building", "done"], err
    assert f"waiting for the native ops build of process {owner.pid} on " in err, err
    assert f"for more than {LIMIT} s: taking the build over" in err, err
    assert waited > LIMIT / 2, f"took the lock of a live owner after {waited:.1f} s"


COMPILE = "from lowlight_core import _native; print(_native._compile().reason, flush=True)"


@pytest.mark.slow
def test_the_real_first_use_build_killed_while_compiling_does_not_block_the_next_start(tmp_path):
    import torch

    env = {**os.environ, "LOWLIGHT_CACHE_DIR": str(tmp_path)}
    env.pop("CXX", None)
    first = subprocess.Popen([sys.executable, "-c", COMPILE], cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    batons = []
    while not batons and first.poll() is None and time.monotonic() < deadline:
        batons = list(tmp_path.glob(f"torch{torch.__version__}-*/lock"))  # torch's builder has started
        time.sleep(0.1)
    time.sleep(1)  # ninja and the compilers run now
    os.killpg(first.pid, signal.SIGKILL)  # the whole build, as a closed terminal or kill -9 of the group
    first.wait()
    assert batons, f"the build never started: {first.stderr.read()[-2000:]}"
    assert batons[0].exists()  # what made every later start wait forever
    # the next start, with a compiler that fails at once: it gets past the lock and says why it has no ops
    again = subprocess.run([sys.executable, "-c", COMPILE], cwd=ROOT, env={**env, "CXX": "/bin/false"},
                           capture_output=True, text=True, timeout=120)
    assert "compiling the native ops in " in again.stdout and " failed " in again.stdout, again.stderr[-2000:]
    assert f"process {first.pid} on " in again.stderr and "taking it over" in again.stderr, again.stderr[-2000:]
