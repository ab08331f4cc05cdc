"""Makes lowlight_core/data/sample_dark.png: a public-domain photo darkened the way DLN simulates low light.

Source: skimage.data.astronaut() (NASA photograph of Eileen Collins, public domain; see
lowlight_core/data/README.md). Darkening (DLN, Wang et al.): low = beta * (alpha * Y) ** gamma with fixed
alpha, beta, gamma, then Poisson-Gaussian sensor noise (shot noise at `PEAK` photons for a white pixel plus
Gaussian read noise), with a fixed seed so the file is reproducible. Needs scikit-image (a test dependency).

    python tools/make_sample.py [OUT.png]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ALPHA, BETA, GAMMA = 0.95, 0.6, 2.5
PEAK = 2000.0        # photons collected by a white pixel: shot noise std of a pixel at level v is sqrt(v / PEAK)
READ_NOISE = 0.002   # Gaussian read-noise std, in [0, 1] units
SEED = 0
OUT = Path(__file__).resolve().parents[1] / "lowlight_core" / "data" / "sample_dark.png"


def darken(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> darkened, noisy uint8 RGB."""
    y = image.astype(np.float64) / 255.0
    low = BETA * (ALPHA * y) ** GAMMA
    noisy = rng.poisson(low * PEAK) / PEAK + rng.normal(0.0, READ_NOISE, low.shape)
    return np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)


def main(argv=None) -> int:
    from PIL import Image
    from skimage import data

    out = Path((argv or sys.argv[1:] or [OUT])[0])
    dark = darken(data.astronaut(), np.random.default_rng(SEED))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(dark).save(out, format="PNG", optimize=True)  # optimize: keeps it under 400 KB
    print(f"{out}: {dark.shape[1]}x{dark.shape[0]}, mean {dark.mean() / 255:.3f}, {out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
