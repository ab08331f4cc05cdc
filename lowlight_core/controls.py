"""The user controls and the op limits, each in one place. No torch here: the CLI's argument parser, the napari
widget and the build (setup.py reads this file by path) use it without loading torch.

The op limits are compiled into the kernels as LOWLIGHT_* macros (`native_defines`, csrc/limits.h), so the
C++/CUDA sources, the Python checks and the reference all share these numbers.
"""
from __future__ import annotations

# ---------------------------------------------------------------- user controls
DEFAULT_MODEL = "zero_dce_pp_paired"  # the model enhance(), the CLI, the demo and the napari widget pick by default
EXPOSURE_AUTO = "auto"             # exposure: predicted from the whole photo (lowlight_core.exposure)
EXPOSURE_DEFAULT = EXPOSURE_AUTO   # target exposure E (mean brightness of the result) of enhance, CLI, napari
EXPOSURE_NOMINAL = 0.6             # E of a model called directly (model.enhance) and of training without one
EXPOSURE_RANGE = (0.3, 0.9)        # accepted by enhance(), the CLI and the widget's slider
EXPOSURE_TRAIN_RANGE = (0.3, 0.8)  # E ~ U(lo, hi) per training sample of the E-conditioned curve models
EXPOSURE_GRID = (0.4, 0.5, 0.6, 0.7)  # the E columns of training grids and model cards
ITERATIONS_DEFAULT = 8             # curve steps
MAX_ITERATIONS = 64                # curve steps allowed (also the size of the kernels' per-pixel step arrays)
DENOISE_AUTO = "auto"              # denoise: 0 (off: output bit-identical to no denoising), a guided-filter strength
DENOISE_LEARNED = "learned"        # in DENOISE_RANGE, DENOISE_AUTO (that strength from the input's estimated noise) or
DENOISE_RANGE = (0.0, 1.0)         # DENOISE_LEARNED (the learned denoiser, lowlight_core.denoise_net; opt-in)
DENOISE_DEFAULT = DENOISE_AUTO
DENOISE_SLIDER_STEPS = 20          # the napari slider: 0, 0.05, ..., 1 (plus an "auto" box)
DENOISE_SLIDER_START = 0.5         # where the napari sliders start while their "auto" box is on



def _parse_auto(text: str, name: str, bounds: tuple[float, float], words=("auto",)):
    text = str(text).strip().lower()
    if text in words:
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number in [{bounds[0]:g}, {bounds[1]:g}] or "
                         f"{' or '.join(repr(w) for w in words)}, got {text!r}") from None


def parse_denoise(text: str):
    """A denoise value from text (CLI, scripts): 'auto', 'learned' or a number (its range is checked by enhance)."""
    return _parse_auto(text, "denoise", DENOISE_RANGE, (DENOISE_AUTO, DENOISE_LEARNED))


def parse_exposure(text: str):
    """An exposure value from text (CLI, scripts): 'auto' or a number (its range is checked by enhance)."""
    return _parse_auto(text, "exposure", EXPOSURE_RANGE)



# ---------------------------------------------------------------- denoise (lowlight_core.noise, ops.guided_denoise)
DENOISE_LUMA_RADIUS = 2            # guided-filter radius of the luminance plane (window 5 x 5)
DENOISE_CHROMA_RADIUS = 6          # of the chroma planes: coloured blotches are larger than the grain
DENOISE_EPS_SCALE = 3.0            # strength 1: eps = 3 x the window's luminance noise variance (a = var / (var + eps));
                                   # 8 flattened fine texture (gravel, foliage) on real dark frames
DENOISE_AUTO_NOISE = 0.02          # auto: full strength when the amplified noise std reaches 2 % of full scale
DENOISE_GAIN_FLOOR = 1.0 / 255     # gain = mean(out) / max(mean(in), floor) (guided_denoise; a compiled-in macro)
DENOISE_EPS_FLOOR = 1.0 / (12 * 255 ** 2)  # least eps of the chroma estimate: 8-bit rounding noise (a macro too)
DENOISE_STRIP_PIXELS = 2 ** 21     # the filter runs on strips of about this many pixels (memory: a few strips)
DENOISE_LEARNED_STRIP_PIXELS = 2 ** 20  # the learned denoiser's (its features take ~10 floats per pixel more)

# ---------------------------------------------------------------- sequences and video (lowlight_core.sequence, .video)
TEMPORAL_RADIUS = 4                # frames either side of a frame whose decisions and pixels its result may use
CUT_GRID = 8                       # scene-cut signature: the luma's block means on a CUT_GRID x CUT_GRID grid
CUT_STRUCTURE = 0.25               # a cut: mean abs change of the signature over its mean above this (a new
CUT_GAIN = 1.5                     # layout), or the mean brightness changing by more than this factor at once
MOTION_RADIUS = 2                  # temporal noise averaging: the frame difference is box-filtered (5 x 5) and
MOTION_NOISE_K = 3.0               # a neighbour's pixel counts less the closer that comes to K x its noise std
VIDEO_MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}  # FFmpeg's
VIDEO_EXTENSIONS = tuple(VIDEO_MUXERS)  # video files: their extensions, each with the muxer that writes it
VIDEO_QUALITY_DEFAULT = 18         # H.264 CRF of the output (0 lossless, 51 worst; 18 looks like the source)
VIDEO_QUALITY_RANGE = (0, 51)

# ---------------------------------------------------------------- op limits and constants
MAX_KSIZE = 1001     # blur_color_loss: largest Gaussian kernel
TV_ISO_EPS = 1e-6    # tv_loss "iso": sqrt(dh^2 + dw^2 + eps) keeps the root differentiable in flat regions


def native_defines() -> list[tuple[str, str]]:
    """The macros every build of csrc/ gets (csrc/limits.h refuses to compile without them)."""
    return [("LOWLIGHT_MAX_ITERATIONS", str(MAX_ITERATIONS)), ("LOWLIGHT_MAX_KSIZE", str(MAX_KSIZE)),
            ("LOWLIGHT_TV_ISO_EPS", repr(TV_ISO_EPS)), ("LOWLIGHT_DENOISE_GAIN_FLOOR", repr(DENOISE_GAIN_FLOOR)),
            ("LOWLIGHT_DENOISE_EPS_FLOOR", repr(DENOISE_EPS_FLOOR))]
