"""The user controls and the op limits, each in one place. No torch here: the CLI's argument parser, the napari
widget and the build (setup.py reads this file by path) use it without loading torch.

The op limits are compiled into the kernels as LOWLIGHT_* macros (`native_defines`, csrc/limits.h), so the
C++/CUDA sources, the Python checks and the reference all share these numbers.
"""
from __future__ import annotations

# ---------------------------------------------------------------- user controls
EXPOSURE_DEFAULT = 0.6             # target exposure E (mean brightness of the result)
EXPOSURE_RANGE = (0.3, 0.9)        # accepted by enhance(), the CLI and the widget's slider
EXPOSURE_TRAIN_RANGE = (0.3, 0.8)  # E ~ U(lo, hi) per training sample of the E-conditioned curve models
EXPOSURE_GRID = (0.4, 0.5, 0.6, 0.7)  # the E columns of training grids and model cards
ITERATIONS_DEFAULT = 8             # curve steps
MAX_ITERATIONS = 64                # curve steps allowed (also the size of the kernels' per-pixel step arrays)

# ---------------------------------------------------------------- op limits and constants
MAX_KSIZE = 1001     # blur_color_loss: largest Gaussian kernel
TV_ISO_EPS = 1e-6    # tv_loss "iso": sqrt(dh^2 + dw^2 + eps) keeps the root differentiable in flat regions


def native_defines() -> list[tuple[str, str]]:
    """The macros every build of csrc/ gets (csrc/limits.h refuses to compile without them)."""
    return [("LOWLIGHT_MAX_ITERATIONS", str(MAX_ITERATIONS)), ("LOWLIGHT_MAX_KSIZE", str(MAX_KSIZE)),
            ("LOWLIGHT_TV_ISO_EPS", repr(TV_ISO_EPS))]
