"""lowlight_core.enhance on big images, each in a fresh process: wall time and peak RSS (the whole process,
torch included). Targets (issue 3): zero_dce_pp on 12 MP < 1 s and < 1.5 GB; zero_dce tiled on 12 MP < 2 GB."""
import json
import subprocess
import sys

import pytest

CODE = """
import json, time, numpy as np, lowlight_core
img = (np.random.default_rng(0).random(({h}, {w}, 3)) * 60).astype(np.uint8)
lowlight_core.enhance(img[:64, :64], model="{model}")  # load the model and the kernels
t = time.perf_counter(); out = lowlight_core.enhance(img, model="{model}"); t = time.perf_counter() - t
# VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at its parent's (this pytest process's) peak
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": t, "peak_rss_mb": int(hwm) / 1024}}))
"""


@pytest.mark.parametrize("model,h,w", [("zero_dce_pp", 3000, 4000), ("zero_dce", 3000, 4000)])
def test_enhance_big(benchmark, model, h, w):
    results = []

    def run():
        out = subprocess.run([sys.executable, "-c", CODE.format(model=model, h=h, w=w)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.group = f"enhance {model} {h * w / 1e6:.0f} MP"
    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(results[-1])
