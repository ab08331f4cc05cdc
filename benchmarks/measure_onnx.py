"""ONNX Runtime (CPU) vs the torch path (lowlight_core.enhance, native kernels) on one 2 MP float photo, every
exported model: one warm-up and one timed run each, on all the machine's cores.

    LOWLIGHT_BACKEND=native .venv/bin/python benchmarks/measure_onnx.py [--onnx-dir DIR] [MODEL ...]

--onnx-dir: reuse the DIR/<model>.onnx files there (missing ones are exported into it); default a temporary
folder. Prints a Markdown table (the section of benchmarks/RESULTS.md). The diff column compares with
enhance(E = 0.6, denoise off): the graph itself for bilateral_grid (E is its own input), not for the others, whose
enhance adds the calibration (curve models) or tone stage (networks) that reach E and are not in the graph
(tests/test_onnx.py compares every graph with its model)."""
from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np
import torch

import lowlight_core
from lowlight_core.onnx_export import export_onnx

MODELS = ["zero_dce", "zero_dce_pp", "bilateral_grid", "dln", "iqe_dcgan", "enlightengan"]
SHAPE = (1, 3, 1224, 1632)  # 2.0 MP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=pathlib.Path, default=None)
    parser.add_argument("models", nargs="*", default=MODELS, metavar="MODEL", help="default: every exported model")
    args = parser.parse_args()
    import onnxruntime as ort

    folder = args.onnx_dir or pathlib.Path(tempfile.mkdtemp(prefix="lowlight-onnx-"))
    folder.mkdir(parents=True, exist_ok=True)
    x = (np.random.default_rng(0).random(SHAPE, dtype=np.float32) * 0.25).astype(np.float32)
    small = np.ascontiguousarray(x[:, :, :64, :64])
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"{os.cpu_count()} cores, input {SHAPE[2]} x {SHAPE[3]} float32\n")
    print("| model | torch (s) | ONNX Runtime (s) | ORT / torch | max diff (/255) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in args.models:
        path = folder / f"{name}.onnx"
        if not path.is_file():
            export_onnx(name, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = {i.name for i in session.get_inputs()}

        def run_ort(image):
            feed = {"image": image}
            if "exposure" in inputs:
                feed["exposure"] = np.array(0.6, np.float32)
            if "iterations" in inputs:
                feed["iterations"] = np.array(8, np.int64)
            return session.run(["enhanced"], feed)[0]

        def run_torch(image):  # what the graph computes: the model at E 0.6, without what enhance adds around it
            return lowlight_core.enhance(torch.from_numpy(image), model=name, device="cpu", exposure=0.6,
                                         denoise=0).numpy()

        run_ort(small), run_torch(small)  # warm-up: model load, first-call allocations
        start = time.perf_counter()
        want = run_torch(x)
        t_torch = time.perf_counter() - start
        start = time.perf_counter()
        got = run_ort(x)
        t_ort = time.perf_counter() - start
        diff = float(np.abs(got - want).max()) * 255
        print(f"| {name} | {t_torch:.2f} | {t_ort:.2f} | {t_ort / t_torch:.2f} | {diff:.3f} |", flush=True)


if __name__ == "__main__":
    main()
