"""`lowlight enhance` on a folder of 12 MP JPEGs with zero_dce_pp: one file after another (--workers 0, the
old loop) vs decoding in reader threads while the model runs and a thread encodes (--workers 1, 2).
Each run in a fresh process (as users run it, start-up included: ~2-3 s of importing torch, which is why a
short folder understates the overlap); images/s in extra_info. Target (issue 15): >= 1.8x on 2 cores, on the
issue's 200 files (LOWLIGHT_BENCH_BATCH_IMAGES=24 for a quick look)."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

BATCH_IMAGES = int(os.environ.get("LOWLIGHT_BENCH_BATCH_IMAGES", "200"))
H, W = 3000, 4000


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """Dark photo-like JPEGs: smooth gradients plus fine texture and noise (quality 92, ~3-5 MB each)."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = 30 + 25 * np.sin(xx / 170)[..., None] * np.cos(yy / 230)[..., None] * np.array([1.0, 0.8, 0.6])
    for i in range(BATCH_IMAGES):
        noise = rng.normal(0, 6, (H // 4, W // 4, 3)).repeat(4, 0).repeat(4, 1)
        img = np.clip(base + noise + i, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.jpg", quality=92)
    return folder


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_enhance_folder(benchmark, jpeg_folder, tmp_path, workers):
    outs = []

    def run():
        out = tmp_path / f"out-{time.perf_counter_ns()}"
        outs.append(out)
        subprocess.run([sys.executable, "-m", "lowlight_core.cli", "enhance", str(jpeg_folder), "-o", str(out),
                        "--workers", str(workers)], check=True, capture_output=True)

    benchmark.group = f"enhance folder {BATCH_IMAGES} x 12 MP JPEG zero_dce_pp"
    benchmark.pedantic(run, rounds=1)
    for out in outs:  # 200 outputs of ~3 MB each
        shutil.rmtree(out)
    benchmark.extra_info["images_per_s"] = BATCH_IMAGES / benchmark.stats.stats.median
