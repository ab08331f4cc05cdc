"""Screenshot of the napari plugin for the README: napari with the dark sample, the dock widget and the
enhanced layer side by side (grid mode), saved as docs/napari-widget.png.

usage: python tools/screenshot_widget.py [--model NAME] [--out docs/napari-widget.png]
Without a display (no $DISPLAY) it starts a virtual X server (Xvfb, through PyVirtualDisplay, which
pytest-xvfb installs). Without trained weights the widget starts on the gamma baseline; --model picks another
registered model (it needs its weights).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's packages, as when the tests run from the root


def wait(app, condition, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registered model to show (default: the widget's default)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "napari-widget.png"))
    args = parser.parse_args()

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        import napari
        import npe2
        from qtpy.QtWidgets import QApplication

        from napari_lowlight import PLUGIN_NAME, WIDGET_NAME
        from napari_lowlight._sample_data import SAMPLE_NAME

        pm = npe2.PluginManager.instance()
        pm.discover()
        if PLUGIN_NAME not in pm:  # not pip-installed: register this checkout's manifest
            pm.register(npe2.PluginManifest.from_file(ROOT / "napari_lowlight" / "napari.yaml"))

        viewer = napari.Viewer(title="lowlight", show=True)
        viewer.window.resize(1500, 860)
        viewer.open_sample(PLUGIN_NAME, "dark_photo")
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
        app = QApplication.instance()
        if args.model:
            index = widget.model_combo.findData(args.model)
            if index < 0:
                raise SystemExit(f"unknown model {args.model!r}")
            widget.model_combo.setCurrentIndex(index)
        output = SAMPLE_NAME + " enhanced"
        wait(app, lambda: widget.is_idle() and output in viewer.layers, what="the enhanced layer")
        viewer.canvas.grid.enabled = True  # input and output side by side
        viewer.canvas.grid.spacing = 0.05
        viewer.reset_view()
        viewer.layers.selection.active = viewer.layers[output]
        for _ in range(20):  # let the canvas and the dock settle
            app.processEvents()
            time.sleep(0.02)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(args.out, canvas_only=False, flash=False)
        print(f"wrote {args.out} ({widget.status.text()})")
        viewer.close()
    finally:
        if display is not None:
            display.stop()


if __name__ == "__main__":
    main()
