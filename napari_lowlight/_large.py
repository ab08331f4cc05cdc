"""Large layers in the dock widget, without Qt: multiscale pyramids and lazy (dask, zarr) arrays.

- A multiscale layer previews from the level that fits the canvas (`preview_level`): the coarsest level still at
  least as large as the finest level fit into the canvas, so the preview is as sharp as the screen and costs no
  more than that; Apply (`apply_levels`) enhances every level into a multiscale output.
- Lazy arrays are read one plane at a time (np.asarray(data[index])), by the preview and by Apply (_compute's
  apply_job for single-scale layers, `apply_levels` here), so a stack is never loaded whole.
Memory of Apply on a pyramid: the output levels (4/3 of the finest level for 2x steps) plus one plane's work; a
single-plane level's result is lowlight_core.enhance's own output array, never copied into a second one.
"""
from __future__ import annotations


import numpy as np

from ._compute import Failure, plane_axes, plane_indices

DEFAULT_CANVAS = (1080, 1920)  # (rows, cols) assumed when the viewer does not report its canvas


def plane_hw(shape, rgb: bool) -> tuple[int, int]:
    """(H, W) of one plane of a layer of this shape."""
    return tuple(shape[len(shape) - plane_axes(rgb):][:2])


def preview_level(shapes, rgb: bool, canvas=None) -> int:
    """Index of the level (shapes finest first) to preview: the coarsest whose plane is at least the finest plane
    fit into the canvas (aspect kept, never enlarged); 0 when no coarser level is that large."""
    rows, cols = canvas or DEFAULT_CANVAS
    h0, w0 = plane_hw(shapes[0], rgb)
    fit = min(rows / h0, cols / w0, 1.0)
    need_h, need_w = int(h0 * fit), int(w0 * fit)
    for level in range(len(shapes) - 1, 0, -1):
        h, w = plane_hw(shapes[level], rgb)
        if h >= need_h and w >= need_w:
            return level
    return 0


def level_plane(index: tuple, shape0, shape, rgb: bool) -> tuple:
    """The plane of a level (shape) that holds plane `index` of the finest level (shape0): stack axes a pyramid
    downsamples map proportionally."""
    lead = len(shape) - plane_axes(rgb)
    return tuple(min(i * n // n0, n - 1) for i, n0, n in zip(index, shape0[:lead], shape[:lead]))


def apply_levels(levels, rgb: bool, settings):
    """Generator worker: enhances every plane of every level (finest first), yielding (done, total) after each
    plane; returns the list of enhanced levels (each the level's shape and dtype) or a Failure."""
    import lowlight_core

    try:
        controls = settings.controls()
        planes = [plane_indices(level.shape, rgb) for level in levels]
        total, done, out = sum(map(len, planes)), 0, []
        for level, indices in zip(levels, planes):
            single = indices == [()]  # one plane: enhance's own output array is the level
            result = None if single else np.empty(level.shape, np.dtype(level.dtype))
            for index in indices:
                y = lowlight_core.enhance(np.asarray(level[index]), **controls)
                if single:
                    result = y
                else:
                    result[index] = y
                done += 1
                yield done, total
            out.append(result)
        return out
    except Exception as e:  # shown as a notification by the widget
        return Failure.from_exception(e)
