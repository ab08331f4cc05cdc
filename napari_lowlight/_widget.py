"""The dock widget: pick an image layer and a model, move the sliders, see the enhanced layer update.

Flow: a control change restarts a short timer (coalescing a burst of slider events); when it fires, one
preview worker enhances the plane on screen. Changes made while a worker runs leave one request pending,
started when the worker finishes; every request carries a generation number and a result whose generation
is no longer the latest is dropped, so the output always matches the controls. The result goes to one
layer "<input> enhanced" that the widget made (known by its unique_id), updated in place.

Heavy models (image-to-image networks, Zero-DCE's full-resolution curve maps; _compute.is_heavy) preview the
plane downscaled to what the canvas shows: the whole plane fit into the canvas (device pixels), smaller still
when the model's measured cost would take longer than `preview_seconds`. The reduced preview is laid over the
input with a matching scale and translate (_compute.preview_geometry), so it covers the same extent. Why the
whole plane and not the visible region: panning and zooming then need no new run (the heavy networks take
seconds per megapixel on a CPU), and the time of a preview does not depend on where the user looks; zoomed in
past the canvas resolution it looks soft until Apply. Gamma and CLAHE preview the same way (seconds at 12 MP in
float); Zero-DCE++ (curve maps estimated at low resolution, one fused pass in the layer's dtype: exact at full
resolution, milliseconds) previews at full size.

Apply enhances every plane at full resolution in a generator worker that yields after each plane, or each
tile of a full-resolution network, shown in the widget's bar and napari's activity dock (napari.utils.progress);
the button reads "Cancel" meanwhile. All work lives in _compute (no Qt there); errors arrive as Failure values
and are shown as napari notifications. A layer with a time axis (labelled 't'/'time', or picked in the "time
axis" combo) is enhanced as a sequence instead, preview and Apply alike (_sequence).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from lowlight_core.controls import (DEFAULT_MODEL, DENOISE_AUTO, DENOISE_DEFAULT, DENOISE_RANGE,
                                    DENOISE_SLIDER_START, DENOISE_SLIDER_STEPS, EXPOSURE_AUTO, EXPOSURE_DEFAULT,
                                    EXPOSURE_NOMINAL, EXPOSURE_RANGE, ITERATIONS_DEFAULT)

OUTPUT_SUFFIX = " enhanced"
# metadata key on the layers this widget made: the input's unique_id. For the user to see only: Duplicate
# Layer copies metadata, so the widget finds its outputs by the unique_id of the layers it made (a copy
# gets its own; the layer objects cannot serve, napari hands plugins a new proxy for each access); any
# other layer, a user's duplicate or one that happens to be named "<input> enhanced", is left alone.
OUTPUT_MARK = "lowlight_output_of"
DEBOUNCE_MS = 15           # coalesces the valueChanged burst of one slider drag step, adds little latency
ITERATIONS_RANGE = (1, 16)  # the slider's span; enhance() accepts up to controls.MAX_ITERATIONS
NO_WEIGHTS = " (no weights)"
_DTYPE_RANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.uint16): (0, 65535)}


@dataclass
class _Job:
    """One request: which layer, which plane, which settings, and when it was made."""
    generation: int
    layer_name: str
    data: object
    rgb: bool
    index: tuple
    settings: object  # _compute.Settings
    source: tuple
    started: float
    canvas: tuple | None = None  # (rows, cols) of device pixels of the viewer's canvas
    levels: list | None = None   # a multiscale layer's levels (finest first): Apply enhances them all
    full_shape: tuple | None = None  # the finest level's shape when `data` is a coarser level (the preview's)


class LowlightWidget(QWidget):
    """Dock widget of the lowlight plugin (napari.yaml: "Low-light enhancement")."""

    #: emitted after the output layer got a new result: (input layer name, Settings, seconds since request)
    result_shown = Signal(str, object, float)

    def __init__(self, napari_viewer):
        super().__init__()
        from . import _compute, _large  # torch and the models load here, not when napari starts
        from lowlight_core.models import registry

        self.viewer = napari_viewer
        self._compute = _compute
        self._large = _large
        self._registry = registry
        self.enhancer = _compute.Enhancer()
        self._made: dict = {}  # unique_id of each output layer made here -> its input's mark (the input's id)
        self.dropped_results = 0     # stale results thrown away (tests read it)
        self.last_elapsed = None     # seconds from the last shown request to its result on screen
        self._generation = 0
        self._worker = None          # the running preview worker
        self._pending = False        # a preview was requested while the worker ran
        self._apply_worker = None
        self._apply_job = None       # the running Apply's request
        self._apply_bar = None       # napari's progress bar (activity dock) of the running Apply
        self._apply_done = 0         # the last step shown (steps can arrive re-entrantly, see _on_apply_progress)
        self._applied = None         # (source, settings) of the full-resolution result in the output layer
        self.preview_seconds = self._compute.PREVIEW_SECONDS  # time budget of a heavy model's preview
        self._input = None           # the layer whose data events we follow
        self._versions: dict = {}    # layer unique_id -> data version (bumped when its data changes)
        self._last_plane = None
        self._docked = False
        self.closed = False          # set when napari removes the widget: no more work, no more events

        self._build_controls()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._start_preview)

        for event in self._layer_list_events():
            event.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._on_dims)
        self._refresh_layers()
        self._on_model_changed(warn=False)

    def _layer_list_events(self):
        events = self.viewer.layers.events
        return events.inserted, events.removed, events.moved

    def event(self, event) -> bool:
        # napari closes a dock widget by un-parenting it (remove_dock_widget): stop working for the viewer then
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self.shutdown()
        return super().event(event)

    def shutdown(self) -> None:
        """Stop: cancel pending work, drop in-flight results, disconnect from the viewer's events."""
        if self.closed:
            return
        self.closed = True
        self._generation += 1
        self._pending = False
        self._timer.stop()
        if self._apply_worker is not None:
            self._apply_worker.quit()
        for event in self._layer_list_events():
            event.disconnect(self._refresh_layers)
        self.viewer.dims.events.current_step.disconnect(self._on_dims)
        for layer in self._image_layers():
            layer.events.name.disconnect(self._refresh_layers)
        if self._input is not None:
            self._input.events.data.disconnect(self._on_input_data)
            self._input = None

    # ------------------------------------------------------------ controls

    def _build_controls(self) -> None:
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("Image layer to enhance: RGB, RGBA, gray; uint8, uint16 or float in [0, 1]")

        self.model_combo = QComboBox()
        default = None
        for info in self._registry.list_models():
            ready = self._registry.has_weights(info.name)
            self.model_combo.addItem(info.name + ("" if ready else NO_WEIGHTS), info.name)
            self.model_combo.setItemData(self.model_combo.count() - 1, info.description, Qt.ItemDataRole.ToolTipRole)
            if default is None and ready and info.name in (DEFAULT_MODEL, "gamma"):
                default = info.name  # the default model when trained, else exposure-matched gamma
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(default)))
        self.description = QLabel()
        self.description.setWordWrap(True)

        self.iterations = QLabeledSlider(Qt.Orientation.Horizontal)
        self.iterations.setRange(*ITERATIONS_RANGE)
        self.iterations.setValue(ITERATIONS_DEFAULT)
        self.iterations.setToolTip("Curve steps: more steps brighten more (curve models only)")
        self.exposure = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.exposure.setRange(*EXPOSURE_RANGE)
        self.exposure.setSingleStep(0.01)
        self.exposure.setValue(EXPOSURE_NOMINAL)
        self.exposure.setToolTip("Target exposure E: the mean brightness of the result (every model)")
        self.exposure_auto = QCheckBox("auto")
        self.exposure_auto.setToolTip("The brightness a well-exposed photo of the scene would have, predicted from "
                                      "the whole image")
        self.exposure_auto.setChecked(EXPOSURE_DEFAULT == EXPOSURE_AUTO)
        self.exposure.setEnabled(not self.exposure_auto.isChecked())
        self.denoise = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.denoise.setRange(*DENOISE_RANGE)
        self.denoise.setSingleStep((DENOISE_RANGE[1] - DENOISE_RANGE[0]) / DENOISE_SLIDER_STEPS)
        self.denoise.setValue(DENOISE_SLIDER_START if DENOISE_DEFAULT == DENOISE_AUTO else DENOISE_DEFAULT)
        self.denoise.setToolTip("Noise-aware denoising strength (0: off): a guided filter on the result, stronger "
                                "where the enhancement brightens more (every model)")
        self.denoise_auto = QCheckBox("auto")
        self.denoise_auto.setToolTip("Pick the strength from the image's estimated noise and the enhancement's gain")
        self.denoise_auto.setChecked(DENOISE_DEFAULT == DENOISE_AUTO)
        self.denoise.setEnabled(not self.denoise_auto.isChecked())

        import torch

        self.device_combo = QComboBox()
        self.device_combo.addItems(["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
        self.device_combo.setCurrentIndex(self.device_combo.count() - 1)  # cuda when there is one

        self.time_combo = QComboBox()  # filled per layer (_update_time_axes)
        self.time_combo.setToolTip("The stack axis that is time: its frames are enhanced as a sequence (decisions "
                                   "smoothed over time, scene cuts reset them, static noise averaged with denoise "
                                   "on); 'none': every plane alone (z stacks)")

        self.live = QCheckBox("live preview")
        self.live.setChecked(True)
        self.live.setToolTip("Enhance the plane on screen whenever a control changes")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Enhance the whole layer (every plane of a stack)")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.layer_combo)
        form.addRow("model", self.model_combo)
        form.addRow(self.description)
        form.addRow("iterations", self.iterations)
        form.addRow("exposure E", self.exposure)
        form.addRow(self.exposure_auto)
        form.addRow("denoise", self.denoise)
        form.addRow(self.denoise_auto)
        form.addRow("device", self.device_combo)
        form.addRow("time axis", self.time_combo)
        form.addRow(self.live)
        self._form = QWidget()
        self._form.setLayout(form)
        layout = QVBoxLayout(self)
        layout.addWidget(self._form)
        layout.addWidget(self.apply_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.model_combo.currentIndexChanged.connect(lambda _: self._on_model_changed(warn=True))
        self.iterations.valueChanged.connect(self._request_preview)
        self.exposure.valueChanged.connect(self._request_preview)
        self.exposure_auto.toggled.connect(self._on_exposure_auto)
        self.denoise.valueChanged.connect(self._request_preview)
        self.denoise_auto.toggled.connect(self._on_denoise_auto)
        self.device_combo.currentIndexChanged.connect(self._request_preview)
        self.time_combo.currentIndexChanged.connect(self._request_preview)
        self.live.toggled.connect(self._request_preview)
        self.apply_button.clicked.connect(self._on_apply)

    def settings(self):
        """The controls as a _compute.Settings."""
        return self._compute.Settings(model=self.model_combo.currentData(), iterations=int(self.iterations.value()),
                                      exposure=(EXPOSURE_AUTO if self.exposure_auto.isChecked()
                                                else round(float(self.exposure.value()), 4)),
                                      denoise=(DENOISE_AUTO if self.denoise_auto.isChecked()
                                               else round(float(self.denoise.value()), 4)),
                                      device=self.device_combo.currentText())

    def _on_exposure_auto(self, checked: bool) -> None:
        self.exposure.setEnabled(not checked)
        self._request_preview()

    def _on_denoise_auto(self, checked: bool) -> None:
        self.denoise.setEnabled(not checked)
        self._request_preview()

    def is_idle(self) -> bool:
        """No request waiting, no worker running."""
        return not (self._timer.isActive() or self._pending or self._worker or self._apply_worker)

    def _on_model_changed(self, warn: bool) -> None:
        name = self.model_combo.currentData()
        info = self._registry.get_model_info(name)
        self.description.setText(info.description)
        self.model_combo.setToolTip(info.description)
        self.iterations.setEnabled("iterations" in info.controls)
        if warn and not self._weights_ready(name, notify=True):
            return
        self._request_preview()

    def _weights_ready(self, name: str, notify: bool) -> bool:
        if self._registry.has_weights(name):
            return True
        message = (f"{name} has no trained weights ({self._registry.weights_path(name)} not found): train them "
                   f"with `lowlight train {name}`, or pick another model")
        self.status.setText(message)
        if notify:
            show_warning(message)
        return False

    # ------------------------------------------------------------ layers

    def _image_layers(self) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, event=None) -> None:
        current = self.layer_combo.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.enhancer.keep_only(layer.unique_id for layer in self._image_layers())  # removed layers
        for layer in self._image_layers():
            layer.events.name.connect(self._refresh_layers)
        if current not in names:  # first time, or the layer went away: prefer the selected input image
            active = self.viewer.layers.selection.active
            candidates = [layer.name for layer in self._image_layers() if layer.unique_id not in self._made] or names
            current = active.name if active is not None and active.name in candidates else \
                (candidates[-1] if candidates else "")
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        self.layer_combo.setCurrentIndex(max(0, self.layer_combo.findText(current)))
        self.layer_combo.blockSignals(False)
        self._on_layer_changed()

    def input_layer(self):
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_layer_changed(self, *_) -> None:
        layer = self.input_layer()
        if layer is self._input or (layer is not None and self._input is not None
                                    and layer.unique_id == self._input.unique_id):
            return
        if self._input is not None:
            self._input.events.data.disconnect(self._on_input_data)
        self._input = layer
        self._last_plane = None
        if layer is not None:
            layer.events.data.connect(self._on_input_data)
        self._update_time_axes()
        self._request_preview()

    def _update_time_axes(self) -> None:
        """The time-axis choices of the input layer: 'none' and its stack axes; preselected from napari's axis
        labels ('t' or 'time')."""
        from . import _sequence

        layer = self.input_layer()
        self.time_combo.blockSignals(True)
        self.time_combo.clear()
        self.time_combo.addItem("none (every plane alone)", None)
        if layer is not None and not layer.multiscale:
            leading = self._compute.stack_shape(layer.data.shape, layer.rgb)
            for k, n in enumerate(leading):
                self.time_combo.addItem(f"axis {k} '{layer.axis_labels[k]}' ({n})", k)
            found = _sequence.time_axis(layer.axis_labels, layer.data.shape, layer.rgb)
            self.time_combo.setCurrentIndex(0 if found is None else found + 1)
        self.time_combo.blockSignals(False)

    def _on_input_data(self, event=None) -> None:
        uid = self._input.unique_id
        self.enhancer.forget((uid, self._versions.get(uid, 0)))
        self._versions[uid] = self._versions.get(uid, 0) + 1
        if self.time_combo.count() != 1 + len(self._compute.stack_shape(self._input.data.shape, self._input.rgb)):
            self._update_time_axes()
        self._request_preview()

    def _on_dims(self, event=None) -> None:
        layer = self.input_layer()
        if layer is None or layer.multiscale:
            return
        if self._compute.stack_shape(layer.data.shape, layer.rgb) and self._plane(layer) != self._last_plane:
            uid = layer.unique_id
            if self._applied == ((uid, self._versions.get(uid, 0)), self.settings()):
                return  # every plane is enhanced at full resolution already: keep that
            self._request_preview()

    def canvas_shape(self) -> tuple | None:
        """(rows, cols) of device pixels of the viewer's canvas: a reduced preview is made at most this large
        (the plane fit into the canvas, as napari shows it after a reset of the view)."""
        # napari >= 0.9: viewer.canvas.size (height, width); earlier versions: viewer._canvas_size
        size = getattr(getattr(self.viewer, "canvas", None), "size", None) or getattr(self.viewer, "_canvas_size", None)
        if size is None or len(size) != 2 or min(size) <= 1:
            return None
        ratio = float(self.devicePixelRatioF())
        return int(round(size[0] * ratio)), int(round(size[1] * ratio))

    def _plane(self, layer) -> tuple:
        return self._compute.plane_at(layer.world_to_data(self.viewer.dims.point), layer.data.shape, layer.rgb)

    # ------------------------------------------------------------ requests and workers

    def _request_preview(self, *_) -> None:
        self._generation += 1  # whatever is in flight no longer matches the controls
        if self.live.isChecked() and self._apply_worker is None and not self.closed:
            self._timer.start()

    def _make_job(self, notify: bool) -> _Job | None:
        """The request for the current controls, or None (with a message) when nothing can run."""
        layer = self.input_layer()
        if layer is None:
            self.status.setText("Open or add an image layer to enhance.")
            return None
        settings = self.settings()
        if not self._weights_ready(settings.model, notify):
            return None
        uid, canvas = layer.unique_id, self.canvas_shape()
        source = (uid, self._versions.get(uid, 0))
        data, levels, full_shape = layer.data, None, None
        try:
            plane = self._plane(layer)
            if layer.multiscale:  # preview the level that fits the canvas; Apply enhances every level
                levels, full_shape = list(layer.data), tuple(layer.data[0].shape)
                level = self._large.preview_level([a.shape for a in levels], layer.rgb, canvas)
                data = levels[level]
                plane = self._large.level_plane(plane, full_shape, data.shape, layer.rgb)
                source += (level,)  # the preview cache must tell the levels apart
            for a in levels or [data]:
                self._compute.check_layer(a.shape, a.dtype, layer.rgb)
        except Exception as e:  # a notification, never an exception in the Qt event loop
            self._fail(f"cannot enhance layer {layer.name!r}: {e}")
            return None
        return _Job(self._generation, layer.name, data, bool(layer.rgb), plane, settings, source,
                    time.perf_counter(), canvas, levels, full_shape)

    def _start_preview(self) -> None:
        if self.closed:
            return
        if self._worker is not None:
            self._pending = True
            return
        job = self._make_job(notify=False)
        if job is None:
            return
        self._last_plane = job.index
        self.status.setText(f"enhancing with {job.settings.model}…")
        axis = self.time_combo.currentData()
        if axis is not None:  # the frame as Apply along time makes it (full resolution)
            from . import _sequence

            worker = create_worker(_sequence.preview_job, job.data, job.rgb, job.index, job.settings, axis)
        else:
            worker = create_worker(self._compute.preview_job, self.enhancer, job.data, job.rgb, job.index,
                                   job.settings, job.source, job.canvas, self.preview_seconds)
        worker.returned.connect(lambda result: self._on_preview_result(job, result))
        worker.finished.connect(self._on_preview_finished)
        self._worker = worker
        worker.start()

    def _on_preview_result(self, job: _Job, result) -> None:
        if job.generation != self._generation:
            self.dropped_results += 1
            return
        if isinstance(result, self._compute.Failure):
            self._fail(f"{job.settings.model} failed on {job.layer_name!r}: {result.message}")
            return
        self._show(job, result, plane=job.index)

    def _on_preview_finished(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self._start_preview()

    def _on_apply(self) -> None:
        if self._apply_worker is not None:  # the button reads "Cancel" while a stack runs
            self._apply_worker.quit()
            return
        job = self._make_job(notify=True)
        if job is None:
            return
        # full resolution, every plane: the worker yields (done, total) per plane, or per tile of a
        # full-resolution network; the total is known once the worker has the model
        self._generation += 1  # a preview in flight would overwrite the result: drop it
        self._pending = False
        self._timer.stop()
        planes = len(self._compute.plane_indices(job.data.shape, job.rgb))
        axis = self.time_combo.currentData()
        if job.levels is not None:
            worker = create_worker(self._large.apply_levels, job.levels, job.rgb, job.settings)
        elif axis is not None:  # a time stack: one sequence per position of the other axes
            from . import _sequence

            worker = create_worker(_sequence.apply_job, job.data, job.rgb, job.settings, axis)
        else:
            worker = create_worker(self._compute.apply_job, self.enhancer, job.data, job.rgb, job.settings)
        self._apply_job, self._apply_done = job, 0
        worker.yielded.connect(self._on_apply_progress)
        worker.returned.connect(lambda result: self._on_apply_result(job, result))
        worker.finished.connect(self._on_apply_finished)
        self._apply_worker = worker
        self._form.setEnabled(False)
        self.apply_button.setText("Cancel")
        self.progress.setRange(0, 0)  # busy until the first step reports the total
        self.progress.setVisible(True)
        self.status.setText(f"enhancing {job.layer_name!r} at full resolution"
                            + (f" ({planes} planes)…" if planes > 1 else "…"))
        worker.start()

    def _on_apply_progress(self, done_total) -> None:
        done, total = done_total
        job = self._apply_job
        # napari's bar processes Qt events while it redraws, so the next steps can be handled inside this call
        # (seen under load: 1, 4, 3, 2, ...); and the last one can arrive after finished: show only newer steps
        if self._apply_worker is None or done <= self._apply_done:
            return
        self._apply_done = done
        if self._apply_bar is None:
            self._apply_bar = progress(total=total, desc=f"Enhancing {job.layer_name} ({job.settings.model})")
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        if done > self._apply_bar.n:
            self._apply_bar.update(done - self._apply_bar.n)

    def _on_apply_result(self, job: _Job, result) -> None:
        if self.closed:
            return
        if isinstance(result, self._compute.Failure):
            self._fail(f"{job.settings.model} failed on {job.layer_name!r}: {result.message}")
            return
        self._show(job, result, plane=None)
        self._applied = (job.source, job.settings)
        total = len(self._compute.plane_indices(job.data.shape, job.rgb))
        show_info(f"{job.layer_name}: {total} plane{'s' if total > 1 else ''} enhanced with {job.settings.model} "
                  f"at full resolution in {self.last_elapsed:.1f} s")

    def _on_apply_finished(self) -> None:
        self._apply_worker = None
        if self._apply_bar is not None:
            self._apply_bar.close()
            self._apply_bar = None
        if self.closed:
            return
        self._form.setEnabled(True)
        self.apply_button.setText("Apply")
        self.progress.setVisible(False)

    # ------------------------------------------------------------ results

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _show(self, job: _Job, result: np.ndarray, plane) -> None:
        """Put a result into the output layer: one plane of a stack (plane=index) or the whole layer."""
        layer = self.viewer.layers[job.layer_name] if job.layer_name in self.viewer.layers else None
        if layer is None:
            return  # the input went away while we computed
        name = job.layer_name + OUTPUT_SUFFIX
        mark = str(layer.unique_id)
        out = next((o for o in self._image_layers() if self._made.get(o.unique_id) == mark), None)
        multiscale = isinstance(result, list)  # Apply of a multiscale layer: every level
        if out is not None and (out.rgb != job.rgb or out.multiscale != multiscale):
            self.viewer.layers.remove(out)
            out = None
        leading = self._compute.stack_shape(job.data.shape, job.rgb)
        full_hw = self._large.plane_hw(job.full_shape or job.data.shape, job.rgb)
        finest = result[0] if multiscale else result
        preview_hw = self._large.plane_hw(finest.shape, job.rgb)
        scale, translate = np.asarray(layer.scale), np.asarray(layer.translate)
        if preview_hw != full_hw:  # a reduced preview: lay it over the layer's extent
            scale, translate = self._compute.preview_geometry(scale, translate, full_hw, preview_hw)
        self._applied = None if plane is not None else self._applied
        stacked = plane is not None and plane != ()
        if stacked:  # write the plane into the stack shown by the output layer
            data = out.data if out is not None else None
            shape = leading + result.shape
            if data is None or data.shape != shape or data.dtype != job.data.dtype:
                data = np.zeros(shape, job.data.dtype)
            data[plane] = result
            result = data
        if out is None:
            kwargs = {} if job.rgb else {"colormap": layer.colormap.name}
            limits = _DTYPE_RANGE.get(finest.dtype, (0.0, 1.0))
            out = self.viewer.add_image(result, name=name, rgb=job.rgb, contrast_limits=limits,  # a taken name
                                        scale=scale, translate=translate,  # gets " [1]" from napari
                                        metadata={OUTPUT_MARK: mark}, multiscale=multiscale, **kwargs)
            self._made[out.unique_id] = mark
        else:
            if out.data is result:
                out.refresh()
            else:
                out.data = result
            if not (np.array_equal(out.scale, scale) and np.array_equal(out.translate, translate)):
                out.scale, out.translate = scale, translate
        self.last_elapsed = time.perf_counter() - job.started
        s = job.settings
        reduced = (f" (preview {preview_hw[0]}×{preview_hw[1]} of {full_hw[0]}×{full_hw[1]}: Apply for full "
                   "resolution)") if preview_hw != full_hw else ""
        noise = "" if s.denoise == 0 else f", denoise {s.denoise}"
        exposure = s.exposure if s.exposure == EXPOSURE_AUTO else f"{s.exposure:.2f}"
        self.status.setText(f"{s.model}, {s.iterations} iterations, E = {exposure}{noise}: "
                            f"{1000 * self.last_elapsed:.0f} ms{reduced}")
        self.result_shown.emit(job.layer_name, s, self.last_elapsed)
