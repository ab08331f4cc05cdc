"""napari plugin for lowlight: a dock widget that enhances image layers, and a dark sample photo.

Importing this package is cheap on purpose (napari may import it while starting): torch and the models
load only when the widget is created.
"""
__version__ = "0.1.0"

PLUGIN_NAME = "napari-lowlight"                # the npe2 plugin name (= the distribution name)
WIDGET_NAME = "Low-light enhancement"   # the dock widget's display name in napari.yaml
