"""Builds lowlight_core._C: the fused kernels as torch custom ops (TORCH_LIBRARY namespace `lowlight`).

CPU sources always; CUDA sources when torch is a CUDA build and a CUDA toolkit is found, or FORCE_CUDA=1.
Install with `pip install --no-build-isolation -e .` (see pyproject.toml for why).
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def extension():
    sources = ["csrc/module.cpp", "csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    # Portable baseline flags (no -march=native): the wheel must run on any x86-64 CPU.
    # -fopenmp: at::parallel_for is inline OpenMP; the .so then shares torch's bundled libgomp.so.1.
    cxx = ["-O3", "-g0", "-fopenmp"]
    link = ["-fopenmp"]
    if want_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        return CUDAExtension("lowlight_core._C", sources, define_macros=[("WITH_CUDA", None)],
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link)
    return CppExtension("lowlight_core._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
