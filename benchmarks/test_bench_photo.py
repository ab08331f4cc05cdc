"""The photo path (issue 16): uint8 / uint16 photos in, enhanced photos out, with the shipped Zero-DCE++ (which
curves the value: its photo path is ops.photo_value_curve).

Groups (compare inside a group; benchmarks/report.py writes the ratios into RESULTS.md, "Photo path"):
- `photo enhance ...`: lowlight_core.enhance end to end (numpy H x W x 3 in and out). photo = today's path
  (area_reduce estimate + fused photo_curve); float path = the same model through the pre-photo path (float
  copy, le_curve, clamp, scale, round, convert back: what enhance ran before); astype = one
  `a.astype(np.float32)` of the same image; copy = `a.copy()` (the same bytes read and written).
- `photo_curve ...`: the op alone (alpha given): native, eager = lowlight_core.reference.photo_curve,
  compiled = torch.compile(reference.photo_curve) (warm), copy = `clone()` of the image tensor;
  value native = ops.photo_value_curve (the same maps averaged over RGB: what value models run).
- `photo enhance bilateral_grid ...`: the same for the bilateral-grid model (exposure auto, and a given E).
- `photo napari 2MP ...`: the widget's compute for a slider move (Enhancer.enhance_plane, maps cached) and
  for an exposure change (maps estimated again).
"""
import itertools
import os

import numpy as np
import pytest
import torch

import lowlight_core
from lowlight_core import ops, reference
from lowlight_core.models.base import CONTROLS, Model
from lowlight_core.models.registry import load_model
from napari_lowlight._compute import Enhancer, Settings

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
SIZES = {"12MP": (3000, 4000), "2MP": (1080, 1920)}
DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
_compiled = {}


class FloatPath(Model):
    """Zero-DCE++ without its photo methods: lowlight_core.enhance then runs the float path it ran before. Its E
    input is calibrated like Zero-DCE++'s own (same contract exposure mode), so both paths aim at the same E."""

    controls = CONTROLS

    def __init__(self, net):
        super().__init__()
        self.net = net

    def enhance(self, x, exposure=0.6, iterations=8):
        return self.net.enhance(x, exposure, iterations)


def photo(size, dtype):
    top = np.iinfo(DTYPES[dtype]).max
    return (np.random.default_rng(0).random((*SIZES[size], 3)) * 0.25 * top).astype(DTYPES[dtype])


def run(benchmark, group, fn, rounds):
    fn()  # warm-up (torch.compile compiles here)
    benchmark.group = group
    benchmark.pedantic(fn, rounds=rounds)


CASES = [("12MP", "uint8"), ("12MP", "uint16"), ("2MP", "uint8")]


@pytest.mark.parametrize("impl", ["photo", "float path", "astype", "copy"])
@pytest.mark.parametrize("size,dtype", CASES)
def test_photo_enhance(benchmark, size, dtype, impl):
    a = photo(size, dtype)
    net = load_model("zero_dce_pp", device="cpu")
    # denoise off: this measures the photo path (the default guided filter adds ~0.7 s at 12 MP, test_bench_denoise)
    fns = {"photo": lambda: lowlight_core.enhance(a, model=net, denoise=0),
           "float path": lambda: lowlight_core.enhance(a, model=FloatPath(net), denoise=0),
           "astype": lambda: a.astype(np.float32), "copy": lambda: a.copy()}
    if impl == "photo":  # the result is the float path's within 1 level (tests/test_photo.py measures it)
        diff = np.abs(fns["photo"]().astype(np.int64) - fns["float path"]().astype(np.int64))
        benchmark.extra_info["max_level_diff_vs_float_path"] = int(diff.max())
    run(benchmark, f"photo enhance zero_dce_pp {size} {dtype}", fns[impl], 5 if size == "2MP" else 3)


@pytest.mark.parametrize("exposure", ["auto", "0.45"])
@pytest.mark.parametrize("impl", ["photo", "astype", "copy"])
def test_photo_enhance_fast_model(benchmark, impl, exposure):
    """bilateral_grid (issue 23's model that decides at low resolution) end to end on a 12 MP uint8 photo, denoise
    off: the thumbnail, the grid network and the fused bilateral_apply; with the auto exposure's probe or a given E."""
    a = photo("12MP", "uint8")
    net = load_model("bilateral_grid", device="cpu")
    e = exposure if exposure == "auto" else float(exposure)
    fns = {"photo": lambda: lowlight_core.enhance(a, model=net, denoise=0, exposure=e),
           "astype": lambda: a.astype(np.float32), "copy": lambda: a.copy()}
    run(benchmark, f"photo enhance bilateral_grid 12MP uint8, exposure {exposure}", fns[impl], 5)


# torch.compile (inductor, torch 2.13) cannot compile the reference on uint16: "Promotion for uint16, uint32,
# uint64 types is not supported".
@pytest.mark.parametrize("size,dtype,impl", [(s, d, i) for s, d in CASES
                                             for i in ["native", "value native", "eager", "compiled", "copy"]
                                             if not (d == "uint16" and i == "compiled")])
def test_photo_curve_op(benchmark, size, dtype, impl):
    image = torch.from_numpy(photo(size, dtype)).permute(2, 0, 1)[None]
    alpha = torch.rand(1, 3, 6, 8) * 2 - 1
    compiled = _compiled.setdefault("photo_curve", torch.compile(reference.photo_curve, dynamic=False))
    value_alpha = alpha.mean(1, keepdim=True)
    fns = {"native": lambda: ops.photo_curve(image, alpha, 8), "eager": lambda: reference.photo_curve(image, alpha, 8),
           "value native": lambda: ops.photo_value_curve(image, value_alpha, 8),
           "compiled": lambda: compiled(image, alpha, 8), "copy": image.clone}
    with torch.no_grad():
        run(benchmark, f"photo_curve {size} {dtype}", fns[impl], 9 if size == "2MP" else 5)


@pytest.mark.parametrize("change", ["iterations", "exposure"])
def test_photo_napari_preview(benchmark, change):
    """The widget's work for one slider move on a 2 MP uint8 RGB layer (no Qt: _compute, as the worker runs it),
    denoise off (the photo path itself)."""
    plane = photo("2MP", "uint8")
    enhancer = Enhancer()
    iterations = itertools.cycle([7, 8, 9, 10])
    exposures = itertools.cycle(np.round(np.arange(0.31, 0.9, 0.02), 2))
    enhancer.enhance_plane(plane, True, Settings(denoise=0), source=("bench", 0))

    def move():
        s = (Settings(iterations=next(iterations), denoise=0) if change == "iterations"
             else Settings(exposure=float(next(exposures)), denoise=0))
        return enhancer.enhance_plane(plane, True, s, source=("bench", 0))

    run(benchmark, f"photo napari 2MP uint8 preview, {change} change", move, 10)


def test_photo_napari_preview_fast_model(benchmark):
    """The widget's work for an E slider move with bilateral_grid on a 2 MP uint8 RGB layer, denoise off: its
    preview is the full-resolution result (thumbnail, grid, fused apply)."""
    plane = photo("2MP", "uint8")
    enhancer = Enhancer()
    exposures = itertools.cycle(np.round(np.arange(0.31, 0.9, 0.02), 2))
    enhancer.enhance_plane(plane, True, Settings(model="bilateral_grid", denoise=0), source=("bench", 0))

    def move():
        settings = Settings(model="bilateral_grid", exposure=float(next(exposures)), denoise=0)
        return enhancer.enhance_plane(plane, True, settings, source=("bench", 0))

    run(benchmark, "photo napari 2MP uint8 preview, exposure change, bilateral_grid", move, 10)
