"""The denoise control: the fused guided_denoise op vs its eager reference vs torch.compile(reference), and
zero_dce_pp end to end on a 12 MP uint8 photo with denoise off / auto, and the napari widget's compute for a
2 MP plane (no Qt: _compute.Enhancer, as a slider move runs it).

Run with `make bench` or alone:
    LOWLIGHT_BACKEND=native .venv/bin/python -m pytest -q -p no:cacheprovider benchmarks/test_bench_denoise.py \
        --benchmark-only --benchmark-json=benchmarks/results/denoise.json
"""
import os

import numpy as np
import pytest
import torch

from lowlight_core import enhance, noise, ops, reference
from lowlight_core.controls import DENOISE_CHROMA_RADIUS, DENOISE_LUMA_RADIUS

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
_compiled = {}


def op_args(H, W):
    g = torch.Generator().manual_seed(0)
    guide = torch.rand(1, 3, H, W, generator=g) * 0.2
    x = (guide * 3 + 0.03 * torch.randn(1, 3, H, W, generator=g)).clamp(0, 1)
    luma, chroma = noise.denoise_weights(1.0, 3)
    return x, guide, 0.002, 1e-5, luma, chroma, DENOISE_LUMA_RADIUS, DENOISE_CHROMA_RADIUS


@pytest.mark.parametrize("impl", ["native", "eager", "compiled"])
def test_guided_denoise(benchmark, impl):
    args = op_args(900, 1200)
    if impl == "native":
        fn = ops.guided_denoise
    elif impl == "eager":
        fn = reference.guided_denoise
    else:
        fn = _compiled.setdefault("ref", torch.compile(reference.guided_denoise, dynamic=False))
    with torch.no_grad():
        fn(*args)  # warm-up (torch.compile compiles here)
        benchmark.group = "guided_denoise fwd 1x1200x900"
        benchmark.pedantic(fn, args, rounds=5 if impl == "native" else 3)


def photo_12mp():
    rng = np.random.default_rng(0)
    base = np.linspace(0.02, 0.2, 4000, dtype=np.float32)[None, :, None] * np.ones((3000, 1, 3), np.float32)
    noisy = base + rng.standard_normal((3000, 4000, 3), dtype=np.float32) * np.sqrt(0.002 * base + 2e-5)
    return (noisy.clip(0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("denoise", [0, "auto"])
def test_enhance_zero_dce_pp_12mp(benchmark, denoise):
    image = photo_12mp()
    enhance(image, model="zero_dce_pp", device="cpu", denoise=denoise)  # warm-up: weights loaded
    benchmark.group = f"enhance zero_dce_pp 12 MP uint8, denoise {denoise}"
    benchmark.pedantic(lambda: enhance(image, model="zero_dce_pp", device="cpu", denoise=denoise), rounds=3)


@pytest.mark.parametrize("denoise", [0, "auto", 0.5])
def test_napari_plane_2mp(benchmark, denoise):
    from napari_lowlight import _compute

    plane = photo_12mp()[:1200, :1700].copy()  # 2 MP
    enhancer = _compute.Enhancer()
    settings = _compute.Settings(model="zero_dce_pp", denoise=denoise)
    # the curve maps and the noise model cached, as after a first preview
    enhancer.enhance_plane(plane, True, settings, source=("layer", 0))
    benchmark.group = f"napari 2MP compute: denoise {denoise} (zero_dce_pp, maps and noise model cached)"
    benchmark.pedantic(lambda: enhancer.enhance_plane(plane, True, settings, source=("layer", 0)), rounds=5)
