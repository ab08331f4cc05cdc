"""Training under torchrun: 2 CPU processes (gloo) take the same steps as 1 process with the same global
batch, and a run killed under 2 processes resumes under 1 (training.distributed)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from training.trainer import load_checkpoint

from test_training import ROOT, image_dir, read_rows, tiny_args  # noqa: F401  (image_dir is a fixture)

STEPS = ["--steps", "4", "--ckpt-every", "2", "--no-eval"]


def launch(nproc: int, args, **env) -> subprocess.Popen:
    """`torchrun --standalone --nproc-per-node N -m training ...` as a user would type it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "training", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                                                **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """Every process below pid (torchrun starts its workers in sessions of their own)."""
    try:
        kids = [int(k) for k in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except FileNotFoundError:
        return []
    return kids + [d for k in kids for d in descendants(k)]


def finished(proc: subprocess.Popen) -> str:
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    return out


def assert_same_run(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "checkpoint.pt"), load_checkpoint(b_dir / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for k, v in b["modules"]["model"].items():  # sums over 2 shards vs over 1 batch: float rounding only
        torch.testing.assert_close(a["modules"]["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    la = [float(r["loss"]) for r in read_rows(a_dir / "train.csv")]
    lb = [float(r["loss"]) for r in read_rows(b_dir / "train.csv")]
    assert len(la) == len(lb) == 4
    np.testing.assert_allclose(la, lb, rtol=1e-4)


def test_two_processes_equal_one_and_resume_with_another_world_size(image_dir, tmp_path):
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    finished(launch(1, tiny_args("zero_dce_pp", image_dir, one, *STEPS)))
    out = finished(launch(2, tiny_args("zero_dce_pp", image_dir, two, *STEPS)))
    assert out.count("weights: ") == 1, out  # rank 0 alone wrote the weights
    assert_same_run(two, one)
    losses = [float(r["loss"]) for r in read_rows(two / "train.csv")]
    assert losses[0] != losses[-1]  # it trained: equal runs, not two untouched models

    # killed under 2 processes right after its first checkpoint, resumed under 1
    proc = launch(2, tiny_args("zero_dce_pp", image_dir, killed, *STEPS), LOWLIGHT_TRAIN_PAUSE_AFTER_CKPT="120")
    ckpt, deadline = killed / "checkpoint.pt", time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    for pid in [proc.pid, *descendants(proc.pid)]:  # kill -9 of the launcher and every worker
        os.kill(pid, signal.SIGKILL)
    output = proc.communicate()[0]
    assert load_checkpoint(ckpt)["step"] == 2, output
    finished(launch(1, tiny_args("zero_dce_pp", image_dir, killed, *STEPS, "--resume")))
    assert_same_run(killed, one)
