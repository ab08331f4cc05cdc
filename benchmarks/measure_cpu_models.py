"""Heavy models on the CPU, before / after the inference copy (issue 15 item 4): 12 MP time and peak RSS.

Each measurement runs `lowlight_core.enhance` once on a 4000 x 3000 uint8 RGB image (random, values < 60) in a
fresh process and reports the call's wall time and the process's peak RSS (VmHWM, torch and the image
included). "before" passes the registry's module (run as given: contiguous tensors, BatchNorm as its own
layer), "after" the model name (lowlight_core.models.base.inference_model: BatchNorm folded, channels_last).
The two alternate per model, so both see the same load on a shared machine; the load average is printed.

    python benchmarks/measure_cpu_models.py [MODELS] [REPEATS]   # default: zero_dce,iqe_dcgan,enlightengan,dln 1
    MEASURE_MODES=after,after:256 ...   # compare tile sizes of the inference copy (default: before,after)
Networks are default-size and randomly initialised unless the shipped weights exist (speed does not depend on
training). Prints one JSON line per measurement.
"""
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
import numpy as np, torch
import lowlight_core
from lowlight_core.models import registry
name, mode, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
image = (np.random.default_rng(0).random((h, w, 3)) * 60).astype(np.uint8)
weights = None
if not registry.has_weights(name):
    import tempfile
    torch.manual_seed(0)
    weights = os.path.join(tempfile.mkdtemp(), name + ".pt")
    registry.save_weights(registry.get_model_info(name).build().eval(), name, weights)
net = registry.load_model(name, weights=weights)
model = net if mode == "before" else name
tile = int(mode.split(":")[1]) if ":" in mode else None  # "after:256": the inference copy in 256 px tiles
start = time.perf_counter()
out = lowlight_core.enhance(image, model=model, weights=weights, device="cpu", tile=tile)
seconds = time.perf_counter() - start
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"model": name, "mode": mode, "size": [h, w], "seconds": round(seconds, 2),
                  "peak_rss_mb": round(hwm / 1024), "threads": torch.get_num_threads(),
                  "out_mean": round(float(out.mean()), 4), "trained_weights": weights is None}))
"""


def main():
    models = (sys.argv[1] if len(sys.argv) > 1 else "zero_dce,iqe_dcgan,enlightengan,dln").split(",")
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    h, w = (int(v) for v in os.environ.get("MEASURE_SIZE", "3000x4000").split("x"))
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    for name in models:
        for r in range(repeats):
            modes = os.environ.get("MEASURE_MODES", "before,after").split(",")
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                load = os.getloadavg()
                t = time.time()
                run = subprocess.run([sys.executable, "-c", CHILD, name, mode, str(h), str(w)], env=env,
                                     capture_output=True, text=True)
                if run.returncode:
                    print(json.dumps({"model": name, "mode": mode, "error": run.stderr[-2000:]}), flush=True)
                    continue
                result = json.loads(run.stdout.strip().splitlines()[-1])
                result.update(load_before=[round(v, 1) for v in load],
                              load_after=[round(v, 1) for v in os.getloadavg()], utc=time.strftime("%H:%M:%S", time.gmtime(t)))
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
