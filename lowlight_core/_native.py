"""Finds the native kernels: the prebuilt lowlight_core._C, else a first-use compile of the bundled sources.

- prebuilt: `make install` / `pip install --no-build-isolation .` compiled lowlight_core._C (CPU, maybe CUDA).
- first use: a pure-Python wheel (plain `pip install`, build isolation) carries csrc/ as lowlight_core/_csrc;
  the CPU kernels are compiled once with torch.utils.cpp_extension.load (-O3, no pybind11: loaded as a
  plain op library) into a user cache, keyed by torch and Python version; later imports only load it.
Never both in one process (two TORCH_LIBRARY(lowlight) registrations abort), so a present _C always wins.
If neither works, `load` says why and ops.py falls back to the reference.

The first-use build runs under `build_lock`: one builder at a time per build folder; the lock file records
its owner (pid, host, start time). The OS releases the lock when its owner dies, so a build killed at any
point blocks nothing: the next start takes the build over (and says so), clears the lock file torch's own
builder left (it would wait on it forever) and lets ninja redo what was unfinished. A live owner is waited
for, up to BUILD_LOCK_LIMIT_S after its start (an owner on another host of a shared cache may be gone
without the lock being released); then the build is taken over, with a message.
"""
from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import os
import platform
import shutil
import socket
import sys
import time
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .controls import native_defines

HERE = Path(__file__).resolve().parent
BUILD_LOCK_LIMIT_S = 30 * 60  # a first-use build takes about a minute; no live build holds the lock this long
LOCK_NAME = "lowlight-build.lock"
TORCH_BATON = "lock"  # the lock file of torch.utils.cpp_extension's builder: it waits while it exists


@dataclass(frozen=True)
class Native:
    lib: object | None  # has .with_cuda and .torch_version; None: the reference runs
    reason: str         # how the kernels were found, or why not


def cache_dir() -> Path:
    """LOWLIGHT_CACHE_DIR, else $XDG_CACHE_HOME/lowlight, else ~/.cache/lowlight."""
    if os.environ.get("LOWLIGHT_CACHE_DIR"):
        return Path(os.environ["LOWLIGHT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lowlight"


def source_dir() -> Path | None:
    """The C++ sources: lowlight_core/_csrc in a wheel, ../csrc in a checkout."""
    for d in (HERE / "_csrc", HERE.parent / "csrc"):
        if (d / "ops.cpp").is_file():
            return d
    return None


def _prebuilt() -> Native | None:
    if importlib.util.find_spec("lowlight_core._C") is None:
        return None
    try:
        mod = importlib.import_module("lowlight_core._C")
    except (ImportError, OSError) as e:  # e.g. a CUDA build under a CPU torch: libc10_cuda.so missing
        return Native(None, f"lowlight_core._C failed to load: {e}")
    if not torch.__version__.startswith(mod.torch_version):
        return Native(None, f"lowlight_core._C was built for torch {mod.torch_version} but torch "
                            f"{torch.__version__} is running (rebuild: make install)")
    where = "CPU + CUDA" if mod.with_cuda else "CPU"
    return Native(mod, f"prebuilt lowlight_core._C ({where}, torch {mod.torch_version})")


def _say(message: str) -> None:
    print(f"lowlight: {message}", file=sys.stderr, flush=True)


def _owner_text(owner: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')} (started {started})"


def _read_owner(fd: int) -> dict:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # killed while writing its record
        owner = {}
    return owner if isinstance(owner, dict) else {}


@contextmanager
def build_lock(folder: Path, limit_s: float = BUILD_LOCK_LIMIT_S, poll_s: float = 0.2):
    """Holds the build lock of `folder` (see the module docstring); OSError if the folder takes no files."""
    path = folder / LOCK_NAME
    waiting_for = None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live owner (or one on another host)
            owner = _read_owner(fd)
            os.close(fd)
            if time.time() - owner.get("started", time.time()) > limit_s:
                _say(f"the native ops build of {_owner_text(owner)} has held {path} for more than {limit_s:g} s: "
                     "taking the build over")
                path.unlink(missing_ok=True)  # its owner keeps a lock on the old file, not on the new one
                continue
            if owner and owner != waiting_for:  # (empty: its owner is writing the record now)
                _say(f"waiting for the native ops build of {_owner_text(owner)} ({path})")
                waiting_for = owner
            time.sleep(poll_s)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file that another start had just removed: try again
    try:
        owner = _read_owner(fd)
        if owner:  # a released lock file is removed: this one's owner ended without releasing it
            _say(f"the native ops build of {_owner_text(owner)} did not finish (the process is gone): "
                 "taking it over")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        baton = folder / TORCH_BATON
        if baton.exists():  # only a builder under this lock makes it: one that was killed
            baton.unlink(missing_ok=True)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _compile() -> Native:
    src = source_dir()
    if src is None:
        return Native(None, "no prebuilt lowlight_core._C and no C++ sources to compile")
    if os.environ.get("LOWLIGHT_JIT") == "0":
        return Native(None, "no prebuilt lowlight_core._C and LOWLIGHT_JIT=0 forbids compiling the sources")
    compiler = os.environ.get("CXX", "c++")  # what torch.utils.cpp_extension runs
    if shutil.which(compiler) is None:
        return Native(None, f"no C++ compiler ({compiler!r} not found; install g++ or set CXX) to compile "
                            "the native ops")
    from torch.utils import cpp_extension

    version = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}"
    build = cache_dir() / version
    sources = [str(src / "ops.cpp")] + sorted(str(p) for p in (src / "cpu").glob("*.cpp"))
    # torch runs `ninja` from PATH; the ninja wheel's binary is not on PATH in a venv that is not activated.
    old_path = os.environ.get("PATH", "")
    try:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + old_path
    except ImportError:
        pass
    try:
        build.mkdir(parents=True, exist_ok=True)
        with build_lock(build):
            if not any(build.glob("*.so")):
                _say(f"compiling the native ops once for {version} into {build} (about a minute)...")
            # -O3: load() adds no optimisation flag of its own (a kernel ran 17x slower without it).
            defines = [f"-D{name}={value}" for name, value in native_defines()]
            cpp_extension.load("lowlight_jit", sources, extra_cflags=["-O3", "-g0", "-fopenmp", *defines],
                               extra_ldflags=["-fopenmp"], build_directory=str(build), is_python_module=False,
                               verbose=False)
    except Exception as e:  # a compiler error, a cache folder that takes no files: the reference still works
        lines = str(e).strip().splitlines() or [type(e).__name__]
        print("lowlight: " + "\n".join(lines[-30:]), file=sys.stderr, flush=True)  # the compiler's own words
        return Native(None, f"compiling the native ops in {build} failed ({lines[0][:200]})")
    finally:
        os.environ["PATH"] = old_path
    lib = types.SimpleNamespace(with_cuda=False, torch_version=torch.__version__)
    return Native(lib, f"CPU ops compiled on first use in {build}")


def load(compile_ok: bool = True) -> Native:
    """The native kernels, or None with the reason. compile_ok=False: never compile (reference wanted)."""
    found = _prebuilt()
    if found is not None:
        return found  # loaded or not, a present _C rules out compiling the same op library again
    if not compile_ok:
        return Native(None, "no prebuilt lowlight_core._C (the sources are compiled on first use unless "
                            "LOWLIGHT_BACKEND=reference)")
    return _compile()
