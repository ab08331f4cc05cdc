"""Training of the lowlight models: data (training.data), one trainer (training.trainer), recipes
(training.recipes), figures (training.plots), evaluation and model cards (training.evaluate).

Installed as `lowlight_training` (the folder is training/; in a checkout both names import). Command line:
`lowlight train RECIPE [--config cpu|gpu] [--steps N] [--out DIR] [--resume]` (the `lowlight.commands` entry point
`train` -> lowlight_training.__main__:main), or `python -m lowlight_training ...` (`python -m training` in a checkout).
Needs matplotlib: pip install 'napari-lowlight[train]'.
"""
