"""Memory of the napari widget's Apply on large layers (issue 27 targets), measured in bytes, not time:

    pyramid  a 3-level RGB uint8 pyramid of 8192 x 8192 (2x steps), napari_lowlight._large.apply_levels:
             target: below 2x the finest level's bytes
    lazy     a dask stack of 100 RGB uint8 planes of 1224 x 1632 (2 MP), each made when read,
             napari_lowlight._compute.apply_job (what Apply runs for a single-scale layer): target: peak below 1 GB

    LOWLIGHT_BACKEND=native .venv/bin/python benchmarks/measure_large_layers.py [pyramid|lazy]

Each case runs in a fresh process (no argument: both, one after the other). Reported: numpy's allocations during
Apply (tracemalloc peak: every array numpy makes, the outputs included) and the process's resident memory
(sampled every 2 ms) above what it held before Apply (input, torch, the loaded model) and in total. Model:
zero_dce_pp (shipped weights), cpu.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np

MB = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class _Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = _rss(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)


def _measure(run):
    """(numpy peak bytes, RSS peak increase, RSS peak total, seconds) of run()."""
    base = _rss()
    sampler = _Sampler()
    tracemalloc.start()
    sampler.start()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, numpy_peak, sampler.peak - base, sampler.peak, seconds


def _drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def pyramid() -> None:
    import lowlight_core
    from napari_lowlight import _compute, _large

    side = 8192
    levels = [np.random.default_rng(0).integers(0, 50, (side, side, 3), dtype=np.uint8)]
    for _ in range(2):
        levels.append(levels[-1][::2, ::2].copy())
    lowlight_core.enhance(levels[-1][:64, :64], "zero_dce_pp", device="cpu")  # model loaded before measuring
    out, numpy_peak, rss_up, rss_total, seconds = _measure(
        lambda: _drain(_large.apply_levels(levels, True, _compute.Settings(model="zero_dce_pp"))))
    assert isinstance(out, list) and [a.shape for a in out] == [a.shape for a in levels], out
    level = levels[0].nbytes
    print(f"pyramid 3 x {side} x {side} RGB uint8 (finest level {level / MB:.0f} MB, all levels "
          f"{sum(a.nbytes for a in levels) / MB:.0f} MB): numpy peak {numpy_peak / MB:.0f} MB = "
          f"{numpy_peak / level:.2f}x the level; RSS +{rss_up / MB:.0f} MB = {rss_up / level:.2f}x the level "
          f"(process {rss_total / MB:.0f} MB); {seconds:.1f} s")


def lazy() -> None:
    import dask.array as da

    import lowlight_core
    from napari_lowlight import _compute

    n, h, w = 100, 1224, 1632

    def make_plane(block_info=None):
        i = block_info[None]["chunk-location"][0]
        return np.random.default_rng(i).integers(0, 50, (1, h, w, 3), dtype=np.uint8)

    stack = da.map_blocks(make_plane, chunks=((1,) * n, (h,), (w,), (3,)), dtype=np.uint8)
    lowlight_core.enhance(np.zeros((64, 64, 3), np.uint8), "zero_dce_pp", device="cpu")
    out, numpy_peak, rss_up, rss_total, seconds = _measure(
        lambda: _drain(_compute.apply_job(_compute.Enhancer(), stack, True, _compute.Settings(model="zero_dce_pp"))))
    assert isinstance(out, np.ndarray) and out.shape == stack.shape, out
    print(f"lazy stack {n} x {h} x {w} RGB uint8 (output {out.nbytes / MB:.0f} MB, one plane {out[0].nbytes / MB:.1f} "
          f"MB): numpy peak {numpy_peak / MB:.0f} MB; RSS +{rss_up / MB:.0f} MB (process peak {rss_total / MB:.0f} MB); "
          f"{seconds:.1f} s")


if __name__ == "__main__":
    cases = {"pyramid": pyramid, "lazy": lazy}
    if len(sys.argv) > 1:
        cases[sys.argv[1]]()
    else:
        for name in cases:
            subprocess.run([sys.executable, __file__, name], check=True)
