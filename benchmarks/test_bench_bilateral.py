"""bilateral_apply (issue 23): the bilateral-grid model's full-resolution apply on a 12 MP H x W x 3 uint8 photo.

Group `bilateral_apply 12MP uint8` (benchmarks/report.py puts it in the main table): native = ops.bilateral_apply
(the fused kernel), eager = reference.bilateral_apply, compiled = torch.compile(reference.bilateral_apply) (warm),
copy = `dst.copy_(src)` of the same photo (the bytes the op must read and write). The grid is the model's size,
12 x 8 x 16 x 16, about the identity with noise; the photo is dark (values up to a quarter of the range).

Group `bilateral_transform fwd+bwd 4x256x256`: the training path (the model's loss reads the transform before its
clamp) at the CPU recipe's batch and crop: native = ops.bilateral_transform (the native forward and backward),
eager = reference.bilateral_transform (grid_sample and its backward), compiled = torch.compile of the reference;
gradients of the image, the grid and the guide.
"""
import os

import numpy as np
import pytest
import torch

from lowlight_core import ops, reference

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
GRID = (8, 16, 16)  # depth, height, width of the model's grid
ROUNDS = {"native": 9, "copy": 9, "eager": 3, "compiled": 3}


def photo_and_grid():
    rng = np.random.default_rng(0)
    image = torch.from_numpy((rng.random((3000, 4000, 3)) * 64).astype(np.uint8)).permute(2, 0, 1)[None]
    eye = torch.eye(3, 4).reshape(1, 12, 1, 1, 1)
    grid = eye * (1 + 2 * torch.rand(1, 1, *GRID)) + 0.1 * (torch.rand(1, 12, *GRID) - 0.5)
    return image, grid, torch.tensor([0.25, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("impl", ["native", "eager", "compiled", "copy"])
def test_bilateral_apply_op(benchmark, impl):
    image, grid, guide = photo_and_grid()
    dst = torch.empty_like(image)
    compiled = torch.compile(reference.bilateral_apply, dynamic=False)
    fns = {"native": lambda: ops.bilateral_apply(image, grid, guide),
           "eager": lambda: reference.bilateral_apply(image, grid, guide),
           "compiled": lambda: compiled(image, grid, guide), "copy": lambda: dst.copy_(image)}
    with torch.no_grad():
        if impl == "native":  # the benchmark's own check: the kernel's result is the reference's within 1 level
            diff = (fns["native"]().to(torch.int16) - fns["eager"]().to(torch.int16)).abs()
            benchmark.extra_info["max_level_diff_vs_reference"] = int(diff.max())
            benchmark.extra_info["values_off_by_one"] = int((diff > 0).sum())
        fns[impl]()  # warm-up (torch.compile compiles here)
        benchmark.group = "bilateral_apply 12MP uint8"
        benchmark.extra_info["bytes_read_and_written"] = 2 * image.numel()
        benchmark.pedantic(fns[impl], rounds=ROUNDS[impl])


@pytest.mark.parametrize("impl", ["native", "eager", "compiled"])
def test_bilateral_transform_fwd_bwd(benchmark, impl):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 256, 256, generator=gen)
    eye = torch.eye(3, 4).reshape(1, 12, 1, 1, 1)
    grid = eye * (1 + 2 * torch.rand(4, 1, *GRID, generator=gen)) + 0.1 * (torch.rand(4, 12, *GRID, generator=gen) - 0.5)
    leaves = [x.requires_grad_(), grid.requires_grad_(), torch.tensor([0.25, 0.5, 0.25, 0.0], requires_grad=True)]
    fn = {"native": ops.bilateral_transform, "eager": reference.bilateral_transform,
          "compiled": torch.compile(reference.bilateral_transform, dynamic=False)}[impl]

    def step():
        y = fn(*leaves)
        return torch.autograd.grad(y, leaves, torch.ones_like(y))

    step()  # warm-up (torch.compile compiles here)
    benchmark.group = "bilateral_transform fwd+bwd 4x256x256"
    benchmark.pedantic(step, rounds=9 if impl == "native" else 5)
