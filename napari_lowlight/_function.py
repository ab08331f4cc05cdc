"""napari function commands (napari.yaml): plain functions that napari turns into widgets with magicgui, listed in
the Plugins menu, and that napari-workflows / napari-assistant can chain (image data in, image data out).

- `enhance(image: ImageData, model, exposure, iterations, denoise) -> ImageData`: napari adds the result as a new
  layer and gives it the input layer's scale, translate and units (napari's rule for ImageData results).
- `enhance_layer(image: Image, ...) -> LayerDataTuple`: the same, for the Plugins menu, with everything of the
  input's geometry kept, its axis labels included (ImageData cannot carry them).
Stacks (time, z, ...) are enhanced plane by plane, each plane read on its own (a dask layer is never loaded
whole); the output is an in-memory array of the input's shape and dtype.
"""
# No `from __future__ import annotations`: napari-assistant and napari-workflows read the annotations as types.
from typing import Annotated

import numpy as np
from napari.layers import Image
from napari.types import ImageData, LayerDataTuple

from lowlight_core.controls import (DEFAULT_MODEL, DENOISE_AUTO, DENOISE_DEFAULT, DENOISE_RANGE, DENOISE_SLIDER_START,
                                    EXPOSURE_AUTO,
                                    EXPOSURE_DEFAULT, EXPOSURE_NOMINAL, EXPOSURE_RANGE, ITERATIONS_DEFAULT,
                                    MAX_ITERATIONS)
from lowlight_core.models.registry import list_models

OUTPUT_SUFFIX = " enhanced"
MODELS = [m.name for m in list_models()]
# magicgui widget options of the controls (the ranges are the core's)
Model = Annotated[str, {"choices": MODELS}]
Exposure = Annotated[float, {"widget_type": "FloatSlider", "min": EXPOSURE_RANGE[0], "max": EXPOSURE_RANGE[1],
                             "step": 0.01}]
Iterations = Annotated[int, {"min": 1, "max": MAX_ITERATIONS}]
Denoise = Annotated[float, {"widget_type": "FloatSlider", "min": DENOISE_RANGE[0], "max": DENOISE_RANGE[1],
                            "step": 0.05}]


def is_rgb(shape) -> bool:
    """napari's reading of plain image data: a last axis of 3 or 4 after at least two others is colour."""
    return len(shape) >= 3 and shape[-1] in (3, 4)


# The sliders hold numbers; an "auto" box beside each (on when the core's default is auto) stands for 'auto'.
EXPOSURE_SLIDER = EXPOSURE_NOMINAL if EXPOSURE_DEFAULT == EXPOSURE_AUTO else EXPOSURE_DEFAULT
DENOISE_SLIDER = DENOISE_SLIDER_START if DENOISE_DEFAULT == DENOISE_AUTO else DENOISE_DEFAULT


def controls(exposure, auto_exposure: bool, iterations, denoise, auto_denoise: bool) -> dict:
    """enhance's keyword arguments from the command's widgets: an auto box wins over its slider."""
    return {"exposure": EXPOSURE_AUTO if auto_exposure else exposure, "iterations": iterations,
            "denoise": DENOISE_AUTO if auto_denoise else denoise}


def enhance_planes(data, rgb: bool, **controls) -> np.ndarray:
    """lowlight_core.enhance of every plane of `data` (N-D, gray H x W or colour H x W x C planes), each read
    with np.asarray(data[index]) on its own; the result is a numpy array of data's shape and dtype."""
    import lowlight_core

    from ._compute import check_layer, plane_indices

    check_layer(data.shape, data.dtype, rgb)
    out = np.empty(tuple(data.shape), np.dtype(data.dtype))
    for index in plane_indices(data.shape, rgb):
        out[index] = lowlight_core.enhance(np.asarray(data[index]), **controls)
    return out


def enhance(image: ImageData, model: Model = DEFAULT_MODEL, exposure: Exposure = EXPOSURE_SLIDER,
            auto_exposure: bool = EXPOSURE_DEFAULT == EXPOSURE_AUTO, iterations: Iterations = ITERATIONS_DEFAULT,
            denoise: Denoise = DENOISE_SLIDER, auto_denoise: bool = DENOISE_DEFAULT == DENOISE_AUTO) -> ImageData:
    """Enhance a low-light image (every plane of a stack) with a lowlight model; returns the same shape and dtype.

    exposure: target mean brightness, or auto_exposure (predicted from the whole image); iterations: curve steps
    (curve models); denoise: 0 (off) to 1, or auto_denoise (from the image's noise)."""
    if image is None:
        raise ValueError("no image: pick an image layer")
    return enhance_planes(image, is_rgb(image.shape), model=model,
                          **controls(exposure, auto_exposure, iterations, denoise, auto_denoise))


def enhance_layer(image: Image, model: Model = DEFAULT_MODEL, exposure: Exposure = EXPOSURE_SLIDER,
                  auto_exposure: bool = EXPOSURE_DEFAULT == EXPOSURE_AUTO, iterations: Iterations = ITERATIONS_DEFAULT,
                  denoise: Denoise = DENOISE_SLIDER,
                  auto_denoise: bool = DENOISE_DEFAULT == DENOISE_AUTO) -> LayerDataTuple:
    """enhance() of an image layer into a new layer "<name> enhanced" with the input's scale, translate, rotation,
    shear, affine, units and axis labels."""
    if image is None:
        raise ValueError("no image layer: open or add one")
    if image.multiscale:
        raise ValueError(f"{image.name!r} is multiscale: use the Low-light enhancement dock widget's Apply")
    data = enhance_planes(image.data, image.rgb, model=model,
                          **controls(exposure, auto_exposure, iterations, denoise, auto_denoise))
    geometry = {key: getattr(image, key) for key in ("scale", "translate", "rotate", "shear", "units", "axis_labels")}
    style = {} if image.rgb else {"colormap": image.colormap.name}
    limits = (0, np.iinfo(data.dtype).max) if data.dtype.kind == "u" else (0.0, 1.0)  # the enhanced range
    return data, {"name": image.name + OUTPUT_SUFFIX, "rgb": image.rgb, "affine": image.affine.affine_matrix,
                  "contrast_limits": limits, **geometry, **style}, "image"
