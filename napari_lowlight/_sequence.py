"""Time stacks in the widget, free of Qt: a layer with a time axis is enhanced as a sequence
(lowlight_core.sequence: decisions smoothed over time, scene cuts, static noise averaged with denoise on), not
plane by plane. Other leading axes (z, channels of a stack) stay independent: each of their positions is one
sequence over time.

The time axis is the leading axis whose napari label is 't' or 'time' (`time_axis`), or the one picked in the
widget. The preview of one plane is `enhance_frame` of its sequence: exactly that plane of Apply.
"""
from __future__ import annotations

import itertools

import numpy as np

from lowlight_core.sequence import enhance_frame, enhance_sequence

from ._compute import Failure, Settings, check_layer, stack_shape

TIME_LABELS = ("t", "time")


def time_axis(axis_labels, shape, rgb: bool) -> int | None:
    """The leading axis labelled 't' or 'time' (case-insensitive), or None."""
    leading = len(stack_shape(shape, rgb))
    labels = list(axis_labels)[:leading]
    for k, label in enumerate(labels):
        if str(label).strip().lower() in TIME_LABELS:
            return k
    return None


def check_time_axis(shape, rgb: bool, axis: int) -> None:
    leading = stack_shape(shape, rgb)
    if not 0 <= axis < len(leading):
        raise ValueError(f"time axis {axis} is not a stack axis of a layer of shape {tuple(shape)}")


def _series(data, rgb: bool, axis: int):
    """(index of the other leading axes with slice(None) at the time axis) for every sequence of the stack."""
    leading = stack_shape(data.shape, rgb)
    others = [range(n) if k != axis else [slice(None)] for k, n in enumerate(leading)]
    return list(itertools.product(*others))


def preview_job(data, rgb: bool, index: tuple, settings: Settings, axis: int):
    """Plane `index` of the layer as Apply along the time axis makes it (enhance_frame), or a Failure."""
    try:
        check_layer(data.shape, data.dtype, rgb)
        check_time_axis(data.shape, rgb, axis)
        series = tuple(slice(None) if k == axis else i for k, i in enumerate(index))
        return enhance_frame(np.asarray(data[series]), int(index[axis]), **settings.controls())
    except Exception as e:  # shown as a notification by the widget
        return Failure.from_exception(e)


def apply_job(data, rgb: bool, settings: Settings, axis: int):
    """Generator worker: yields (done, total) after each frame; returns the enhanced stack or a Failure."""
    try:
        check_layer(data.shape, data.dtype, rgb)
        check_time_axis(data.shape, rgb, axis)
        out = np.empty(data.shape, data.dtype)
        series = _series(data, rgb, axis)
        frames = data.shape[axis]
        total, done = len(series) * frames, 0
        for index in series:
            view = out[index]
            for t, y in enumerate(enhance_sequence(iter(np.asarray(data[index])), **settings.controls())):
                view[t] = y
                done += 1
                yield done, total
        return out
    except Exception as e:
        return Failure.from_exception(e)
