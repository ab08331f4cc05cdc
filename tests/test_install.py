"""Installing like a user: the wheel from a build-isolated `pip wheel`, in a fresh venv outside the checkout.

The venv gets the same pinned CPU torch as `make install` first (pip's configured local wheels / cache), then
the wheel; nothing may replace that torch. Then, from a folder outside the checkout: without a C++ compiler
the ops run the reference and `lowlight models` says why; with one, `lowlight enhance` compiles the kernels
once into the cache and matches the prebuilt kernels of this checkout; npe2 discovers the plugin; `lowlight
train` reaches the training layer through its entry point.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "lowlight_core" / "data" / "sample_dark.png"
TORCH_PIN = f"torch=={torch.__version__.split('+')[0]}"


def run(cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, a work folder outside the checkout, the environment to run in)."""
    base = tmp_path_factory.mktemp("install")
    venv.create(base / "venv", with_pip=True)  # no --system-site-packages: only what is installed below
    bin_dir = base / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOWLIGHT_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(LOWLIGHT_CACHE_DIR=str(base / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [bin_dir / "python", "-m", "pip", "-q"]  # install --no-compile: skips byte-compiling torch (~10 s)
    run(pip + ["install", "--no-compile", TORCH_PIN], base, env)
    run(pip + ["wheel", "--no-deps", "-w", base / "dist", ROOT], base, env)  # build isolation on (the default)
    (wheel,) = (base / "dist").glob("napari_lowlight-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), f"{wheel.name}: not a pure-Python wheel"
    names = zipfile.ZipFile(wheel).namelist()
    assert "lowlight_core/_csrc/ops.cpp" in names and not [n for n in names if n.endswith(".so")], names
    run(pip + ["install", wheel, "npe2"], base, env)
    work = base / "work"
    work.mkdir()
    return bin_dir, work, env


@pytest.mark.slow
def test_wheel_installs_without_replacing_torch(installed):
    bin_dir, work, env = installed
    out = run([bin_dir / "python", "-c", "import torch, lowlight_core; print(torch.__version__, lowlight_core.__file__)"],
              work, env).stdout.split()
    assert out[0] == torch.__version__, f"the wheel's install replaced torch {torch.__version__} by {out[0]}"
    assert not Path(out[1]).is_relative_to(ROOT), f"lowlight_core imported from the checkout: {out[1]}"
    listed = run([bin_dir / "python", "-m", "pip", "list"], work, env).stdout.lower()
    assert "nvidia-" not in listed, "a CUDA runtime was installed"


@pytest.mark.slow
def test_without_a_working_compiler_the_reference_runs_and_says_why(installed):
    bin_dir, work, env = installed
    out = run([bin_dir / "lowlight", "models"], work, {**env, "CXX": "/nonexistent/c++"})
    assert "ops backend: reference (no C++ compiler" in out.stdout, out.stdout[-500:]
    assert "zero_dce_pp" in out.stdout
    broken = {**env, "CXX": "/bin/false", "LOWLIGHT_CACHE_DIR": str(work / "cache-broken")}
    out = run([bin_dir / "lowlight", "models"], work, broken)  # a compiler that fails: still no crash
    assert "ops backend: reference (compiling the native ops in " in out.stdout, out.stdout[-500:]


@pytest.mark.slow
def test_enhance_compiles_the_kernels_once_and_matches_the_prebuilt_ones(installed):
    bin_dir, work, env = installed
    (work / "night.png").write_bytes(SAMPLE.read_bytes())
    first = run([bin_dir / "lowlight", "enhance", "night.png", "-o", "out"], work, env)
    assert "compiling the native ops once" in first.stderr, first.stderr[-1000:]
    models = run([bin_dir / "lowlight", "models"], work, env)
    assert "compiling" not in models.stderr  # the cached build is loaded, not rebuilt
    assert "ops backend: native (CPU ops compiled on first use in " in models.stdout, models.stdout[-500:]

    from lowlight_core import enhance, io, ops

    assert ops.backend() == "native"  # this process: the checkout's prebuilt lowlight_core._C
    image, _ = io.read_image(SAMPLE)
    got, _ = io.read_image(work / "out" / "night.png")
    diff = np.abs(got.astype(np.int16) - enhance(image).astype(np.int16))
    assert diff.max() <= 1, f"first-use build differs from the prebuilt one by up to {diff.max()} / 255"


@pytest.mark.slow
def test_napari_discovers_the_installed_plugin(installed):
    bin_dir, work, env = installed
    code = ("from npe2 import PluginManager\n"
            "pm = PluginManager.instance(); pm.discover()\n"
            "m = pm.get_manifest('napari-lowlight')\n"
            "print([w.display_name for w in m.contributions.widgets])\n"
            "data, meta, kind = pm.get_command('napari-lowlight.dark_photo').exec()[0]\n"
            "print(data.shape, data.dtype, kind)\n")
    out = run([bin_dir / "python", "-c", code], work, env).stdout
    assert "['Low-light enhancement', 'Enhance (function)', 'Enhance layer (function)']" in out, out
    assert "(512, 512, 3) uint8 image" in out, out


@pytest.mark.slow
def test_train_is_reached_through_the_entry_point(installed):
    bin_dir, work, env = installed
    out = run([bin_dir / "lowlight", "train"], work, env).stdout
    assert "python -m lowlight_training" in out and "zero_dce_pp" in out, out[-500:]
    out = run([bin_dir / "python", "-m", "lowlight_training", "--help"], work, env).stdout
    assert "--export" in out and "enlightengan" in out, out[-500:]
    # every module of the installed package imports (the tasks subpackage is in the wheel), under its one name
    code = ("import importlib, importlib.util, pkgutil, lowlight_training as t\n"
            "mods = [importlib.import_module(m.name) for m in pkgutil.walk_packages(t.__path__, t.__name__ + '.')]\n"
            "print(len(mods), 'lowlight_training.tasks.dln' in {m.__name__ for m in mods}, "
            "importlib.util.find_spec('training'))\n")
    count, has_tasks, other_name = run([bin_dir / "python", "-c", code], work, env).stdout.split()
    assert int(count) >= 20 and has_tasks == "True" and other_name == "None", (count, has_tasks, other_name)


def test_core_never_imports_training():
    offenders = []
    for path in (ROOT / "lowlight_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("training", "lowlight_training")]
    assert not offenders, offenders
