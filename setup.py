"""Two builds from one source tree (see README, "Install"):

- with torch in the build environment (`make install`: `pip install --no-build-isolation -e .`) the fused
  kernels are compiled here into lowlight_core._C (CPU; CUDA too when torch is a CUDA build and a toolkit
  is found, or FORCE_CUDA=1);
- without torch (plain `pip install .` / `pip wheel .`, build isolation: no torch in the build env, and a
  build requirement `torch` would fetch a multi-GB CUDA build) the wheel is pure Python and carries the C++
  sources in lowlight_core/_csrc; lowlight_core._native compiles them on first use into a user cache.

LOWLIGHT_BUILD_NATIVE=1 demands the prebuilt extension (error without torch), =0 forbids it.
"""
import glob
import importlib.util
import os
import runpy
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

CPU_SOURCES = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
# The op limits compiled into the kernels (csrc/limits.h); read by path: importing the package needs torch.
DEFINES = runpy.run_path("lowlight_core/controls.py")["native_defines"]()


def want_native() -> bool:
    flag = os.environ.get("LOWLIGHT_BUILD_NATIVE", "auto")
    if flag not in ("0", "1", "auto"):
        raise SystemExit(f"LOWLIGHT_BUILD_NATIVE must be 0, 1 or auto, got {flag!r}")
    has_torch = importlib.util.find_spec("torch") is not None
    if flag == "1" and not has_torch:
        raise SystemExit("LOWLIGHT_BUILD_NATIVE=1 needs torch in the build environment: "
                         "pip install --no-build-isolation .")
    return flag != "0" and has_torch


def extension():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

    sources = ["csrc/module.cpp"] + CPU_SOURCES
    # Portable baseline flags (no -march=native): the build must run on any CPU of its architecture.
    # -fopenmp: at::parallel_for is inline OpenMP; the .so then shares torch's bundled libgomp.so.1.
    cxx = ["-O3", "-g0", "-fopenmp"]
    link = ["-fopenmp"]
    if os.environ.get("FORCE_CUDA") == "1" or (torch.version.cuda is not None and CUDA_HOME is not None):
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        return CUDAExtension("lowlight_core._C", sources, define_macros=DEFINES + [("WITH_CUDA", None)],
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link)
    return CppExtension("lowlight_core._C", sources, define_macros=DEFINES, extra_compile_args={"cxx": cxx},
                        extra_link_args=link)


class build_py_with_sources(build_py):
    """Copies csrc/ into the wheel as lowlight_core/_csrc (the sources of the first-use compile)."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # an editable install reads csrc/ in the checkout
            target = os.path.join(self.build_lib, "lowlight_core", "_csrc")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree("csrc", target, ignore=shutil.ignore_patterns("*.o", "*.so"))


if want_native():
    from torch.utils.cpp_extension import BuildExtension

    setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True),
                                               "build_py": build_py_with_sources})
else:
    setup(cmdclass={"build_py": build_py_with_sources})
